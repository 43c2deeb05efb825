"""Checkpoints of the embedded store's write-ahead log, run beside the writes instead of in them.

With SQLite's automatic checkpoint, the commit that finds the WAL over its limit copies the
WAL's pages back into the database file before it returns, so every few dozen batches one write
took three to five times as long as the others. The store's connection turns the automatic
checkpoint off; after each commit a `WalCheckpointer` reads how many WAL frames are not yet
copied back, and once they pass `threshold_frames` a thread with a connection of its own runs a
PASSIVE checkpoint (which never blocks the writer, and stops at frames a reader still needs).

The count is read where SQLite keeps it, the WAL-index header at the start of the `-shm` file
(https://www.sqlite.org/walformat.html: `mxFrame`, the last valid frame, at byte 16, and
`nBackfill`, the frames already copied back, at byte 96, in native byte order). The file size
of the WAL cannot tell: SQLite reuses the file from its start after a checkpoint.

Durability is unchanged: a commit is in the WAL before `write` returns, whenever it is copied.
Should the thread fall behind (a long reader, or writes faster than it copies), the writer
checkpoints on its own connection once `limit_frames` wait, so the WAL stays bounded.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# Frames waiting when a background checkpoint starts: SQLite's automatic checkpoint point as the
# store configures it (16,384 frames of a 4 KiB page, 64 MiB).
CHECKPOINT_AT_FRAMES = 16384
# Frames waiting when the writer checkpoints itself.
WRITER_CHECKPOINT_AT_FRAMES = 4 * CHECKPOINT_AT_FRAMES
RESTART_WAIT_MS = 200
WAL_INDEX_VERSION = 3007000  # WalIndexHdr.iVersion, at byte 0 of the -shm file
_VERSION = struct.Struct("=I")
_MX_FRAME = struct.Struct("=I")  # WalIndexHdr.mxFrame, at byte 16 of the -shm file
_N_BACKFILL = struct.Struct("=I")  # WalCkptInfo.nBackfill, at byte 96
_HEADER_BYTES = 100


class WalCheckpointer:
    """Keeps one SQLite database's WAL short from a background thread (started on first need)."""

    def __init__(
        self,
        db_path: Path,
        *,
        threshold_frames: int = CHECKPOINT_AT_FRAMES,
        limit_frames: int = WRITER_CHECKPOINT_AT_FRAMES,
    ) -> None:
        if not 0 < threshold_frames <= limit_frames:
            raise ValueError(f"need 0 < threshold_frames <= limit_frames, got {threshold_frames} and {limit_frames}")
        self.db_path = Path(db_path)
        self.shm_path = self.db_path.with_name(self.db_path.name + "-shm")
        self.threshold_frames = threshold_frames
        self.limit_frames = limit_frames
        self.background_runs = 0  # checkpoints the thread ran
        self.writer_runs = 0  # checkpoints the writer had to run itself
        self._wake = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def readable(self) -> bool:
        """Whether the WAL index can be read here (the store keeps SQLite's own checkpoints if not)."""
        return self._header() is not None

    def _header(self) -> bytes | None:
        try:
            fd = os.open(self.shm_path, os.O_RDONLY)
        except OSError:
            return None
        try:
            header = os.pread(fd, _HEADER_BYTES, 0)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(header) < _HEADER_BYTES or _VERSION.unpack_from(header, 0)[0] != WAL_INDEX_VERSION:
            return None
        return header

    def waiting_frames(self) -> int:
        """WAL frames not yet copied back into the database (`limit_frames` when the WAL index
        cannot be read, so that the writer checkpoints)."""
        header = self._header()
        if header is None:
            return self.limit_frames
        (last,) = _MX_FRAME.unpack_from(header, 16)
        (copied,) = _N_BACKFILL.unpack_from(header, 96)
        return max(0, last - copied)

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """Called by the writer after each commit, outside any transaction, on its connection."""
        waiting = self.waiting_frames()
        if waiting < self.threshold_frames:
            return
        if waiting >= self.limit_frames:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.writer_runs += 1
            return
        with self._lock:
            if self._stopping:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="aesop-wal-checkpoint", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False)
            # How long RESTART waits for readers on an older snapshot (writers wait meanwhile);
            # past it the checkpoint gives up and the next one tries again.
            conn.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}").fetchall()
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                # PASSIVE copies the bulk without blocking the writer, but a writer that begins
                # while frames are left appends to the WAL instead of starting it over, so the file
                # would only grow. RESTART then copies the few frames written meanwhile, holding
                # writers back briefly, and leaves the WAL to be started over by the next write.
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                self.background_runs += 1
        except sqlite3.Error as exc:  # the writer checkpoints itself at the limit from now on
            log.warning("background WAL checkpoints of %s stopped: %s", self.db_path, exc)
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running) and wait for it."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()


__all__ = ["CHECKPOINT_AT_FRAMES", "WRITER_CHECKPOINT_AT_FRAMES", "WalCheckpointer"]
