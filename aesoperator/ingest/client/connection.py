"""`McpClientConnection` and `open_connection`: one `SourceDefinition` in, one guarded session out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import anyio.lowlevel

from aesoperator.ingest.client.calls import ConnectionCalls
from aesoperator.ingest.client.errors import (
    unwrap,
)
from aesoperator.ingest.client.subscriptions import ConnectionSubscriptions
from aesoperator.ingest.sources import SourceDefinition


class McpClientConnection(ConnectionCalls, ConnectionSubscriptions):
    """An `McpConnection` over the `mcp` SDK's `Client`, reconnecting when the transport dies."""


@asynccontextmanager
async def open_connection(definition: SourceDefinition) -> AsyncIterator[McpClientConnection]:
    """An open, guarded MCP session for `definition`; the server is stopped when the context ends,
    also when the caller is cancelled.

    Args:
        definition: The source: how to start or reach its server, limits and credentials.

    Yields:
        The connected `McpClientConnection`.

    Raises:
        ConfigError: The definition's credentials or environment references are incomplete.
        SourceError: The server could not be started or reached (`ConnectionFailed`, `CallTimeout`).
    """
    connection = McpClientConnection(definition)
    try:
        async with anyio.create_task_group() as tg:
            connection._tg = tg
            try:
                await connection.connect()
                yield connection
            finally:
                with anyio.CancelScope(shield=True):
                    await connection.aclose()
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaf = unwrap(group)
        if leaf is group:
            raise
        raise leaf from None
