"""Corrections and history of agent memory.

`correct_episode` replaces an episode's content with a new version: a new episode (its facts
placed on their timelines like any remembered fact, so they supersede the old values) that the
old one links to by SUPERSEDED_BY; the old episode is retired as "corrected" from that moment, and
the facts only it stated that nothing replaced are closed then and marked `retracted_by`. Nothing is deleted: `as_of` before the correction still answers with the old version.

`memory_history` lists every version of a memory (an episode and its corrections), of a fact (the
subject's timeline of that predicate) or of everything known about an entity, with times and the
episodes that are their evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from aesoperator.engine.memory_facts import (
    EVIDENCE_PROPERTY,
    FACTS_PROPERTY,
    RETIRED_REASON,
    RETRACTED_BY,
    SUPERSEDED,
    fact_holds,
    is_fact,
)
from aesoperator.engine.stores.base import GraphStore, WriteBatch
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.facts import (
    PREDICATES,
    SUPERSEDED_AT_PROPERTY,
    SUPERSEDED_BY,
    SUPERSEDED_BY_PROPERTY,
)
from aesoperator.graph_schema.ids import content_hash, relation_id
from aesoperator.graph_schema.models import Entity, Episode, Relation, to_iso, utcnow

if TYPE_CHECKING:
    from aesoperator.engine.memory import AgentMemory

CORRECTED = "corrected"
CORRECTS_KEY = "corrects"  # metadata of a new version: the id of the version it corrects
VERSION_KEY = "version"


class Evidence(BaseModel):
    """An episode that states a fact."""

    episode_id: str
    content: str
    created_at: datetime | None = None


class HistoryEntry(BaseModel):
    """One version of a memory or a fact, with when it held and on what evidence."""

    kind: Literal["episode", "fact"]
    id: str
    namespace: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    current: bool = Field(description="Whether it holds now.")
    retired_reason: str | None = Field(default=None, description="superseded, corrected, duplicate, expired.")
    superseded_by: str | None = None
    content: str | None = Field(default=None, description="An episode's content.")
    version: int | None = Field(default=None, description="An episode's version (1 for the first).")
    subject: str | None = None
    subject_name: str | None = None
    predicate: str | None = None
    object: str | None = None
    object_name: str | None = None
    retracted_by: str | None = Field(default=None, description="The correction that withdrew a fact.")
    evidence: list[Evidence] = Field(default_factory=list)


class MemoryHistory(BaseModel):
    """Every version of what was asked about, oldest first."""

    target: str
    kind: Literal["episode", "fact", "entity"]
    entries: list[HistoryEntry]


class CorrectionResult(BaseModel):
    """The new version an update stored, and what it retired."""

    episode: Episode
    replaced: str = Field(description="The id of the version it replaces.")
    retracted_facts: list[str] = Field(default_factory=list, description="Facts only the old version stated.")


def _version(entity: Entity) -> int:
    meta = entity.properties.get("metadata")
    value = meta.get(VERSION_KEY) if isinstance(meta, dict) else None
    return value if isinstance(value, int) and value > 0 else 1


def correct_episode(
    memory: AgentMemory,
    episode_id: str,
    new_content: str,
    namespaces: Sequence[str] | None = None,
    at: datetime | None = None,
) -> CorrectionResult:
    """Replace an episode's content with a new version (see the module docstring).

    Raises:
        SchemaError: no episode has that id in `namespaces`, or it was corrected already.
    """
    store = memory.engine.store
    found = [e for e in store.get_entities([episode_id], namespaces) if e.type == "Episode"]
    if not found:
        raise SchemaError(f"no episode {episode_id[:200]!r} to update (unknown, or outside your namespaces)")
    old = found[0]
    if old.properties.get(RETIRED_REASON) == CORRECTED:
        latest = old.properties.get(SUPERSEDED_BY_PROPERTY)
        raise SchemaError(f"episode {episode_id[:200]!r} was already corrected by {latest!r}: update that version")
    props = old.properties
    version = _version(old) + 1
    moment = at or utcnow()
    if old.valid_from is not None and moment <= old.valid_from:
        moment = old.valid_from + timedelta(microseconds=1)
    metadata = {**(props.get("metadata") or {}), CORRECTS_KEY: old.id, VERSION_KEY: version}
    agent = str(props.get("agent_id") or "unknown")
    session = props.get("session_id")
    key = f"{agent}/{session or '-'}/correction/{content_hash(old.id)[:16]}/v{version}"
    replacement = Episode(
        id=key,
        content=new_content,
        agent_id=agent,
        session_id=session if isinstance(session, str) else None,
        task_id=props.get("task_id") if isinstance(props.get("task_id"), str) else None,
        created_at=moment,
        namespace=old.namespace,
        metadata=metadata,
    )
    (stored,) = memory.remember_many([replacement], mention_namespaces=namespaces)
    with memory.write_lock:
        old = store.get_entities([old.id])[0]
        new_entity = store.get_entities([stored.id])[0]
        stated_now = set(new_entity.properties.get(FACTS_PROPERTY) or [])
        retracted: list[str] = []
        changed: list[Relation] = []
        for fact in store.get_relations(list(old.properties.get(FACTS_PROPERTY) or [])):
            if fact.id in stated_now:
                continue
            others = [e for e in fact.properties.get(EVIDENCE_PROPERTY) or [] if e != old.id]
            if others or fact.properties.get(SUPERSEDED_BY_PROPERTY):
                continue  # another episode still states it, or the new version's fact replaced it
            fact.properties[RETRACTED_BY] = stored.id
            if fact.valid_to is None or fact.valid_to > moment:
                fact.valid_to = moment
            retracted.append(fact.id)
            changed.append(fact)
        retired = {
            **old.properties,
            RETIRED_REASON: CORRECTED,
            SUPERSEDED_BY_PROPERTY: stored.id,
            SUPERSEDED_AT_PROPERTY: to_iso(moment),
        }
        link = Relation(
            id=relation_id(SUPERSEDED_BY, old.id, stored.id, CORRECTED),
            type=SUPERSEDED_BY,
            src=old.id,
            dst=stored.id,
            properties={"reason": CORRECTED},
            source=old.source,
            namespace=old.namespace,
            valid_from=moment,
        )
        store.write(
            WriteBatch(
                entities=[old.model_copy(update={"properties": retired, "valid_to": moment})],
                relations=[*changed, link],
            )
        )
    return CorrectionResult(episode=stored, replaced=old.id, retracted_facts=retracted)


def _episode_entry(entity: Entity, now: datetime) -> HistoryEntry:
    return HistoryEntry(
        kind="episode",
        id=entity.id,
        namespace=entity.namespace,
        valid_from=entity.valid_from,
        valid_to=entity.valid_to,
        current=entity.valid_to is None or entity.valid_to > now,
        retired_reason=entity.properties.get(RETIRED_REASON),
        superseded_by=entity.properties.get(SUPERSEDED_BY_PROPERTY),
        content=entity.text,
        version=_version(entity),
    )


def _fact_entries(store: GraphStore, facts: Sequence[Relation], namespaces: Sequence[str] | None) -> list[HistoryEntry]:
    evidence_ids = sorted({e for f in facts for e in f.properties.get(EVIDENCE_PROPERTY) or [] if isinstance(e, str)})
    episodes = {e.id: e for e in store.get_entities(evidence_ids, namespaces)} if evidence_ids else {}
    ends = sorted({i for f in facts for i in (f.src, f.dst)})
    names = {e.id: e.name for e in store.get_entities(ends, namespaces)} if ends else {}
    out: list[HistoryEntry] = []
    for f in facts:
        evidence = [
            Evidence(episode_id=e.id, content=e.text[:300], created_at=e.valid_from)
            for e in (episodes.get(i) for i in f.properties.get(EVIDENCE_PROPERTY) or [])
            if e is not None
        ]
        out.append(
            HistoryEntry(
                kind="fact",
                id=f.id,
                namespace=f.namespace,
                valid_from=f.valid_from,
                valid_to=f.valid_to,
                current=fact_holds(f, None),
                retired_reason=CORRECTED
                if f.properties.get(RETRACTED_BY)
                else SUPERSEDED
                if f.properties.get(SUPERSEDED_BY_PROPERTY)
                else None,
                superseded_by=f.properties.get(SUPERSEDED_BY_PROPERTY),
                subject=f.src,
                subject_name=names.get(f.src),
                predicate=f.type,
                object=f.dst,
                object_name=names.get(f.dst),
                retracted_by=f.properties.get(RETRACTED_BY),
                evidence=evidence,
            )
        )
    return out


def _versions(store: GraphStore, start: Entity, namespaces: Sequence[str] | None) -> list[Entity]:
    """Every version of an episode: back through what each corrects, forward through what
    corrected it (bounded, so a malformed chain cannot loop)."""
    chain = [start]
    seen = {start.id}
    current = start
    for _ in range(1000):
        meta = current.properties.get("metadata")
        previous = meta.get(CORRECTS_KEY) if isinstance(meta, dict) else None
        found = store.get_entities([previous], namespaces) if isinstance(previous, str) and previous not in seen else []
        if not found:
            break
        current = found[0]
        seen.add(current.id)
        chain.insert(0, current)
    current = start
    for _ in range(1000):
        nxt = current.properties.get(SUPERSEDED_BY_PROPERTY)
        if current.properties.get(RETIRED_REASON) != CORRECTED or not isinstance(nxt, str) or nxt in seen:
            break
        found = store.get_entities([nxt], namespaces)
        if not found:
            break
        current = found[0]
        seen.add(current.id)
        chain.append(current)
    return chain


def memory_history(store: GraphStore, target: str, namespaces: Sequence[str] | None = None) -> MemoryHistory:
    """Every version of an episode, a fact, or everything stated about an entity (a name or id).

    Raises:
        SchemaError: nothing readable in `namespaces` has that id or name.
    """
    now = utcnow()
    entities = store.get_entities([target], namespaces)
    if entities and entities[0].type == "Episode":
        entries: list[HistoryEntry] = []
        for version in _versions(store, entities[0], namespaces):
            entries.append(_episode_entry(version, now))
            own = store.get_relations(list(version.properties.get(FACTS_PROPERTY) or []))
            entries.extend(_fact_entries(store, [f for f in own if _readable(f, namespaces)], namespaces))
        return MemoryHistory(target=target, kind="episode", entries=entries)
    relations = [r for r in store.get_relations([target]) if is_fact(r) and _readable(r, namespaces)]
    if relations:
        fact = relations[0]
        timeline = store.outgoing_relations([fact.src], [fact.type], [fact.namespace])
        return MemoryHistory(
            target=target, kind="fact", entries=_fact_entries(store, [r for r in timeline if is_fact(r)], namespaces)
        )
    subjects = [e.id for e in entities]
    if not subjects:
        subjects = sorted({i for ids in store.name_lookup([target], namespaces=namespaces).values() for i in ids})
    if not subjects:
        raise SchemaError(
            f"nothing called {target[:200]!r} to show the history of: give an episode id, a fact id, or an "
            "entity's name or id (readable in your namespaces)"
        )
    facts = [r for r in store.outgoing_relations(subjects, sorted(PREDICATES), namespaces) if is_fact(r)]
    return MemoryHistory(target=target, kind="entity", entries=_fact_entries(store, facts, namespaces))


def _readable(relation: Relation, namespaces: Sequence[str] | None) -> bool:
    return namespaces is None or relation.namespace in namespaces


__all__ = [
    "CORRECTED",
    "CorrectionResult",
    "Evidence",
    "HistoryEntry",
    "MemoryHistory",
    "correct_episode",
    "memory_history",
]
