"""Telling a write that ran out of space from other failures, and saying so in one `StoreError`.

A full disk reaches the engine in two shapes: `OSError` with ENOSPC (or EDQUOT for a used-up
quota, EFBIG for a file past the size limit) from Python's file I/O, which also carries the FAISS
index files (see `vectors._write_faiss_atomic`), and SQLite's SQLITE_FULL ("database or disk is
full"). Each is turned into a StoreError that names the directory and what to do, so the CLI
prints one line and the MCP server returns a clear tool error rather than an internal one.
"""

from __future__ import annotations

import errno
import resource
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from aesoperator.errors import StoreError

OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# SQLite reports a write refused by RLIMIT_FSIZE (EFBIG) as a generic I/O error on write.
_SQLITE_IOERR = 10
_SQLITE_IOERR_WRITE = 778


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _file_size_limited() -> bool:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return soft != resource.RLIM_INFINITY


def out_of_space_errno(exc: BaseException) -> int | None:
    """ENOSPC, EDQUOT or EFBIG when `exc` (or an exception it was raised from) is a write that
    found no room; None for anything else."""
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.errno in OUT_OF_SPACE_ERRNOS:
            return cause.errno
        if isinstance(cause, sqlite3.Error):
            code = getattr(cause, "sqlite_errorcode", None)
            if code == sqlite3.SQLITE_FULL:
                return errno.ENOSPC
            if code == _SQLITE_IOERR_WRITE and _file_size_limited():
                return errno.EFBIG
    return None


def out_of_space_error(directory: Path, action: str, code: int, outcome: str) -> StoreError:
    """The StoreError for a write under `directory` that found no room: what failed, why, what
    state it left (`outcome`) and what to do."""
    if code == errno.EFBIG:
        why = (
            f"a file in {directory} reached the largest size this process may write "
            "(EFBIG: the file size limit, `ulimit -f` / RLIMIT_FSIZE, or the filesystem's maximum)"
        )
        fix = "raise the file size limit"
    elif code == errno.EDQUOT:
        why = f"the disk quota of the filesystem holding {directory} is used up (EDQUOT)"
        fix = "free space within the quota"
    else:
        why = f"the disk holding {directory} is full (no space left on device)"
        fix = "free space on that disk"
    return StoreError(
        f"could not {action}: {why}; {outcome}. {fix.capitalize()} (or point data_dir at a disk with room) "
        "and run it again."
    )


def reraise_if_out_of_space(exc: BaseException, directory: Path, action: str, outcome: str) -> None:
    """Raise the out-of-space StoreError for `exc` if it is one; return otherwise."""
    code = out_of_space_errno(exc)
    if code is not None:
        raise out_of_space_error(directory, action, code, outcome) from exc
