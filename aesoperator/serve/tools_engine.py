"""The engine's own tools: search, recall, remember, get_entities, neighbors, sources.

Every read hands the caller's namespaces (`Principal.read_namespaces`) to the engine, which passes
them into the store's queries, so nothing outside them is produced, graph expansion included.
Ids that results carry in their data (the entities an episode mentions, which a broader writer may
have taken from namespaces this reader cannot see) are filtered per reader by `MentionFilter`.
Every write checks `Principal.require_write` first. Tool functions are synchronous (the engine
is) and run on worker threads; the server wraps each call with the principal, the call guard and
error translation (see `server.py`).
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field, ValidationError

from aesoperator.engine.memory import agent_namespace
from aesoperator.engine.memory_facts import MemoryFact
from aesoperator.engine.results import SearchHit
from aesoperator.engine.stores import StoreStats
from aesoperator.errors import PermissionDenied, SchemaError
from aesoperator.graph_schema.models import Entity, Episode, Relation, from_iso, utcnow
from aesoperator.ingest.extract.llm_sampling import sampling_warnings
from aesoperator.ingest.registry import SourceRegistry, source_status
from aesoperator.security.envelope import current_call, report_count
from aesoperator.security.guard import CallGuard
from aesoperator.security.principal import Principal
from aesoperator.serve.packed_text import (
    entities_text,
    episode_hit,
    fit_lines,
    hits_text,
    source_line,
    tool_answer,
    with_tail,
)
from aesoperator.serve.schema_inline import inline_definitions
from aesoperator.serve.schemas import (
    MAX_CONTENT_CHARS,
    MAX_FILTERS,
    MAX_IDS,
    AsOf,
    EntityId,
    EntityIds,
    EntityOut,
    GetEntitiesOutput,
    Hit,
    Label,
    Namespaces,
    NeighborsOutput,
    Printable,
    Query,
    RecalledEpisodeOut,
    RecallOutput,
    RelationOut,
    RememberOutput,
    SearchOutput,
    SourceOut,
    SourcesOutput,
    StatsOut,
    TokenBudget,
    TypeName,
    entity_uri,
)

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from aesoperator.context import ContextEngine

SOURCE_SCAN_LIMIT = 200_000
SOURCE_SCAN_TTL_SECONDS = 30.0
SOURCE_CHECK_BATCH = 5000


@dataclass
class Runtime:
    """What the tools share: the engine, who is calling, and small caches."""

    engine: ContextEngine
    resolve_principal: Callable[[], Principal]
    memory_namespace: str = "memory-graph"
    guard: CallGuard | None = None  # for records beyond the call's own (a purge's erasure record)
    _source_cache: dict[tuple[str, ...] | None, tuple[int, float, set[str], bool]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def principal(self) -> Principal:
        state = current_call()
        return state.principal if state is not None else self.resolve_principal()

    def count(self, n: int) -> None:
        report_count(n)

    def budget(self, asked: int | None) -> int:
        """The token budget of an answer's text: the one asked for, else the engine's setting."""
        return asked if asked is not None else self.engine.settings.token_budget

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)


# -- conversions -------------------------------------------------------------------------------------
def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


EPISODE_TYPE = "Episode"


def episode_mentions(entity_type: str, properties: dict[str, Any]) -> list[str]:
    """The entity ids an episode's properties name (none for other entities)."""
    mentions = properties.get("mentions") if entity_type == EPISODE_TYPE else None
    return [m for m in mentions if isinstance(m, str)] if isinstance(mentions, list) else []


