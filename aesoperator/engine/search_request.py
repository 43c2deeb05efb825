"""What the search pipeline's stages share: the validated request, the sources they read, the
channel lists they pass on, the stage timer, and the rules for which entities may be hits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from aesoperator.config import DEFAULT_TOKEN_BUDGET
from aesoperator.engine.retrieval import Candidate, estimate_tokens
from aesoperator.engine.search_settings import MAX_HOPS
from aesoperator.engine.stores.base import GraphStore
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.facts import RETIRED_REASON_PROPERTY
from aesoperator.graph_schema.knowledge import KNOWLEDGE_SOURCE
from aesoperator.graph_schema.models import Entity, utcnow
from aesoperator.telemetry.tracing import span

if TYPE_CHECKING:
    from aesoperator.engine.embeddings import TextEmbedder
    from aesoperator.engine.entity_cache import EntityCache
    from aesoperator.engine.keyword_index import KeywordIndex
    from aesoperator.engine.vectors import VectorIndex

MAX_QUERY_CHARS = 10_000
MAX_K = 500
CHANNELS = ("vector", "keyword", "name", "walk", "bridge")
WALK_CHANNEL = "walk"
BRIDGE_CHANNEL = "bridge"
DEFAULT_HOPS = 1


class StageTimer:
    """Wall time per named stage, in milliseconds. Stages nest: time spent in an inner stage is
    not counted in the outer one, so the stages of one run are disjoint and add up. While tracing
    is on, every stage is also a span (`search.<stage>`)."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._inner: list[float] = []  # per open stage: seconds spent in its inner stages

    @contextmanager
    def stage(self, name: str, span_name: str | None = None) -> Iterator[None]:
        """Time the body as (part of) stage `name`; repeated stages add up.

        Args:
            name: the stage name, as it appears in `SearchResult.timings_ms`.
            span_name: the trace span's name, when not `search.<name>`.

        Returns:
            A context manager.
        """
        started = time.perf_counter()
        self._inner.append(0.0)
        try:
            with span(span_name or f"search.{name}"):  # a child of the search's span while tracing is on
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


# The property a retired (forgotten) entity carries: when it was retired, which is also its
# `valid_to`. Search and recall leave it out unless asked `as_of` an earlier moment.
RETIRED_AT = "retired_at"


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


# The keyword and name channels move to a worker thread, beside the query embedding, once they
# take this long on average. Measured on 2 cores: at 100,000 entities (lexical channels 1.5 ms)
# the worker made a search 0.3-0.7 ms slower end to end (the hand-off, and the embedding and the
# channels competing for memory bandwidth); at a million (13 ms) it made it 9-10 ms faster.
LEXICAL_BESIDE_FROM_MS = 3.0


class LexicalCost:
    """How long the keyword and name channels have been taking: an exponentially weighted mean
    over searches (the engine keeps one), which decides whether they run beside the embedding."""

    _WEIGHT = 0.2  # of the newest search

    def __init__(self) -> None:
        self._mean_ms: float | None = None
        self._lock = threading.Lock()

    def record(self, ms: float) -> None:
        """Add one search's lexical channel time."""
        with self._lock:
            self._mean_ms = ms if self._mean_ms is None else (1 - self._WEIGHT) * self._mean_ms + self._WEIGHT * ms

    @property
    def mean_ms(self) -> float | None:
        """The weighted mean so far (None before the first search)."""
        return self._mean_ms

    def worth_a_worker(self) -> bool:
        """Whether the channels take long enough for a worker thread to pay."""
        mean = self._mean_ms
        return mean is not None and mean >= LEXICAL_BESIDE_FROM_MS


@dataclass(slots=True)
class SearchSources:
    """What the stages read: the store and, fetched only when a stage needs them, the embedder
    and the derived indexes caught up with a given change-log position."""

    store: GraphStore
    embedder: Callable[[], TextEmbedder]
    vector_index: Callable[[int], VectorIndex]
    keyword_index: Callable[[int], KeywordIndex] | None  # None: the store answers keywords
    count_tokens: Callable[[str], int] = estimate_tokens  # the budget's tokenizer
    # What the lexical channels cost so far (the engine passes its own, kept across searches).
    lexical_cost: LexicalCost = field(default_factory=LexicalCost)
    # Entities recent searches read (the engine's own, kept across searches; None: read the store).
    entity_cache: EntityCache | None = None
    # The change-log position this search read (set by its first stage).
    store_seq: int | None = None

    def get_entities(self, ids: Sequence[str], namespaces: Sequence[str] | None) -> list[Entity]:
        """`store.get_entities`, through the entity cache when there is one, as of `store_seq`."""
        if self.entity_cache is None or not ids:
            return self.store.get_entities(ids, namespaces)
        return self.entity_cache.read(self.store, ids, namespaces, self.store_seq)


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
        as_of: the moment; None means now, when every stored entity counts as live except a
            forgotten one (`RETIRED_AT`) and a retired memory (superseded, corrected, merged or
            expired) whose `valid_to` has passed. A `valid_to` alone does not hide an entity now:
            a file deleted from a repository stays findable.

    Returns:
        True when `valid_from <= as_of < valid_to` (open ends allowed).
    """
    if as_of is None:
        if RETIRED_AT in entity.properties:
            return False
        if entity.valid_to is not None and entity.properties.get(RETIRED_REASON_PROPERTY) is not None:
            return entity.valid_to > utcnow()
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


def keep_candidates(
    candidates: Sequence[Candidate], entities: dict[str, Entity], request: SearchRequest
) -> list[Candidate]:
    """The candidates that may be hits: loaded, of the asked types, live at `as_of`."""
    types = request.type_filter
    return [
        c
        for c in candidates
        if c.id in entities and wanted(entities[c.id], types) and entity_live(entities[c.id], request.as_of)
    ]


__all__ = [
    "BRIDGE_CHANNEL",
    "CHANNELS",
    "DEFAULT_HOPS",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "RETIRED_AT",
    "WALK_CHANNEL",
    "ChannelHits",
    "SearchRequest",
    "SearchSources",
    "StageTimer",
    "entity_live",
    "keep_candidates",
    "wanted",
]
