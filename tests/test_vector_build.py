"""Building the vector index from the store: a namespace larger than `exact_max` is trained on its
sample and filled batch by batch (never gathered whole), and gives the very index the all-at-once
build gives; stores that cannot count per namespace, and counts a concurrent write made stale,
take the all-at-once path.

FAISS and the embedded store are real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aesoperator.engine import vector_parts
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.engine.vector_build import fill_partitions
from aesoperator.engine.vector_parts import VectorPartitions
from aesoperator.graph_schema.models import Entity

MODEL = "test-model"
DIM = 24
EXACT_MAX = 400


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, DIM)).astype(np.float32)
    rows = centres[rng.integers(0, 12, n)] + 0.4 * rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedGraphStore]:
    """1,500 vectors in 'big' (interleaved in id order with) 150 in 'small'."""
    with EmbeddedGraphStore(tmp_path / "store") as s:
        matrix = clustered(1650, seed=1)
        entities = [
            Entity(id=f"e{i:05d}", type="Document", name=f"e{i}", text="t", namespace="small" if i % 11 == 0 else "big")
            for i in range(1650)
        ]
        vectors = {e.id: (f"h{i}", matrix[i]) for i, e in enumerate(entities)}
        s.upsert(entities, vectors=vectors, vector_model=MODEL)
        yield s


class WithoutCounts:
    """The store as one that cannot count its vectors per namespace."""

    def __init__(self, store: EmbeddedGraphStore) -> None:
        self.store = store

    def iter_vectors(self, model: str) -> Any:
        return self.store.iter_vectors(model)


class StaleCounts(WithoutCounts):
    """Counts taken before a write the stream then shows."""

    def vector_namespace_counts(self, model: str) -> dict[str, int]:
        counts = self.store.vector_namespace_counts(model)
        return {**counts, "big": counts["big"] - 3}


def partitions(codes: str) -> VectorPartitions:
    return VectorPartitions(DIM, exact_max=EXACT_MAX, nprobe=6, ivf_codes=codes)


def answers(state: VectorPartitions) -> list[list[tuple[str, float]]]:
    out = []
    for query in clustered(25, seed=9):
        scores, labels = [], []
        for _, part in state.selected(None):
            found = part.search(query[None, :], 10)
            scores.append(found[0][0])
            labels.append(found[1][0])
        out.append(state.merge(scores, labels, 10))
    return out


@pytest.mark.parametrize("codes", ["sq8", "flat"])
def test_the_two_pass_build_gives_the_index_the_all_at_once_build_gives(
    store: EmbeddedGraphStore, codes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_once = fill_partitions(partitions(codes), WithoutCounts(store), MODEL)

    def gathered_whole(*args: Any) -> Any:
        raise AssertionError("a large namespace was gathered whole")

    monkeypatch.setattr(vector_parts, "build_ivf", gathered_whole)
    streamed = fill_partitions(partitions(codes), store, MODEL)
    assert {ns: vector_parts.part_kind(p) for ns, p in streamed.parts.items()} == {"big": "ivf", "small": "flat"}
    assert {ns: p.ntotal for ns, p in streamed.parts.items()} == {"big": 1500, "small": 150}
    assert streamed.parts["big"].nlist == at_once.parts["big"].nlist
    assert answers(streamed) == answers(at_once)


def test_counts_a_write_made_stale_fall_back_to_the_all_at_once_build(store: EmbeddedGraphStore) -> None:
    at_once = fill_partitions(partitions("sq8"), WithoutCounts(store), MODEL)
    stale = fill_partitions(partitions("sq8"), StaleCounts(store), MODEL)
    assert {ns: p.ntotal for ns, p in stale.parts.items()} == {"big": 1500, "small": 150}
    assert answers(stale) == answers(at_once)
