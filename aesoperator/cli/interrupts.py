"""Ctrl-C for commands that run until stopped (`aesop watch`): the first press asks the command
to stop at its next safe point, the second aborts at once.

A KeyboardInterrupt raised wherever the main thread happens to be can land while a connection
is half open in the event loop's thread, and be lost in its clean-up; an event the command polls
cannot.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType


@contextlib.contextmanager
def stop_on_first_interrupt(notice: Callable[[], None]) -> Iterator[threading.Event]:
    """An event set by the first SIGINT (which also calls `notice`); later ones raise
    KeyboardInterrupt as usual. The previous handler is restored on exit. Off the main thread,
    where handlers cannot be installed, the event is only set by its holder.

    Args:
        notice: tells the user the command is stopping (called from the signal handler).

    Returns:
        A context manager giving the event.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def first(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second press aborts
        notice()

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


__all__ = ["stop_on_first_interrupt"]
