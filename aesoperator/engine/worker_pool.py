"""A thread pool made on first use and made again in a forked child.

A child process inherits the parent's executor object but none of its threads: work submitted
there would wait forever. So the pool is forgotten after a fork and made anew when next needed.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_live: weakref.WeakSet[LazyPool] = weakref.WeakSet()


class LazyPool:
    """A `ThreadPoolExecutor` of `workers` threads, made at the first `get()`."""

    def __init__(
        self, workers: int, name: str, initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = ()
    ) -> None:
        self.workers = workers
        self.name = name
        self._initializer = initializer
        self._initargs = initargs
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        _live.add(self)

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.workers,
                    thread_name_prefix=self.name,
                    initializer=self._initializer,
                    initargs=self._initargs,
                )
            return self._pool

    def _forget(self) -> None:
        self._pool = None
        self._lock = threading.Lock()


def _after_fork_in_child() -> None:
    for pool in list(_live):
        pool._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["LazyPool"]
