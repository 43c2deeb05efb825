"""The vector index: FAISS over normalised vectors, one sub-index per namespace.

The graph store keeps every vector; this index is derived from it and can be thrown away. It is
partitioned by namespace so a search restricted to some namespaces only ever touches theirs. A
sub-index of up to `exact_max` vectors is an exact inner-product index (cosine, since rows are unit
length) behind an id map; a larger one is an inverted-file index (IVF, inner product; its vectors
as 8-bit codes by default, see `vector_parts`) trained on a sample of its own vectors, searched in
`nprobe` of its lists, because exact search grows linearly with size (tens of milliseconds per
query at a million vectors). A partition that grows past `exact_max` through adds is converted on
the spot; one that shrinks stays approximate until the next rebuild, which chooses again by size
(`vector_build.py` fills a rebuild in bounded memory). String entity ids map to int64 ids inside
this object, and the map is persisted with the index.

The pieces: `vector_parts.py` holds the FAISS sub-indexes and id maps, `vector_files.py` the
on-disk format (one directory, a manifest written last as the commit point); this module is the
public, thread-safe `VectorIndex` and how it keeps up with the store.

`sync(store)` brings the index up to date: it loads the saved index and replays the store's change
log since the seq the manifest records, or rebuilds from `store.iter_vectors(model)` when there is
nothing usable on disk (missing, unreadable, corrupt, another model or dimension) or the log
cannot cover the gap. It never fails because of a bad file: it logs why and rebuilds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aesoperator.config import load_settings
from aesoperator.engine.embeddings import available_cores
from aesoperator.engine.heap import release_free_heap
from aesoperator.engine.index_files import (
    CHANGE_PAGE,
    FETCH_BATCH,
    REBUILD_CHANGED_IDS,
    DerivedIndex,
    IndexLoadError,
    SyncReport,
    fsync_dir,
    saving,
    store_identity,
    write_bytes_atomic,
)
from aesoperator.engine.stores.base import ERASED_ID, GraphStore
from aesoperator.engine.vector_build import fill_partitions
from aesoperator.engine.vector_files import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    PART_PREFIX,
    dir_lock,
    read_manifest,
    read_part,
    remove_unreferenced,
    write_part,
)
from aesoperator.engine.vector_parts import (
    DEFAULT_EXACT_MAX,
    DEFAULT_NPROBE,
    IVF_CODES,
    VectorPartitions,
    as_matrix,
    is_ivf,
    ivf_lists,
    omp_threads,
    part_kind,
    part_labels,
)
from aesoperator.errors import SchemaError

log = logging.getLogger(__name__)


class VectorIndex(DerivedIndex):
    """Cosine search over the vectors of one embedding model, partitioned by namespace: exact in
    partitions of up to `exact_max` vectors, IVF (searching `nprobe` lists, vectors stored as
    `ivf_codes`) in larger ones.

    Thread-safe: searches and writes take one lock. A single query runs FAISS on one OpenMP thread
    (more threads make single queries slower); `search_batch` uses `batch_threads`.
    """

    metric_label = "vector"

    def __init__(
        self,
        directory: Path,
        model: str,
        dim: int,
        batch_threads: int | None = None,
        exact_max: int | None = None,
        nprobe: int | None = None,
        ivf_codes: str | None = None,
        prefilter_min: int | None = None,
    ) -> None:
        """`exact_max`, `nprobe`, `ivf_codes` and `prefilter_min` default to the `vector_exact_max`,
        `vector_nprobe`, `vector_ivf_codes` and `vector_prefilter_min` settings."""
        if dim < 1:
            raise SchemaError(f"vector dimension must be positive, got {dim}")
        if not model:
            raise SchemaError("the vector index needs the name of the embedding model")
        self.directory = Path(directory)
        self.model = model
        self.dim = dim
        self.batch_threads = batch_threads or available_cores()
        if exact_max is None or nprobe is None or ivf_codes is None or prefilter_min is None:
            settings = load_settings()
            exact_max = settings.vector_exact_max if exact_max is None else exact_max
            nprobe = settings.vector_nprobe if nprobe is None else nprobe
            ivf_codes = settings.vector_ivf_codes if ivf_codes is None else ivf_codes
            prefilter_min = settings.vector_prefilter_min if prefilter_min is None else prefilter_min
        if prefilter_min < 0:
            raise SchemaError(f"prefilter_min must be 0 (off) or positive, got {prefilter_min}")
        if exact_max < 1 or nprobe < 1:
            raise SchemaError(f"exact_max and nprobe must be positive, got {exact_max} and {nprobe}")
        if ivf_codes not in IVF_CODES:
            raise SchemaError(f"ivf_codes must be one of {', '.join(IVF_CODES)}, got {ivf_codes!r}")
        self.exact_max = exact_max
        self.nprobe = nprobe
        self.ivf_codes = ivf_codes
        self.prefilter_min = prefilter_min
        super().__init__()
        self._state = self._new_state()
        self._lock = threading.RLock()
        self._dirty: set[str] = set()  # namespaces changed since the last save or load
        self._saved: dict[str, dict[str, Any]] = {}  # namespace -> manifest entry of its files
        self._checksums: dict[str, str] = {}
        self._generation = 0

    def _new_state(self) -> VectorPartitions:
        return VectorPartitions(
            self.dim,
            exact_max=self.exact_max,
            nprobe=self.nprobe,
            ivf_codes=self.ivf_codes,
            prefilter_min=self.prefilter_min,
        )

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
            return self._state.namespace_of(entity_id)

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored (normalised) vectors of the ids that are in the index; from an IVF sub-index
        with 8-bit codes, their decoded approximation (each value within about 0.01)."""
        out: dict[str, np.ndarray] = {}
        with self._lock:
            state = self._state
            for id_ in ids:
                int_id = state.int_of.get(id_)
                if int_id is not None:
                    row = np.empty(self.dim, dtype=np.float32)
                    state.parts[state.namespace_at(int_id)].reconstruct(int_id, row)
                    out[id_] = row
        return out

    # -- writes -------------------------------------------------------------------------------
    def add(self, ids: Sequence[str], namespaces: Sequence[str] | str, vectors: Any) -> int:
        """Insert vectors, replacing ids already present (also moving them between namespaces).

        `namespaces` is one namespace per id, or a single namespace for all of them.
        """
        ids = list(ids)
        ns_list = [namespaces] * len(ids) if isinstance(namespaces, str) else list(namespaces)
        matrix = as_matrix(vectors, self.dim, "vectors") if ids else np.zeros((0, self.dim), np.float32)
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
    def search(
        self,
        query_vec: Any,
        k: int = 10,
        namespaces: Sequence[str] | None = None,
        exclude_prefix: str | None = None,
    ) -> list[tuple[str, float]]:
        """The k nearest ids by cosine similarity, best first, across the allowed namespaces.

        `namespaces=None` searches all; an empty sequence searches none. With `exclude_prefix`,
        ids starting with it are left out inside the scan (k others come back when there are k).
        """
        query = as_matrix(query_vec, self.dim, "the query vector")
        if query.shape[0] != 1:
            raise SchemaError(f"search() takes one query vector, got {query.shape[0]}; use search_batch()")
        if k <= 0:
            return []
        with self._lock, omp_threads(1):
            state = self._state
            keep = state.without_prefix(exclude_prefix) if exclude_prefix else None
            scores: list[np.ndarray] = []
            labels: list[np.ndarray] = []
            for ns, part in state.selected(namespaces):
                if is_ivf(part):
                    params = None if keep is None else keep.params(nprobe=int(part.nprobe))
                    dist, lab = part.search(query, min(k, int(part.ntotal)), params=params)
                    scores.append(dist[0])
                    labels.append(lab[0])
                else:
                    dist_row, lab_row = state.exact_top(ns, part, query[0], k, keep)
                    scores.append(dist_row)
                    labels.append(lab_row)
            return state.merge(scores, labels, k)

    def search_batch(
        self, query_vecs: Any, k: int = 10, namespaces: Sequence[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        """`search` for many queries at once (one row each), using `batch_threads` threads."""
        queries = as_matrix(query_vecs, self.dim, "the query vectors")
        n = queries.shape[0]
        if k <= 0 or n == 0:
            return [[] for _ in range(n)]
        with self._lock, omp_threads(self.batch_threads):
            state = self._state
            per_part = []
            for _, part in state.selected(namespaces):
                per_part.append(part.search(queries, min(k, int(part.ntotal))))
            results = [state.merge([d[i] for d, _ in per_part], [lab[i] for _, lab in per_part], k) for i in range(n)]
        return results

    # -- persistence --------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_NAME

    def save(self) -> None:
        """Persist atomically: changed namespaces get new files, then the manifest is replaced.

        A failure (a full disk: StoreError saying so) leaves the saved index as it was and
        removes the files this save wrote; the in-memory index stays current and unsaved."""
        new_files: list[Path] = []
        with self._lock, saving(self.directory, "the vector index", new_files), dir_lock(self.directory):
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
                stem = f"{PART_PREFIX}g{generation:06d}-{position:05d}"
                ids = state.ids_at(part_labels(part))
                entries[ns], written = write_part(self.directory, stem, ns, part, ids, new_files)
                checksums.update(written)
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
                "index_type": "IDMap2,Flat,IP or IVF with sq8 or flat codes, IP, per namespace (see each entry)",
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
            remove_unreferenced(self.directory, set(checksums))

    def load(self) -> None:
        """Replace the in-memory index with the saved one. Raises IndexLoadError if it is unusable
        (missing, unreadable, corrupt, or saved for another model or dimension)."""
        with self._lock, dir_lock(self.directory):
            manifest = read_manifest(self.directory, self.model, self.dim)
            state = self._new_state()
            saved: dict[str, dict[str, Any]] = {}
            checksums: dict[str, str] = manifest["checksums"]
            for ns, entry in manifest["namespaces"].items():
                part, ids = read_part(self.directory, ns, entry, checksums, self.dim, self.nprobe, self.ivf_codes)
                try:
                    state.place(part_labels(part), ids, ns)
                except ValueError as exc:
                    raise IndexLoadError(f"index files are inconsistent: {exc}") from None
                if part.ntotal:
                    state.parts[ns] = part
                saved[ns] = entry
            if len(state.int_of) != manifest["count"]:
                raise IndexLoadError(
                    f"the manifest counts {manifest['count']} vectors but the files hold {len(state.int_of)}"
                )
            state.reserve(int(manifest.get("next_int") or 0))
            exact = {ns for ns, part in state.parts.items() if not is_ivf(part)}
            state.promote(exact)  # saved exact while smaller, or under a larger exact_max
            self._state = state
            self._saved = saved
            self._checksums = dict(checksums)
            self._dirty = {ns for ns in exact if is_ivf(state.parts[ns])}
            self._generation = int(manifest.get("generation") or 0)
            self.store_seq = manifest["store_seq"]
            store = manifest.get("store")
            self._store_identity = store if isinstance(store, dict) else {}
        release_free_heap()

    # -- keeping up with the store ------------------------------------------------------------
    def _has_saved_index(self) -> bool:
        return self.manifest_path.exists()

    def _rebuild(self, store: GraphStore, reason: str, persist: bool, started: float) -> SyncReport:
        target = store.last_seq()  # read first: writes during the scan are replayed by the next sync
        state = fill_partitions(self._new_state(), store, self.model)
        with self._lock:
            self._dirty |= set(self._state.parts) | set(state.parts)
            self._saved = {}
            self._state = state
            self.store_seq = target
            self._store_identity = store_identity(store)
            count = len(state.int_of)
        if persist:
            self.save_if_room()
        release_free_heap()  # the stored vectors' batches and the IVF training copies
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
                if change.id == ERASED_ID:  # what was erased is no longer named in the log
                    return self._rebuild(store, f"an erasure at seq {change.seq}", persist is not False, started)
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


__all__ = [
    "DEFAULT_EXACT_MAX",
    "DEFAULT_NPROBE",
    "MANIFEST_NAME",
    "IndexLoadError",
    "SyncReport",
    "VectorIndex",
    "ivf_lists",
    "part_kind",
]
