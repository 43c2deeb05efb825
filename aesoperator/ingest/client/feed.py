"""The feed of resource URIs a server reported as updated."""

from __future__ import annotations

from typing import Final

import anyio
import anyio.abc
import anyio.lowlevel

from aesoperator.ingest.client.errors import (
    ConnectionFailed,
)

LIST_CHANGED: Final = "*"  # the update that stands for "the list of resources changed"


class ResourceUpdates:
    """Resource URIs the server reported as updated, deduplicated until taken."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.uris: list[str] = []
        self._pending: dict[str, None] = {}
        self._wake = anyio.Event()
        self._error: str | None = None

    def push(self, uri: str) -> None:
        self._pending[uri] = None
        self._wake.set()

    def fail(self, reason: str) -> None:
        if self._error is None:
            self._error = reason
        self._wake.set()

    async def next_batch(self, wait_seconds: float, settle_seconds: float = 0.3) -> list[str]:
        """The URIs updated since the last batch; [] if none arrive within `wait_seconds`.
        Raises ConnectionFailed once the subscription is lost."""
        with anyio.move_on_after(wait_seconds):
            while not self._pending and self._error is None:
                await self._wake.wait()
                self._wake = anyio.Event()
        if self._error is not None and not self._pending:
            raise ConnectionFailed(f"source {self.source!r}: resource subscription lost: {self._error}")
        if not self._pending:
            return []
        await anyio.sleep(settle_seconds)  # let a burst of updates arrive as one batch
        batch = list(self._pending)
        self._pending.clear()
        return batch
