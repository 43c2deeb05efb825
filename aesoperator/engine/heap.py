"""Hand the C heap's free memory back to the operating system after a large build.

Building the graph view, the keyword index or the vector index makes and drops millions of
small objects and several large temporary arrays. glibc keeps what they freed for reuse where it
lies between live allocations (and, once large blocks have been freed, serves later large ones
from the heap rather than from their own mappings), so the process's resident size stays at the
build's peak. `malloc_trim` returns those free pages: at a million entities the graph view's load
left 765 MB resident for 543 MB of live data, and 543 MB after it.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols the process already has: its C library's
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)  # glibc has it; musl does not
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Return free heap pages to the OS; False where the C library cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
