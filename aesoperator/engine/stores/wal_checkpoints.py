"""Checkpoints of the embedded store's write-ahead log, run beside the writes instead of in them.

With SQLite's automatic checkpoint, the commit that finds the WAL over its limit copies the
WAL's pages back into the database file before it returns, so every few dozen batches one write
took three to five times as long as the others. The store's connection turns the automatic
checkpoint off; after each commit a `WalCheckpointer` looks at the WAL file's size, and once it
holds `threshold_frames` a thread with a connection of its own checkpoints: PASSIVE first, which
copies the bulk without blocking the writer, then TRUNCATE, which copies the frames written
meanwhile (holding writers back briefly) and empties the file, so that its size counts the
frames written since. (A writer that begins while frames are left appends instead of starting
the WAL over, so PASSIVE alone lets the file grow without end.)

The WAL-index file (`-shm`) would say the same more precisely, but this process must not open
it: closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
included, and another process may then reset the index under this one's feet.

Durability is unchanged: a commit is in the WAL before `write` returns, whenever it is copied.
Should the thread fall behind (a reader on an old snapshot, or writes faster than it copies), the
writer checkpoints on its own connection each time another `limit_frames` have been written.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

# WAL frames at which a background checkpoint starts: SQLite's automatic checkpoint point as the
# store configures it (16,384 frames of a 4 KiB page, 64 MiB).
CHECKPOINT_AT_FRAMES = 16384
# Frames written, past the last emptied WAL or the writer's last checkpoint, at which the writer
# checkpoints itself.
WRITER_CHECKPOINT_AT_FRAMES = 4 * CHECKPOINT_AT_FRAMES
TRUNCATE_WAIT_MS = 200
_FRAME_HEADER_BYTES = 24  # before each page in the WAL file


class WalCheckpointer:
    """Keeps one SQLite database's WAL short from a background thread (started on first need)."""

    def __init__(
        self,
        db_path: Path,
        page_size: int,
        *,
        threshold_frames: int = CHECKPOINT_AT_FRAMES,
        limit_frames: int = WRITER_CHECKPOINT_AT_FRAMES,
    ) -> None:
        if not 0 < threshold_frames <= limit_frames:
            raise ValueError(f"need 0 < threshold_frames <= limit_frames, got {threshold_frames} and {limit_frames}")
        self.db_path = Path(db_path)
        self.wal_path = self.db_path.with_name(self.db_path.name + "-wal")
        self.frame_bytes = page_size + _FRAME_HEADER_BYTES
        self.threshold_frames = threshold_frames
        self.limit_frames = limit_frames
        self._writer_checkpoint_at = limit_frames
        # A reader on an old snapshot makes TRUNCATE give up; the thread is then woken again only
        # once another threshold's worth has been written, not after every commit.
        self._wake_at = threshold_frames
        self.background_runs = 0  # checkpoints the thread ran
        self.writer_runs = 0  # checkpoints the writer had to run itself
        self._wake = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._running = threading.Lock()  # held by the thread while it checkpoints
        self._thread: threading.Thread | None = None

    def wal_frames(self) -> int:
        """Frames in the WAL file, by its size (0 when there is none)."""
        try:
            return self.wal_path.stat().st_size // self.frame_bytes
        except FileNotFoundError:
            return 0

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """Called by the writer after each commit, outside any transaction, on its connection."""
        frames = self.wal_frames()
        if frames < self._wake_at:
            return
        if frames >= self._writer_checkpoint_at:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.writer_runs += 1
            self._writer_checkpoint_at = frames + self.limit_frames
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
            # How long TRUNCATE waits for readers on an older snapshot (writers wait meanwhile);
            # past it the checkpoint gives up and the next one tries again.
            conn.execute(f"PRAGMA busy_timeout = {TRUNCATE_WAIT_MS}").fetchall()
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                with self._running:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                self.background_runs += 1
                if busy:
                    self._wake_at = self.wal_frames() + self.threshold_frames
                else:
                    self._wake_at, self._writer_checkpoint_at = self.threshold_frames, self.limit_frames
        except sqlite3.Error as exc:  # the writer checkpoints itself at the limit from now on
            log.warning("background WAL checkpoints of %s stopped: %s", self.db_path, exc)
        finally:
            if conn is not None:
                conn.close()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No background checkpoint runs inside: for work that checkpoints the WAL itself and must
        not find another checkpoint under way (SQLite answers that one busy), as the erasure
        scrub's TRUNCATE does."""
        with self._running:
            yield

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running) and wait for it."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()


__all__ = ["CHECKPOINT_AT_FRAMES", "WRITER_CHECKPOINT_AT_FRAMES", "WalCheckpointer"]
