"""A connection wrapper that times every MCP call, installed around `ingest_source`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from aesoperator.ingest import mcp_ingest
from aesoperator.ingest.adapters.base import McpConnection, ResourceContent, ResourceInfo, ToolInfo, ToolResult
from aesoperator.ingest.sources import SourceDefinition


@dataclass
class CallStats:
    """Calls per tool, their summed duration, the wall time with at least one call in flight
    (calls may overlap), and the bytes received."""

    calls: dict[str, int] = field(default_factory=dict)
    call_seconds: dict[str, float] = field(default_factory=dict)
    busy_seconds: float = 0.0
    bytes_received: int = 0
    errors: int = 0
    _in_flight: int = 0
    _busy_since: float = 0.0

    def begin(self, tool: str) -> float:
        now = time.perf_counter()
        if self._in_flight == 0:
            self._busy_since = now
        self._in_flight += 1
        self.calls[tool] = self.calls.get(tool, 0) + 1
        return now

    def end(self, tool: str, started: float, size: int, failed: bool) -> None:
        now = time.perf_counter()
        self.call_seconds[tool] = self.call_seconds.get(tool, 0.0) + (now - started)
        self.bytes_received += size
        self.errors += int(failed)
        self._in_flight -= 1
        if self._in_flight == 0:
            self.busy_seconds += now - self._busy_since

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": dict(sorted(self.calls.items())),
            "total_calls": sum(self.calls.values()),
            "call_seconds": {k: round(v, 4) for k, v in sorted(self.call_seconds.items())},
            "busy_seconds": round(self.busy_seconds, 4),
            "bytes_received": self.bytes_received,
            "errors": self.errors,
        }


class TimedConnection:
    def __init__(self, inner: McpConnection, stats: CallStats) -> None:
        self.inner = inner
        self.stats = stats
        self.server_name = inner.server_name

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolResult:
        started = self.stats.begin(name)
        size, failed = 0, True
        try:
            result = await self.inner.call_tool(name, arguments)
            size, failed = result.size, False
            return result
        finally:
            self.stats.end(name, started, size, failed)

    async def list_tools(self) -> list[ToolInfo]:
        return await self.inner.list_tools()

    async def list_resources(self) -> list[ResourceInfo]:
        return await self.inner.list_resources()

    async def read_resource(self, uri: str) -> ResourceContent:
        return await self.inner.read_resource(uri)


@contextmanager
def timed_connections(stats: CallStats) -> Iterator[None]:
    """While open, every connection `ingest_source` opens is timed into `stats`."""
    real = mcp_ingest.open_connection

    @asynccontextmanager
    async def timed(definition: SourceDefinition) -> AsyncIterator[McpConnection]:
        async with real(definition) as conn:
            yield TimedConnection(conn, stats)

    mcp_ingest.open_connection = timed  # type: ignore[assignment]
    try:
        yield
    finally:
        mcp_ingest.open_connection = real