@dataclass(frozen=True)
class MentionFilter:
    """Which mentioned ids one reader may see: those of entities in namespaces it can read.

    An episode written by a caller that reads more than this reader keeps the ids of everything
    it named; showing them would tell this reader about entities (file names, people) it cannot
    read, so they are left out of every result it gets."""

    visible: frozenset[str] | None  # None: the reader reads every namespace

    @classmethod
    def for_reader(cls, rt: Runtime, mentions: Iterable[str]) -> MentionFilter:
        readable = rt.principal().read_namespaces()
        if readable is None:
            return cls(None)
        wanted = sorted(set(mentions))
        found = rt.engine.get_entities(wanted, readable) if wanted else []
        return cls(frozenset(e.id for e in found))

    @classmethod
    def for_entities(cls, rt: Runtime, entities: Iterable[Entity | SearchHit]) -> MentionFilter:
        return cls.for_reader(rt, (m for e in entities for m in episode_mentions(e.type, e.properties)))

    def ids(self, ids: Sequence[str]) -> list[str]:
        return list(ids) if self.visible is None else [i for i in ids if i in self.visible]

    def properties(self, entity_type: str, properties: dict[str, Any]) -> dict[str, Any]:
        """`properties` with an episode's `mentions` narrowed to the visible ids (the same object
        when nothing is left out)."""
        mentions = properties.get("mentions")
        if self.visible is None or entity_type != EPISODE_TYPE or not isinstance(mentions, list):
            return properties
        kept = [m for m in mentions if isinstance(m, str) and m in self.visible]
        return properties if kept == mentions else {**properties, "mentions": kept}

    def entity(self, entity: Entity) -> Entity:
        properties = self.properties(entity.type, entity.properties)
        return entity if properties is entity.properties else entity.model_copy(update={"properties": properties})

    def episode(self, episode: Episode) -> Episode:
        kept = self.ids(episode.mentions)
        return episode if len(kept) == len(episode.mentions) else episode.model_copy(update={"mentions": kept})


def readable_entities(rt: Runtime, entities: Sequence[Entity]) -> list[Entity]:
    """`entities` as the caller may see them (mentions of entities it cannot read left out)."""
    seen = MentionFilter.for_entities(rt, entities)
    return [seen.entity(e) for e in entities]


def readable_fact(fact: MemoryFact, readable: set[str]) -> MemoryFact:
    """A fact with the names of the entities the reader cannot read left out."""
    return fact.model_copy(
        update={
            "subject_name": fact.subject_name if fact.subject in readable else "",
            "object_name": fact.object_name if fact.object in readable else "",
        }
    )


def entity_out(entity: Entity, hop: int | None = None) -> EntityOut:
    return EntityOut(**dict(entity), uri=entity_uri(entity.id), hop=hop)


def relation_out(relation: Relation) -> RelationOut:
    return RelationOut(**dict(relation))


def hit_from_entity(entity: Entity, reason: str) -> Hit:
    return Hit(
        id=entity.id,
        uri=entity_uri(entity.id),
        type=entity.type,
        name=entity.name,
        text=entity.text[:500],
        truncated=len(entity.text) > 500,
        score=0.0,
        reasons=[reason],
        namespace=entity.namespace,
        source=entity.source,
        provenance=entity.provenance,
        valid_from=entity.valid_from,
        valid_to=entity.valid_to,
    )


def visible_stats(stats: StoreStats, principal: Principal) -> StatsOut:
    """Store statistics limited to what the principal may read. The change-log position is left
    out for a caller limited to some namespaces: it moves with every write in every namespace."""
    try:
        allowed = principal.read_namespaces()
    except PermissionDenied:  # no read scope at all: show nothing but the backend and position
        allowed = []
    if allowed is None:
        return StatsOut(
            backend=stats.backend,
            last_seq=stats.last_seq,
            namespaces=dict(stats.namespaces),
            entities=stats.entities,
            relations=stats.relations,
            live_relations=stats.live_relations,
            vectors=stats.vectors,
            entity_types=dict(stats.entity_types),
            relation_types=dict(stats.relation_types),
        )
    namespaces = {ns: n for ns, n in stats.namespaces.items() if ns in set(allowed)}
    return StatsOut(backend=stats.backend, last_seq=None, namespaces=namespaces, entities=sum(namespaces.values()))


# -- the tools ---------------------------------------------------------------------------------------
_F = TypeVar("_F", bound=Callable[..., Any])


