"""Search orchestration: the hybrid retrieval pipeline as named stages over one stage timer.

`run_search` runs, in order:

1. `channel_candidates`: the best-first lists of each candidate channel (dense vectors, BM25
   keywords, exact names), after one read of the store's change-log position for both derived
   indexes (stages `index_sync`, `embed`, `vector`, `keyword`, `name`);
2. `fuse_channels`: score or rank fusion of those lists (`fuse`);
3. `load_candidates`: the fused ids' entities, filtered by type, namespace and validity (`load`);
4. `expand_candidates`: graph expansion over the seeds' neighbourhood (`expand`, with the
   optional query-aware weighting timed apart as `relevance`);
5. `rerank_candidates`: recency and maximal marginal relevance (`rerank`);
6. `pack_candidates`: the chosen hits and the triples among them in a token budget (`pack`).

The maths of each stage lives in `aesoperator.engine.retrieval` (pure functions over data); this
module fetches what they need from the store and the indexes. Every stage adds its wall time to a
`StageTimer`, whose stages are disjoint, so the timings of a result add up to the whole search.

`SearchSettings` holds the tuning knobs; `SearchSettings.preset(name)` gives the configurations
measured in benchmarks/results/quality-configurations.md by name (`aesoperator.engine.search_settings`,
re-exported here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from aesoperator.config import DEFAULT_TOKEN_BUDGET
from aesoperator.engine import retrieval
from aesoperator.engine.entity_walk import WALK_RELATIONS, WalkResult, walk_items
from aesoperator.engine.packing import hit_chars
from aesoperator.engine.query_terms import name_candidates
from aesoperator.engine.results import SearchResult
from aesoperator.engine.retrieval import Candidate
from aesoperator.engine.search_settings import MAX_HOPS, SEARCH_PRESETS, SearchPreset, SearchSettings
from aesoperator.engine.stores.base import GraphStore
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.knowledge import KNOWLEDGE_ID_PREFIX, KNOWLEDGE_SOURCE
from aesoperator.graph_schema.models import Entity, Relation

if TYPE_CHECKING:
    from aesoperator.engine.embeddings import TextEmbedder
    from aesoperator.engine.keyword_index import KeywordIndex
    from aesoperator.engine.vectors import VectorIndex

MAX_QUERY_CHARS = 10_000
MAX_K = 500
CHANNELS = ("vector", "keyword", "name", "walk")
WALK_CHANNEL = "walk"
DEFAULT_HOPS = 1


class StageTimer:
    """Wall time per named stage, in milliseconds. Stages nest: time spent in an inner stage is
    not counted in the outer one, so the stages of one run are disjoint and add up."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._inner: list[float] = []  # per open stage: seconds spent in its inner stages

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body as (part of) stage `name`; repeated stages add up.

        Args:
            name: the stage name, as it appears in `SearchResult.timings_ms`.

        Returns:
            A context manager.
        """
        started = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            inner = self._inner.pop()
            self.ms[name] = self.ms.get(name, 0.0) + (elapsed - inner) * 1000
            if self._inner:
                self._inner[-1] += elapsed

    def rounded(self) -> dict[str, float]:
        """The timings rounded to microseconds.

        Returns:
            Stage name -> milliseconds, in the order the stages first ran.
        """
        return {stage: round(ms, 3) for stage, ms in self.ms.items()}


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One validated search: what to find and how much of it (see `ContextEngine.search`)."""

    query: str
    k: int = 10
    hops: int = DEFAULT_HOPS
    namespaces: list[str] | None = None
    types: list[str] | None = None
    as_of: datetime | None = None
    token_budget: int = DEFAULT_TOKEN_BUDGET
    channels: tuple[str, ...] = CHANNELS
    mmr_lambda: float = 1.0
    recency_half_life_days: float | None = None
    candidate_k: int | None = None

    def __post_init__(self) -> None:
        if not self.query or not self.query.strip():
            raise SchemaError("query must not be empty")
        if len(self.query) > MAX_QUERY_CHARS:
            raise SchemaError(f"query is {len(self.query)} characters; the limit is {MAX_QUERY_CHARS}")
        if not 1 <= self.k <= MAX_K:
            raise SchemaError(f"k must be between 1 and {MAX_K}, got {self.k}")
        if not 0 <= self.hops <= MAX_HOPS:
            raise SchemaError(f"hops must be 0 to {MAX_HOPS}, got {self.hops}")
        unknown = set(self.channels) - set(CHANNELS)
        if unknown:
            raise SchemaError(f"unknown retrieval channel(s) {sorted(unknown)}; use {', '.join(CHANNELS)}")

    @property
    def n_candidates(self) -> int:
        """How many candidates each channel contributes (and fusion keeps twice as many)."""
        return self.candidate_k or max(50, 3 * self.k)

    @property
    def type_filter(self) -> set[str] | None:
        """The entity types asked for, or None for all."""
        return set(self.types) if self.types else None


