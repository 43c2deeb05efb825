"""The vector index: FAISS over normalised vectors, one sub-index per namespace.

The graph store keeps every vector; this index is derived from it and can be thrown away. It is
partitioned by namespace so a search restricted to some namespaces only ever touches theirs. A
sub-index of up to `exact_max` vectors is an exact inner-product index (cosine, since rows are unit
length) behind an id map; a larger one is an inverted-file index (IVF, flat codes, inner product)
trained on a sample of its own vectors, searched in `nprobe` of its lists, because exact search
grows linearly with size (tens of milliseconds per query at a million vectors). A partition that
grows past `exact_max` through adds is converted on the spot; one that shrinks stays approximate
until the next rebuild, which chooses again by size. String entity ids map to int64 ids inside
this object, and the map is persisted with the index.

On disk (one index per directory)::

    manifest.json                 the commit point, written last
    ns-g000007-00000.faiss        one FAISS file per namespace ...
    ns-g000007-00000.ids.json     ... and the entity ids of its rows, in FAISS order

A save writes new files for the namespaces that changed (named by a new generation, so files the
current manifest names are never overwritten), then atomically replaces the manifest, then deletes
files no manifest names any more. A crash at any point leaves the previous or the new state whole.

`sync(store)` brings the index up to date: it loads the saved index and replays the store's change
log since the seq the manifest records, or rebuilds from `store.iter_vectors(model)` when there is
nothing usable on disk (missing, unreadable, corrupt, another model or dimension) or the log
cannot cover the gap. It never fails because of a bad file: it logs why and rebuilds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from aesoperator.config import load_settings
from aesoperator.engine.data_dir import make_private_dir, open_private_lock, open_private_write
from aesoperator.engine.embeddings import available_cores
from aesoperator.engine.index_files import (
    CHANGE_PAGE,
    FETCH_BATCH,
    REBUILD_CHANGED_IDS,
    TMP_MARK,
    DerivedIndex,
    IndexLoadError,
    SyncReport,
    fsync_dir,
    saving,
    sha256_file,
    store_identity,
    tmp_path,
    write_bytes_atomic,
)
from aesoperator.engine.stores.base import GraphStore
from aesoperator.errors import SchemaError, StoreError

try:  # advisory lock so two processes never save into one directory at once
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"
_PART_PREFIX = "ns-"
# Defaults of the `vector_exact_max` and `vector_nprobe` settings.
DEFAULT_EXACT_MAX = 100_000
DEFAULT_NPROBE = 64
# IVF shape: about 4·sqrt(n) lists, trained by k-means on a sample of this many points per list.
IVF_LISTS_PER_SQRT = 4
IVF_MIN_LISTS = 16
IVF_TRAIN_PER_LIST = 32
IVF_TRAIN_ITERATIONS = 10
IVF_SEED = 1234
# The direct-map kind that supports `reconstruct` and removal by arbitrary int64 label.
_HASHTABLE: int = faiss.DirectMap.Hashtable  # type: ignore[attr-defined]

# A sub-index: exact (`IndexIDMap2` over `IndexFlatIP`) or approximate (`IndexIVFFlat` carrying
# our int64 labels itself, with a hash-table direct map for `reconstruct` and removals).
Part = Any


def _new_part(dim: int) -> faiss.IndexIDMap2:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _is_ivf(part: Part) -> bool:
    return isinstance(part, faiss.IndexIVFFlat)


def part_kind(part: Part) -> str:
    """'ivf' for an approximate sub-index, 'flat' for an exact one."""
    return "ivf" if _is_ivf(part) else "flat"


def _labels(part: Part) -> np.ndarray:
    """The int64 labels a sub-index holds, in its storage order (the order of its ids file)."""
    if not _is_ivf(part):
        return faiss.vector_to_array(part.id_map)
    lists = part.invlists
    chunks = [
        faiss.rev_swig_ptr(lists.get_ids(i), size).copy() for i in range(part.nlist) if (size := lists.list_size(i)) > 0
    ]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


def _remove_labels(part: Part, labels: Sequence[int]) -> None:
    array = np.asarray(labels, dtype=np.int64)
    if _is_ivf(part):  # the hash-table direct map only accepts an explicit id array
        part.remove_ids(faiss.IDSelectorArray(len(array), faiss.swig_ptr(array)))
    else:
        part.remove_ids(faiss.IDSelectorBatch(array))


def ivf_lists(n: int) -> int:
    return max(IVF_MIN_LISTS, int(IVF_LISTS_PER_SQRT * np.sqrt(max(n, 1))))


def _flat_contents(part: faiss.IndexIDMap2) -> tuple[np.ndarray, np.ndarray]:
    """(rows, labels) of an exact sub-index, copied out."""
    rows = np.asarray(part.index.reconstruct_n(0, int(part.ntotal)), dtype=np.float32)
    return rows, _labels(part)


def _build_ivf(rows: np.ndarray, labels: np.ndarray, dim: int, nprobe: int) -> faiss.IndexIVFFlat:
    """An IVF sub-index over `rows`, trained on a fixed-seed sample of them."""
    n = rows.shape[0]
    nlist = min(ivf_lists(n), max(1, n))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = IVF_TRAIN_ITERATIONS
    index.cp.seed = IVF_SEED
    index.cp.max_points_per_centroid = IVF_TRAIN_PER_LIST
    index.cp.min_points_per_centroid = 1  # small partitions train on fewer points per list
    sample_size = min(n, nlist * IVF_TRAIN_PER_LIST)
    sample = rows[np.sort(np.random.default_rng(IVF_SEED).choice(n, sample_size, replace=False))]
    index.train(sample)
    index.set_direct_map_type(_HASHTABLE)
    index.nprobe = nprobe
    index.add_with_ids(rows, labels)
    return index


def _write_faiss_atomic(path: Path, index: faiss.Index) -> str:
    """Write a FAISS index through a temp file; returns the sha256 of what was written.

    The bytes pass through Python's file I/O rather than FAISS's own: FAISS only prints a failed
    close to stderr, so a disk that fills up at the final flush would leave a truncated file behind
    a checksum that matches it. Here every write error (ENOSPC, EFBIG) raises OSError."""
    tmp = tmp_path(path)
    digest = hashlib.sha256()
    try:
        with open_private_write(tmp) as handle:

            def write(chunk: bytes) -> int:
                handle.write(chunk)
                digest.update(chunk)
                return len(chunk)

            faiss.write_index(index, faiss.PyCallbackIOWriter(write))  # type: ignore[attr-defined]
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest()


def _as_matrix(vectors: Any, dim: int, what: str) -> np.ndarray:
    """A C-contiguous float32 copy with unit-length rows (zero rows stay zero)."""
    matrix = np.array(vectors, dtype=np.float32, copy=True, order="C")
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise SchemaError(f"{what} have shape {matrix.shape}; this index holds {dim}-dimensional vectors")
    if not np.isfinite(matrix).all():
        raise SchemaError(f"{what} contain NaN or infinite values")
    if matrix.shape[0]:
        faiss.normalize_L2(matrix)
    return matrix


@contextlib.contextmanager
def _omp_threads(n: int) -> Iterator[None]:
    """Run FAISS on `n` OpenMP threads, then restore the previous count. The setting belongs to
    the calling thread, so concurrent searches in other threads are not disturbed."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