def tool(server: MCPServer[Any], name: str, **options: Any) -> Callable[[_F], _F]:
    """Register a tool, with its docstring (dedented) as the description and its output schema
    without `$ref`s (`schema_inline`)."""

    def register(fn: _F) -> _F:
        server.add_tool(fn, name=name, description=inspect.cleandoc(fn.__doc__ or ""), **options)
        # The SDK reads a tool's output schema live from its metadata; it keeps its tools in the
        # tool manager (no public accessor). The written-out schema is cheaper for clients to check.
        registered = server._tool_manager.get_tool(name)
        if registered is not None and registered.fn_metadata.output_schema is not None:
            registered.fn_metadata.output_schema = inline_definitions(registered.fn_metadata.output_schema)
        return fn

    return register


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)


def register_engine_tools(server: MCPServer[Any], rt: Runtime) -> None:
    """Add search, recall, remember, get_entities, neighbors and sources to `server`."""

    @tool(server, "search", title="Search the knowledge graph", annotations=READ_ONLY)
    def search(
        query: Query,
        k: Annotated[int, Field(ge=1, le=100, description="How many entities to return.")] = 10,
        hops: Annotated[
            int, Field(ge=0, le=3, description="Graph expansion depth from the direct hits (0 = off).")
        ] = 1,
        types: Annotated[
            list[TypeName] | None, Field(max_length=MAX_FILTERS, description="Only entities of these types.")
        ] = None,
        namespaces: Namespaces = None,
        as_of: AsOf = None,
        token_budget: TokenBudget = None,
    ) -> Annotated[CallToolResult, SearchOutput]:
        """Hybrid search (meaning, keywords, exact names, then graph expansion). The text is the packed
        context: the chosen passages and entities, most relevant first, each with a short source
        reference and when it was true, their facts under them, cut to the token budget and saying what
        was left out. The structured content has the ranked hits with the reasons they were chosen,
        their provenance and ids (for get_entities / neighbors), and the relations as triples."""
        ns = rt.principal().read_namespaces(namespaces)
        result = rt.engine.search(
            query,
            k=k,
            hops=hops,
            namespaces=ns,
            types=types,
            as_of=_utc(as_of),
            token_budget=token_budget,
        )
        seen = MentionFilter.for_entities(rt, result.hits)
        hits = [
            Hit(**{**dict(h), "properties": seen.properties(h.type, h.properties)}, uri=entity_uri(h.id))
            for h in result.hits
        ]
        rt.count(len(hits))
        output = SearchOutput(
            query=result.query,
            hits=hits,
            triples=result.triples,
            context=result.context_text(),
            tokens_used=result.tokens_used,
            token_budget=result.token_budget,
            dropped=result.dropped,
            left_out=result.left_out,
        )
        return tool_answer(output, output.context)

    @tool(server, "recall", title="Recall an agent's memories", annotations=READ_ONLY)
    def recall(
        query: Query,
        agent_id: Annotated[Label, Field(description="The agent whose memories to search.")],
        session_id: Annotated[Label | None, Field(description="Only this session.")] = None,
        k: Annotated[int, Field(ge=1, le=50, description="How many episodes.")] = 10,
        namespaces: Annotated[
            list[Label] | None,
            Field(max_length=MAX_FILTERS, description="Memory namespaces (default: the agent's own, agent:<id>)."),
        ] = None,
        as_of: AsOf = None,
        include_entities: Annotated[bool, Field(description="Also return the entities each episode mentions.")] = True,
        token_budget: TokenBudget = None,
    ) -> Annotated[CallToolResult, RecallOutput]:
        """Episodes an agent remembered that are relevant to the query (by meaning, words, names and
        recency), across sessions, with the entities each one mentions. The text lists them most
        relevant first (who said what, the session, when, what it names) within the token budget."""
        principal = rt.principal()
        if namespaces:
            scoped: list[str] | None = principal.read_namespaces(namespaces)
        else:
            principal.read_namespaces([agent_namespace(agent_id)])
            scoped = None  # the agent's own namespace, episodes of this agent only
        result = rt.engine.memory.recall(
            query, agent_id, session_id=session_id, k=k, namespaces=scoped, include_entities=False, as_of=_utc(as_of)
        )
        readable = principal.read_namespaces()
        mention_ids = sorted({m for r in result.episodes for m in r.episode.mentions})
        found = {e.id: e for e in rt.engine.get_entities(mention_ids, readable)}
        seen = MentionFilter(None if readable is None else frozenset(found))
        if not include_entities:
            found = {}
        ends = sorted({i for r in result.episodes for f in r.facts for i in (f.subject, f.object)})
        named = {e.id for e in rt.engine.get_entities(ends, readable)} if ends else set()
        episodes = [
            RecalledEpisodeOut(
                episode=seen.episode(r.episode),
                uri=entity_uri(r.episode.id),
                score=r.score,
                reasons=r.reasons,
                entities=[
                    hit_from_entity(found[m], "mentioned by the episode") for m in r.episode.mentions if m in found
                ],
                facts=[readable_fact(f, named) for f in r.facts],
                valid_to=r.valid_to,
                superseded_by=r.superseded_by,
                retired_reason=r.retired_reason,
            )
            for r in result.episodes
        ]
        rt.count(len(episodes))
        recalled = [
            episode_hit(e.episode, e.score, [h.name for h in e.entities] if include_entities else []) for e in episodes
        ]
        text, _ = hits_text(recalled, [], rt.budget(token_budget), rt.count_tokens, "episode")
        return tool_answer(RecallOutput(query=query, agent_id=agent_id, episodes=episodes), text)

    @tool(server, "remember", title="Remember an event", annotations=WRITES)
    def remember(
        content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_CHARS, description="What to remember.")],
        agent_id: Annotated[Label, Field(description="The agent remembering.")],
        session_id: Annotated[Label | None, Field(description="The session (conversation) it belongs to.")] = None,
        task_id: Annotated[Label | None, Field(description="The task it belongs to.")] = None,
        speaker: Annotated[Label | None, Field(description="Who said it, for conversation turns.")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="JSON metadata kept with the episode.")] = None,
        mentions: Annotated[
            list[EntityId] | None,
            Field(max_length=MAX_IDS, description="Ids of entities the event is about (names are also detected)."),
        ] = None,
        namespace: Annotated[
            Label | None, Field(description="Where to store it (default: the agent's namespace, agent:<id>).")
        ] = None,
    ) -> Annotated[CallToolResult, RememberOutput]:
        """Store one memory event for an agent. It is linked to its session and to the entities it
        names, so later recall and search can follow those links."""
        principal = rt.principal()
        ns = namespace or agent_namespace(agent_id)
        principal.require_write(ns)
        readable = principal.read_namespaces()
        known = [e.id for e in rt.engine.get_entities(list(mentions or []), readable)]
        try:
            episode = rt.engine.memory.remember(
                content,
                agent_id,
                session_id,
                task_id=task_id,
                metadata=metadata,
                namespace=ns,
                mentions=known,
                speaker=speaker,
                mention_namespaces=readable,
            )
        except ValidationError as exc:  # the episode or its metadata does not fit the schema
            problems = "; ".join(str(e.get("msg", "invalid")) for e in exc.errors()[:3])
            raise SchemaError(f"cannot remember this event: {problems}") from None
        rt.count(1)
        warnings = sampling_warnings()
        where = f"session {episode.session_id}, " if episode.session_id else ""
        said = "\n".join([f"Remembered {episode.id} ({where}namespace {episode.namespace}).", *warnings])
        return tool_answer(RememberOutput(episode=episode, uri=entity_uri(episode.id), warnings=warnings), said)

    @tool(server, "get_entities", title="Get entities by id", annotations=READ_ONLY)
    def get_entities(
        ids: EntityIds, namespaces: Namespaces = None, token_budget: TokenBudget = None
    ) -> Annotated[CallToolResult, GetEntitiesOutput]:
        """Full entities (text, properties, provenance, validity) for the given ids, in the structured
        content; the text shows them in the order asked, within the token budget. Ids that do not
        exist or are outside the caller's namespaces are listed under `missing`."""
        ns = rt.principal().read_namespaces(namespaces)
        entities = rt.engine.get_entities(list(dict.fromkeys(ids)), ns)
        found = {e.id for e in entities}
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        if not entities:
            raise SchemaError(f"no entity found for id(s) {_preview(missing)} (unknown, or outside your namespaces)")
        rt.count(len(entities))
        shown = readable_entities(rt, entities)
        order = {eid: i for i, eid in enumerate(dict.fromkeys(ids))}
        budget = rt.budget(token_budget)
        tail = f"Not found or not readable: {_preview(missing)}" if missing else ""
        text = entities_text(
            sorted(shown, key=lambda e: order.get(e.id, len(order))),
            [],
            budget - (rt.count_tokens(tail) + 1 if tail else 0),
            rt.count_tokens,
            "ask with a larger token_budget or fewer ids",
        )
        if tail:
            text = with_tail(text, tail, budget, rt.count_tokens)
        return tool_answer(GetEntitiesOutput(entities=[entity_out(e) for e in shown], missing=missing), text)

    @tool(server, "neighbors", title="Explore an entity's neighbourhood", annotations=READ_ONLY)
    def neighbors(
        ids: Annotated[list[EntityId], Field(min_length=1, max_length=50, description="Seed entity ids.")],
        depth: Annotated[int, Field(ge=1, le=3, description="How many hops to follow.")] = 1,
        relation_types: Annotated[
            list[TypeName] | None, Field(max_length=MAX_FILTERS, description="Only follow these relation types.")
        ] = None,
        direction: Annotated[
            Literal["out", "in", "both"], Field(description="Follow outgoing, incoming or both directions.")
        ] = "both",
        as_of: AsOf = None,
        namespaces: Namespaces = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many entities.")] = 100,
        token_budget: TokenBudget = None,
    ) -> Annotated[CallToolResult, NeighborsOutput]:
        """Entities reachable from the seeds within `depth` hops along live relations, with the
        relations followed. Only the caller's namespaces are traversed. The text shows the seeds
        first, then nearer before farther, each entity's relations under it, within the token budget."""
        ns = rt.principal().read_namespaces(namespaces)
        seeds = list(dict.fromkeys(ids))
        sub = rt.engine.neighbors(seeds, depth, relation_types, direction, _utc(as_of), ns, limit)
        missing = [i for i in seeds if i not in sub.entities]
        if len(missing) == len(seeds):
            raise SchemaError(f"no entity found for id(s) {_preview(missing)} (unknown, or outside your namespaces)")
        ordered = readable_entities(rt, sorted(sub.entities.values(), key=lambda e: (sub.hops.get(e.id, 0), e.id)))
        rt.count(len(ordered))
        # both ends are returned entities, so both are readable
        followed = [r for r in sub.relations if r.src in sub.entities and r.dst in sub.entities]
        output = NeighborsOutput(
            entities=[entity_out(e, sub.hops.get(e.id)) for e in ordered],
            relations=[relation_out(r) for r in followed],
            missing=missing,
        )
        hint = "ask with a larger token_budget, a smaller depth or fewer relation_types"
        text = entities_text(ordered, followed, rt.budget(token_budget), rt.count_tokens, hint)
        return tool_answer(output, text)

    @tool(server, "sources", title="What is ingested and how fresh", annotations=READ_ONLY)
    def sources(
        names: Annotated[
            list[Annotated[Printable, Field(min_length=1, max_length=64)]] | None,
            Field(max_length=MAX_FILTERS, description="Only these sources (default: every source you may see)."),
        ] = None,
        token_budget: TokenBudget = None,
    ) -> Annotated[CallToolResult, SourcesOutput]:
        """Sources the store holds data from: how each is declared, how many items, entities and
        relations it brought, quarantined items, and when it was last ingested successfully."""
        principal = rt.principal()
        listed, complete = _source_names(rt, principal, names)
        try:
            readable = principal.read_namespaces()
        except PermissionDenied:  # no read scope: no source's data is readable
            readable = []
        out = [
            _source_out(rt, name)
            for name in listed
            if principal.can_see_source(name) and _source_readable(rt, name, readable)
        ]
        rt.count(len(out))
        text = fit_lines(
            [source_line(s) for s in out], rt.budget(token_budget), rt.count_tokens, "source", "ask for them by name"
        )
        output = SourcesOutput(sources=out, stats=visible_stats(rt.engine.stats(), principal), complete=complete)
        return tool_answer(output, text)