@dataclass(slots=True)
class SearchSources:
    """What the stages read: the store and, fetched only when a stage needs them, the embedder
    and the derived indexes caught up with a given change-log position."""

    store: GraphStore
    embedder: Callable[[], TextEmbedder]
    vector_index: Callable[[int], VectorIndex]
    keyword_index: Callable[[int], KeywordIndex] | None  # None: the store answers keywords
    count_tokens: Callable[[str], int] = retrieval.estimate_tokens  # the budget's tokenizer


@dataclass(slots=True)
class ChannelHits:
    """The candidate channels' best-first (id, raw score) lists and the query vector, if any."""

    ranked: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    query_vec: np.ndarray | None = None
    # extracted entities the query names (the name channel's matches among them): walk seeds
    linked: dict[str, float] = field(default_factory=dict)
    store_seq: int = 0


def entity_live(entity: Entity, as_of: datetime | None) -> bool:
    """Whether an entity is valid at `as_of`.

    Args:
        entity: the entity.
        as_of: the moment; None means now, when every stored entity counts as live.

    Returns:
        True when `valid_from <= as_of < valid_to` (open ends allowed).
    """
    if as_of is None:
        return True
    if entity.valid_from is not None and entity.valid_from > as_of:
        return False
    return entity.valid_to is None or entity.valid_to > as_of


def wanted(entity: Entity, type_filter: set[str] | None) -> bool:
    """Whether an entity may be a hit: of an asked-for type when types are asked for; otherwise
    anything but the entities extraction found, which are bridges between items rather than
    answers by themselves (`types=["Person"]` asks for them; `entities()` lists them).

    Args:
        entity: the entity.
        type_filter: the entity types asked for, or None.

    Returns:
        True when the entity may be a hit.
    """
    if type_filter is not None:
        return entity.type in type_filter
    return entity.source != KNOWLEDGE_SOURCE


def _without_extracted(ranked: list[tuple[str, float]], request: SearchRequest) -> list[tuple[str, float]]:
    """A channel's list without the entities extraction found, unless a type filter asks for
    types (then `_keep` filters by type): each channel leaves them out before fusion, so the
    scores are those of the items."""
    if request.type_filter is not None:
        return ranked
    return [(i, s) for i, s in ranked if not i.startswith(KNOWLEDGE_ID_PREFIX)]


def _keep(candidates: Sequence[Candidate], entities: dict[str, Entity], request: SearchRequest) -> list[Candidate]:
    types = request.type_filter
    return [
        c
        for c in candidates
        if c.id in entities and wanted(entities[c.id], types) and entity_live(entities[c.id], request.as_of)
    ]


def channel_candidates(sources: SearchSources, request: SearchRequest, timer: StageTimer) -> ChannelHits:
    """Stage 1: each asked-for channel's best-first candidate list.

    Args:
        sources: the store and indexes.
        request: the search.
        timer: receives `index_sync`, `embed`, `vector`, `keyword` and `name`.

    Returns:
        The channel lists (keyword hits with a BM25 score under 1e-3 dropped), the query vector
        when the vector channel ran, and the change-log position the indexes were synced to.
    """
    hits = ChannelHits()
    n_cand = request.n_candidates
    ns = request.namespaces
    types = request.types
    with timer.stage("index_sync"):
        hits.store_seq = sources.store.last_seq()  # one read for both derived indexes
    if "vector" in request.channels:
        with timer.stage("embed"):
            hits.query_vec = sources.embedder().embed_query(request.query)
        with timer.stage("index_sync"):
            index = sources.vector_index(hits.store_seq)
        with timer.stage("vector"):
            # Over-fetch when a type filter applies: FAISS partitions by namespace, not by type.
            # Extracted entities are left out unless types are asked for (`wanted`); their vectors
            # (the mean of the items mentioning them) sit close to those items: over-fetch too.
            nearest = index.search(hits.query_vec, n_cand * (4 if request.type_filter else 8), namespaces=ns)
            hits.ranked["vector"] = nearest if request.type_filter else _without_extracted(nearest, request)[:n_cand]
    keywords = None  # the in-memory index answers the keyword and name channels
    if sources.keyword_index is not None and ("keyword" in request.channels or "name" in request.channels):
        with timer.stage("index_sync"):
            keywords = sources.keyword_index(hits.store_seq)
    if "keyword" in request.channels:
        with timer.stage("keyword"):
            if keywords is not None:
                bm25 = keywords.search(
                    request.query, n_cand, namespaces=ns, types=types, include_extracted=request.type_filter is not None
                )
            else:  # the store's full-text index: leave room for the extracted entities left out
                n_kw = n_cand if request.type_filter else 2 * n_cand
                bm25 = sources.store.keyword_search(request.query, n_kw, namespaces=ns, types=types)
            bm25 = _without_extracted(bm25, request)[:n_cand]
            # BM25 scores near zero come from words present almost everywhere: no evidence.
            hits.ranked["keyword"] = [(i, s) for i, s in bm25 if s >= 1e-3]
    if "name" in request.channels:
        with timer.stage("name"):
            grams = name_candidates(request.query)
            found = (
                keywords.name_lookup(grams, namespaces=ns, types=types)
                if keywords is not None
                else sources.store.name_lookup(grams, namespaces=ns, types=types)
            )
            # Longer matched names are more specific: rank them first.
            by_len = sorted(found.items(), key=lambda kv: (-len(kv[0]), kv[0]))
            named = [(eid, float(len(nm))) for nm, ids in by_len for eid in ids]
            hits.ranked["name"] = _without_extracted(named, request)[:n_cand]
            if request.type_filter is None:
                hits.linked = {eid: 1.0 for eid, _ in named if eid.startswith(KNOWLEDGE_ID_PREFIX)}
    return hits


