"""Reading and walking folders without being stalled or misled by what they hold.

Shared by the local folder source and the filesystem connector:

- Only regular files are read. FIFOs, sockets and device files are reported with a reason and
  never read: a FIFO with no writer blocks its reader forever, a device can stream without
  end. The type is checked with `stat` before opening and again with `fstat` on the opened
  descriptor (the path may be swapped in between); the open uses `O_NONBLOCK`, which cannot
  block, and the flag is cleared before reading.
- Every stat, open and read of a file runs on a small pool of daemon threads and is waited for
  at most `timeout` seconds (a hung network or FUSE mount blocks in the kernel, where no
  signal reaches it). A read that does not answer is reported; its thread finishes on its own.
  The pool is bounded, so a mount where every read hangs ties up at most `READ_WORKERS` threads
  and later reads time out waiting for one, instead of stalling their callers.
- Walks are iterative and bounded in depth: a directory deeper than `max_depth` levels is
  reported as skipped instead of ending the whole walk with a `RecursionError`. Links to
  directories are not followed.
"""

from __future__ import annotations

import fcntl
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aesoperator.errors import SourceError

DEFAULT_MAX_DEPTH = 128
DEFAULT_READ_TIMEOUT = 10.0
READ_WORKERS = 8
_CHUNK = 1 << 20

T = TypeVar("T")


class UnreadableFile(SourceError):
    """A file that was not read; the message is the reason, in words."""


def special_kind(mode: int) -> str | None:
    """None for a regular file; otherwise what the file is, in words."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def not_regular_reason(kind: str) -> str:
    return f"{kind}, not a regular file: not read"


class _ReadPool:
    """Daemon threads that run file jobs; a job stuck in the kernel keeps only its own thread."""

    def __init__(self, workers: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]] = queue.SimpleQueue()
        self._workers = workers
        self._started = 0
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._started < self._workers:
                self._started += 1
                threading.Thread(target=self._run, name=f"aesop-file-read-{self._started}", daemon=True).start()
        self._jobs.put((job, future))  # type: ignore[arg-type]
        return future

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = job()
            except BaseException as exc:  # handed to the waiting caller
                future.set_exception(exc)
            else:
                future.set_result(result)


_pool = _ReadPool(READ_WORKERS)


def run_with_timeout(job: Callable[[], T], timeout: float, what: str) -> T:
    """`job()` on the read pool, waited for at most `timeout` seconds; `UnreadableFile` after."""
    future = _pool.submit(job)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()  # still queued: it never runs
        raise UnreadableFile(f"{what} gave no answer within {timeout:g} s (a hung mount?): not read") from None


@dataclass(frozen=True, slots=True)
class FileContent:
    data: bytes
    mtime: float  # of the descriptor that was read


def _read_open_regular(path: str, max_bytes: int) -> FileContent:
    try:
        before = os.stat(path)
    except OSError as exc:
        raise UnreadableFile(f"unreadable: {exc.strerror or exc}") from None
    kind = special_kind(before.st_mode)
    if kind is not None:
        raise UnreadableFile(not_regular_reason(kind))
    if before.st_size > max_bytes:
        raise UnreadableFile(f"{before.st_size} bytes is over the {max_bytes} limit")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnreadableFile(f"unreadable: {exc.strerror or exc}") from None
    try:
        opened = os.fstat(fd)
        kind = special_kind(opened.st_mode)
        if kind is not None:
            raise UnreadableFile(not_regular_reason(kind) + " (it was replaced while being opened)")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        parts: list[bytes] = []
        size = 0
        while size <= max_bytes:
            part = os.read(fd, min(_CHUNK, max_bytes + 1 - size))
            if not part:
                break
            parts.append(part)
            size += len(part)
        if size > max_bytes:
            raise UnreadableFile(f"more than {max_bytes} bytes (it grew while being read): over the limit")
        return FileContent(b"".join(parts), opened.st_mtime)
    except OSError as exc:
        raise UnreadableFile(f"unreadable: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_regular(path: str | Path, *, max_bytes: int, timeout: float = DEFAULT_READ_TIMEOUT) -> FileContent:
    """The content of `path` (links followed) if it is a regular file of at most `max_bytes`;
    otherwise `UnreadableFile` saying why it was not read."""
    target = os.fspath(path)
    return run_with_timeout(lambda: _read_open_regular(target, max_bytes), timeout, "reading the file")


def read_regular_file(path: str | Path, *, max_bytes: int, timeout: float = DEFAULT_READ_TIMEOUT) -> bytes:
    """`read_regular(...)`'s bytes."""
    return read_regular(path, max_bytes=max_bytes, timeout=timeout).data


# -- walking ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WalkedDir:
    """A directory the walk enters (the top is not reported)."""

    path: Path
    rel: str
    depth: int


@dataclass(frozen=True, slots=True)
class WalkedFile:
    """Anything in a directory that is not a directory: regular files, links to files, FIFOs,
    sockets, devices. Nothing is read; callers read with `read_regular_file`."""

    path: Path
    rel: str


@dataclass(frozen=True, slots=True)
class WalkSkip:
    """A directory that was not walked, and why."""

    path: Path
    rel: str
    reason: str


WalkItem = WalkedDir | WalkedFile | WalkSkip


def too_deep_reason(max_depth: int) -> str:
    return f"more than {max_depth} directory levels deep: not walked (raise max_depth to include it)"


def walk(
    top: Path,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    keep_dir: Callable[[str, str], bool] = lambda name, rel: True,
) -> Iterator[WalkItem]:
    """Everything below `top`, depth first in name order, without recursion: a directory's
    files come before its subdirectories (the order of `os.walk`). `keep_dir(name, rel)` prunes
    directories; `rel` is posix and relative to `top`. A directory more than `max_depth` levels
    below `top`, or one that cannot be listed, is yielded as a `WalkSkip`."""
    pending: list[tuple[Path, str, int]] = [(top, "", 0)]
    while pending:
        directory, rel_dir, depth = pending.pop()
        if depth > max_depth:
            yield WalkSkip(directory, rel_dir, too_deep_reason(max_depth))
            continue
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            yield WalkSkip(directory, rel_dir or ".", f"cannot list the directory: {exc.strerror or exc}")
            continue
        if rel_dir:
            yield WalkedDir(directory, rel_dir, depth)
        subdirs: list[tuple[Path, str, int]] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                real_dir = entry.is_dir(follow_symlinks=False)
                link_to_dir = not real_dir and entry.is_symlink() and entry.is_dir()
            except OSError:
                real_dir = link_to_dir = False
            if real_dir:
                if keep_dir(entry.name, rel):
                    subdirs.append((Path(entry.path), rel, depth + 1))
            elif not link_to_dir:  # links to directories are not followed
                yield WalkedFile(Path(entry.path), rel)
        pending.extend(reversed(subdirs))