def _preview(ids: Sequence[str], most: int = 5) -> str:
    shown = [i[:80] for i in ids[:most]]
    more = f" and {len(ids) - most} more" if len(ids) > most else ""
    return f"{shown}{more}"


def _registered(rt: Runtime) -> dict[str, Any]:
    try:
        return dict(SourceRegistry.for_settings(rt.engine.settings).entries())
    except Exception:  # a broken sources.toml must not break serving; `aesop sources list` reports it
        return {}


def _source_names(rt: Runtime, principal: Principal, names: Sequence[str] | None) -> tuple[list[str], bool]:
    """Registered sources plus those found on entities the principal may read (cached briefly)."""
    if names:
        return list(dict.fromkeys(names)), True
    found: set[str] = set(_registered(rt))
    readable = principal.read_namespaces()
    key = tuple(readable) if readable is not None else None
    seq = rt.engine.store.last_seq()
    now = time.monotonic()
    with rt._lock:
        cached = rt._source_cache.get(key)
    if cached is not None and (cached[0] == seq or now - cached[1] < SOURCE_SCAN_TTL_SECONDS):
        seen, complete = cached[2], cached[3]
    else:
        seen, complete, scanned = set(), True, 0
        for batch in rt.engine.store.iter_entities(batch_size=5000, namespaces=readable):
            seen.update(e.source for e in batch)
            scanned += len(batch)
            if scanned >= SOURCE_SCAN_LIMIT:
                complete = False
                break
        with rt._lock:
            rt._source_cache[key] = (seq, now, seen, complete)
    return sorted(found | seen), complete