def fuse_channels(
    ranked: dict[str, list[tuple[str, float]]], settings: SearchSettings, limit: int, timer: StageTimer
) -> list[Candidate]:
    """Stage 2: fuse the channel lists into scored candidates.

    Args:
        ranked: the channels' best-first (id, raw score) lists.
        settings: fusion method, rank constant and channel weights.
        limit: how many fused candidates to keep.
        timer: receives `fuse`.

    Returns:
        Candidates, best first.
    """
    with timer.stage("fuse"):
        if settings.fusion == "score":
            return retrieval.score_fusion(ranked, weights=settings.channel_weights(), limit=limit)
        return retrieval.reciprocal_rank_fusion(
            ranked, k=settings.rrf_k, weights=settings.channel_weights(), limit=limit
        )


def load_candidates(
    store: GraphStore, candidates: Sequence[Candidate], request: SearchRequest, timer: StageTimer
) -> tuple[list[Candidate], dict[str, Entity]]:
    """Stage 3: read the candidates' entities and keep those of the asked types, live at `as_of`.

    Args:
        store: the graph store (reads are filtered by the request's namespaces in the store).
        candidates: fused candidates, best first.
        request: the search.
        timer: receives `load`.

    Returns:
        The kept candidates (at most `request.n_candidates`) and the entities read, by id.
    """
    with timer.stage("load"):
        entities = {e.id: e for e in store.get_entities([c.id for c in candidates], request.namespaces)}
        return _keep(candidates, entities, request)[: request.n_candidates], entities


def query_relevance(
    index: VectorIndex, query_vec: np.ndarray, vector_hits: Sequence[tuple[str, float]], entity_ids: Sequence[str]
) -> dict[str, float]:
    """Cosine of each entity to the query, scaled to [0, 1] between the weakest and the strongest
    vector hit; vectors come from the FAISS index (memory, no store round trip).

    Args:
        index: the vector index, synced.
        query_vec: the query's embedding.
        vector_hits: the vector channel's (id, cosine) list.
        entity_ids: the entities to score.

    Returns:
        Entity id -> relevance in [0, 1] (ids without a vector are left out).
    """
    cosines = dict(vector_hits)
    missing = [eid for eid in entity_ids if eid not in cosines]
    if missing:
        found = index.get_vectors(missing)
        if found:
            ids = list(found)
            matrix = np.vstack([found[i] for i in ids]).astype(np.float32)
            sims = matrix @ np.asarray(query_vec, dtype=np.float32).ravel()
            cosines.update(zip(ids, sims.tolist(), strict=True))
    if not vector_hits:
        return retrieval.query_relevance(cosines, 0.0, 1.0)
    scores = [s for _, s in vector_hits]
    return retrieval.query_relevance(cosines, min(scores), max(scores))