@dataclass
class _State:
    """The in-memory index: sub-indexes and the id maps. Not locked; VectorIndex locks."""

    dim: int
    exact_max: int = DEFAULT_EXACT_MAX
    nprobe: int = DEFAULT_NPROBE
    parts: dict[str, Part] = field(default_factory=dict)
    int_of: dict[str, int] = field(default_factory=dict)
    str_of: dict[int, str] = field(default_factory=dict)
    ns_of: dict[str, str] = field(default_factory=dict)
    next_int: int = 0

    def add(self, ids: Sequence[str], namespaces: Sequence[str], matrix: np.ndarray, promote: bool = True) -> set[str]:
        """Insert or replace; the last occurrence of a repeated id wins. Returns touched namespaces.

        With `promote`, a touched exact sub-index that now exceeds `exact_max` becomes an IVF one.
        """
        last_row: dict[str, int] = {}
        for row, id_ in enumerate(ids):
            last_row[id_] = row
        touched: set[str] = set()
        replaced = [id_ for id_ in last_row if id_ in self.int_of]
        touched |= self._drop(replaced, forget=False)
        by_ns: dict[str, tuple[list[int], list[int]]] = {}
        for id_, row in last_row.items():
            ns = namespaces[row]
            int_id = self.int_of.get(id_)
            if int_id is None:
                int_id = self.next_int
                self.next_int += 1
                self.int_of[id_] = int_id
                self.str_of[int_id] = id_
            self.ns_of[id_] = ns
            rows, ints = by_ns.setdefault(ns, ([], []))
            rows.append(row)
            ints.append(int_id)
        for ns, (rows, ints) in by_ns.items():
            part = self.parts.get(ns)
            if part is None:
                part = self.parts[ns] = _new_part(self.dim)
            part.add_with_ids(matrix[rows], np.asarray(ints, dtype=np.int64))
            touched.add(ns)
        if promote:
            self.promote(touched)
        return touched

    def promote(self, namespaces: Sequence[str] | set[str] | None = None) -> None:
        """Turn exact sub-indexes larger than `exact_max` into IVF ones (all when None)."""
        for ns in sorted(self.parts if namespaces is None else namespaces):
            part = self.parts.get(ns)
            if part is not None and not _is_ivf(part) and part.ntotal > self.exact_max:
                rows, labels = _flat_contents(part)
                self.parts[ns] = _build_ivf(rows, labels, self.dim, self.nprobe)

    def remove(self, ids: Sequence[str]) -> tuple[int, set[str]]:
        present = list(dict.fromkeys(id_ for id_ in ids if id_ in self.int_of))
        return len(present), self._drop(present, forget=True)

    def _drop(self, ids: Sequence[str], forget: bool) -> set[str]:
        by_ns: dict[str, list[int]] = {}
        for id_ in ids:
            by_ns.setdefault(self.ns_of[id_], []).append(self.int_of[id_])
            if forget:
                int_id = self.int_of.pop(id_)
                del self.str_of[int_id]
                del self.ns_of[id_]
        for ns, ints in by_ns.items():
            part = self.parts[ns]
            _remove_labels(part, ints)
            if part.ntotal == 0:
                del self.parts[ns]
        return set(by_ns)

    def selected(self, namespaces: Sequence[str] | None) -> list[Part]:
        if namespaces is None:
            return [part for part in self.parts.values() if part.ntotal]
        return [self.parts[ns] for ns in dict.fromkeys(namespaces) if ns in self.parts]

    def merge(self, scores: list[np.ndarray], labels: list[np.ndarray], k: int) -> list[tuple[str, float]]:
        hits: list[tuple[str, float]] = []
        for score_row, label_row in zip(scores, labels, strict=True):
            for score, label in zip(score_row.tolist(), label_row.tolist(), strict=True):
                if label >= 0:
                    hits.append((self.str_of[label], score))
        hits.sort(key=lambda hit: (-hit[1], hit[0]))
        return hits[:k]


