"""The embedder an engine holds: built on first need, once, from whatever backend the settings
name, with a bounded cache of query vectors in front of it.

Building an embedder may import torch and load a model (over a gigabyte of memory); an engine
that only stores and keyword-searches must never pay for that. `LazyEmbedder` takes a factory and
calls it the first time something asks for the model's name, width or vectors, under a lock, so
concurrent first calls build one embedder. The backend itself (sentence-transformers today) stays
in `embeddings.py`; this module only decides when it is built.

Queries repeat (agents ask the same thing again, benchmarks and dashboards replay queries), so
`embed_query` answers from an LRU keyed by the model's name and the query text before it reaches
the backend, whichever backend that is.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from aesoperator.engine.embeddings import TextEmbedder

log = logging.getLogger(__name__)

DEFAULT_QUERY_CACHE = 1024


class QueryVectorCache:
    """A bounded, thread-safe LRU of query vectors keyed by (model name, query text)."""

    def __init__(self, capacity: int = DEFAULT_QUERY_CACHE) -> None:
        self.capacity = max(0, capacity)
        self._rows: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, model: str, text: str) -> np.ndarray | None:
        """A copy of the cached vector, or None."""
        key = (model, text)
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                self.misses += 1
                return None
            self._rows.move_to_end(key)
            self.hits += 1
        return row.copy()

    def put(self, model: str, text: str, vector: np.ndarray) -> None:
        if self.capacity == 0:
            return
        kept = np.array(vector, dtype=np.float32, copy=True)
        kept.flags.writeable = False
        with self._lock:
            self._rows[(model, text)] = kept
            self._rows.move_to_end((model, text))
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)


class LazyEmbedder:
    """A `TextEmbedder` that builds the real one with `factory` on first need (thread-safe, once).

    `built` says whether the factory has run; `loaded` whether the model itself is in memory (a
    backend that loads its model on first use, as `Embedder` does, is built long before it loads).
    Other attributes (`stats()`, `batch_size`, ...) are the built embedder's.
    """

    def __init__(self, factory: Callable[[], TextEmbedder], query_cache_size: int = DEFAULT_QUERY_CACHE) -> None:
        self._factory = factory
        self._inner: TextEmbedder | None = None
        self._lock = threading.Lock()
        self.query_cache = QueryVectorCache(query_cache_size)

    @property
    def inner(self) -> TextEmbedder:
        """The real embedder, built now if it was not yet."""
        inner = self._inner
        if inner is not None:
            return inner
        with self._lock:
            if self._inner is None:
                self._inner = self._factory()
                log.debug("built embedder %r", self._inner)
            return self._inner

    @property
    def built(self) -> bool:
        return self._inner is not None

    @property
    def loaded(self) -> bool:
        inner = self._inner
        return inner is not None and bool(getattr(inner, "loaded", True))

    def load(self) -> None:
        """Build the embedder and load its model now (e.g. at server start) instead of on first use."""
        load = getattr(self.inner, "load", None)
        if callable(load):
            load()

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        inner = self.inner
        model = inner.model_name
        cached = self.query_cache.get(model, text)
        if cached is not None:
            return cached
        vector = inner.embed_query(text)
        self.query_cache.put(model, text, vector)
        return vector

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this class lacks: the backend's own (stats, batch_size, ...).
        if name.startswith("__") or name in {"_factory", "_inner", "_lock", "query_cache"}:
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"LazyEmbedder({self._inner!r})" if self._inner is not None else "LazyEmbedder(not built)"


__all__ = ["DEFAULT_QUERY_CACHE", "LazyEmbedder", "QueryVectorCache"]
