"""WAL checkpoints of the embedded store run beside the writes (`stores/wal_checkpoints.py`)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from aesoperator.engine.stores.base import WriteBatch
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.engine.stores.wal_checkpoints import WalCheckpointer
from aesoperator.graph_schema.models import Entity


def _entities(start: int, n: int) -> list[Entity]:
    return [
        Entity(id=f"w{i}", type="Document", name=f"w{i}", text=f"checkpoint text {i} " + "filler words " * 40)
        for i in range(start, start + n)
    ]


def _write_batches(store: EmbeddedGraphStore, batches: int, size: int = 200) -> None:
    """`batches` writes of `size` new entities each, after those already stored."""
    start = store.stats().entities
    for b in range(batches):
        store.upsert(_entities(start + b * size, size))


def _wait_for(condition: object, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _checkpointer(store: EmbeddedGraphStore, threshold: int, limit: int) -> WalCheckpointer:
    """Give the store a checkpointer with small thresholds (the defaults need 64 MiB of WAL)."""
    store._checkpoints.close()
    store._checkpoints = WalCheckpointer(store.db_path, 4096, threshold_frames=threshold, limit_frames=limit)
    return store._checkpoints


def test_store_hands_checkpoints_to_the_background(tmp_path: Path) -> None:
    with EmbeddedGraphStore(tmp_path) as store:
        assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        checkpoints = _checkpointer(store, threshold=64, limit=1_000_000)
        _write_batches(store, 12)
        assert _wait_for(lambda: checkpoints.background_runs >= 1)
        assert checkpoints.writer_runs == 0
        # The checkpoint empties the WAL, so it does not grow with the store.
        assert _wait_for(lambda: checkpoints.wal_frames() < 64)
        _write_batches(store, 1)  # 13 batches in all
        assert checkpoints.wal_frames() < 64 * 3
        assert len(store.get_entities([f"w{i}" for i in range(0, 2600, 100)])) == 26
    with sqlite3.connect(tmp_path / store.db_path.name) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("SELECT count(*) FROM entities").fetchone()[0] == 2600
    assert not [t for t in threading.enumerate() if t.name == "aesop-wal-checkpoint"]


def test_writer_checkpoints_itself_at_the_limit(tmp_path: Path) -> None:
    with EmbeddedGraphStore(tmp_path) as store:
        checkpoints = _checkpointer(store, threshold=32, limit=32)
        _write_batches(store, 4)
        assert checkpoints.writer_runs >= 1
        assert store.stats().entities == 800


def test_a_reader_on_an_old_snapshot_does_not_stop_writes(tmp_path: Path) -> None:
    with EmbeddedGraphStore(tmp_path) as store:
        checkpoints = _checkpointer(store, threshold=64, limit=1_000_000)
        _write_batches(store, 1)
        reader = sqlite3.connect(store.db_path, isolation_level=None)
        reader.execute("BEGIN")
        seen = reader.execute("SELECT count(*) FROM entities").fetchone()[0]
        started = time.monotonic()
        _write_batches(store, 8)
        assert _wait_for(lambda: checkpoints.background_runs >= 1)
        assert reader.execute("SELECT count(*) FROM entities").fetchone()[0] == seen  # its snapshot holds
        reader.execute("COMMIT")
        reader.close()
        assert time.monotonic() - started < 15
        _write_batches(store, 4)
        assert store.stats().entities == 200 * 13


def test_checkpointer_without_a_wal(tmp_path: Path) -> None:
    checkpoints = WalCheckpointer(tmp_path / "absent.sqlite", 4096)
    assert checkpoints.wal_frames() == 0
    checkpoints.close()
    with pytest.raises(ValueError, match="threshold_frames"):
        WalCheckpointer(tmp_path / "x.sqlite", 4096, threshold_frames=10, limit_frames=5)


def test_no_background_checkpoint_while_paused(tmp_path: Path) -> None:
    """The erasure scrub truncates the WAL itself; SQLite answers a second checkpoint under way
    with busy, so the scrub pauses the thread."""
    with EmbeddedGraphStore(tmp_path) as store:
        checkpoints = _checkpointer(store, threshold=64, limit=1_000_000)
        with checkpoints.paused():
            _write_batches(store, 6)
            time.sleep(0.3)
            assert checkpoints.background_runs == 0
        assert _wait_for(lambda: checkpoints.background_runs >= 1)
        store.write(WriteBatch(delete_entity_ids=["w0"], erase=True))
        _write_batches(store, 6)  # the thread is due again while the scrub runs
        assert store.scrub_erased() is True
        assert store.get_entities(["w0"]) == [] and not store.erasure_pending()
