"""Memory facts: what remembered episodes state, kept true over time.

Extraction reports the facts an episode states as relations `subject -[PREDICATE]-> object`
(`graph_schema.facts`). `FactKeeper.plan` turns them into stored facts: valid from the episode's
time, with the episode as evidence, and for a single-valued predicate placed on the subject's
timeline of that predicate. Along a timeline each fact holds until the next one with another
object starts: the older fact gets `valid_to` and `superseded_by` (history kept, never deleted)
and its evidence episode is linked to the newer one's by SUPERSEDED_BY. A restatement of the
current value adds its episode to the fact's evidence instead of starting a new fact.

An episode all of whose facts no longer hold is retired the same way (`valid_to`,
`superseded_by`, `retired_reason`), so recall and search answer with what is true now and, with
`as_of`, with what was true then.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

from pydantic import BaseModel, Field

from aesoperator.engine.stores.base import GraphStore
from aesoperator.graph_schema.facts import (
    FACT_PROPERTY,
    PREDICATES,
    RETIRED_REASON_PROPERTY,
    SUPERSEDED_AT_PROPERTY,
    SUPERSEDED_BY,
    SUPERSEDED_BY_PROPERTY,
    canonical_predicate,
    is_fact_type,
    is_single_valued,
)
from aesoperator.graph_schema.ids import relation_id
from aesoperator.graph_schema.models import Entity, Relation, from_iso, to_iso

FACTS_PROPERTY = "facts"  # episode property: ids of the facts it states
EVIDENCE_PROPERTY = "evidence"  # fact property: ids of the episodes that state it
RETIRED_REASON = RETIRED_REASON_PROPERTY  # entity property: why it stopped holding
RETRACTED_BY = "retracted_by"  # fact property: the correction that withdrew it
SUPERSEDED = "superseded"  # a retired_reason: every fact it states was replaced by newer ones
MAX_EVIDENCE = 200


class MemoryFact(BaseModel):
    """One fact as callers see it: who, what, which value, when it held and on what evidence."""

    id: str
    subject: str
    subject_name: str = ""
    predicate: str
    object: str
    object_name: str = ""
    namespace: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    current: bool = Field(description="Whether it holds at the moment asked about (now by default).")
    superseded_by: str | None = Field(default=None, description="The fact that replaced it.")
    retracted_by: str | None = Field(default=None, description="The corrected episode that withdrew it.")
    evidence: list[str] = Field(default_factory=list, description="Ids of the episodes that state it.")
    statement: str = Field(default="", description="The sentence that states it.")


def is_fact(relation: Relation) -> bool:
    return relation.properties.get(FACT_PROPERTY) is True and is_fact_type(relation.type)


def fact_holds(relation: Relation, as_of: datetime | None) -> bool:
    """Whether a fact holds at `as_of` (now when None)."""
    return relation.is_live(as_of)


def fact_view(relation: Relation, names: dict[str, str], as_of: datetime | None = None) -> MemoryFact:
    props = relation.properties
    return MemoryFact(
        id=relation.id,
        subject=relation.src,
        subject_name=names.get(relation.src, ""),
        predicate=relation.type,
        object=relation.dst,
        object_name=names.get(relation.dst, ""),
        namespace=relation.namespace,
        valid_from=relation.valid_from,
        valid_to=relation.valid_to,
        current=fact_holds(relation, as_of),
        superseded_by=props.get(SUPERSEDED_BY_PROPERTY),
        retracted_by=props.get(RETRACTED_BY),
        evidence=[e for e in props.get(EVIDENCE_PROPERTY) or [] if isinstance(e, str)],
        statement=str(props.get("evidence_text") or ""),
    )


@dataclass(slots=True)
class FactPlan:
    """What one remember batch writes besides its episodes."""

    relations: dict[str, Relation] = field(default_factory=dict)  # new and changed facts, links
    entities: dict[str, Entity] = field(default_factory=dict)  # stored episodes retired or revived
    delete_relation_ids: list[str] = field(default_factory=list)  # SUPERSEDED_BY links that no longer hold


def _evidence(relation: Relation) -> list[str]:
    return [e for e in relation.properties.get(EVIDENCE_PROPERTY) or [] if isinstance(e, str)]


def _first_evidence(relation: Relation) -> str | None:
    found = _evidence(relation)
    return found[0] if found else None


def new_fact(extracted: Relation, episode: Entity) -> Relation:
    """A stored fact from a relation extraction found in `episode`'s text."""
    predicate = canonical_predicate(extracted.type)
    props = dict(extracted.properties)
    props["evidence_text"] = str(props.pop("evidence", ""))[:300]
    props[FACT_PROPERTY] = True
    props[EVIDENCE_PROPERTY] = [episode.id]
    return Relation(
        id=relation_id(predicate, extracted.src, extracted.dst, episode.id),
        type=predicate,
        src=extracted.src,
        dst=extracted.dst,
        properties=props,
        source=episode.source,
        namespace=episode.namespace,
        valid_from=episode.valid_from,
    )


