"""The keyword and name channels of a search, run beside its query embedding and vector search.

Neither channel needs the query vector, and the embedding (ONNX Runtime or torch) and the vector
scan (BLAS, FAISS) release the GIL while they work. So when a search asks for the vector channel
too and the lexical channels have been taking long (`LexicalCost`: at a million entities the
keyword channel takes 13 ms p50), they run on a worker thread from the moment the change-log
position is known, and the search waits for them only after its vector channel: on a machine with
a core to spare, their time is hidden behind the query embedding's. When they are quick, the
hand-off costs more than it hides, and they run on the search's own thread. The work done is the
same; with the worker, a search's stage timings show under `keyword` only the time it waited,
and no separate `name` stage.
"""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from aesoperator.engine.query_terms import name_candidates
from aesoperator.engine.search_request import SearchRequest, SearchSources, StageTimer
from aesoperator.engine.worker_pool import LazyPool
from aesoperator.graph_schema.knowledge import KNOWLEDGE_ID_PREFIX

# Searches whose lexical channels run at once; more wait for a free worker (the work is the same
# either way: a worker only moves it off the search's own thread).
_WORKERS = 4

_pool = LazyPool(_WORKERS, "aesop-lexical")


@dataclass(slots=True)
class LexicalHits:
    """The keyword and name channels' best-first (id, raw score) lists, and the extracted entities
    the query names (walk seeds)."""

    ranked: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    linked: dict[str, float] = field(default_factory=dict)


def without_extracted(ranked: list[tuple[str, float]], request: SearchRequest) -> list[tuple[str, float]]:
    """`ranked` without extracted entities, unless the request asks for types (then they are
    asked for by name)."""
    if request.type_filter is not None:
        return ranked
    return [(i, s) for i, s in ranked if not i.startswith(KNOWLEDGE_ID_PREFIX)]


def lexical_channels(sources: SearchSources, request: SearchRequest, store_seq: int, timer: StageTimer) -> LexicalHits:
    """The keyword and name channels that `request` asks for.

    Args:
        sources: the store and indexes.
        request: the search.
        store_seq: the change-log position the in-memory keyword index is synced to.
        timer: receives `index_sync`, `keyword` and `name`.

    Returns:
        The channel lists (keyword hits with a BM25 score under 1e-3 dropped) and the linked
        extracted entities.
    """
    started = time.perf_counter()
    out = LexicalHits()
    n_cand = request.n_candidates
    ns = request.namespaces
    types = request.types
    keywords = None  # the in-memory index answers the keyword and name channels
    if sources.keyword_index is not None and ("keyword" in request.channels or "name" in request.channels):
        with timer.stage("index_sync"):
            keywords = sources.keyword_index(store_seq)
    if "keyword" in request.channels:
        with timer.stage("keyword"):
            if keywords is not None:
                bm25 = keywords.search(
                    request.query, n_cand, namespaces=ns, types=types, include_extracted=request.type_filter is not None
                )
            else:  # the store's full-text index: leave room for the extracted entities left out
                n_kw = n_cand if request.type_filter else 2 * n_cand
                bm25 = sources.store.keyword_search(request.query, n_kw, namespaces=ns, types=types)
            bm25 = without_extracted(bm25, request)[:n_cand]
            # BM25 scores near zero come from words present almost everywhere: no evidence.
            out.ranked["keyword"] = [(i, s) for i, s in bm25 if s >= 1e-3]
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
            out.ranked["name"] = without_extracted(named, request)[:n_cand]
            if request.type_filter is None:
                out.linked = {eid: 1.0 for eid, _ in named if eid.startswith(KNOWLEDGE_ID_PREFIX)}
    sources.lexical_cost.record((time.perf_counter() - started) * 1000)
    return out


class PendingLexical:
    """Lexical channels running on a worker thread (`start`); `wait` gives their hits."""

    def __init__(self, future: Future[LexicalHits]) -> None:
        self._future = future

    @classmethod
    def start(cls, sources: SearchSources, request: SearchRequest, store_seq: int) -> PendingLexical:
        """Start the lexical channels on a worker, in a copy of this thread's context (so tracing
        spans keep their parent). Their own stage times are not kept: they overlap the caller's."""
        context = contextvars.copy_context()
        return cls(_pool.get().submit(context.run, lexical_channels, sources, request, store_seq, StageTimer()))

    def wait(self, timer: StageTimer) -> LexicalHits:
        """The hits, once ready; the time waited goes to stage `keyword` (traced as
        `search.lexical_wait`: the worker's own `search.keyword` and `search.name` spans show
        the work). An error the channels raised is raised here."""
        with timer.stage("keyword", span_name="search.lexical_wait"):
            return self._future.result()


def wants_lexical(request: SearchRequest) -> bool:
    """Whether the request asks for the keyword or the name channel."""
    return "keyword" in request.channels or "name" in request.channels


def lexical_beside(sources: SearchSources, request: SearchRequest) -> bool:
    """Whether this search runs its lexical channels on a worker: it asks for them and for the
    vector channel, and they have been taking long enough for the hand-off to pay."""
    return "vector" in request.channels and wants_lexical(request) and sources.lexical_cost.worth_a_worker()


__all__ = ["LexicalHits", "PendingLexical", "lexical_beside", "lexical_channels", "wants_lexical", "without_extracted"]
