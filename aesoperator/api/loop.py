"""The event loop the synchronous API runs its async work on."""

from __future__ import annotations

import atexit
import threading
from contextlib import ExitStack, suppress

from anyio.from_thread import BlockingPortal, start_blocking_portal


class BackgroundLoop:
    """One event loop in a daemon thread, shared by every API object: sync methods run their
    async work on it, so the API works the same from scripts and notebooks."""

    _lock = threading.Lock()
    _stack: ExitStack | None = None
    _portal: BlockingPortal | None = None

    @classmethod
    def portal(cls) -> BlockingPortal:
        with cls._lock:
            if cls._portal is None:
                stack = ExitStack()
                cls._portal = stack.enter_context(start_blocking_portal(backend="asyncio"))
                cls._stack = stack
                atexit.register(cls.close)
            return cls._portal

    @classmethod
    def close(cls) -> None:
        """Stop the loop, cancelling what still runs on it (open sessions, subscriptions)."""
        with cls._lock:
            if cls._portal is not None:
                with suppress(Exception):
                    cls._portal.call(cls._portal.stop, True)
            if cls._stack is not None:
                with suppress(Exception):
                    cls._stack.close()
            cls._stack = None
            cls._portal = None
