"""The 8-bit copy of a large exact sub-index (`vector_prefilter.py`): it answers with the exact
search's top k, proves it or hands over to the float32 product, and follows the sub-index through
adds, replacements, moves and removals.

FAISS is real; `prefilter_min` is forced down so the copies are small.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from aesoperator.engine import vector_parts
from aesoperator.engine.vector_parts import flat_search, flat_view
from aesoperator.engine.vector_prefilter import ExactPrefilter
from aesoperator.engine.vectors import VectorIndex
from aesoperator.errors import SchemaError

DIM = 64
MODEL = "test-model"


def near_copies(n: int, seed: int, centres: int = 200, noise: float = 0.05) -> np.ndarray:
    """Unit rows, each a noisy copy of one of a few centres: many close scores near the top."""
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal((centres, DIM)).astype(np.float32)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    rows = centre[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def exact_part(rows: np.ndarray, labels: np.ndarray) -> faiss.IndexIDMap2:
    part = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    part.add_with_ids(rows, labels)
    return part


def queries(count: int, seed: int) -> np.ndarray:
    return near_copies(count, seed, noise=0.2)


def test_the_copy_answers_with_the_exact_top_k() -> None:
    rows = near_copies(6_000, seed=1)
    labels = np.arange(6_000, dtype=np.int64) * 7 + 3
    part = exact_part(rows, labels)
    prefilter = ExactPrefilter.build(rows, labels)
    answered = 0
    for k in (1, 10, 50, 400):
        for query in queries(40, seed=k):
            found = prefilter.search(*flat_view(part), query, k)
            want_scores, want_labels = flat_search(part, query, k)
            if found is None:
                continue
            answered += 1
            scores, got_labels = found
            # Same members and scores; rows whose scores differ by float rounding may swap places.
            assert set(got_labels.tolist()) == set(want_labels.tolist())
            np.testing.assert_allclose(scores, want_scores, atol=1e-5)
            swapped = got_labels != want_labels
            assert np.all(np.abs(scores[swapped] - want_scores[swapped]) < 1e-5)
    # The proof holds for most queries here; a copy that always handed over would fail this.
    assert answered >= 0.9 * 160


def test_a_top_k_it_cannot_prove_is_handed_over() -> None:
    # Every row the same vector: all exact scores tie, so no candidate beats the ones left out.
    rows = np.repeat(near_copies(1, seed=2), 4_000, axis=0)
    labels = np.arange(4_000, dtype=np.int64)
    prefilter = ExactPrefilter.build(rows, labels)
    assert prefilter.search(*flat_view(exact_part(rows, labels)), queries(1, seed=3)[0], 10) is None


def index(path: Path, prefilter_min: int) -> VectorIndex:
    return VectorIndex(path, MODEL, DIM, batch_threads=1, exact_max=100_000, prefilter_min=prefilter_min)


def results(
    idx: VectorIndex, query: np.ndarray, k: int, namespaces: list[str] | None = None
) -> list[tuple[str, float]]:
    return idx.search(query, k=k, namespaces=namespaces)


def assert_same(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> None:
    assert [i for i, _ in a] == [i for i, _ in b]
    np.testing.assert_allclose([s for _, s in a], [s for _, s in b], atol=1e-5)


def test_an_index_with_copies_answers_like_one_without_through_writes(tmp_path: Path) -> None:
    with_copies, without = index(tmp_path / "a", prefilter_min=1_000), index(tmp_path / "b", prefilter_min=0)
    rows = near_copies(5_000, seed=4)
    ids = [f"e{i:05d}" for i in range(5_000)]
    namespaces = ["one" if i % 5 else "two" for i in range(5_000)]
    check = queries(30, seed=5)

    def compare() -> None:
        for query in check:
            assert_same(results(with_copies, query, 50), results(without, query, 50))
            assert_same(results(with_copies, query, 10, ["one"]), results(without, query, 10, ["one"]))

    for idx in (with_copies, without):
        idx.add(ids, namespaces, rows)
    compare()
    assert set(with_copies._state.prefilters) == {"one", "two"}  # 4,000 and 1,000 vectors
    # Replace vectors, move ids between namespaces, add new ones, remove some: the copy follows.
    changed = near_copies(800, seed=6)
    for idx in (with_copies, without):
        idx.add(ids[:400] + [f"n{i}" for i in range(400)], ["two"] * 200 + ["one"] * 600, changed)
        idx.remove(ids[1_000:1_600])
    compare()
    copy = with_copies._state.prefilters["one"]
    assert copy.ntotal == without.namespaces()["one"]


def test_values_beyond_the_copy_s_range_make_it_rebuild(tmp_path: Path) -> None:
    idx = index(tmp_path, prefilter_min=1_000)
    rows = near_copies(2_000, seed=7)
    rows[:, 0] = 0.0  # dimension 0 is empty, so the copy's scale for it is huge
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    idx.add([f"e{i}" for i in range(2_000)], "ns", rows)
    axis = np.zeros((1, DIM), dtype=np.float32)
    axis[0, 0] = 1.0
    for _ in range(2):  # the copy is built at the second search
        results(idx, queries(1, seed=8)[0], 5)
    first = idx._state.prefilters["ns"]
    idx.add(["axis"], "ns", axis)
    assert "ns" not in idx._state.prefilters
    assert results(idx, axis[0], 1)[0][0] == "axis"
    assert idx._state.prefilters["ns"] is not first


def test_a_copy_out_of_step_with_its_sub_index_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idx = index(tmp_path, prefilter_min=1_000)
    rows = near_copies(2_000, seed=9)
    idx.add([f"e{i}" for i in range(2_000)], "ns", rows)
    query = queries(1, seed=10)[0]
    assert not idx._state.prefilters  # none before a second search
    want = results(idx, query, 20)
    assert_same(results(idx, query, 20), want)
    idx._state.prefilters["ns"].remove([0, 1, 2])  # as if a write had bypassed it
    built: list[int] = []
    real_build = ExactPrefilter.build.__func__  # type: ignore[attr-defined]

    def counting_build(cls: type[ExactPrefilter], rows: np.ndarray, labels: np.ndarray) -> ExactPrefilter:
        built.append(len(rows))
        return real_build(cls, rows, labels)  # type: ignore[no-any-return]

    monkeypatch.setattr(vector_parts.ExactPrefilter, "build", classmethod(counting_build))
    assert_same(results(idx, query, 20), want)
    assert built == [2_000]


def test_a_negative_prefilter_min_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="prefilter_min"):
        index(tmp_path, prefilter_min=-1)


def test_a_shard_emptied_by_removals_is_skipped(tmp_path: Path) -> None:
    with_copies, without = index(tmp_path / "a", prefilter_min=1_000), index(tmp_path / "b", prefilter_min=0)
    rows = near_copies(3_000, seed=11)
    ids = [f"e{i:05d}" for i in range(3_000)]
    query = queries(1, seed=12)[0]
    for idx in (with_copies, without):
        idx.add(ids, "ns", rows)
    for _ in range(2):  # builds the copy: rows 0-1,499 in one shard, the rest in the other
        results(with_copies, query, 10)
    for idx in (with_copies, without):
        idx.remove(ids[:1_500])
    assert [int(shard.ntotal) for shard in with_copies._state.prefilters["ns"].shards] == [0, 1_500]
    assert_same(results(with_copies, query, 10), results(without, query, 10))


def _search_in_child(idx: VectorIndex, query: np.ndarray, out: Any) -> None:
    out.put(results(idx, query, 5)[0][0])


def test_a_forked_child_searches_with_its_own_worker_thread(tmp_path: Path) -> None:
    # The child inherits the parent's pool object but not its thread: a search there would wait
    # forever on a worker that does not exist, unless the pool is made anew.
    idx = index(tmp_path, prefilter_min=1_000)
    idx.add([f"e{i}" for i in range(2_000)], "ns", near_copies(2_000, seed=13))
    query = queries(1, seed=14)[0]
    for _ in range(2):
        want = results(idx, query, 5)[0][0]
    assert "ns" in idx._state.prefilters
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_search_in_child, args=(idx, query, out))
    child.start()
    child.join(30)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    assert out.get(timeout=5) == want
