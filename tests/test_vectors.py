"""VectorIndex: exact FAISS search against numpy brute force, namespaces, persistence, and `sync`
rebuilding from the graph store when index files are missing or corrupt.

FAISS is always real. The store side runs twice: against `MemoryVectorStore`, a small in-memory
test double of the GraphStore vector and change-log methods (it can also compact its log), and
against the real EmbeddedGraphStore.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tracemalloc
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from aesoperator.engine.stores.base import Change, WriteBatch
from aesoperator.engine.vectors import MANIFEST_NAME, IndexLoadError, VectorIndex
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.models import Entity

MODEL = "test-model"
DIM = 32


def unit_rows(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(ids: Sequence[str], matrix: np.ndarray, query: np.ndarray, k: int) -> list[tuple[str, float]]:
    if not len(ids):
        return []
    matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    query = query / np.linalg.norm(query)
    scores = matrix.astype(np.float64) @ query.astype(np.float64)
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:k]
    return [(ids[i], float(scores[i])) for i in order]


def assert_same_ranking(got: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    """Same scores position by position; ids equal except where two scores tie within float error."""
    assert len(got) == len(expected)
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-5)
    for (gid, gs), (eid, es) in zip(got, expected, strict=True):
        assert gid == eid or abs(gs - es) < 1e-5


# -- the store side -----------------------------------------------------------------------------
class MemoryVectorStore:
    """Test double for the store side only: vectors per model plus a change log, in memory.

    Follows the GraphStore protocol for the methods VectorIndex uses (upsert, delete_entities,
    iter_vectors, get_vectors, vector_hashes, last_seq, changes_since) and can compact its log.
    """

    backend = "memory-double"

    def __init__(self) -> None:
        self.namespace: dict[str, str] = {}
        self.vectors: dict[str, dict[str, np.ndarray]] = {}  # model -> id -> vector
        self.hashes: dict[str, dict[str, str]] = {}
        self.log: list[Change] = []
        self.log_start = 0

    def _append(self, kind: Any, id_: str, op: Any, ns: str) -> None:
        self.log.append(Change(self.last_seq() + 1, kind, id_, op, ns))

    def upsert(
        self,
        entities: Sequence[Entity] = (),
        relations: Sequence[Any] = (),
        vectors: Mapping[str, tuple[str, np.ndarray]] | None = None,
        vector_model: str | None = None,
    ) -> int:
        for e in entities:
            self.namespace[e.id] = e.namespace
            self._append("entity", e.id, "upsert", e.namespace)
        for id_, (digest, vec) in (vectors or {}).items():
            assert vector_model is not None and id_ in self.namespace
            self.vectors.setdefault(vector_model, {})[id_] = np.asarray(vec, dtype=np.float32).copy()
            self.hashes.setdefault(vector_model, {})[id_] = digest
            self._append("vector", id_, "upsert", self.namespace[id_])
        return self.last_seq()

    def delete_entities(self, ids: Sequence[str]) -> int:
        n = 0
        for id_ in ids:
            if id_ not in self.namespace:
                continue
            ns = self.namespace.pop(id_)
            for per_model in self.vectors.values():
                if per_model.pop(id_, None) is not None:
                    self._append("vector", id_, "delete", ns)
            self._append("entity", id_, "delete", ns)
            n += 1
        return n

    def iter_vectors(self, model: str, batch_size: int = 4096) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
        items = sorted(self.vectors.get(model, {}).items())
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            yield [i for i, _ in chunk], [self.namespace[i] for i, _ in chunk], np.stack([v for _, v in chunk])

    def get_vectors(self, ids: Sequence[str], model: str) -> dict[str, np.ndarray]:
        have = self.vectors.get(model, {})
        return {i: have[i].copy() for i in ids if i in have}

    def vector_hashes(self, ids: Sequence[str], model: str) -> dict[str, str]:
        have = self.hashes.get(model, {})
        return {i: have[i] for i in ids if i in have}

    def last_seq(self) -> int:
        return self.log[-1].seq if self.log else self.log_start

    def changes_since(self, seq: int, limit: int = 100_000) -> list[Change]:
        return [c for c in self.log if c.seq > seq][:limit]

    def compact_log(self) -> None:
        """Drop every change row, as a store that bounds its log would."""
        self.log_start = self.last_seq()
        self.log = []

    def change_log_start(self) -> int:
        return self.log_start

    def close(self) -> None:
        pass


class Spy:
    """Wraps a store and records which ids the index fetched."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.fetched: list[str] = []
        self.full_scans = 0

    def get_vectors(self, ids: Sequence[str], model: str) -> dict[str, np.ndarray]:
        self.fetched.extend(ids)
        result: dict[str, np.ndarray] = self._store.get_vectors(ids, model)
        return result

    def iter_vectors(self, model: str, batch_size: int = 4096) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
        self.full_scans += 1
        yield from self._store.iter_vectors(model, batch_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


StoreFactory = Callable[..., Any]


def _memory_store(path: Path) -> Any:
    return MemoryVectorStore()


def _embedded_store(path: Path) -> Any:
    from aesoperator.engine.stores.embedded import EmbeddedGraphStore

    return EmbeddedGraphStore(path)


@pytest.fixture(params=["memory-double", "embedded"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    factory: StoreFactory = _memory_store if request.param == "memory-double" else _embedded_store
    opened: list[Any] = []

    def make(name: str = "store") -> Any:
        store = factory(tmp_path / name)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def put(store: Any, ids: Sequence[str], namespaces: Sequence[str], matrix: np.ndarray, model: str = MODEL) -> None:
    entities = [
        Entity(id=i, type="Document", name=i, text=f"text of {i}", namespace=ns)
        for i, ns in zip(ids, namespaces, strict=True)
    ]
    vectors = {i: (f"hash-{i}-{float(row[0]):.6f}", row) for i, row in zip(ids, matrix, strict=True)}
    if isinstance(store, MemoryVectorStore):
        store.upsert(entities, vectors=vectors, vector_model=model)
        return
    # Some tests move an entity to another namespace on purpose: that is an explicit move.
    store.write(WriteBatch(entities=entities, vectors=vectors, vector_model=model, allow_namespace_moves=True))


def store_answer(
    store: Any, query: np.ndarray, k: int, namespaces: Sequence[str] | None = None
) -> list[tuple[str, float]]:
    ids: list[str] = []
    rows: list[np.ndarray] = []
    for batch_ids, batch_ns, matrix in store.iter_vectors(MODEL):
        for i, ns, row in zip(batch_ids, batch_ns, matrix, strict=True):
            if namespaces is None or ns in namespaces:
                ids.append(i)
                rows.append(row)
    return brute_force(ids, np.stack(rows) if rows else np.zeros((0, DIM), np.float32), query, k)


def seeded_store(make_store: StoreFactory, n: int = 300) -> tuple[Any, list[str], np.ndarray]:
    store = make_store()
    ids = [f"doc:{i:04d}" for i in range(n)]
    namespaces = [("team-a", "team-b", "public")[i % 3] for i in range(n)]
    matrix = unit_rows(n, seed=1)
    put(store, ids, namespaces, matrix)
    return store, ids, matrix


QUERIES = unit_rows(8, seed=99)


def answers(index: VectorIndex, k: int = 10) -> list[list[tuple[str, float]]]:
    return [index.search(q, k) for q in QUERIES] + [index.search(q, k, namespaces=["team-b"]) for q in QUERIES]


def check_against_store(index: VectorIndex, store: Any, k: int = 10) -> None:
    for q in QUERIES:
        assert_same_ranking(index.search(q, k), store_answer(store, q, k))
        assert_same_ranking(index.search(q, k, ["team-a", "public"]), store_answer(store, q, k, ["team-a", "public"]))


def same_answers(a: list[list[tuple[str, float]]], b: list[list[tuple[str, float]]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert_same_ranking(x, y)


# -- search -------------------------------------------------------------------------------------
def test_exact_search_matches_numpy_brute_force(tmp_path: Path) -> None:
    n = 2000
    ids = [f"e{i}" for i in range(n)]
    matrix = unit_rows(n, seed=3) * np.random.default_rng(4).uniform(0.5, 3.0, (n, 1)).astype(np.float32)
    index = VectorIndex(tmp_path / "ix", MODEL, DIM)
    assert index.add(ids, "default", matrix) == n
    assert len(index) == n
    for q in unit_rows(20, seed=5):
        for k in (1, 10, 50):
            assert_same_ranking(index.search(q * 7.0, k), brute_force(ids, matrix, q, k))
    assert len(index.search(QUERIES[0], 5000)) == n  # k beyond the size returns everything
    assert index.search(QUERIES[0], 0) == []


def test_search_batch_equals_single_searches(tmp_path: Path) -> None:
    index = VectorIndex(tmp_path / "ix", MODEL, DIM)
    ids = [f"e{i}" for i in range(500)]
    index.add(ids, [("x", "y")[i % 2] for i in range(500)], unit_rows(500, seed=6))
    queries = unit_rows(40, seed=7)
    for namespaces in (None, ["y"]):
        batch = index.search_batch(queries, 7, namespaces=namespaces)
        assert len(batch) == 40
        for q, got in zip(queries, batch, strict=True):
            assert_same_ranking(got, index.search(q, 7, namespaces=namespaces))
    assert index.search_batch(np.zeros((0, DIM), np.float32), 5) == []


def test_namespaces_restrict_results(tmp_path: Path) -> None:
    n = 600
    ids = [f"e{i}" for i in range(n)]
    namespaces = [("alpha", "beta", "gamma")[i % 3] for i in range(n)]
    matrix = unit_rows(n, seed=8)
    index = VectorIndex(tmp_path / "ix", MODEL, DIM)
    index.add(ids, namespaces, matrix)
    assert index.namespaces() == {"alpha": 200, "beta": 200, "gamma": 200}
    for q in QUERIES:
        for allowed in (["alpha"], ["beta", "gamma"], ["gamma", "unknown"]):
            keep = [i for i, ns in enumerate(namespaces) if ns in allowed]
            expected = brute_force([ids[i] for i in keep], matrix[keep], q, 15)
            got = index.search(q, 15, namespaces=allowed)
            assert_same_ranking(got, expected)
            assert {index.namespace_of(i) for i, _ in got} <= set(allowed)
        assert index.search(q, 15, namespaces=[]) == []
        assert index.search(q, 15, namespaces=["nobody"]) == []


def test_add_replaces_and_moves_between_namespaces(tmp_path: Path) -> None:
    index = VectorIndex(tmp_path / "ix", MODEL, DIM)
    rows = unit_rows(3, seed=9)
    index.add(["a", "b", "c"], ["n1", "n1", "n2"], rows)
    index.add(["a"], ["n2"], rows[2:3])  # new vector and new namespace
    assert len(index) == 3
    assert index.namespace_of("a") == "n2"
    assert index.namespaces() == {"n1": 1, "n2": 2}
    np.testing.assert_allclose(index.get_vectors(["a"])["a"], rows[2], atol=1e-6)
    assert [i for i, _ in index.search(rows[2], 5, namespaces=["n1"])] == ["b"]
    index.add(["d", "d"], ["n1", "n1"], rows[:2])  # a repeated id: the last row wins
    np.testing.assert_allclose(index.get_vectors(["d"])["d"], rows[1], atol=1e-6)
    assert len(index) == 4


def test_remove(tmp_path: Path) -> None:
    n = 100
    ids = [f"e{i}" for i in range(n)]
    matrix = unit_rows(n, seed=10)
    index = VectorIndex(tmp_path / "ix", MODEL, DIM)
    index.add(ids, [("p", "q")[i % 2] for i in range(n)], matrix)
    gone = ids[:40]
    assert index.remove([*gone, "never-added", gone[0]]) == 40
    assert len(index) == 60
    assert "e0" not in index and "e99" in index
    for q in QUERIES:
        assert_same_ranking(index.search(q, 10), brute_force(ids[40:], matrix[40:], q, 10))
    assert index.remove(ids[40:]) == 60
    assert len(index) == 0 and index.namespaces() == {} and index.search(QUERIES[0], 3) == []


def test_bad_input_is_rejected(tmp_path: Path) -> None:
    index = VectorIndex(tmp_path / "ix", MODEL, DIM)
    with pytest.raises(SchemaError, match="32-dimensional"):
        index.add(["a"], "n", np.ones((1, DIM + 1), np.float32))
    with pytest.raises(SchemaError, match="one to one"):
        index.add(["a", "b"], ["n"], unit_rows(2))
    with pytest.raises(SchemaError, match="NaN"):
        index.add(["a"], "n", np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(SchemaError):
        index.search(np.ones(DIM - 1, np.float32), 3)


# -- persistence --------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path: Path) -> None:
    directory = tmp_path / "ix"
    n = 900
    ids = [f"ent:{i}:ünïcode\n{i}" for i in range(n)]
    namespaces = [f"ns-{i % 4}" for i in range(n)]
    index = VectorIndex(directory, MODEL, DIM)
    index.add(ids, namespaces, unit_rows(n, seed=11))
    index.remove(ids[:10])
    index.store_seq = 42
    before = answers(index)
    index.save()

    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    assert manifest["format_version"] == 1 and manifest["model"] == MODEL and manifest["dim"] == DIM
    assert manifest["count"] == n - 10 and manifest["store_seq"] == 42
    assert set(manifest["namespaces"]) == {"ns-0", "ns-1", "ns-2", "ns-3"}
    assert set(manifest["checksums"]) == {
        e[key] for e in manifest["namespaces"].values() for key in ("file", "ids_file")
    }

    loaded = VectorIndex(directory, MODEL, DIM)
    loaded.load()
    assert len(loaded) == n - 10 and loaded.store_seq == 42
    assert loaded.namespaces() == index.namespaces()
    same_answers(answers(loaded), before)
    np.testing.assert_array_equal(loaded.get_vectors([ids[500]])[ids[500]], index.get_vectors([ids[500]])[ids[500]])
    loaded.add(["fresh"], "ns-0", unit_rows(1, seed=12))  # int ids keep counting after a load
    assert len(loaded) == n - 9 and "fresh" in loaded and ids[11] in loaded


def test_save_rewrites_only_changed_namespaces_and_cleans_up(tmp_path: Path) -> None:
    directory = tmp_path / "ix"
    index = VectorIndex(directory, MODEL, DIM)
    index.add([f"e{i}" for i in range(30)], [("a", "b", "c")[i % 3] for i in range(30)], unit_rows(30))
    index.save()
    first = json.loads((directory / MANIFEST_NAME).read_text())["namespaces"]
    index.add(["new"], "b", unit_rows(1, seed=13))
    index.remove(["e0", "e3", "e6", "e9", "e12", "e15", "e18", "e21", "e24", "e27"])  # all of "a"
    index.save()
    second = json.loads((directory / MANIFEST_NAME).read_text())["namespaces"]
    assert set(second) == {"b", "c"}
    assert second["c"] == first["c"]  # untouched namespace: same files
    assert second["b"]["file"] != first["b"]["file"]
    on_disk = {p.name for p in directory.iterdir()} - {MANIFEST_NAME, ".lock"}
    assert on_disk == {e[key] for e in second.values() for key in ("file", "ids_file")}


def test_load_refuses_another_model_or_dimension(tmp_path: Path) -> None:
    directory = tmp_path / "ix"
    index = VectorIndex(directory, MODEL, DIM)
    index.add(["a"], "n", unit_rows(1))
    index.save()
    with pytest.raises(IndexLoadError, match="model"):
        VectorIndex(directory, "other-model", DIM).load()
    with pytest.raises(IndexLoadError, match="dimensional"):
        VectorIndex(directory, MODEL, 64).load()
    with pytest.raises(IndexLoadError, match="no index on disk"):
        VectorIndex(tmp_path / "empty", MODEL, DIM).load()


# -- sync with the store ------------------------------------------------------------------------
def test_sync_builds_then_loads(make_store: StoreFactory, tmp_path: Path) -> None:
    store, _, _ = seeded_store(make_store)
    directory = tmp_path / "ix"
    index = VectorIndex(directory, MODEL, DIM)
    report = index.sync(store)
    assert report.rebuilt and "no index on disk" in report.reason
    assert report.added == len(index) == 300 and report.store_seq == store.last_seq()
    check_against_store(index, store)
    assert index.namespaces() == {"team-a": 100, "team-b": 100, "public": 100}

    again = VectorIndex(directory, MODEL, DIM)
    spy = Spy(store)
    report = again.sync(spy)
    assert not report.rebuilt and report.added == report.removed == 0 and spy.full_scans == 0
    same_answers(answers(again), answers(index))


def test_deleted_index_files_are_rebuilt_with_the_same_answers(
    make_store: StoreFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, _, _ = seeded_store(make_store)
    directory = tmp_path / "ix"
    index = VectorIndex(directory, MODEL, DIM)
    index.sync(store)
    before = answers(index)

    # one namespace's FAISS file gone
    victim = next(directory.glob("*.faiss"))
    victim.unlink()
    with caplog.at_level(logging.WARNING, logger="aesoperator.engine.vectors"):
        report = VectorIndex(directory, MODEL, DIM).sync(store)
    assert report.rebuilt and "missing" in report.reason and victim.name in report.reason
    assert any("rebuilding" in r.getMessage() for r in caplog.records)

    # every file gone, manifest included
    for path in directory.iterdir():
        path.unlink()
    rebuilt = VectorIndex(directory, MODEL, DIM)
    report = rebuilt.sync(store)
    assert report.rebuilt and "no index on disk" in report.reason
    same_answers(answers(rebuilt), before)
    assert (directory / MANIFEST_NAME).exists()
    assert not VectorIndex(directory, MODEL, DIM).sync(store).rebuilt  # the rebuild was saved


@pytest.mark.parametrize("target", ["faiss", "ids", "manifest", "faiss-with-matching-checksum"])
def test_corrupt_index_files_are_rebuilt_with_the_same_answers(
    make_store: StoreFactory, tmp_path: Path, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    store, _, _ = seeded_store(make_store)
    directory = tmp_path / "ix"
    index = VectorIndex(directory, MODEL, DIM)
    index.sync(store)
    before = answers(index)

    manifest_path = directory / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["namespaces"]["team-b"]
    if target == "manifest":
        manifest_path.write_bytes(b"\x00garbage{" + manifest_path.read_bytes()[9:])
        expected = "manifest unreadable"
    elif target == "ids":
        path = directory / entry["ids_file"]
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 8] = b"XXXXXXXX"
        path.write_bytes(bytes(data))
        expected = "checksum mismatch"
    else:
        path = directory / entry["file"]
        data = bytearray(path.read_bytes())
        if target == "faiss":
            data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # same size, damaged vectors
            path.write_bytes(bytes(data))
            expected = "checksum mismatch"
        else:  # damaged header, and a manifest that vouches for the damaged bytes
            data[:16] = b"\x00" * 16
            path.write_bytes(bytes(data[: len(data) // 3]))
            import hashlib

            manifest["checksums"][entry["file"]] = hashlib.sha256(path.read_bytes()).hexdigest()
            manifest_path.write_text(json.dumps(manifest))
            expected = "FAISS could not read"

    with caplog.at_level(logging.WARNING, logger="aesoperator.engine.vectors"):
        fresh = VectorIndex(directory, MODEL, DIM)
        report = fresh.sync(store)  # never raises on a bad file
    assert report.rebuilt and expected in report.reason, report.reason
    assert any(expected in r.getMessage() for r in caplog.records)
    same_answers(answers(fresh), before)
    check_against_store(fresh, store)
    reopened = VectorIndex(directory, MODEL, DIM)
    reopened.load()  # the rebuild replaced the damaged files
    same_answers(answers(reopened), before)


def test_model_or_dimension_change_rebuilds(make_store: StoreFactory, tmp_path: Path) -> None:
    store, ids, _ = seeded_store(make_store)
    other = unit_rows(5, dim=DIM, seed=20)
    put(store, ids[:5], ["public"] * 5, other, model="other-model")
    directory = tmp_path / "ix"
    VectorIndex(directory, MODEL, DIM).sync(store)
    report = VectorIndex(directory, "other-model", DIM).sync(store)
    assert report.rebuilt and "model" in report.reason and report.count == 5


def test_incremental_sync_applies_only_new_changes(make_store: StoreFactory, tmp_path: Path) -> None:
    store, ids, matrix = seeded_store(make_store)
    directory = tmp_path / "ix"
    index = VectorIndex(directory, MODEL, DIM)
    assert index.sync(store).rebuilt
    seq0 = store.last_seq()

    new_ids = [f"new:{i}" for i in range(12)]
    put(store, new_ids, ["team-a"] * 12, unit_rows(12, seed=30))
    put(store, ids[:3], ["team-a", "team-b", "public"], unit_rows(3, seed=31))  # new vectors
    put(store, [ids[4]], ["public"], matrix[4:5])  # same vector, namespace team-b -> public
    store.delete_entities(ids[10:17])
    store.upsert([Entity(id="novec", type="Document", name="n", text="no vector", namespace="team-a")])

    spy = Spy(store)
    report = index.sync(spy)
    assert not report.rebuilt and report.reason == "incremental"
    assert report.added == 12 + 3 + 1 and report.removed == 7
    assert report.store_seq == store.last_seq() > seq0
    assert spy.full_scans == 0
    assert sorted(spy.fetched) == sorted({*new_ids, *ids[:3], ids[4]})  # deletes need no fetch
    assert "novec" not in spy.fetched
    assert len(index) == 300 + 12 - 7 and index.namespace_of(ids[4]) == "public"
    check_against_store(index, store)

    spy = Spy(store)
    report = index.sync(spy)  # nothing new
    assert (report.rebuilt, report.added, report.removed, report.changes) == (False, 0, 0, 0)
    assert spy.fetched == []

    # catch-ups are not saved by default: a reopened index replays from the saved position
    reopened = VectorIndex(directory, MODEL, DIM)
    spy = Spy(store)
    report = reopened.sync(spy)
    assert not report.rebuilt and report.added == 16 and report.removed == 7 and spy.full_scans == 0
    check_against_store(reopened, store)
    reopened.save()

    put(store, ["late"], ["team-b"], unit_rows(1, seed=32))
    spy = Spy(store)
    last = VectorIndex(directory, MODEL, DIM)
    report = last.sync(spy, persist=True)
    assert (report.rebuilt, report.added, report.removed) == (False, 1, 0)
    assert spy.fetched == ["late"]
    assert json.loads((directory / MANIFEST_NAME).read_text())["store_seq"] == store.last_seq()
    check_against_store(last, store)


def test_a_compacted_change_log_forces_a_rebuild(tmp_path: Path) -> None:
    store: Any = MemoryVectorStore()
    ids = [f"d{i}" for i in range(50)]
    put(store, ids, ["n"] * 50, unit_rows(50, seed=40))
    directory = tmp_path / "ix"
    VectorIndex(directory, MODEL, DIM).sync(store)
    store.delete_entities(ids[:5])
    put(store, ["extra"], ["n"], unit_rows(1, seed=41))
    store.compact_log()
    index = VectorIndex(directory, MODEL, DIM)
    report = index.sync(store)
    assert report.rebuilt and "cannot cover the gap" in report.reason
    assert len(index) == 46 and "d0" not in index and "extra" in index
    check_against_store(index, store)


def test_a_store_behind_the_index_forces_a_rebuild(make_store: StoreFactory, tmp_path: Path) -> None:
    store, _, _ = seeded_store(make_store)
    directory = tmp_path / "ix"
    VectorIndex(directory, MODEL, DIM).sync(store)
    empty = make_store("other-store")
    put(empty, ["only"], ["public"], unit_rows(1, seed=50))
    index = VectorIndex(directory, MODEL, DIM)
    report = index.sync(empty)
    assert report.rebuilt and "behind the index" in report.reason
    assert len(index) == 1 and "only" in index


def test_faiss_search_runs_on_the_real_library(tmp_path: Path) -> None:
    """Guard against a stand-in: the sub-indexes are FAISS id-mapped flat inner-product indexes."""
    index = VectorIndex(tmp_path / "ix", MODEL, DIM)
    index.add(["a"], "n", unit_rows(1))
    index.save()
    manifest = json.loads((tmp_path / "ix" / MANIFEST_NAME).read_text())
    part = faiss.read_index(str(tmp_path / "ix" / manifest["namespaces"]["n"]["file"]))
    assert isinstance(part, faiss.IndexIDMap2) and part.ntotal == 1 and part.d == DIM
    assert isinstance(faiss.downcast_index(part.index), faiss.IndexFlatIP)


def test_single_query_fast_path_equals_faiss_scan() -> None:
    """`flat_search` (one BLAS product over FAISS's storage) answers as FAISS's own scan does,
    after removals too, and for k beyond the size or zero (up to float rounding)."""
    from aesoperator.engine.vector_parts import flat_search

    part = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    part.add_with_ids(unit_rows(3000, seed=11), np.arange(100, 3100, dtype=np.int64))
    part.remove_ids(faiss.IDSelectorBatch(np.arange(100, 3100, 7, dtype=np.int64)))
    for q in unit_rows(25, seed=12):
        for k in (1, 10, 80, 5000):
            scores, labels = flat_search(part, q, k)
            want_scores, want_labels = part.search(q[None, :], min(k, part.ntotal))
            # the same vectors; two whose scores differ by less than float rounding may swap places
            assert set(labels.tolist()) == set(want_labels[0].tolist())
            assert np.allclose(scores, want_scores[0], atol=1e-5)
            if k <= 80:
                assert labels.tolist() == want_labels[0].tolist()
    assert flat_search(part, unit_rows(1, seed=13)[0], 0)[1].size == 0
    assert flat_search(faiss.IndexIDMap2(faiss.IndexFlatIP(DIM)), unit_rows(1)[0], 5)[1].size == 0


def test_ids_that_two_namespace_files_both_claim_make_the_load_fail(tmp_path: Path) -> None:
    directory = tmp_path / "ix"
    index = VectorIndex(directory, MODEL, DIM)
    index.add(["a1", "a2"], "a", unit_rows(2, seed=1))
    index.add(["b1", "b2"], "b", unit_rows(2, seed=2))
    index.store_seq = 0
    index.save()
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    ids_file = directory / manifest["namespaces"]["b"]["ids_file"]
    ids_file.write_text(json.dumps({"namespace": "b", "ids": ["a1", "b2"]}))
    manifest["checksums"][ids_file.name] = hashlib.sha256(ids_file.read_bytes()).hexdigest()
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match=r"'a1'.*twice"):
        VectorIndex(directory, MODEL, DIM).load()


def test_the_id_maps_cost_under_120_bytes_a_vector_beside_the_ids(tmp_path: Path) -> None:
    """Label -> id is a list and label -> namespace a numpy column: at a million vectors, dicts for
    both (and a namespace string per row, as the store returns them) cost about 150 MB more."""
    n = 50_000
    ids = [f"entity-{i:08d}" for i in range(n)]
    namespaces = ["".join(["team-", str(i % 3)]) for i in range(n)]  # a new string per row
    rows = unit_rows(n, seed=5)
    index = VectorIndex(tmp_path / "ix", MODEL, DIM, exact_max=10 * n)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, n, 5_000):
            index.add(ids[start : start + 5_000], namespaces[start : start + 5_000], rows[start : start + 5_000])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(index) == n and index.namespace_of(ids[7]) == "team-1"
    assert held / n < 120, f"{held / n:.0f} bytes per vector in the id maps"