def superseded_link(old: Relation, new: Relation) -> Relation | None:
    """SUPERSEDED_BY from the old fact's first evidence episode to the new one's."""
    src, dst = _first_evidence(old), _first_evidence(new)
    if src is None or dst is None or src == dst:
        return None
    return Relation(
        id=relation_id(SUPERSEDED_BY, src, dst, old.id),
        type=SUPERSEDED_BY,
        src=src,
        dst=dst,
        properties={"predicate": old.type, "fact": old.id, "by_fact": new.id},
        source=new.source,
        namespace=new.namespace,
        valid_from=new.valid_from,
    )


class FactKeeper:
    """Places new facts on their subjects' timelines and retires what they replace."""

    def __init__(self, store: GraphStore, supersede: bool = True) -> None:
        self.store = store
        self.supersede = supersede

    def plan(
        self,
        facts: Sequence[tuple[Relation, Entity]],
        episodes: dict[str, Entity],
        new_entities: Sequence[Entity] = (),
    ) -> FactPlan:
        """Store `facts` (each with the episode entity stating it; `episodes` holds the batch's
        episode entities, which are updated in place with the facts they state and their status).

        Args:
            facts: (extracted relation of a fact type, its episode) pairs.
            episodes: the batch's episode entities by id.
            new_entities: entities the batch creates (a fact's object may be one of them).

        Returns:
            The relations and stored entities to write with the batch.
        """
        plan = FactPlan()
        fresh: dict[str, Relation] = {}
        for extracted, episode in facts:
            fact = new_fact(extracted, episode)
            fresh.setdefault(fact.id, fact)
        if not fresh:
            return plan
        stated: dict[str, list[str]] = {}  # episode id -> fact ids it states
        groups: dict[tuple[str, str, str], list[Relation]] = {}
        for fact in fresh.values():
            groups.setdefault((fact.src, fact.type, fact.namespace), []).append(fact)
        stored = self._stored_facts(groups)
        before = {r.id: r.properties.get(SUPERSEDED_BY_PROPERTY) for rs in stored.values() for r in rs}
        values = self._values([r for rs in [*stored.values(), *groups.values()] for r in rs], new_entities)
        touched: dict[str, Relation] = {}  # facts whose state may retire or revive an episode
        for key, new in groups.items():
            timeline = [r for r in stored.get(key, []) if not r.properties.get(RETRACTED_BY)]
            known = {r.id for r in timeline}
            for fact in new:
                if fact.id in known:  # the same episode stored again: nothing new
                    stated.setdefault(_first_evidence(fact) or "", []).append(fact.id)
                    continue
                timeline.append(fact)
            single = self.supersede and is_single_valued(key[1])
            placed = self._place(timeline, known, stated, single, values)
            for fact in placed:
                plan.relations[fact.id] = fact
                touched[fact.id] = fact
        self._link_superseded(plan, stored, groups, before)
        for episode_id, ids in stated.items():
            stating = episodes.get(episode_id)
            if stating is not None:
                merged = list(dict.fromkeys([*(stating.properties.get(FACTS_PROPERTY) or []), *ids]))
                stating.properties[FACTS_PROPERTY] = merged
        self._settle_episodes(plan, touched, episodes)
        return plan

    def _stored_facts(
        self, groups: dict[tuple[str, str, str], list[Relation]]
    ) -> dict[tuple[str, str, str], list[Relation]]:
        subjects = sorted({s for s, _, _ in groups})
        types = sorted({t for _, t, _ in groups})
        spaces = sorted({ns for _, _, ns in groups})
        out: dict[tuple[str, str, str], list[Relation]] = {}
        for r in self.store.outgoing_relations(subjects, types, spaces):
            key = (r.src, r.type, r.namespace)
            if key in groups and is_fact(r):
                out.setdefault(key, []).append(r)
        return out

    def _values(self, facts: Sequence[Relation], new_entities: Sequence[Entity]) -> dict[str, str]:
        """Object id -> the value it stands for (its name, case-folded): one value named by
        entities of two types ("Stripe" read as an organisation once, a place once) is one value."""
        names = {e.id: e.name for e in new_entities}
        missing = sorted({f.dst for f in facts} - set(names))
        names.update({e.id: e.name for e in self.store.get_entities(missing)} if missing else {})
        return {eid: " ".join(name.casefold().split()) for eid, name in names.items()}

    @staticmethod
    def _place(
        timeline: list[Relation],
        known: set[str],
        stated: dict[str, list[str]],
        single: bool,
        values: dict[str, str],
    ) -> list[Relation]:
        """Order a subject's facts of one predicate in time, fold restatements into the fact they
        repeat and close each fact where the next value starts. Returns the facts that changed."""

        def value(fact: Relation) -> str:
            return values.get(fact.dst, fact.dst)

        timeline.sort(key=lambda r: (to_iso(r.valid_from) or "", r.id))
        changed: dict[str, Relation] = {}
        kept: list[Relation] = []
        for fact in timeline:
            episode = _first_evidence(fact) or ""
            if fact.id in known:
                kept.append(fact)
                continue
            # a restatement: the value that holds at this time (single) or at all (multi) already
            same = [
                r
                for r in kept
                if value(r) == value(fact) and (not single or r is kept[-1]) and (single or r.is_live(fact.valid_from))
            ]
            if same:
                target = same[-1]
                evidence = _evidence(target)
                if episode not in evidence and len(evidence) < MAX_EVIDENCE:
                    target.properties[EVIDENCE_PROPERTY] = [*evidence, episode]
                    changed[target.id] = target
                stated.setdefault(episode, []).append(target.id)
                continue
            kept.append(fact)
            changed[fact.id] = fact
            stated.setdefault(episode, []).append(fact.id)
        if single:
            ends: list[tuple[Relation, Relation | None]] = [*pairwise(kept), (kept[-1], None)] if kept else []
            for fact, successor in ends:
                want_to = successor.valid_from if successor is not None and value(successor) != value(fact) else None
                want_by = successor.id if want_to is not None and successor is not None else None
                if fact.valid_to != want_to or fact.properties.get(SUPERSEDED_BY_PROPERTY) != want_by:
                    fact.valid_to = want_to
                    fact.properties[SUPERSEDED_BY_PROPERTY] = want_by
                    fact.properties[SUPERSEDED_AT_PROPERTY] = to_iso(want_to)
                    changed[fact.id] = fact
        return list(changed.values())

    @staticmethod
    def _link_superseded(
        plan: FactPlan,
        stored: dict[tuple[str, str, str], list[Relation]],
        groups: dict[tuple[str, str, str], list[Relation]],
        before: dict[str, object],
    ) -> None:
        """SUPERSEDED_BY links between evidence episodes for every closed fact of the timelines
        touched; a link an earlier timeline had and this one no longer has is deleted."""
        for key in groups:
            facts = {r.id: r for r in stored.get(key, [])}
            facts.update({r.id: r for r in plan.relations.values() if (r.src, r.type, r.namespace) == key})
            for fact in facts.values():
                by = fact.properties.get(SUPERSEDED_BY_PROPERTY)
                old_by = before.get(fact.id)
                if old_by and old_by != by and old_by in facts:
                    stale = superseded_link(fact, facts[old_by])
                    if stale is not None:
                        plan.delete_relation_ids.append(stale.id)
                if by and by in facts and fact.id in plan.relations:
                    link = superseded_link(fact, facts[by])
                    if link is not None:
                        plan.relations[link.id] = link

    def _settle_episodes(self, plan: FactPlan, touched: dict[str, Relation], batch: dict[str, Entity]) -> None:
        """Retire every episode whose facts all stopped holding (and revive one whose fact holds
        again after a back-filled fact moved the timeline)."""
        episode_ids = sorted({e for fact in touched.values() for e in _evidence(fact)})
        stored = {e.id: e for e in self.store.get_entities([i for i in episode_ids if i not in batch])}
        episodes = {**stored, **{i: batch[i] for i in episode_ids if i in batch}}
        fact_ids = sorted({f for ep in episodes.values() for f in ep.properties.get(FACTS_PROPERTY) or []})
        facts = {r.id: r for r in self.store.get_relations([f for f in fact_ids if f not in touched])}
        facts.update(touched)
        successors = {str(f.properties.get(SUPERSEDED_BY_PROPERTY)) for f in facts.values()} - set(facts) - {"None"}
        facts.update({r.id: r for r in self.store.get_relations(sorted(successors))})
        for episode in episodes.values():
            reason = episode.properties.get(RETIRED_REASON)
            if reason not in (None, SUPERSEDED):
                continue  # corrected, merged or expired: not for facts to decide
            own = [facts[f] for f in episode.properties.get(FACTS_PROPERTY) or [] if f in facts]
            closed = [f for f in own if f.valid_to is not None]
            if own and len(closed) == len(own):
                last = max(closed, key=lambda f: to_iso(f.valid_to) or "")
                successor = facts.get(str(last.properties.get(SUPERSEDED_BY_PROPERTY)))
                by = _first_evidence(successor) if successor is not None else None
                if episode.valid_to != last.valid_to or episode.properties.get(SUPERSEDED_BY_PROPERTY) != by:
                    episode.valid_to = last.valid_to
                    episode.properties[RETIRED_REASON] = SUPERSEDED
                    episode.properties[SUPERSEDED_BY_PROPERTY] = by
                    episode.properties[SUPERSEDED_AT_PROPERTY] = to_iso(last.valid_to)
                    if episode.id not in batch:
                        plan.entities[episode.id] = episode
            elif reason == SUPERSEDED:
                episode.valid_to = None
                for prop in (RETIRED_REASON, SUPERSEDED_BY_PROPERTY, SUPERSEDED_AT_PROPERTY):
                    episode.properties.pop(prop, None)
                if episode.id not in batch:
                    plan.entities[episode.id] = episode


def facts_of_episodes(store: GraphStore, episodes: Iterable[Entity]) -> dict[str, list[Relation]]:
    """The facts each episode states (episode id -> facts, in the order it states them)."""
    wanted = {e.id: [f for f in e.properties.get(FACTS_PROPERTY) or [] if isinstance(f, str)] for e in episodes}
    found = {r.id: r for r in store.get_relations(sorted({f for ids in wanted.values() for f in ids}))}
    return {eid: [found[f] for f in ids if f in found] for eid, ids in wanted.items()}


def retired_at(entity: Entity) -> datetime | None:
    """When a retired memory stopped holding (None for one that holds)."""
    if entity.properties.get(RETIRED_REASON) is None:
        return None
    return entity.valid_to or from_iso(entity.properties.get(SUPERSEDED_AT_PROPERTY))


__all__ = [
    "EVIDENCE_PROPERTY",
    "FACTS_PROPERTY",
    "PREDICATES",
    "RETIRED_REASON",
    "RETRACTED_BY",
    "SUPERSEDED",
    "FactKeeper",
    "FactPlan",
    "MemoryFact",
    "fact_holds",
    "fact_view",
    "facts_of_episodes",
    "is_fact",
    "new_fact",
    "retired_at",
]
