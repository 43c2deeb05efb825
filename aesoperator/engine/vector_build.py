"""Filling the vector index from the store's vectors in bounded memory.

Built naively, a namespace larger than `exact_max` is first gathered whole as float32 (1.5 GB at a
million 384-dimensional vectors) and only then turned into an IVF sub-index, so the build's peak
holds every vector twice over. When the store can count its vectors per namespace, such a
namespace is built in two passes instead: the first keeps only the rows that train its IVF (the
same fixed-seed positions `build_ivf` would pick) while small namespaces are filled as exact
sub-indexes; after training, the second pass adds its rows batch by batch to the trained index.
The result is the index `build_ivf` makes from all the rows at once; the price is reading those
namespaces' vectors twice.

Stores that cannot count per namespace, and namespaces whose count changes under a concurrent
write, are filled the naive way; the next sync replays what was written meanwhile either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from aesoperator.engine.vector_parts import VectorPartitions, as_matrix, ivf_sample_positions, trained_ivf
from aesoperator.errors import StoreError

Batch = tuple[list[str], list[str], np.ndarray]


class _TrainingSample:
    """The training rows of one large namespace, picked from its stream by position."""

    def __init__(self, count: int, dim: int) -> None:
        self.count = count
        self.positions = ivf_sample_positions(count)
        self.rows = np.empty((len(self.positions), dim), dtype=np.float32)
        self.seen = 0  # rows of this namespace streamed so far
        self.taken = 0

    def offer(self, rows: np.ndarray) -> None:
        start, end = self.seen, self.seen + len(rows)
        lo, hi = np.searchsorted(self.positions, [start, end])
        picked = self.positions[lo:hi] - start
        self.rows[self.taken : self.taken + len(picked)] = rows[picked]
        self.taken += len(picked)
        self.seen = end

    def complete(self) -> bool:
        """Whether the stream held exactly the rows counted (no write changed it meanwhile)."""
        return self.seen == self.count and self.taken == len(self.positions)


def _batches(store: Any, model: str, dim: int) -> Iterator[Batch]:
    for ids, namespaces, vectors in store.iter_vectors(model):
        if not ids:
            continue
        matrix = as_matrix(vectors, dim, f"stored vectors of model {model!r}")
        if not (len(ids) == len(namespaces) == matrix.shape[0]):
            raise StoreError("the store returned a vector batch whose ids, namespaces and rows differ")
        yield list(ids), list(namespaces), matrix


def _select(batch: Batch, keep: Callable[[str], bool]) -> Batch:
    ids, namespaces, matrix = batch
    rows = [i for i, ns in enumerate(namespaces) if keep(ns)]
    if len(rows) == len(ids):
        return batch
    return [ids[i] for i in rows], [namespaces[i] for i in rows], matrix[rows]


def _counts(store: Any, model: str) -> dict[str, int] | None:
    counter: Callable[[str], dict[str, int]] | None = getattr(store, "vector_namespace_counts", None)
    return None if counter is None else counter(model)


def fill_partitions(state: VectorPartitions, store: Any, model: str) -> VectorPartitions:
    """Fill an empty `state` with every stored vector of `model`.

    Args:
        state: Empty partitions, configured (dimension, `exact_max`, `nprobe`, IVF codes).
        store: The graph store (`iter_vectors`; `vector_namespace_counts` when it has one).
        model: The vectors' storage name.

    Returns:
        `state`, filled; sub-indexes larger than `exact_max` are IVF.

    Raises:
        StoreError: The store returned a malformed batch.
        SchemaError: A stored vector has the wrong dimension or is not finite.
    """
    counts = _counts(store, model) or {}
    large = {ns for ns, n in counts.items() if n > state.exact_max}
    samples = {ns: _TrainingSample(counts[ns], state.dim) for ns in large}
    for batch in _batches(store, model, state.dim):
        ids, namespaces, matrix = _select(batch, lambda ns: ns not in large)
        if ids:
            state.add(ids, namespaces, matrix, promote=False)
        for ns, sample in samples.items():
            rows = [i for i, name in enumerate(batch[1]) if name == ns]
            if rows:
                sample.offer(batch[2][rows])
    for ns, sample in samples.items():
        if sample.complete():
            state.parts[ns] = trained_ivf(sample.rows, sample.count, state.dim, state.nprobe, state.ivf_codes)
    samples.clear()  # the training rows go before the second pass fills the lists
    if large:
        for batch in _batches(store, model, state.dim):
            ids, namespaces, matrix = _select(batch, lambda ns: ns in large)
            if ids:
                state.add(ids, namespaces, matrix, promote=False)
    state.promote()  # by final size: what was not trained above is built from all its rows here
    return state