def walk_candidates(
    sources: SearchSources,
    candidates: list[Candidate],
    hits: ChannelHits,
    request: SearchRequest,
    settings: SearchSettings,
    timer: StageTimer,
) -> WalkResult | None:
    """Stage 3b: the walk channel, personalised PageRank over items and the entities they mention
    (`entity_walk`), from the first-stage hits and the entities the query names.

    Args:
        sources: the store (the seeds' neighbourhood).
        candidates: the first stage's loaded candidates, best first.
        hits: the channel lists; `hits.linked` holds the entities the query names.
        request: the search (untyped searches only: typed ones ask for entities themselves).
        settings: walk seeds, damping and the neighbourhood's size.
        timer: receives `walk`.

    Returns:
        The walk's items and reasons, or None when the channel is off or has nothing to walk.
    """
    if WALK_CHANNEL not in request.channels or settings.walk_weight <= 0 or request.type_filter is not None:
        return None
    seeds = {c.id: c.score for c in candidates[: settings.walk_seeds]}
    if not seeds and not hits.linked:
        return None
    with timer.stage("walk"):
        links = sources.store.neighbor_links(
            [*seeds, *hits.linked],
            depth=2,
            relation_types=WALK_RELATIONS,
            as_of=request.as_of,
            namespaces=request.namespaces,
            limit=settings.walk_limit,
        )
        return walk_items(
            seeds, hits.linked, links, lambda node: not node.startswith(KNOWLEDGE_ID_PREFIX), alpha=settings.walk_alpha
        )


def walk_reasons(walk: WalkResult, candidates: list[Candidate], entities: dict[str, Entity]) -> None:
    """Say on each candidate the walk brought in which entity it came through ("found via ...")."""
    wanted = {c.id for c in candidates if c.id in walk.bridges}
    if not wanted:
        return
    named = {x for i in wanted for x in walk.bridges[i] if x is not None}
    names = {e.id: e.name for e in entities.values() if e.id in named}
    missing = [x for x in named if x not in names]
    names.update((e.id, e.name) for e in (entities.get(x) for x in missing) if e is not None)
    for cand in candidates:
        if cand.id in wanted:
            bridge, seed = walk.bridges[cand.id]
            where = "the query" if seed is None else f"'{names.get(seed, seed)}'"
            cand.reasons.append(f"found via '{names.get(bridge, bridge)}', named in {where}")


def expand_candidates(
    sources: SearchSources,
    candidates: list[Candidate],
    entities: dict[str, Entity],
    hits: ChannelHits,
    request: SearchRequest,
    settings: SearchSettings,
    timer: StageTimer,
) -> tuple[list[Candidate], list[Relation]]:
    """Stage 4: spread the candidates' scores over their neighbourhood (`request.hops` deep) and
    bring in the neighbours that gain most. Does nothing at zero hops or without candidates.

    Args:
        sources: the store (neighbours) and the vector index (query-aware weighting).
        candidates: loaded candidates, best first.
        entities: known entities by id; the neighbourhood's entities are added to it.
        hits: the channel lists and query vector.
        request: the search.
        settings: hop decay, graph weight and query-aware weighting.
        timer: receives `expand` and, when query-aware weighting is on, `relevance`.

    Returns:
        The candidates after expansion (filtered like `load_candidates`) and the relations seen.
    """
    k = request.k
    if request.hops <= 0 or not candidates:
        return candidates, []
    with timer.stage("expand"):
        seeds = candidates[: max(k, 10)]
        subgraph = sources.store.neighbors(
            [c.id for c in seeds],
            depth=request.hops,
            as_of=request.as_of,
            namespaces=request.namespaces,
            limit=max(200, 20 * k),
            # Untyped searches walk the items' own links: through extracted entities, a passage's
            # fifteen names would fill the neighbourhood's limit at the first hop.
            skip_prefixes=() if request.type_filter is not None else (KNOWLEDGE_ID_PREFIX,),
        )
        entities.update(subgraph.entities)
        names = {eid: e.name for eid, e in entities.items()}
        relevance = None
        if settings.expansion_relevance_weight > 0 and hits.query_vec is not None:
            with timer.stage("relevance"):
                relevance = query_relevance(
                    sources.vector_index(hits.store_seq), hits.query_vec, hits.ranked.get("vector", []), list(entities)
                )
        expanded = retrieval.expand_graph(
            candidates,
            subgraph,
            as_of=request.as_of,
            names=names,
            max_new=max(20, 2 * k),
            max_seeds=len(seeds),
            hop_decay=settings.hop_decay,
            weight=settings.graph_weight,
            relevance=relevance,
            relevance_weight=settings.expansion_relevance_weight,
        )
        return _keep(expanded, entities, request), subgraph.relations


