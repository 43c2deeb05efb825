"""The data dir is readable by its owner only: it holds the graph, the indexes, the audit log,
tokens and keys, and any local user who can read `graph.sqlite` bypasses every scope.

New directories are created 0700 and new files 0600 with explicit modes rather than through the
process umask, which is process-wide (a host application's own files would change too) and racy
across threads. SQLite creates its `-wal` and `-shm` files with the mode of the database file,
so the database file is created 0600 before SQLite opens it.

Data dirs made by earlier versions can be looser: `loose_modes` lists every path that other
users may read or write, `warn_if_loose` logs them when an engine opens the dir, with the
`chmod` that fixes them, and `aesop doctor` reports them and exits non-zero. Existing modes are
never changed behind the owner's back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
OTHERS = 0o077  # group and other permission bits: none may be set
WARN_PATHS = 10  # paths named in one warning


def make_private_dir(path: Path) -> Path:
    """`path`, created 0700 with every missing parent (a parent of an index directory is part of
    the data dir too); directories that exist keep their mode."""
    missing = []
    current = Path(path)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            directory.mkdir(mode=DIR_MODE)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    return path


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (e.g. a database before SQLite opens
    it, so its journal files inherit the mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))


def open_private_write(path: Path) -> BinaryIO:
    """`path` opened for writing from empty ("wb"), mode 0600 (also if it was left behind looser:
    what is written now is new content)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def open_private_lock(path: Path) -> BinaryIO:
    """A lock file ("a+b"), created 0600 if missing."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
    try:
        return os.fdopen(fd, "a+b")
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True, slots=True)
class LooseMode:
    """A path in the data dir that other users may read, write or enter."""

    path: Path
    mode: int
    is_dir: bool

    @property
    def expected(self) -> int:
        return DIR_MODE if self.is_dir else FILE_MODE

    def describe(self) -> str:
        what = "directory" if self.is_dir else "file"
        who = []
        if self.mode & 0o070:
            who.append("its group")
        if self.mode & 0o007:
            who.append("every local user")
        return (
            f"{what} {self.path} has mode {self.mode:04o} (open to {' and '.join(who)}); expected {self.expected:04o}"
        )


def loose_modes(data_dir: Path) -> list[LooseMode]:
    """Every directory and file under `data_dir` (itself included) with group or other permission
    bits. Symbolic links are not followed. Empty when the dir does not exist."""
    found: list[LooseMode] = []
    try:
        top = os.lstat(data_dir)
    except FileNotFoundError:
        return found
    if stat.S_ISDIR(top.st_mode) and stat.S_IMODE(top.st_mode) & OTHERS:
        found.append(LooseMode(Path(data_dir), stat.S_IMODE(top.st_mode), True))
    if not stat.S_ISDIR(top.st_mode):
        return found
    pending = [Path(data_dir)]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                listed = sorted(entries, key=lambda e: e.name)
        except OSError:
            continue
        for entry in listed:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            is_dir = stat.S_ISDIR(st.st_mode)
            if mode & OTHERS:
                found.append(LooseMode(Path(entry.path), mode, is_dir))
            if is_dir:
                pending.append(Path(entry.path))
    return sorted(found, key=lambda p: str(p.path))


def fix_command(data_dir: Path) -> str:
    """The shell command that takes group and other permissions off everything in `data_dir`."""
    return f"chmod -R go-rwx {shlex.quote(str(data_dir))}"


def warn_if_loose(data_dir: Path) -> list[LooseMode]:
    """Log a warning naming the paths of `data_dir` open to other users and the fix; returns them."""
    loose = loose_modes(data_dir)
    if loose:
        named = "; ".join(p.describe() for p in loose[:WARN_PATHS])
        more = f"; and {len(loose) - WARN_PATHS} more" if len(loose) > WARN_PATHS else ""
        log.warning(
            "data dir %s is readable by other local users, who could read the graph and bypass every scope: %s%s. "
            "Run: %s",
            data_dir,
            named,
            more,
            fix_command(data_dir),
        )
    return loose
