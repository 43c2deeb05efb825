"""A vector search that leaves out ids with a prefix inside the scan (`VectorIndex.search(...,
exclude_prefix=...)`, which the engine uses to keep extracted entities out of the vector channel):
the same answer as searching everything and dropping them afterwards, with k results whenever k
others exist, on every kind of sub-index, also after writes and after a reload.

FAISS is real; thresholds are forced down so every kind of sub-index stays small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aesoperator.engine.vectors import VectorIndex

DIM = 32
MODEL = "test-model"
HIDDEN = "x:"


def unit_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal((10, DIM)).astype(np.float32)
    rows = centre[rng.integers(0, 10, n)] + 0.4 * rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(ids: list[str], rows: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    scores = rows.astype(np.float64) @ (query / np.linalg.norm(query)).astype(np.float64)
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    return [ids[i] for i in order if not ids[i].startswith(HIDDEN)][:k]


KINDS = {
    # name: (exact_max, prefilter_min)
    "exact": (100_000, 0),
    "exact with its 8-bit copy": (100_000, 500),
    "ivf": (300, 0),
}


def make(path: Path, kind: str) -> VectorIndex:
    exact_max, prefilter_min = KINDS[kind]
    # nprobe above the list count: IVF with float32 codes probes every list, so it is exact
    return VectorIndex(
        path,
        MODEL,
        DIM,
        batch_threads=1,
        exact_max=exact_max,
        nprobe=4096,
        ivf_codes="flat",
        prefilter_min=prefilter_min,
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_left_out_inside_the_scan_as_if_dropped_afterwards(tmp_path: Path, kind: str) -> None:
    idx = make(tmp_path, kind)
    rows = unit_rows(2_000, seed=1)
    # Every third id hidden, and most of the first 300: a query near them finds mostly hidden ones.
    ids = [f"{HIDDEN}{i}" if i % 3 == 0 or i < 300 else f"e{i}" for i in range(2_000)]
    idx.add(ids, "ns", rows)
    assert idx.kinds() == {"ns": "ivf" if kind == "ivf" else "flat"}
    questions = unit_rows(12, seed=2)
    for query in [*questions, rows[5], rows[150]]:
        for k in (1, 10, 60):
            for _ in range(2):  # the second search uses the 8-bit copy where there is one
                got = idx.search(query, k=k, exclude_prefix=HIDDEN)
            assert [i for i, _ in got] == brute_force(ids, rows, query, k)
            assert not any(i.startswith(HIDDEN) for i, _ in got)

    # Ids added after the first excluding search are flagged too, and replaced ones keep theirs.
    more = unit_rows(300, seed=3)
    new_ids = [f"{HIDDEN}new{i}" if i % 2 else f"new{i}" for i in range(300)]
    idx.add(new_ids + ids[:50], "ns", np.vstack([more, unit_rows(50, seed=4)]))
    all_ids = ids[50:] + new_ids + ids[:50]
    all_rows = np.vstack([rows[50:], more, unit_rows(50, seed=4)])
    for query in questions:
        got = idx.search(query, k=20, exclude_prefix=HIDDEN)
        assert [i for i, _ in got] == brute_force(all_ids, all_rows, query, 20)

    # After a save and a load, the flags are made again from the loaded ids.
    idx.save()
    loaded = make(tmp_path, kind)
    loaded.load()
    for query in questions:
        got = loaded.search(query, k=20, exclude_prefix=HIDDEN)
        assert [i for i, _ in got] == brute_force(all_ids, all_rows, query, 20)


@pytest.mark.parametrize("kind", list(KINDS))
def test_fewer_than_k_others_returns_all_of_them(tmp_path: Path, kind: str) -> None:
    idx = make(tmp_path, kind)
    rows = unit_rows(1_000, seed=5)
    ids = [f"e{i}" if i < 7 else f"{HIDDEN}{i}" for i in range(1_000)]
    idx.add(ids, "ns", rows)
    for _ in range(2):
        got = idx.search(unit_rows(1, seed=6)[0], k=50, exclude_prefix=HIDDEN)
    assert sorted(i for i, _ in got) == sorted(ids[:7])
    everything = idx.search(unit_rows(1, seed=6)[0], k=50)
    assert len(everything) == 50 and any(i.startswith(HIDDEN) for i, _ in everything)