def _source_readable(rt: Runtime, name: str, readable: Sequence[str] | None) -> bool:
    """May a caller that reads `readable` (None: every namespace) see source `name`: its folder or
    server, its counts, its runs? Only if its data lies in those namespaces: the namespace it is
    declared with, and every entity it brought in (all of them are read to check). A source with
    nothing stored and no declaration shows nothing but its name, so it stays hidden."""
    if readable is None:
        return True
    allowed = set(readable)
    entry = _registered(rt).get(name)
    if entry is not None and entry.definition.namespace not in allowed:
        return False
    ids = sorted({i for state in rt.engine.store.source_items(name).values() for i in state.entity_ids})
    found = False
    for start in range(0, len(ids), SOURCE_CHECK_BATCH):
        for entity in rt.engine.get_entities(ids[start : start + SOURCE_CHECK_BATCH]):
            if entity.namespace not in allowed:
                return False
            found = True
    return found or entry is not None


def _source_out(rt: Runtime, name: str) -> SourceOut:
    entry = _registered(rt).get(name)
    status = source_status(rt.engine.store, name)
    run = status.get("last_run") or None
    last_ok = run.get("last_ok_at") if run else None
    age: float | None = None
    if last_ok:
        try:
            moment = from_iso(str(last_ok))
            age = max(0.0, (utcnow() - moment).total_seconds()) if moment is not None else None
        except ValueError:
            age = None
    return SourceOut(
        name=name,
        registered=entry is not None,
        kind=entry.definition.kind if entry is not None else None,
        namespace=entry.definition.namespace if entry is not None else None,
        identity=status.get("identity"),
        items=int(status.get("items", 0)),
        entities=int(status.get("entities", 0)),
        relations=int(status.get("relations", 0)),
        quarantined=len(status.get("quarantined", [])),
        status=run.get("status") if run else None,
        last_run_at=run.get("finished_at") if run else None,
        last_ok_at=last_ok,
        age_seconds=age,
        last_run=run,
    )


__all__ = [
    "MentionFilter",
    "Runtime",
    "entity_out",
    "readable_entities",
    "register_engine_tools",
    "relation_out",
    "tool",
    "visible_stats",
]
