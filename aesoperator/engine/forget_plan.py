"""What forgetting some memories touches: the plan `forget.py` carries out.

A forget acts in one namespace (the agent's memory namespace unless told otherwise) and selects
its memories (episodes) in one of three ways:

- by id: the episodes with these ids;
- by query: the episodes whose content contains the query text (case-insensitive, whitespace
  collapsed): exact and explainable, which is what erasing "everything that says X" needs;
- by entity (a name or an id): the episodes that mention the entity, by a MENTIONS link or by its
  name as a whole word in their content, plus the entity itself when it lives in the namespace,
  plus every relation of the namespace from or to it (facts about it).

For the selected episodes it also touches every relation from or to them (MENTIONS, IN_SESSION,
NEXT, ...) and the facts they are the evidence of (relations whose `item` is the episode). The
NEXT chain of a session is joined over the forgotten episodes, and a session whose latest episode
is forgotten points at the latest one left. A purge also erases the entities that only the
forgotten episodes mentioned (extracted people, places, ... that nothing left mentions), because
their names are text of those episodes, and sessions left without episodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aesoperator.engine.search import RETIRED_AT
from aesoperator.engine.stores.base import GraphStore
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.knowledge import KNOWLEDGE_SOURCE
from aesoperator.graph_schema.models import Entity, Relation, to_iso

EPISODE = "Episode"
SESSION = "Session"
PAGE = 1000
_SPACES = re.compile(r"\s+")


def normalized(text: str) -> str:
    """Text as a query is compared with content: case-folded, runs of whitespace as one space."""
    return _SPACES.sub(" ", text).strip().casefold()


def names_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """A case-insensitive pattern matching any of `names` as whole words (None for no names)."""
    words = sorted({normalized(n) for n in names if n.strip()}, key=len, reverse=True)
    if not words:
        return None
    alternatives = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in words)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def is_retired(entity: Entity) -> bool:
    return RETIRED_AT in entity.properties


@dataclass
class ForgetPlan:
    """Everything one forget changes, computed before anything is written."""

    namespace: str
    episodes: dict[str, Entity] = field(default_factory=dict)  # the forgotten memories
    entities: dict[str, Entity] = field(default_factory=dict)  # other entities retired or erased
    relations: dict[str, Relation] = field(default_factory=dict)  # expired (retire) or deleted (purge)
    next_links: list[Relation] = field(default_factory=list)  # NEXT relations joining a chain
    sessions: list[Entity] = field(default_factory=list)  # sessions updated (latest episode)
    empty_sessions: list[str] = field(default_factory=list)  # sessions left without episodes
    rewritten: list[Entity] = field(default_factory=list)  # survivors whose properties named a forgotten id

    def forgotten_ids(self) -> set[str]:
        return set(self.episodes) | set(self.entities)


class ForgetPlanner:
    """Computes a `ForgetPlan` from the store (reads only)."""

    def __init__(self, store: GraphStore, namespace: str) -> None:
        self.store = store
        self.namespace = namespace

    # selection ---------------------------------------------------------------------------------
    def _episodes(self) -> Iterable[Entity]:
        for batch in self.store.iter_entities(batch_size=PAGE, namespaces=[self.namespace], types=[EPISODE]):
            yield from batch

    def by_ids(self, ids: Sequence[str]) -> dict[str, Entity]:
        wanted = list(dict.fromkeys(ids))
        found = {e.id: e for e in self.store.get_entities(wanted, [self.namespace])}
        missing = [i for i in wanted if i not in found or found[i].type != EPISODE]
        if missing:
            shown = ", ".join(repr(i[:120]) for i in missing[:5])
            raise SchemaError(
                f"no memory (episode) with id {shown} in namespace {self.namespace!r}: pass the ids that "
                "remember or recall returned, and the namespace they were stored in"
            )
        return found

    def by_query(self, query: str) -> dict[str, Entity]:
        needle = normalized(query)
        if not needle:
            raise SchemaError("the forget query is empty: give the text the memories to forget contain")
        return {e.id: e for e in self._episodes() if needle in normalized(e.text)}

    def resolve_entity(self, name_or_id: str, readable: Sequence[str] | None) -> list[Entity]:
        """The entities `name_or_id` names: the entity with that id, else every entity of that
        name (case-insensitive) in the readable namespaces and the forget's own."""
        spaces = None if readable is None else sorted({*readable, self.namespace})
        by_id = self.store.get_entities([name_or_id], spaces)
        if by_id:
            return by_id
        found = self.store.name_lookup([name_or_id], namespaces=spaces)
        ids = sorted({i for hits in found.values() for i in hits})
        entities = [e for e in self.store.get_entities(ids, spaces) if e.type not in (EPISODE, SESSION)]
        if not entities:
            raise SchemaError(
                f"no entity called or with id {name_or_id[:200]!r} in the namespaces you may read: name an entity "
                "that search or recall returned"
            )
        return entities

    def by_entity(self, targets: Sequence[Entity]) -> dict[str, Entity]:
        """Episodes of the namespace that mention one of `targets` (link or name)."""
        ids = {t.id for t in targets}
        linked = {r.src for r in self.store.relations_of(sorted(ids)) if r.type == "MENTIONS" and r.dst in ids}
        pattern = names_pattern(t.name for t in targets)
        return {
            e.id: e
            for e in self._episodes()
            if e.id in linked or (pattern is not None and pattern.search(e.text) is not None)
        }

    # the plan ------------------------------------------------------------------------------------
    def plan(self, episodes: dict[str, Entity], targets: Sequence[Entity], purge: bool) -> ForgetPlan:
        """What forgetting `episodes` (and the entities `targets`) changes."""
        plan = ForgetPlan(self.namespace)
        plan.episodes = {i: e for i, e in episodes.items() if purge or not is_retired(e)}
        for target in targets:
            if target.namespace == self.namespace and (purge or not is_retired(target)):
                plan.entities[target.id] = target
        target_ids = sorted(t.id for t in targets)
        for rel in self.store.relations_of(target_ids):
            if rel.namespace == self.namespace:
                plan.relations[rel.id] = rel
        episode_relations = self.store.relations_of(sorted(plan.episodes))
        mentioned: set[str] = set()
        for rel in episode_relations:
            plan.relations[rel.id] = rel
            if rel.type == "MENTIONS" and rel.src in plan.episodes:
                mentioned.add(rel.dst)
        around = self.store.relations_of(sorted(mentioned)) if mentioned else []
        for rel in around:
            if rel.properties.get("item") in plan.episodes and rel.namespace == self.namespace:
                plan.relations[rel.id] = rel  # a fact whose evidence is a forgotten episode
        if purge:
            self._orphans(plan, mentioned, around)
        self._join_chains(plan, episode_relations)
        self._fix_sessions(plan, episode_relations, purge)
        if purge:
            self._rewrite_first_seen(plan, mentioned)
        if not purge:  # what is already expired stays as it was
            plan.relations = {i: r for i, r in plan.relations.items() if r.expired_at is None}
        return plan

    def _orphans(self, plan: ForgetPlan, mentioned: set[str], around: Sequence[Relation]) -> None:
        """Extracted entities of the namespace that nothing left mentions: their names are text
        of the forgotten episodes."""
        gone = plan.forgotten_ids()
        still_mentioned = {r.dst for r in around if r.type == "MENTIONS" and r.src not in gone}
        candidates = sorted(mentioned - still_mentioned - gone)
        for entity in self.store.get_entities(candidates, [self.namespace]):
            if entity.source == KNOWLEDGE_SOURCE:
                plan.entities[entity.id] = entity
        for rel in self.store.relations_of(sorted(plan.entities)) if plan.entities else []:
            plan.relations[rel.id] = rel

    def _join_chains(self, plan: ForgetPlan, episode_relations: Sequence[Relation]) -> None:
        """NEXT relations from the last episode kept before a forgotten run to the first after it."""
        live_next = [r for r in episode_relations if r.type == "NEXT" and r.is_live()]
        after = {r.src: r for r in live_next}
        before = {r.dst: r for r in live_next}
        gone = set(plan.episodes)
        for eid in sorted(gone):
            prev = before.get(eid)
            if prev is None or prev.src in gone:
                continue
            step = after.get(eid)
            seen = {eid}
            while step is not None and step.dst in gone and step.dst not in seen:
                seen.add(step.dst)
                step = after.get(step.dst)
            if step is not None and step.dst not in gone:
                plan.next_links.append(
                    Relation(type="NEXT", src=prev.src, dst=step.dst, source=prev.source, namespace=prev.namespace)
                )

    def _fix_sessions(self, plan: ForgetPlan, episode_relations: Sequence[Relation], purge: bool) -> None:
        """Sessions whose latest episode is forgotten point at the latest one left (a purge erases
        a session left without episodes)."""
        session_ids = sorted({r.dst for r in episode_relations if r.type == "IN_SESSION" and r.src in plan.episodes})
        if not session_ids:
            return
        sessions = {s.id: s for s in self.store.get_entities(session_ids, [self.namespace]) if s.type == SESSION}
        members: dict[str, list[str]] = {}
        for rel in self.store.relations_of(sorted(sessions)):
            if rel.type == "IN_SESSION" and rel.dst in sessions and rel.src not in plan.episodes:
                members.setdefault(rel.dst, []).append(rel.src)
        kept = {e.id: e for e in self.store.get_entities(sorted({m for ms in members.values() for m in ms}))}
        for sid, session in sessions.items():
            left = [kept[m] for m in members.get(sid, []) if m in kept and not is_retired(kept[m])]
            if purge and not any(m in kept for m in members.get(sid, [])):
                plan.empty_sessions.append(sid)
                continue
            if session.properties.get("last_episode_id") not in plan.episodes:
                continue
            latest = max(left, key=lambda e: (to_iso(e.valid_from or e.created_at) or "", e.id), default=None)
            properties = dict(session.properties)
            properties["last_episode_id"] = latest.id if latest is not None else None
            properties["last_at"] = to_iso(latest.valid_from or latest.created_at) if latest is not None else None
            plan.sessions.append(session.model_copy(update={"properties": properties}))

    def _rewrite_first_seen(self, plan: ForgetPlan, mentioned: set[str]) -> None:
        """Extracted entities that stay but were first seen in an erased episode lose that id."""
        gone = plan.forgotten_ids()
        survivors = sorted(mentioned - gone)
        for entity in self.store.get_entities(survivors, [self.namespace]):
            if entity.properties.get("first_seen_in") in gone:
                properties = {k: v for k, v in entity.properties.items() if k != "first_seen_in"}
                plan.rewritten.append(entity.model_copy(update={"properties": properties}))
