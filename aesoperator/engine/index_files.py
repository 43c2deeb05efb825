"""What the derived indexes (vectors, keywords) share: crash-safe files and catching up with a store.

Both are rebuilt from the graph store and kept current by replaying its change log from the seq
their manifest records; `change_log_gap` says when that replay cannot be trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

from aesoperator.engine.stores.base import GraphStore

TMP_MARK = ".tmp-"


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
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
