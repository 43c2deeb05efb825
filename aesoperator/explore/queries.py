"""The explorer's reads, built on the engine's Python API and always through the caller's namespaces.

Each function takes the engine and the namespaces the caller may read (`None`: every namespace,
from `Principal.read_namespaces()`) and hands them to the store's queries, so nothing outside
them is produced: an unreadable entity looks exactly like an unknown one. The few things the
store cannot filter (which ids an episode's properties name, a relation's other end) are checked
against entities read through those namespaces.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from aesoperator.context import ContextEngine
from aesoperator.engine.entities import MERGE, NOT_MERGE
from aesoperator.engine.memory import agent_namespace
from aesoperator.engine.search import MAX_K
from aesoperator.errors import SchemaError
from aesoperator.explore.models import (
    AgentRow,
    AgentsOut,
    EntityBrief,
    EntityPage,
    EpisodeRow,
    GraphEdge,
    GraphNode,
    MemoryOut,
    MentionRow,
    MergeRow,
    Neighbourhood,
    Reason,
    RelationRow,
    SearchHitOut,
    SearchOut,
    SessionRow,
)
from aesoperator.graph_schema.facts import RETIRED_REASON_PROPERTY, SUPERSEDED_BY_PROPERTY, retirement_note
from aesoperator.graph_schema.models import Entity, Relation, utcnow

Namespaces = Sequence[str] | None

# An entity page lists at most this many relations and mentions (the totals say how many there are).
PAGE_ROWS = 300
# A neighbourhood shows at most this many neighbours; past it, a sample (and says so).
GRAPH_NODES = 120
# Neighbours counted for the "n of N" note and sampled from; a hub's further ones are not read.
GRAPH_SCAN = 5_000
# Episodes of one agent shown on the timeline (the newest ones).
TIMELINE_EPISODES = 2_000
AGENT_PREFIX = "agent:"
EPISODE_TYPE = "Episode"
FORGOTTEN_PROPERTY = "retired_at"  # set by forget (see engine/forget.py)
_CHANNEL_REASON = re.compile(r"^[a-z_]+ #\d+")  # "vector #2 (cosine 0.57)", "bridge #1 (0.96)"


def _brief(entity: Entity) -> EntityBrief:
    return EntityBrief(id=entity.id, type=entity.type, name=entity.name, namespace=entity.namespace)


def _readable(namespaces: Namespaces, namespace: str) -> bool:
    return namespaces is None or namespace in namespaces


# -- search ---------------------------------------------------------------------------------------
def reason_kind(text: str) -> str:
    """Which part of retrieval a reason comes from: a candidate channel, a graph hop, a link
    through an entity the query names, or something else (recency, dates, retirement)."""
    lowered = text.casefold()
    if _CHANNEL_REASON.match(lowered) or lowered.startswith("exact name"):
        return "channel"
    if " hop" in lowered and " from " in lowered:
        return "hop"
    if lowered.startswith(("found via", "linked to", "next to", "mentioned by")):
        return "link"
    return "other"


def search(
    engine: ContextEngine,
    namespaces: Namespaces,
    query: str,
    *,
    k: int = 10,
    hops: int | None = None,
    types: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    as_of: datetime | None = None,
) -> SearchOut:
    """Hybrid search through the caller's namespaces. The source filter is applied to the ranked
    hits (the search API has no source filter), so more are asked for when it is set."""
    started = time.perf_counter()
    wanted_sources = set(sources or ())
    asked = min(MAX_K, k * 5) if wanted_sources else k
    result = engine.search(
        query, k=asked, hops=hops, namespaces=namespaces, types=list(types) if types else None, as_of=as_of
    )
    hits = [h for h in result.hits if not wanted_sources or h.source in wanted_sources]
    dropped = len(result.hits) - len(hits)
    shown = [
        SearchHitOut(
            id=h.id,
            type=h.type,
            name=h.name,
            text=h.text[:600],
            score=h.score,
            hop=h.hop,
            reasons=[Reason(kind=reason_kind(r), text=r) for r in h.reasons],  # type: ignore[arg-type]
            namespace=h.namespace,
            source=h.source,
            provenance=h.provenance,
            valid_from=h.valid_from,
            valid_to=h.valid_to,
        )
        for h in hits[:k]
    ]
    return SearchOut(
        query=query,
        hits=shown,
        filtered_by_source=dropped,
        timings_ms=dict(result.timings_ms),
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )


# -- one entity -----------------------------------------------------------------------------------
def find_entity(engine: ContextEngine, namespaces: Namespaces, name_or_id: str) -> Entity:
    """The entity with this id, else the first one with this exact name, in the caller's namespaces."""
    ns = list(namespaces) if namespaces is not None else None
    found = engine.get_entities([name_or_id], ns) or engine.catalog.find(name_or_id, ns)
    if not found:
        raise SchemaError(f"no entity {name_or_id!r} in the namespaces you can read; search for it by name")
    return found[0]