class VectorIndex(DerivedIndex):
    """Cosine search over the vectors of one embedding model, partitioned by namespace: exact in
    partitions of up to `exact_max` vectors, IVF (searching `nprobe` lists) in larger ones.

    Thread-safe: searches and writes take one lock. A single query runs FAISS on one OpenMP thread
    (more threads make single queries slower); `search_batch` uses `batch_threads`.
    """

    def __init__(
        self,
        directory: Path,
        model: str,
        dim: int,
        batch_threads: int | None = None,
        exact_max: int | None = None,
        nprobe: int | None = None,
    ) -> None:
        """`exact_max` and `nprobe` default to the `vector_exact_max` and `vector_nprobe` settings."""
        if dim < 1:
            raise SchemaError(f"vector dimension must be positive, got {dim}")
        if not model:
            raise SchemaError("the vector index needs the name of the embedding model")
        self.directory = Path(directory)
        self.model = model
        self.dim = dim
        self.batch_threads = batch_threads or available_cores()
        if exact_max is None or nprobe is None:
            settings = load_settings()
            exact_max = settings.vector_exact_max if exact_max is None else exact_max
            nprobe = settings.vector_nprobe if nprobe is None else nprobe
        if exact_max < 1 or nprobe < 1:
            raise SchemaError(f"exact_max and nprobe must be positive, got {exact_max} and {nprobe}")
        self.exact_max = exact_max
        self.nprobe = nprobe
        super().__init__()
        self._state = self._new_state()
        self._lock = threading.RLock()
        self._dirty: set[str] = set()  # namespaces changed since the last save or load
        self._saved: dict[str, dict[str, Any]] = {}  # namespace -> manifest entry of its files
        self._checksums: dict[str, str] = {}
        self._generation = 0

    def _new_state(self) -> _State:
        return _State(self.dim, exact_max=self.exact_max, nprobe=self.nprobe)

    # -- inspection ---------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return len(self._state.int_of)

    def __contains__(self, entity_id: object) -> bool:
        with self._lock:
            return entity_id in self._state.int_of

    def namespaces(self) -> dict[str, int]:
        """Namespace -> number of vectors."""
        with self._lock:
            return {ns: int(part.ntotal) for ns, part in sorted(self._state.parts.items())}

    def kinds(self) -> dict[str, str]:
        """Namespace -> 'flat' (exact) or 'ivf' (approximate)."""
        with self._lock:
            return {ns: part_kind(part) for ns, part in sorted(self._state.parts.items())}

    def namespace_of(self, entity_id: str) -> str | None:
        with self._lock:
            return self._state.ns_of.get(entity_id)

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored (normalised) vectors of the ids that are in the index."""
        out: dict[str, np.ndarray] = {}
        with self._lock:
            state = self._state
            for id_ in ids:
                int_id = state.int_of.get(id_)
                if int_id is not None:
                    row = np.empty(self.dim, dtype=np.float32)
                    state.parts[state.ns_of[id_]].reconstruct(int_id, row)
                    out[id_] = row
        return out

    # -- writes -------------------------------------------------------------------------------
    def add(self, ids: Sequence[str], namespaces: Sequence[str] | str, vectors: Any) -> int:
        """Insert vectors, replacing ids already present (also moving them between namespaces).

        `namespaces` is one namespace per id, or a single namespace for all of them.
        """
        ids = list(ids)
        ns_list = [namespaces] * len(ids) if isinstance(namespaces, str) else list(namespaces)
        matrix = _as_matrix(vectors, self.dim, "vectors") if ids else np.zeros((0, self.dim), np.float32)
        if not (len(ids) == len(ns_list) == matrix.shape[0]):
            raise SchemaError(
                f"add() got {len(ids)} ids, {len(ns_list)} namespaces and {matrix.shape[0]} vectors; "
                "they must match one to one"
            )
        for id_, ns in zip(ids, ns_list, strict=True):
            if not isinstance(id_, str) or not id_:
                raise SchemaError(f"vector ids must be non-empty strings, got {id_!r}")
            if not isinstance(ns, str) or not ns:
                raise SchemaError(f"namespaces must be non-empty strings, got {ns!r} for {id_!r}")
        if not ids:
            return 0
        with self._lock:
            self._dirty |= self._state.add(ids, ns_list, matrix)
        return len(set(ids))

    def remove(self, ids: Sequence[str]) -> int:
        """Remove ids; unknown ids are ignored. Returns how many were removed."""
        with self._lock:
            removed, touched = self._state.remove(list(ids))
            self._dirty |= touched
        return removed

    def clear(self) -> None:
        with self._lock:
            self._dirty |= set(self._state.parts)
            self._state = self._new_state()

    # -- search -------------------------------------------------------------------------------
    def search(self, query_vec: Any, k: int = 10, namespaces: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """The k nearest ids by cosine similarity, best first, across the allowed namespaces.

        `namespaces=None` searches all; an empty sequence searches none.
        """
        query = _as_matrix(query_vec, self.dim, "the query vector")
        if query.shape[0] != 1:
            raise SchemaError(f"search() takes one query vector, got {query.shape[0]}; use search_batch()")
        if k <= 0:
            return []
        with self._lock, _omp_threads(1):
            state = self._state
            scores: list[np.ndarray] = []
            labels: list[np.ndarray] = []
            for part in state.selected(namespaces):
                dist, lab = part.search(query, min(k, int(part.ntotal)))
                scores.append(dist[0])
                labels.append(lab[0])
            return state.merge(scores, labels, k)

    def search_batch(
        self, query_vecs: Any, k: int = 10, namespaces: Sequence[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        """`search` for many queries at once (one row each), using `batch_threads` threads."""
        queries = _as_matrix(query_vecs, self.dim, "the query vectors")
        n = queries.shape[0]
        if k <= 0 or n == 0:
            return [[] for _ in range(n)]
        with self._lock, _omp_threads(self.batch_threads):
            state = self._state
            per_part = []
            for part in state.selected(namespaces):
                per_part.append(part.search(queries, min(k, int(part.ntotal))))
            results = [state.merge([d[i] for d, _ in per_part], [lab[i] for _, lab in per_part], k) for i in range(n)]
        return results

    # -- persistence --------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_NAME

    @contextlib.contextmanager
    def _dir_lock(self) -> Iterator[None]:
        make_private_dir(self.directory)
        if fcntl is None:  # pragma: no cover
            yield
            return
        with open_private_lock(self.directory / LOCK_NAME) as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def save(self) -> None:
        """Persist atomically: changed namespaces get new files, then the manifest is replaced.

        A failure (a full disk: StoreError saying so) leaves the saved index as it was and
        removes the files this save wrote; the in-memory index stays current and unsaved."""
        new_files: list[Path] = []
        with self._lock, saving(self.directory, "the vector index", new_files), self._dir_lock():
            state = self._state
            generation = self._generation + 1
            entries: dict[str, dict[str, Any]] = {}
            checksums: dict[str, str] = {}
            for position, (ns, part) in enumerate(sorted(state.parts.items())):
                old = self._saved.get(ns)
                if (
                    ns not in self._dirty
                    and old is not None
                    and (self.directory / old["file"]).is_file()
                    and (self.directory / old["ids_file"]).is_file()
                ):
                    entries[ns] = old
                    checksums[old["file"]] = self._checksums[old["file"]]
                    checksums[old["ids_file"]] = self._checksums[old["ids_file"]]
                    continue
                stem = f"{_PART_PREFIX}g{generation:06d}-{position:05d}"
                file_name, ids_name = f"{stem}.faiss", f"{stem}.ids.json"
                labels = _labels(part).tolist()
                ids_doc = {"namespace": ns, "ids": [state.str_of[label] for label in labels]}
                ids_bytes = json.dumps(ids_doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                new_files += [self.directory / file_name, self.directory / ids_name]
                checksums[file_name] = _write_faiss_atomic(self.directory / file_name, part)
                write_bytes_atomic(self.directory / ids_name, ids_bytes)
                checksums[ids_name] = hashlib.sha256(ids_bytes).hexdigest()
                entries[ns] = {
                    "file": file_name,
                    "ids_file": ids_name,
                    "count": int(part.ntotal),
                    "kind": part_kind(part),
                }
            manifest = {
                "format_version": FORMAT_VERSION,
                "model": self.model,
                "dim": self.dim,
                "count": len(state.int_of),
                "store_seq": self.store_seq,
                "namespaces": entries,
                "checksums": checksums,
                "generation": generation,
                "next_int": state.next_int,
                "index_type": "IDMap2,Flat,IP or IVF,Flat,IP per namespace (see each entry's kind)",
                "store": self._store_identity,
                "saved_at": datetime.now(UTC).isoformat(),
            }
            write_bytes_atomic(self.manifest_path, json.dumps(manifest, indent=1).encode("utf-8"))
            new_files.clear()  # committed: the manifest names them now
            fsync_dir(self.directory)
            self._generation = generation
            self._saved = entries
            self._checksums = checksums
            self._dirty.clear()
            self._remove_unreferenced(set(checksums))

    def _remove_unreferenced(self, keep: set[str]) -> None:
        for path in self.directory.iterdir():
            name = path.name
            ours = name.startswith(_PART_PREFIX) and name.endswith((".faiss", ".ids.json"))
            if (ours and name not in keep) or (TMP_MARK in name and name.startswith(".")):
                with contextlib.suppress(OSError):
                    path.unlink()

    def load(self) -> None:
        """Replace the in-memory index with the saved one. Raises IndexLoadError if it is unusable
        (missing, unreadable, corrupt, or saved for another model or dimension)."""
        with self._lock, self._dir_lock():
            manifest = self._read_manifest()
            state = self._new_state()
            saved: dict[str, dict[str, Any]] = {}
            checksums: dict[str, str] = manifest["checksums"]
            for ns, entry in manifest["namespaces"].items():
                part, ids = self._read_part(ns, entry, checksums)
                labels = _labels(part)
                for label, id_ in zip(labels.tolist(), ids, strict=True):
                    if label in state.str_of or id_ in state.int_of or label < 0:
                        raise IndexLoadError(f"index files repeat id {id_!r} (label {label})")
                    state.str_of[label] = id_
                    state.int_of[id_] = label
                    state.ns_of[id_] = ns
                if part.ntotal:
                    state.parts[ns] = part
                saved[ns] = entry
            if len(state.int_of) != manifest["count"]:
                raise IndexLoadError(
                    f"the manifest counts {manifest['count']} vectors but the files hold {len(state.int_of)}"
                )
            state.next_int = max(int(manifest.get("next_int") or 0), max(state.str_of, default=-1) + 1)
            exact = {ns for ns, part in state.parts.items() if not _is_ivf(part)}
            state.promote(exact)  # saved exact while smaller, or under a larger exact_max
            self._state = state
            self._saved = saved
            self._checksums = dict(checksums)
            self._dirty = {ns for ns in exact if _is_ivf(state.parts[ns])}
            self._generation = int(manifest.get("generation") or 0)
            self.store_seq = manifest["store_seq"]
            store = manifest.get("store")
            self._store_identity = store if isinstance(store, dict) else {}

    def _read_manifest(self) -> dict[str, Any]:
        path = self.manifest_path
        if not path.exists():
            raise IndexLoadError(f"no index on disk at {self.directory}")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexLoadError(f"manifest unreadable ({path}): {exc}") from None
        if not isinstance(manifest, dict):
            raise IndexLoadError(f"manifest unreadable ({path}): not a JSON object")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexLoadError(f"manifest format_version {version!r} is not {FORMAT_VERSION}")
        if manifest.get("model") != self.model:
            raise IndexLoadError(f"index was built for model {manifest.get('model')!r}, not {self.model!r}")
        if manifest.get("dim") != self.dim:
            raise IndexLoadError(f"index holds {manifest.get('dim')!r}-dimensional vectors, not {self.dim}")
        seq = manifest.get("store_seq")
        shapes_ok = (
            isinstance(manifest.get("namespaces"), dict)
            and isinstance(manifest.get("checksums"), dict)
            and isinstance(manifest.get("count"), int)
            and (seq is None or isinstance(seq, int))
            and all(
                isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("ids_file"), str)
                for e in manifest["namespaces"].values()
            )
        )
        if not shapes_ok:
            raise IndexLoadError(f"manifest unreadable ({path}): missing or malformed fields")
        return manifest

    def _checked(self, name: str, checksums: dict[str, str]) -> Path:
        path = self.directory / name
        if Path(name).name != name:
            raise IndexLoadError(f"manifest names a file outside the index directory: {name!r}")
        if not path.is_file():
            raise IndexLoadError(f"index file missing: {name}")
        expected = checksums.get(name)
        if expected is None:
            raise IndexLoadError(f"manifest has no checksum for {name}")
        if sha256_file(path) != expected:
            raise IndexLoadError(f"checksum mismatch: {name}")
        return path

    def _read_part(self, ns: str, entry: dict[str, Any], checksums: dict[str, str]) -> tuple[Part, list[str]]:
        faiss_path = self._checked(entry["file"], checksums)
        ids_path = self._checked(entry["ids_file"], checksums)
        try:
            part = faiss.read_index(str(faiss_path))
        except Exception as exc:  # FAISS raises RuntimeError on damaged files
            raise IndexLoadError(f"FAISS could not read {entry['file']}: {exc}") from None
        if isinstance(part, faiss.IndexIVFFlat) and part.metric_type == faiss.METRIC_INNER_PRODUCT:
            if part.direct_map.type != _HASHTABLE:
                part.set_direct_map_type(_HASHTABLE)
            part.nprobe = self.nprobe  # a search-time setting, not stored in the file
        elif not isinstance(part, faiss.IndexIDMap2):
            raise IndexLoadError(f"{entry['file']} is neither an id-mapped exact index nor an IVF index")
        if part.d != self.dim:
            raise IndexLoadError(f"{entry['file']} is not a {self.dim}-dimensional index")
        try:
            doc = json.loads(ids_path.read_text(encoding="utf-8"))
            ids = doc["ids"]
            if doc.get("namespace") != ns or not all(isinstance(i, str) for i in ids):
                raise ValueError("namespace or ids do not match the manifest")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexLoadError(f"id file {entry['ids_file']} unreadable: {exc}") from None
        if len(ids) != part.ntotal or entry.get("count", part.ntotal) != part.ntotal:
            raise IndexLoadError(f"{entry['file']} holds {part.ntotal} vectors but its id file lists {len(ids)}")
        return part, ids

    # -- keeping up with the store ------------------------------------------------------------
    def _has_saved_index(self) -> bool:
        return self.manifest_path.exists()

    def _rebuild(self, store: GraphStore, reason: str, persist: bool, started: float) -> SyncReport:
        target = store.last_seq()  # read first: writes during the scan are replayed by the next sync
        state = self._new_state()
        for ids, namespaces, vectors in store.iter_vectors(self.model):
            if not ids:
                continue
            matrix = _as_matrix(vectors, self.dim, f"stored vectors of model {self.model!r}")
            if not (len(ids) == len(namespaces) == matrix.shape[0]):
                raise StoreError("the store returned a vector batch whose ids, namespaces and rows differ")
            state.add(list(ids), list(namespaces), matrix, promote=False)
        state.promote()  # by final size, so an IVF index is trained on all of its vectors
        with self._lock:
            self._dirty |= set(self._state.parts) | set(state.parts)
            self._saved = {}
            self._state = state
            self.store_seq = target
            self._store_identity = store_identity(store)
            count = len(state.int_of)
        if persist:
            self.save_if_room()
        seconds = time.perf_counter() - started
        log.info("rebuilt vector index %s: %d vectors in %.2fs (%s)", self.directory, count, seconds, reason)
        return SyncReport(
            rebuilt=True,
            reason=reason,
            added=count,
            removed=0,
            seconds=seconds,
            store_seq=target,
            count=count,
        )

    def _catch_up(self, store: GraphStore, persist: bool | None, started: float) -> SyncReport:
        assert self.store_seq is not None
        since = self.store_seq
        target = store.last_seq()
        cursor = since
        rows_read = 0
        # id -> "fetch" (ask the store for its current vector) or "remove"; namespace per id
        action: dict[str, str] = {}
        namespace: dict[str, str] = {}
        while cursor < target:
            changes = store.changes_since(cursor, limit=CHANGE_PAGE)
            if not changes:
                break
            for change in changes:
                cursor = max(cursor, change.seq)
                if change.kind == "relation":
                    continue
                namespace[change.id] = change.namespace
                if change.kind == "entity" and change.op == "delete":
                    action[change.id] = "remove"
                elif change.kind == "vector":
                    # Deletes are checked against the store too: a change row does not name the
                    # model, and another model's vector going away leaves this one in place.
                    action[change.id] = "fetch"
                elif change.id in action or self.namespace_of(change.id) not in (None, change.namespace):
                    action[change.id] = "fetch"  # an entity moved namespace, or came back
            rows_read += len(changes)
            if len(action) > max(REBUILD_CHANGED_IDS, len(self) // 2):
                return self._rebuild(
                    store,
                    f"{len(action)}+ changed ids since seq {since}: rebuilding is cheaper",
                    persist is not False,
                    started,
                )
        removed = self.remove([id_ for id_, what in action.items() if what == "remove"])
        to_fetch = [id_ for id_, what in action.items() if what == "fetch"]
        added = 0
        for start in range(0, len(to_fetch), FETCH_BATCH):
            batch = to_fetch[start : start + FETCH_BATCH]
            found = store.get_vectors(batch, self.model)
            ids = [id_ for id_ in batch if id_ in found]
            if ids:
                self.add(ids, [namespace[id_] for id_ in ids], np.stack([found[id_] for id_ in ids]))
                added += len(ids)
            removed += self.remove([id_ for id_ in batch if id_ not in found])
        new_seq = max(target, cursor)
        with self._lock:
            moved = new_seq != self.store_seq
            self.store_seq = new_seq
            self._store_identity = store_identity(store)
            changed = bool(self._dirty)
        if persist is True and (changed or moved):
            self.save_if_room()
        return SyncReport(
            rebuilt=False,
            reason="incremental",
            added=added,
            removed=removed,
            seconds=time.perf_counter() - started,
            store_seq=new_seq,
            count=len(self),
            changes=rows_read,
        )

    def __repr__(self) -> str:
        return (
            f"VectorIndex(directory={str(self.directory)!r}, model={self.model!r}, dim={self.dim}, "
            f"count={len(self)}, namespaces={len(self._state.parts)}, store_seq={self.store_seq})"
        )
