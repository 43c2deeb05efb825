"""The state of one MCP client connection, shared by the parts that act on it."""

from __future__ import annotations

import shlex
from typing import Final

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types as types
from mcp import Client

from aesoperator.ingest.client.credentials import ClientCredentials, strip_userinfo
from aesoperator.ingest.client.feed import ResourceUpdates
from aesoperator.ingest.client.stdio import ServerProcess
from aesoperator.ingest.sources import SourceDefinition

CONNECT_TIMEOUT_FLOOR: Final = 30.0


def transport_identity(definition: SourceDefinition) -> str:
    """What a source name stands for: its command line (stdio) or its URL without credentials.

    Args:
        definition: The source.

    Returns:
        The command line, or the URL with any user info removed.
    """
    if definition.url:
        return strip_userinfo(definition.url)
    return shlex.join([definition.command or "", *definition.args])


class Session:
    """One live SDK client and the task that owns it."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.client: Client | None = None
        self.error: Exception | None = None
        self.scope = anyio.CancelScope()
        self.ready = anyio.Event()
        self.stop = anyio.Event()
        self.finished = anyio.Event()


class ConnectionState:
    """What one connection knows: its definition, limits, current session and server process."""

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        self.server_name = definition.name
        self.identity = transport_identity(definition)
        self._timeout = definition.timeout_seconds
        self._connect_timeout = max(self._timeout, CONNECT_TIMEOUT_FLOOR)
        # Room for JSON escaping and for content sent twice (text plus structured content).
        self._max_message_bytes = 2 * definition.max_response_bytes + (1 << 20)
        self._tg: anyio.abc.TaskGroup | None = None
        self._current: Session | None = None
        self._process: ServerProcess | None = None
        self._generation = 0
        self._lock = anyio.Lock()
        self._inflight: set[anyio.CancelScope] = set()
        self._faults: dict[anyio.CancelScope, str] = {}
        self._http_refusal: str | None = None
        self._feed: ResourceUpdates | None = None
        self._credentials: ClientCredentials | None = None
        self._bearer: str | None = None

    # -- public extras ------------------------------------------------------------------------
    @property
    def _client(self) -> Client | None:
        return self._current.client if self._current is not None else None

    @property
    def generation(self) -> int:
        """Counts sessions: it changes whenever the connection had to be re-established."""
        return self._generation

    @property
    def protocol_version(self) -> str | None:
        return self._client.protocol_version if self._client is not None else None

    @property
    def server_info(self) -> types.Implementation | None:
        return self._client.server_info if self._client is not None else None

    @property
    def supports_subscriptions(self) -> bool:
        if self._client is None:
            return False
        resources = self._client.server_capabilities.resources
        return bool(resources is not None and resources.subscribe)

    def _label(self, what: str) -> str:
        return f"source {self.server_name!r}: {what}"
