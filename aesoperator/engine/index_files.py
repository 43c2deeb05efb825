"""What the derived indexes (vectors, keywords) share: crash-safe files and catching up with a store.

Both are rebuilt from the graph store and kept current by replaying its change log from the seq
their manifest records; `change_log_gap` says when that replay cannot be trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aesoperator.engine.data_dir import open_private_write
from aesoperator.engine.stores.base import GraphStore
from aesoperator.engine.stores.out_of_space import out_of_space_errno, reraise_if_out_of_space
from aesoperator.errors import StoreError
from aesoperator.telemetry.metrics import INDEX_SYNCS

log = logging.getLogger(__name__)

TMP_MARK = ".tmp-"
CHANGE_PAGE = 100_000  # change-log rows read per call while catching up
FETCH_BATCH = 4096  # ids fetched from the store per call while catching up
# Replaying more distinct ids than this (and than half the index) costs more than a rebuild.
REBUILD_CHANGED_IDS = 50_000


class IndexLoadError(StoreError):
    """The saved index cannot be used; `reason` says why (sync rebuilds instead)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What `sync` or `rebuild` did."""

    rebuilt: bool
    reason: str
    added: int = 0
    removed: int = 0
    seconds: float = 0.0
    store_seq: int = 0
    count: int = 0
    changes: int = 0  # change-log rows read (incremental sync only)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = tmp_path(path)
    try:
        with open_private_write(tmp) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# What a save that found no room leaves behind.
SAVE_FAILED_OUTCOME = (
    "the index saved before is unchanged and consistent (it catches up from the store's change log "
    "when it is loaded), and the files of the failed save were removed"
)


@contextlib.contextmanager
def saving(directory: Path, what: str, new_files: list[Path]) -> Iterator[None]:
    """Around a save that writes `new_files` and then commits by replacing its manifest: on any
    failure before the commit the new files are removed (the manifest still names the old ones, and
    a full disk needs the room back), and running out of space becomes a StoreError saying so.
    The caller empties `new_files` once the manifest is replaced."""
    try:
        yield
    except BaseException as exc:
        for path in new_files:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        reraise_if_out_of_space(exc, directory, f"save {what}", SAVE_FAILED_OUTCOME)
        raise


def store_identity(store: GraphStore) -> dict[str, Any]:
    """What a manifest records of the store an index was built from."""
    identity: dict[str, Any] = {"backend": getattr(store, "backend", None)}
    store_id = getattr(store, "store_id", None)
    if isinstance(store_id, str):
        identity["store_id"] = store_id
    return identity


def change_log_gap(index_seq: int, saved_identity: dict[str, Any], store: GraphStore) -> str | None:
    """Why replaying `store`'s change log from `index_seq` would not give a correct index, or None."""
    current = store_identity(store)
    for key in ("backend", "store_id"):
        if saved_identity.get(key) is not None and current.get(key) is not None and saved_identity[key] != current[key]:
            return f"index was built from another store ({key} {saved_identity[key]!r}, now {current[key]!r})"
    last = store.last_seq()
    if index_seq > last:
        return (
            f"the store is behind the index (index reflects seq {index_seq}, store is at {last}): "
            "a different or restored store"
        )
    # A store that compacts its change log says from where `changes_since` is complete.
    log_start = getattr(store, "change_log_start", None)
    if callable(log_start):
        start = int(log_start())
        if index_seq < start:
            return (
                f"the change log starts at seq {start}, after the index position {index_seq}: it cannot cover the gap"
            )
    return None


class DerivedIndex(ABC):
    """How a derived index keeps up with its store: load what was saved, replay the change log
    from the saved position, or rebuild when there is nothing usable or the log has a gap.
    Subclasses say how to load, rebuild and replay."""

    metric_label: str = "index"  # the `index` label of the `aesop_index_syncs` counter

    def __init__(self) -> None:
        self.store_seq: int | None = None  # the store change-log position the index reflects
        self.last_sync: SyncReport | None = None
        self._store_identity: dict[str, Any] = {}
        self._sync_lock = threading.Lock()

    @abstractmethod
    def load(self) -> None:
        """Replace the in-memory index with the saved one, or raise IndexLoadError."""

    @abstractmethod
    def _has_saved_index(self) -> bool: ...

    @abstractmethod
    def _rebuild(self, store: GraphStore, reason: str, persist: bool, started: float) -> SyncReport: ...

    @abstractmethod
    def _catch_up(self, store: GraphStore, persist: bool | None, started: float) -> SyncReport: ...

    @abstractmethod
    def save(self) -> None:
        """Persist the in-memory index atomically; StoreError when the disk has no room."""

    def save_if_room(self) -> None:
        """A save that only spares the next load some work (after a sync's rebuild or replay, at
        close): when the disk has no room the saved copy is left as it was (and consistent), the
        problem is logged, and the caller, which may be serving a query, goes on."""
        try:
            self.save()
        except StoreError as exc:
            if out_of_space_errno(exc) is None:
                raise
            log.warning("%s not saved: %s", self, exc)

    def sync(self, store: GraphStore, persist: bool | None = None) -> SyncReport:
        """Bring the index up to date with `store`, incrementally when it can, else by rebuilding.

        On first use the saved index is loaded; a missing, unreadable or corrupt one, one saved
        for something else, or a change log that no longer reaches back to the saved position,
        leads to a rebuild. `persist`: None saves after a rebuild only (replaying the log again is
        cheap, so small catch-ups are saved by an explicit `save()`, e.g. at shutdown); True also
        saves after a catch-up that changed anything; False never saves.
        """
        started = time.perf_counter()
        with self._sync_lock:
            reason: str | None = None
            if self.store_seq is None:
                try:
                    self.load()
                except IndexLoadError as exc:
                    reason = exc.reason
                    if self._has_saved_index():
                        log.warning("%s is unusable, rebuilding: %s", self, reason)
                if reason is None and self.store_seq is None:
                    reason = "the saved index was not built from a store"
            if reason is None:
                assert self.store_seq is not None
                reason = change_log_gap(self.store_seq, self._store_identity, store)
            if reason is not None:
                report = self._rebuild(store, reason, persist is not False, started)
            else:
                report = self._catch_up(store, persist, started)
            self.last_sync = report
            self._count(report)
            return report

    def _count(self, report: SyncReport) -> None:
        """Count the sync, so an operator (or a test) sees whether a replica rebuilt or replayed."""
        if report.rebuilt or report.changes:
            INDEX_SYNCS.labels(self.metric_label, "rebuild" if report.rebuilt else "incremental").inc()

    def rebuild(self, store: GraphStore, persist: bool = True) -> SyncReport:
        """Rebuild from the store (and save, when `persist`)."""
        started = time.perf_counter()
        with self._sync_lock:
            report = self._rebuild(store, "requested", False, started)
            self.last_sync = report
            self._count(report)
            if persist:  # asked for: a save that fails is the caller's error
                self.save()
            return report
