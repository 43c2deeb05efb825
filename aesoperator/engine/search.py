"""Search orchestration: the hybrid retrieval pipeline as named stages over one stage timer.

`run_search` runs, in order:

1. `channel_candidates`: the best-first lists of each candidate channel (dense vectors, BM25
   keywords, exact names), after one read of the store's change-log position for both derived
   indexes (stages `index_sync`, `embed`, `vector`, `keyword`, `name`);
2. `fuse_channels`: score or rank fusion of those lists (`fuse`);
3. `load_candidates`: the fused ids' entities, filtered by type, namespace and validity (`load`);
4. `walk_candidates`: the walk channel, personalised PageRank over items and the entities they
   mention, fused again with the other channels when on (`walk`);
5. `expand_candidates`: graph expansion over the seeds' neighbourhood (`expand`, with the
   optional query-aware weighting timed apart as `relevance`);
6. `window_candidates`: conversation windows, a turn scored with its neighbours (`window`);
7. `rerank_candidates`: recency and maximal marginal relevance (`rerank`);
8. `pack_candidates`: the chosen hits and the triples among them in a token budget (`pack`).

The maths of each stage lives in `aesoperator.engine.retrieval`, `entity_walk` and `windows` (pure
functions over data); this module and `search_graph` (stages 4 to 6) fetch what they need from the
store and the indexes; `search_request` holds what the stages share. Every stage adds its wall time to a
`StageTimer`, whose stages are disjoint, so the timings of a result add up to the whole search.

`SearchSettings` holds the tuning knobs; `SearchSettings.preset(name)` gives the configurations
measured in benchmarks/results/quality-configurations.md by name (`aesoperator.engine.search_settings`,
re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from aesoperator.engine import retrieval
from aesoperator.engine.candidates import sort_desc
from aesoperator.engine.excerpts import QueryTerms
from aesoperator.engine.packing import MAX_HIT_CHARS, hit_chars
from aesoperator.engine.query_time import time_window
from aesoperator.engine.results import SearchResult
from aesoperator.engine.retrieval import Candidate
from aesoperator.engine.search_graph import (
    bridge_candidates,
    bridge_reasons,
    expand_candidates,
    query_relevance,
    relations_among,
    walk_candidates,
    walk_reasons,
    window_candidates,
)
from aesoperator.engine.search_lexical import (
    PendingLexical,
    lexical_beside,
    lexical_channels,
    wants_lexical,
)
from aesoperator.engine.search_request import (
    BRIDGE_CHANNEL,
    CHANNELS,
    DEFAULT_HOPS,
    MAX_K,
    MAX_QUERY_CHARS,
    RETIRED_AT,
    WALK_CHANNEL,
    ChannelHits,
    SearchRequest,
    SearchSources,
    StageTimer,
    entity_live,
    keep_candidates,
    wanted,
)
from aesoperator.engine.search_settings import SEARCH_PRESETS, SearchPreset, SearchSettings
from aesoperator.graph_schema.facts import retirement_note
from aesoperator.graph_schema.knowledge import KNOWLEDGE_ID_PREFIX
from aesoperator.graph_schema.models import Entity, Relation, utcnow
from aesoperator.telemetry.tracing import AttributeValue, set_attributes, span

# Candidates read beyond those still needed, so that a few filtered out (other types, expired)
# rarely cost a second read.
_LOAD_MARGIN = 8


def channel_candidates(sources: SearchSources, request: SearchRequest, timer: StageTimer) -> ChannelHits:
    """Stage 1: each asked-for channel's best-first candidate list.

    With the vector channel, the keyword and name channels run beside the query embedding and the
    vector search when they have been taking long (`search_lexical`); `keyword` then times only
    the wait for them.

    Args:
        sources: the store and indexes.
        request: the search.
        timer: receives `index_sync`, `embed`, `vector`, `keyword` and (when the lexical channels
            run on this thread) `name`.

    Returns:
        The channel lists (keyword hits with a BM25 score under 1e-3 dropped), the query vector
        when the vector channel ran, and the change-log position the indexes were synced to.
    """
    hits = ChannelHits()
    with timer.stage("index_sync"):
        hits.store_seq = sources.store.last_seq()  # one read for the derived indexes and the entity cache
        sources.store_seq = hits.store_seq
    pending = PendingLexical.start(sources, request, hits.store_seq) if lexical_beside(sources, request) else None
    if "vector" in request.channels:
        n_cand = request.n_candidates
        with timer.stage("embed"):
            hits.query_vec = sources.embedder().embed_query(request.query)
        with timer.stage("index_sync"):
            index = sources.vector_index(hits.store_seq)
        with timer.stage("vector"):
            if request.type_filter:
                # Over-fetch: FAISS partitions by namespace, not by type; types are filtered later.
                nearest = index.search(hits.query_vec, n_cand * 4, namespaces=request.namespaces)
            else:
                # Extracted entities are left out unless types are asked for; their vectors (the
                # mean of the items mentioning them) sit among those items, so the scan skips them.
                nearest = index.search(
                    hits.query_vec, n_cand, namespaces=request.namespaces, exclude_prefix=KNOWLEDGE_ID_PREFIX
                )
            hits.ranked["vector"] = nearest
    if pending is not None:
        lexical = pending.wait(timer)
    elif wants_lexical(request):
        lexical = lexical_channels(sources, request, hits.store_seq, timer)
    else:
        return hits
    hits.ranked.update(lexical.ranked)
    hits.linked = lexical.linked
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
            # the bridge channel scores on [0, 1] already (`bridges.bridge_scores`)
            return retrieval.score_fusion(
                ranked, weights=settings.channel_weights(), limit=limit, scaled=(BRIDGE_CHANNEL,)
            )
        return retrieval.reciprocal_rank_fusion(
            ranked, k=settings.rrf_k, weights=settings.channel_weights(), limit=limit
        )


def load_candidates(
    sources: SearchSources,
    candidates: Sequence[Candidate],
    request: SearchRequest,
    timer: StageTimer,
    known: dict[str, Entity] | None = None,
) -> tuple[list[Candidate], dict[str, Entity]]:
    """Stage 3: read the candidates' entities and keep those of the asked types, live at `as_of`.

    Args:
        sources: the store (reads are filtered by the request's namespaces in the store) and the
            entity cache in front of it.
        candidates: fused candidates, best first.
        request: the search.
        timer: receives `load`.
        known: entities this search has read already (after a second fusion): not read again.

    Returns:
        The kept candidates (at most `request.n_candidates`) and the entities read, by id.
    """
    with timer.stage("load"):
        entities = dict(known or {})
        wanted_count = request.n_candidates
        kept: list[Candidate] = []
        start = 0
        # Best first, a batch at a time, until enough are kept: fusion keeps twice as many
        # candidates as a search may use, and most searches keep every one they read, so the
        # weaker half is usually never read.
        while start < len(candidates) and len(kept) < wanted_count:
            batch = candidates[start : start + wanted_count - len(kept) + _LOAD_MARGIN]
            start += len(batch)
            missing = [c.id for c in batch if c.id not in entities]
            if missing:
                entities.update({e.id: e for e in sources.get_entities(missing, request.namespaces)})
            kept.extend(keep_candidates(batch, entities, request))
        return kept[:wanted_count], entities


def time_candidates(
    candidates: list[Candidate],
    entities: dict[str, Entity],
    request: SearchRequest,
    settings: SearchSettings,
    timer: StageTimer,
) -> list[Candidate]:
    """Stage 6b: time words (`query_time`): when the query names a period ("in May 2023",
    "last week"), candidates dated in it (their `valid_from`, else when they were recorded) gain
    `time_boost` times their score.

    Args:
        candidates: candidates, best first.
        entities: their entities by id.
        request: the search (its query; `as_of` anchors "last week").
        settings: `time_boost` (0: off).
        timer: receives `time`.

    Returns:
        The candidates, best first.
    """
    if settings.time_boost <= 0 or not candidates:
        return candidates
    with timer.stage("time"):
        window = time_window(request.query, request.as_of or utcnow())
        if window is None:
            return candidates
        out = []
        for cand in candidates:
            entity = entities.get(cand.id)
            moment = None if entity is None else entity.valid_from or entity.created_at
            if moment is not None and window.holds(moment):
                cand = cand.copy()
                cand.score *= 1.0 + settings.time_boost
                cand.reasons.append(f"dated in the period the query names ({window.label})")
            out.append(cand)
        return sort_desc(out)


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
    excerpts: bool = False,
) -> SearchResult:
    """Stage 8: fit the chosen hits and the triples among them into the token budget, as the
    text `SearchResult.context_text()` gives (its token count under `count_tokens` is at most
    the budget). With `excerpts`, a hit longer than its share of the budget shows the sentences
    that matter for the query (`packing.pack_hits`); without, texts are first cut to
    `hit_chars(budget)` characters and only the last hit that fits is cut further.

    Args:
        chosen: the reranked candidates.
        entities: their entities by id.
        relations: the relations seen during expansion.
        request: the search (query and token budget).
        considered: how many candidates reached reranking (the rest count as dropped).
        timer: receives `pack`; its timings go into the result.
        count_tokens: the token counter the budget is in.
        excerpts: cut long hits to query-focused excerpts.

    Returns:
        The search result.
    """
    with timer.stage("pack"):
        longest = MAX_HIT_CHARS if excerpts else hit_chars(request.token_budget)
        hits, triples = retrieval.candidate_hits(chosen, entities, relations, longest)
        for hit in hits:  # a memory that held then but not since says so, and what replaced it
            note = retirement_note(hit.properties)
            if note is not None:
                hit.reasons.append(note)
        query = QueryTerms.of(request.query, [h.text for h in hits]) if excerpts and request.query.strip() else None
        pack = retrieval.fit_context(hits, triples, request.token_budget, count_tokens=count_tokens, query=query)
    return SearchResult(
        query=request.query,
        hits=pack.hits,
        triples=pack.triples,
        tokens_used=pack.tokens_used,
        token_budget=request.token_budget,
        dropped=pack.dropped + max(0, considered - len(chosen)),
        # the note is in the text only when it fitted: a budget too small for it and a hit keeps the hit
        left_out=pack.dropped if pack.note else 0,
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
    attributes: dict[str, AttributeValue] = {
        "aesop.search.query_chars": len(request.query),
        "aesop.search.k": request.k,
        "aesop.search.hops": request.hops,
        "aesop.search.channels": ",".join(request.channels),
    }
    with span("search", attributes) as current:
        result = _run_stages(sources, request, settings)
        set_attributes(current, {"aesop.search.hits": len(result.hits), "aesop.search.tokens_used": result.tokens_used})
        return result


def _run_stages(sources: SearchSources, request: SearchRequest, settings: SearchSettings) -> SearchResult:
    timer = StageTimer()
    hits = channel_candidates(sources, request, timer)
    candidates = fuse_channels(hits.ranked, settings, request.n_candidates * 2, timer)
    candidates, entities = load_candidates(sources, candidates, request, timer)
    walk = walk_candidates(sources, candidates, hits, request, settings, timer)
    bridged = bridge_candidates(sources, candidates, hits, request, settings, timer, entities)
    if walk is not None and walk.ranked:
        hits.ranked[WALK_CHANNEL] = walk.ranked[: request.n_candidates]
    if bridged is not None and bridged[0]:
        hits.ranked[BRIDGE_CHANNEL] = bridged[0][: request.n_candidates]
    if WALK_CHANNEL in hits.ranked or BRIDGE_CHANNEL in hits.ranked:
        candidates = fuse_channels(hits.ranked, settings, request.n_candidates * 2, timer)
        candidates, entities = load_candidates(sources, candidates, request, timer, known=entities)
        if walk is not None:
            with timer.stage("walk"):
                pairs = [walk.bridges[c.id] for c in candidates if c.id in walk.bridges]
                unnamed = sorted({x for pair in pairs for x in pair if x is not None} - set(entities))
                entities.update({e.id: e for e in sources.get_entities(unnamed, request.namespaces)})
                walk_reasons(walk, candidates, entities)
        if bridged is not None:
            bridge_reasons(bridged[1], candidates, entities)
    candidates, walked = expand_candidates(sources, candidates, entities, hits, request, settings, timer)
    candidates = window_candidates(sources, candidates, entities, request, settings, timer)
    candidates = time_candidates(candidates, entities, request, settings, timer)
    chosen = rerank_candidates(sources, candidates, entities, request, timer)
    with timer.stage("pack"):
        relations = relations_among(sources, walked, [c.id for c in chosen])
    return pack_candidates(
        chosen, entities, relations, request, len(candidates), timer, sources.count_tokens, settings.excerpts
    )


__all__ = [
    "CHANNELS",
    "DEFAULT_HOPS",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "RETIRED_AT",
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
    "walk_candidates",
    "walk_reasons",
    "wanted",
    "window_candidates",
]
