"""VectorIndex with approximate (IVF) sub-indexes: chosen by partition size, agreeing with exact
search, persisted with the manifest, rebuilt from the store when files are missing or corrupt (or
saved with other codes than the settings ask), and kept up to date by incremental adds and
removals; with 8-bit codes, close to exact search in a quarter of the memory.

FAISS and the embedded store are real; the threshold is forced down so every index stays small.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.engine.vectors import MANIFEST_NAME, VectorIndex, ivf_lists
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.models import Entity

MODEL = "test-model"
DIM = 32
EXACT_MAX = 300


def clustered(n: int, seed: int = 0, centres: int = 20) -> np.ndarray:
    """Unit rows around a few random centres, like embeddings of texts on a few topics."""
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal((centres, DIM)).astype(np.float32)
    rows = centre[rng.integers(0, centres, n)] + 0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def exact_top(ids: Sequence[str], matrix: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    scores = matrix.astype(np.float64) @ (query / np.linalg.norm(query)).astype(np.float64)
    return [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:k]]


def index(path: Path, nprobe: int = 8, exact_max: int = EXACT_MAX, codes: str = "flat") -> VectorIndex:
    """An index whose IVF sub-indexes hold float32 unless `codes` says otherwise, so exhaustive
    probing is exact search; the 8-bit codes have their own tests below."""
    return VectorIndex(path, MODEL, DIM, batch_threads=1, exact_max=exact_max, nprobe=nprobe, ivf_codes=codes)


def ids_of(n: int, prefix: str = "e") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedGraphStore]:
    with EmbeddedGraphStore(tmp_path / "store") as s:
        yield s


def put(store: EmbeddedGraphStore, ids: Sequence[str], namespace: str, matrix: np.ndarray) -> None:
    entities = [Entity(id=i, type="Document", name=i, text=f"text of {i}", namespace=namespace) for i in ids]
    vectors = {i: (f"hash-{i}-{float(row[0]):.6f}", row) for i, row in zip(ids, matrix, strict=True)}
    store.upsert(entities, vectors=vectors, vector_model=MODEL)


def test_partitions_above_the_threshold_become_ivf_and_small_ones_stay_exact(tmp_path: Path) -> None:
    vi = index(tmp_path / "index")
    vi.add(ids_of(1000), "big", clustered(1000))
    vi.add(ids_of(EXACT_MAX, "s"), "small", clustered(EXACT_MAX, seed=1))
    assert vi.kinds() == {"big": "ivf", "small": "flat"}
    assert vi.namespaces() == {"big": 1000, "small": EXACT_MAX}


def test_ivf_searching_every_list_matches_exact_search(tmp_path: Path) -> None:
    matrix = clustered(1200)
    ids = ids_of(1200)
    vi = index(tmp_path / "index", nprobe=ivf_lists(1200))  # every list probed: exhaustive
    vi.add(ids, "ns", matrix)
    assert vi.kinds() == {"ns": "ivf"}
    for query in clustered(20, seed=7):
        got = vi.search(query, k=10)
        assert [i for i, _ in got] == exact_top(ids, matrix, query, 10)
        np.testing.assert_allclose([s for _, s in got], sorted((matrix @ query).tolist(), reverse=True)[:10], atol=1e-5)


def test_ivf_recall_against_exact_search_with_a_few_lists_probed(tmp_path: Path) -> None:
    matrix = clustered(3000, centres=40)
    ids = ids_of(3000)
    vi = index(tmp_path / "index", nprobe=16)
    vi.add(ids, "ns", matrix)
    queries = clustered(50, seed=3, centres=40)
    recall = np.mean(
        [len({i for i, _ in vi.search(q, k=10)} & set(exact_top(ids, matrix, q, 10))) / 10 for q in queries]
    )
    assert recall >= 0.9
    batch = vi.search_batch(queries, k=10)
    assert batch == [vi.search(q, k=10) for q in queries]


def test_incremental_adds_replacements_and_removals_on_an_ivf_partition(tmp_path: Path) -> None:
    vi = index(tmp_path / "index", nprobe=ivf_lists(600))
    vi.add(ids_of(600), "ns", clustered(600))
    assert vi.kinds() == {"ns": "ivf"}
    newcomer = clustered(1, seed=99)[0]
    vi.add(["new"], "ns", newcomer[None, :])
    assert vi.search(newcomer, k=1)[0][0] == "new"
    np.testing.assert_allclose(vi.get_vectors(["new"])["new"], newcomer, atol=1e-6)
    moved = clustered(1, seed=100)[0]
    vi.add(["e00005"], "ns", moved[None, :])  # replacing keeps one copy
    assert vi.search(moved, k=1)[0][0] == "e00005"
    assert len(vi) == 601
    assert vi.remove(["new", "e00005", "unknown"]) == 2
    assert "new" not in {i for i, _ in vi.search(newcomer, k=50)}
    assert len(vi) == 599 and vi.namespaces() == {"ns": 599}


def test_a_growing_exact_partition_is_converted_when_it_crosses_the_threshold(tmp_path: Path) -> None:
    vi = index(tmp_path / "index", nprobe=ivf_lists(EXACT_MAX + 1))
    matrix = clustered(EXACT_MAX + 1)
    ids = ids_of(EXACT_MAX + 1)
    vi.add(ids[:EXACT_MAX], "ns", matrix[:EXACT_MAX])
    assert vi.kinds() == {"ns": "flat"}
    vi.add(ids[EXACT_MAX:], "ns", matrix[EXACT_MAX:])
    assert vi.kinds() == {"ns": "ivf"}
    assert len(vi) == EXACT_MAX + 1
    query = clustered(1, seed=5)[0]
    assert [i for i, _ in vi.search(query, k=10)] == exact_top(ids, matrix, query, 10)


def test_saved_ivf_index_loads_back_with_the_same_answers(tmp_path: Path) -> None:
    vi = index(tmp_path / "index")
    vi.add(ids_of(800), "big", clustered(800))
    vi.add(ids_of(10, "s"), "small", clustered(10, seed=2))
    vi.store_seq = 0
    vi.save()
    manifest = json.loads((tmp_path / "index" / MANIFEST_NAME).read_text())
    assert {ns: e["kind"] for ns, e in manifest["namespaces"].items()} == {"big": "ivf", "small": "flat"}
    again = index(tmp_path / "index")
    again.load()
    assert again.kinds() == vi.kinds() and len(again) == len(vi)
    for query in clustered(10, seed=4):
        assert again.search(query, k=10) == vi.search(query, k=10)
    again.add(["late"], "big", clustered(1, seed=8))
    assert "late" in again


def test_sync_builds_ivf_from_the_store_and_rebuilds_it_when_files_are_corrupt_or_missing(
    tmp_path: Path, store: EmbeddedGraphStore
) -> None:
    matrix = clustered(900)
    ids = ids_of(900)
    put(store, ids, "team", matrix)
    directory = tmp_path / "index"
    first = index(directory, nprobe=ivf_lists(900))
    assert first.sync(store).rebuilt
    assert first.kinds() == {"team": "ivf"}
    query = clustered(1, seed=11)[0]
    expected = exact_top(ids, matrix, query, 10)
    assert [i for i, _ in first.search(query, k=10)] == expected

    reopened = index(directory, nprobe=ivf_lists(900))
    report = reopened.sync(store)
    assert not report.rebuilt and reopened.kinds() == {"team": "ivf"}

    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    part_file = directory / manifest["namespaces"]["team"]["file"]
    data = bytearray(part_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part_file.write_bytes(bytes(data))
    corrupt = index(directory, nprobe=ivf_lists(900))
    report = corrupt.sync(store)
    assert report.rebuilt and "checksum" in report.reason
    assert corrupt.kinds() == {"team": "ivf"}
    assert [i for i, _ in corrupt.search(query, k=10)] == expected

    (directory / MANIFEST_NAME).unlink()
    missing = index(directory, nprobe=ivf_lists(900))
    assert missing.sync(store).rebuilt
    assert [i for i, _ in missing.search(query, k=10)] == expected


def test_incremental_sync_adds_and_deletes_on_an_ivf_partition(tmp_path: Path, store: EmbeddedGraphStore) -> None:
    put(store, ids_of(700), "team", clustered(700))
    vi = index(tmp_path / "index", nprobe=ivf_lists(700))
    vi.sync(store)
    fresh = clustered(5, seed=21)
    put(store, ids_of(5, "n"), "team", fresh)
    store.delete_entities(["e00000", "e00001"])
    report = vi.sync(store, persist=True)
    assert not report.rebuilt and report.added == 5 and report.removed == 2
    assert vi.kinds() == {"team": "ivf"} and len(vi) == 703
    assert vi.search(fresh[0], k=1)[0][0] == "n00000"
    assert "e00000" not in vi
    reloaded = index(tmp_path / "index", nprobe=ivf_lists(700))
    assert not reloaded.sync(store).rebuilt
    assert len(reloaded) == 703 and reloaded.search(fresh[0], k=1)[0][0] == "n00000"


def test_a_saved_exact_partition_over_the_threshold_is_converted_on_load(tmp_path: Path) -> None:
    roomy = index(tmp_path / "index", exact_max=10_000)
    roomy.add(ids_of(500), "ns", clustered(500))
    roomy.store_seq = 0
    roomy.save()
    strict = index(tmp_path / "index")
    strict.load()
    assert strict.kinds() == {"ns": "ivf"} and len(strict) == 500
    strict.save()
    assert json.loads((tmp_path / "index" / MANIFEST_NAME).read_text())["namespaces"]["ns"]["kind"] == "ivf"


def test_threshold_and_nprobe_come_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AESOP_VECTOR_EXACT_MAX", "123")
    monkeypatch.setenv("AESOP_VECTOR_NPROBE", "7")
    vi = VectorIndex(tmp_path / "index", MODEL, DIM)
    assert (vi.exact_max, vi.nprobe) == (123, 7)
    vi.add(ids_of(124), "ns", clustered(124))
    assert vi.kinds() == {"ns": "ivf"}


def test_sq8_codes_rank_like_exact_search_in_a_quarter_of_the_memory(tmp_path: Path) -> None:
    matrix = clustered(1200)
    ids = ids_of(1200)
    flat = index(tmp_path / "flat", nprobe=ivf_lists(1200))
    sq8 = index(tmp_path / "sq8", nprobe=ivf_lists(1200), codes="sq8")
    for vi in (flat, sq8):
        vi.add(ids, "ns", matrix)
    assert sq8.kinds() == {"ns": "ivf"}
    agreement = []
    for query in clustered(30, seed=7):
        got = sq8.search(query, k=10)
        truth = exact_top(ids, matrix, query, 10)
        agreement.append(len({i for i, _ in got} & set(truth)) / 10)
        exact_scores = {i: float(matrix[ids.index(i)] @ (query / np.linalg.norm(query))) for i, _ in got}
        assert max(abs(score - exact_scores[i]) for i, score in got) < 0.005
    assert np.mean(agreement) >= 0.95
    near = sq8.get_vectors(ids[:50])
    assert max(float(np.abs(near[i] - matrix[k]).max()) for k, i in enumerate(ids[:50])) < 0.01

    flat.store_seq = sq8.store_seq = 0
    flat.save()
    sq8.save()
    sizes = {}
    for name in ("flat", "sq8"):
        manifest = json.loads((tmp_path / name / MANIFEST_NAME).read_text())
        entry = manifest["namespaces"]["ns"]
        assert entry["codes"] == name
        sizes[name] = (tmp_path / name / entry["file"]).stat().st_size
    # Each vector is a byte per dimension instead of four; ids and centroids cost both the same.
    assert sizes["flat"] - sizes["sq8"] >= 0.95 * 1200 * 3 * DIM


def test_a_saved_index_with_other_codes_than_the_settings_is_rebuilt(tmp_path: Path, store: EmbeddedGraphStore) -> None:
    put(store, ids_of(600), "team", clustered(600))
    directory = tmp_path / "index"
    assert index(directory, codes="flat").sync(store).rebuilt
    switched = index(directory, codes="sq8")
    report = switched.sync(store)
    assert report.rebuilt and "codes 'flat'" in report.reason and "'sq8'" in report.reason
    assert switched.kinds() == {"team": "ivf"} and len(switched) == 600
    again = index(directory, codes="sq8")
    assert not again.sync(store).rebuilt
    assert again.search(clustered(1, seed=3)[0], k=5) == switched.search(clustered(1, seed=3)[0], k=5)


def test_unknown_codes_are_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="sq8, flat"):
        index(tmp_path / "index", codes="pq16")