def _others(
    engine: ContextEngine, namespaces: Namespaces, center: str, relations: Sequence[Relation]
) -> dict[str, Entity]:
    """The other ends of `relations` that the caller may read (read through its namespaces)."""
    ids = sorted({r.dst if r.src == center else r.src for r in relations} - {center})
    ns = list(namespaces) if namespaces is not None else None
    return {e.id: e for e in engine.get_entities(ids, ns)} if ids else {}


def entity_page(engine: ContextEngine, namespaces: Namespaces, name_or_id: str) -> EntityPage:
    """An entity with its relations (with validity, expired ones too), the items that mention it,
    its merge decisions and its sources."""
    started = time.perf_counter()
    entity = find_entity(engine, namespaces, name_or_id)
    rels = [r for r in engine.store.relations_of([entity.id]) if _readable(namespaces, r.namespace)]
    others = _others(engine, namespaces, entity.id, rels)
    relations: list[RelationRow] = []
    mentions: list[MentionRow] = []
    merges: list[MergeRow] = []
    mention_total = relation_total = 0
    for rel in sorted(rels, key=lambda r: (r.type, r.valid_from or r.recorded_at or utcnow(), r.id)):
        other_id = rel.dst if rel.src == entity.id else rel.src
        other = others.get(other_id)
        if other is None:
            continue
        props = rel.properties
        if rel.type in (MERGE, NOT_MERGE):
            merges.append(
                MergeRow(
                    id=rel.id,
                    kind=rel.type,
                    other=_brief(other),
                    rule=str(props.get("rule", "")),
                    score=float(props.get("score", 0.0) or 0.0),
                    evidence=str(props.get("evidence", ""))[:300],
                    decided_at=props.get("decided_at") or props.get("at"),
                    live=rel.is_live(),
                )
            )
        elif rel.type == "MENTIONS" and rel.dst == entity.id:
            mention_total += 1
            if len(mentions) < PAGE_ROWS:
                confidence = props.get("confidence")
                mentions.append(
                    MentionRow(
                        item=_brief(other),
                        text=str(props.get("text", ""))[:200],
                        extractor=str(props.get("extractor", "")),
                        confidence=float(confidence) if isinstance(confidence, int | float) else None,
                        source=other.source,
                    )
                )
        else:
            relation_total += 1
            if len(relations) < PAGE_ROWS:
                relations.append(
                    RelationRow(
                        id=rel.id,
                        type=rel.type,
                        direction="out" if rel.src == entity.id else "in",
                        other=_brief(other),
                        valid_from=rel.valid_from,
                        valid_to=rel.valid_to,
                        recorded_at=rel.recorded_at,
                        expired_at=rel.expired_at,
                        live=rel.is_live(),
                        evidence=str(props.get("evidence_text") or props.get("evidence", ""))[:300],
                        source=rel.source,
                    )
                )
    merged_sources = {others[m.other.id].source for m in merges if m.live and m.kind == MERGE}
    return EntityPage(
        id=entity.id,
        type=entity.type,
        name=entity.name,
        text=entity.text,
        properties=dict(entity.properties),
        namespace=entity.namespace,
        source=entity.source,
        provenance=entity.provenance,
        valid_from=entity.valid_from,
        valid_to=entity.valid_to,
        created_at=entity.created_at,
        updated_at=entity.updated_at,
        relations=relations,
        mentions=mentions,
        merges=merges,
        sources=sorted({entity.source} | merged_sources),
        relations_total=relation_total,
        mentions_total=mention_total,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )


# -- neighbourhood --------------------------------------------------------------------------------
def neighbourhood(
    engine: ContextEngine,
    namespaces: Namespaces,
    entity_id: str,
    *,
    relation_types: Sequence[str] | None = None,
    as_of: datetime | None = None,
    limit: int = GRAPH_NODES,
) -> Neighbourhood:
    """The entity's neighbours one hop out along relations live at `as_of` (now). Past `limit`
    neighbours, a sample: a few of each relation type in turn, picked at random with the
    entity's id as the seed (the same entity always shows the same sample)."""
    center = find_entity(engine, namespaces, entity_id)
    ns = list(namespaces) if namespaces is not None else None
    types = list(relation_types) if relation_types else None
    links = engine.store.neighbor_links([center.id], 1, types, as_of, ns, limit=GRAPH_SCAN + 1)
    by_type: dict[str, list[str]] = {}
    for a, b, kind in links.edges:
        other = b if a == center.id else a
        if other != center.id:
            by_type.setdefault(kind, []).append(other)
    neighbours = sorted({i for ids in by_type.values() for i in ids})
    counts = Counter({kind: len(set(ids)) for kind, ids in by_type.items()})
    sampled = len(neighbours) > limit
    if sampled:
        rng = random.Random(center.id)
        pools = {kind: rng.sample(sorted(set(ids)), len(set(ids))) for kind, ids in sorted(by_type.items())}
        chosen: dict[str, None] = {}
        while len(chosen) < limit and any(pools.values()):
            for pool in pools.values():
                if pool and len(chosen) < limit:
                    chosen[pool.pop()] = None
        keep = set(chosen)
    else:
        keep = set(neighbours)
    entities = {e.id: e for e in engine.get_entities(sorted(keep), ns)} if keep else {}
    edges: list[GraphEdge] = []
    for rel in engine.store.relations_of([center.id]):
        other = rel.dst if rel.src == center.id else rel.src
        if other not in entities or not _readable(namespaces, rel.namespace) or not rel.is_live(as_of):
            continue
        if types is not None and rel.type not in types:
            continue
        edges.append(
            GraphEdge(
                id=rel.id, type=rel.type, src=rel.src, dst=rel.dst, valid_from=rel.valid_from, valid_to=rel.valid_to
            )
        )
    nodes = [GraphNode(id=center.id, type=center.type, name=center.name, namespace=center.namespace, hop=0)]
    nodes += [
        GraphNode(id=e.id, type=e.type, name=e.name, namespace=e.namespace, hop=1)
        for e in sorted(entities.values(), key=lambda e: e.id)
    ]
    return Neighbourhood(
        center=center.id,
        nodes=nodes,
        edges=edges,
        total_neighbours=len(neighbours),
        counted_up_to=GRAPH_SCAN,
        sampled=sampled,
        relation_types=dict(counts.most_common()),
    )


# -- agent memory ---------------------------------------------------------------------------------
def agents(readable_with_data: Sequence[str], episode_counts: dict[str, int]) -> AgentsOut:
    """Agents whose own namespace (`agent:<id>`) the caller may read."""
    rows = [
        AgentRow(agent_id=ns.removeprefix(AGENT_PREFIX), namespace=ns, entities=episode_counts.get(ns, 0))
        for ns in sorted(readable_with_data)
        if ns.startswith(AGENT_PREFIX)
    ]
    return AgentsOut(agents=rows)


def _status(entity: Entity) -> tuple[str, str | None]:
    props = entity.properties
    note = retirement_note(props)
    if props.get(FORGOTTEN_PROPERTY):
        return "forgotten", f"forgotten at {props[FORGOTTEN_PROPERTY]}"
    if note is not None:
        reason = str(props.get(RETIRED_REASON_PROPERTY))
        return ("superseded" if reason in ("superseded", "corrected") else "retired"), note
    if entity.valid_to is not None and entity.valid_to <= utcnow():
        return "retired", f"no longer holds since {entity.valid_to.isoformat()}"
    return "current", None


def memory_timeline(engine: ContextEngine, namespaces: Namespaces, agent_id: str) -> MemoryOut:
    """An agent's episodes in its own namespace by session, oldest first, each marked current,
    superseded, forgotten or retired, with the entities it mentions that the caller may read."""
    ns = agent_namespace(agent_id)
    if not _readable(namespaces, ns):
        raise SchemaError(f"no agent {agent_id!r} in the namespaces you can read")
    episodes: list[Entity] = []
    for batch in engine.store.iter_entities(batch_size=1000, namespaces=[ns], types=[EPISODE_TYPE]):
        episodes.extend(batch)
    total = len(episodes)
    episodes.sort(key=lambda e: (e.valid_from or e.created_at or utcnow(), e.id))
    episodes = episodes[-TIMELINE_EPISODES:]
    mentioned = sorted({m for e in episodes for m in _mentions(e)})
    readable_ns = list(namespaces) if namespaces is not None else None
    found = {e.id: e for e in engine.get_entities(mentioned, readable_ns)} if mentioned else {}
    sessions: dict[str | None, list[EpisodeRow]] = {}
    for e in episodes:
        status, note = _status(e)
        session = e.properties.get("session_id")
        superseded_by = e.properties.get(SUPERSEDED_BY_PROPERTY)
        sessions.setdefault(session if isinstance(session, str) else None, []).append(
            EpisodeRow(
                id=e.id,
                content=e.text,
                session_id=session if isinstance(session, str) else None,
                created_at=e.valid_from or e.created_at,
                status=status,  # type: ignore[arg-type]
                retired_note=note,
                superseded_by=superseded_by if isinstance(superseded_by, str) else None,
                mentions=[_brief(found[m]) for m in _mentions(e) if m in found],
            )
        )
    return MemoryOut(
        agent_id=agent_id,
        namespace=ns,
        sessions=[SessionRow(session_id=s, episodes=rows) for s, rows in sessions.items()],
        shown=len(episodes),
        total=total,
    )


def _mentions(entity: Entity) -> list[str]:
    value = entity.properties.get("mentions")
    return [m for m in value if isinstance(m, str)] if isinstance(value, list) else []