def rerank_candidates(
    sources: SearchSources,
    candidates: list[Candidate],
    entities: dict[str, Entity],
    request: SearchRequest,
    timer: StageTimer,
) -> list[Candidate]:
    """Stage 5: recency (when a half-life is given) and MMR (when `mmr_lambda` < 1).

    Args:
        sources: the store (candidate vectors for MMR) and the embedder (its model name).
        candidates: candidates, best first.
        entities: the candidates' entities by id.
        request: the search.
        timer: receives `rerank`.

    Returns:
        At most `request.k` candidates, in the order to present them.
    """
    k = request.k
    with timer.stage("rerank"):
        if request.recency_half_life_days is not None:
            stamps = {c.id: entities[c.id].valid_from or entities[c.id].created_at for c in candidates}
            candidates = retrieval.apply_recency(
                candidates,
                {i: s for i, s in stamps.items() if s is not None},
                datetime.now(tz=next((s.tzinfo for s in stamps.values() if s is not None), None)),
                half_life_days=request.recency_half_life_days,
            )
        pool = candidates[: max(3 * k, 30)]
        if request.mmr_lambda < 1.0 and len(pool) > k:
            vectors = sources.store.get_vectors([c.id for c in pool], sources.embedder().model_name)
            return retrieval.mmr(pool, vectors, k, lambda_=request.mmr_lambda)
        return pool[:k]


def pack_candidates(
    chosen: Sequence[Candidate],
    entities: dict[str, Entity],
    relations: Sequence[Relation],
    request: SearchRequest,
    considered: int,
    timer: StageTimer,
    count_tokens: Callable[[str], int] = retrieval.estimate_tokens,
) -> SearchResult:
    """Stage 6: fit the chosen hits and the triples among them into the token budget, as the
    text `SearchResult.context_text()` gives (its token count under `count_tokens` is at most
    the budget).

    Args:
        chosen: the reranked candidates.
        entities: their entities by id.
        relations: the relations seen during expansion.
        request: the search (query and token budget).
        considered: how many candidates reached reranking (the rest count as dropped).
        timer: receives `pack`; its timings go into the result.
        count_tokens: the token counter the budget is in.

    Returns:
        The search result.
    """
    with timer.stage("pack"):
        hits, triples = retrieval.candidate_hits(chosen, entities, relations, hit_chars(request.token_budget))
        pack = retrieval.fit_context(hits, triples, request.token_budget, count_tokens=count_tokens)
    return SearchResult(
        query=request.query,
        hits=pack.hits,
        triples=pack.triples,
        tokens_used=pack.tokens_used,
        token_budget=request.token_budget,
        dropped=pack.dropped + max(0, considered - len(chosen)),
        left_out=pack.dropped,
        timings_ms=timer.rounded(),
    )


def run_search(sources: SearchSources, request: SearchRequest, settings: SearchSettings) -> SearchResult:
    """The whole pipeline: channels → fusion → load → graph expansion → rerank → pack.

    Args:
        sources: the store and indexes.
        request: the validated search.
        settings: the tuning knobs.

    Returns:
        The result, with the time of every stage in `timings_ms`.

    Raises:
        StoreError: the store failed.
    """
    timer = StageTimer()
    hits = channel_candidates(sources, request, timer)
    candidates = fuse_channels(hits.ranked, settings, request.n_candidates * 2, timer)
    candidates, entities = load_candidates(sources.store, candidates, request, timer)
    walk = walk_candidates(sources, candidates, hits, request, settings, timer)
    if walk is not None and walk.ranked:
        hits.ranked[WALK_CHANNEL] = walk.ranked[: request.n_candidates]
        candidates = fuse_channels(hits.ranked, settings, request.n_candidates * 2, timer)
        candidates, entities = load_candidates(sources.store, candidates, request, timer)
        with timer.stage("walk"):
            pairs = [walk.bridges[c.id] for c in candidates if c.id in walk.bridges]
            unnamed = sorted({x for pair in pairs for x in pair if x is not None} - set(entities))
            entities.update({e.id: e for e in sources.store.get_entities(unnamed, request.namespaces)})
            walk_reasons(walk, candidates, entities)
    candidates, relations = expand_candidates(sources, candidates, entities, hits, request, settings, timer)
    chosen = rerank_candidates(sources, candidates, entities, request, timer)
    return pack_candidates(chosen, entities, relations, request, len(candidates), timer, sources.count_tokens)


__all__ = [
    "CHANNELS",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "SEARCH_PRESETS",
    "ChannelHits",
    "SearchPreset",
    "SearchRequest",
    "SearchSettings",
    "SearchSources",
    "StageTimer",
    "channel_candidates",
    "entity_live",
    "expand_candidates",
    "fuse_channels",
    "load_candidates",
    "pack_candidates",
    "query_relevance",
    "rerank_candidates",
    "run_search",
    "wanted",
]
