"""How long work reports its progress, independent of how it is shown (a bar, a log, nothing)."""

from __future__ import annotations

from typing import Protocol


class ProgressReporter(Protocol):
    """Receives the progress of one piece of long work: `start`, any number of `advance`, `finish`."""

    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    """A `ProgressReporter` that shows nothing."""

    def start(self, description: str, total: int | None) -> None:
        """Ignore the start of work.

        Args:
            description: what the work is.
            total: how many steps it has, if known.
        """

    def advance(self, n: int = 1) -> None:
        """Ignore progress.

        Args:
            n: how many steps were done.
        """

    def finish(self) -> None:
        """Ignore the end of work."""


__all__ = ["NoProgress", "ProgressReporter"]
