"""Live MCP connections used from synchronous code: a session held open on the background loop.

`ClientLink` goes through the engine's MCP client (stdio or streamable HTTP); `LocalLink` reaches a
built-in connector in this process through the MCP SDK's in-process transport.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import ExitStack, asynccontextmanager, suppress
from typing import Any

import anyio
import mcp_types as types
from anyio.from_thread import BlockingPortal
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError

from aesoperator.api.loop import BackgroundLoop
from aesoperator.connectors.base import ConnectorServer
from aesoperator.errors import PermissionDenied, RateLimited, SchemaError, SourceError
from aesoperator.ingest.adapters.base import ResourceContent, ToolInfo, ToolResult
from aesoperator.ingest.client import LIST_CHANGED, ToolCallError, open_connection
from aesoperator.ingest.sources import SourceDefinition


class Link:
    """A live MCP connection used from sync code: an MCP session held open on the shared loop."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._stack: ExitStack | None = None
        self._lock = threading.Lock()

    async def _call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        raise NotImplementedError

    async def _read_resource(self, uri: str) -> ResourceContent:
        raise NotImplementedError

    async def _list_tools(self) -> list[ToolInfo]:
        raise NotImplementedError

    def _open(self, stack: ExitStack, portal: BlockingPortal) -> None:
        raise NotImplementedError

    def listen(self, uris: Sequence[str]) -> Any:
        """An async context manager yielding an async iterator of updated URIs."""
        raise NotImplementedError

    def ensure(self) -> BlockingPortal:
        portal = BackgroundLoop.portal()
        with self._lock:
            if self._stack is None:
                stack = ExitStack()
                try:
                    self._open(stack, portal)
                except BaseException:
                    stack.close()
                    raise
                self._stack = stack
        return portal

    def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        return self.ensure().call(self._call_tool, name, dict(arguments))

    def read_resource(self, uri: str) -> ResourceContent:
        return self.ensure().call(self._read_resource, uri)

    def list_tools(self) -> list[ToolInfo]:
        return self.ensure().call(self._list_tools)

    def close(self) -> None:
        with self._lock:
            stack, self._stack = self._stack, None
        if stack is not None:
            with suppress(Exception):
                stack.close()


class ClientLink(Link):
    """Through the engine's MCP client (`aesoperator.ingest.client`): stdio or streamable HTTP,
    with per-call timeouts, retries with backoff on connection errors, size limits and
    credentials (bearer token or OAuth2 client credentials)."""

    def __init__(self, definition: SourceDefinition) -> None:
        super().__init__(definition.name)
        self.definition = definition
        self._conn: Any = None

    def _open(self, stack: ExitStack, portal: BlockingPortal) -> None:
        self._conn = stack.enter_context(portal.wrap_async_context_manager(open_connection(self.definition)))

    async def _watched(self, op: Callable[[], Any]) -> Any:
        """Run a call, failing it at once when the server refuses the credentials mid-session
        (HTTP 401/403 on a later request: a revoked or rotated token) rather than at its timeout."""
        box: dict[str, Any] = {}
        done = anyio.Event()

        async def run() -> None:
            try:
                box["result"] = await op()
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            while not done.is_set():
                with anyio.move_on_after(0.05):
                    await done.wait()
                refusal = getattr(self._conn, "_http_refusal", None)
                if refusal and not done.is_set():
                    box["refused"] = refusal
                    tg.cancel_scope.cancel()
                    break
        refusal = box.get("refused") or (getattr(self._conn, "_http_refusal", None) if "error" in box else None)
        if refusal:
            raise SourceError(f"server {self.label!r}: the server refused the credentials ({refusal})")
        if "error" in box:
            raise box["error"]
        return box["result"]

    async def _call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        result: ToolResult = await self._watched(lambda: self._conn.call_tool(name, arguments))
        return result

    async def _read_resource(self, uri: str) -> ResourceContent:
        content: ResourceContent = await self._watched(lambda: self._conn.read_resource(uri))
        return content

    async def _list_tools(self) -> list[ToolInfo]:
        tools: list[ToolInfo] = await self._watched(self._conn.list_tools)
        return tools

    @asynccontextmanager
    async def listen(self, uris: Sequence[str]) -> AsyncIterator[AsyncIterator[str]]:
        # a subscription holds its own session: a connection follows one feed at a time
        async with open_connection(self.definition) as conn, conn.resource_updates(list(uris)) as feed:

            async def updates() -> AsyncIterator[str]:
                while True:
                    for uri in await feed.next_batch(1.0, settle_seconds=0.05):
                        if uri != LIST_CHANGED:
                            yield uri

            yield updates()


class LocalLink(Link):
    """A built-in connector in this process, reached through the MCP SDK's in-process transport:
    every call passes the connector's own checks, rate limit and audit, as over the wire."""

    def __init__(self, server: ConnectorServer) -> None:
        super().__init__(server.name)
        self.server = server
        self._client: Any = None

    def _open(self, stack: ExitStack, portal: BlockingPortal) -> None:
        self._client = stack.enter_context(portal.wrap_async_context_manager(Client(self.server)))

    async def _call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        result = await self._client.call_tool(name, dict(arguments))
        text = "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))
        if result.is_error:
            info = (result.meta or {}).get("aesoperator/error") or {}
            message = f"server {self.label!r}: {name}: {text or 'the tool reported an error'}"
            if info.get("type") == "permission_denied":
                raise PermissionDenied(message)
            if info.get("type") == "rate_limited":
                raise RateLimited(message, float(info.get("retry_after") or 1.0))
            if info.get("type") in ("invalid_arguments", "schema"):
                raise SchemaError(message)
            raise ToolCallError(message)
        return ToolResult(text=text, structured=result.structured_content, is_error=False, size=len(text))

    async def _read_resource(self, uri: str) -> ResourceContent:
        try:
            result = await self._client.read_resource(uri)
        except MCPError as exc:
            raise SourceError(f"server {self.label!r}: read_resource {uri}: {exc.error.message}") from None
        texts = [p.text for p in result.contents if isinstance(p, types.TextResourceContents)]
        mime = result.contents[0].mime_type if result.contents else None
        return ResourceContent(uri=uri, text="\n".join(texts) if texts else None, blob=None, mime_type=mime)

    async def _list_tools(self) -> list[ToolInfo]:
        result = await self._client.list_tools()
        return [
            ToolInfo(name=t.name, description=t.description, input_schema=dict(t.input_schema)) for t in result.tools
        ]

    @asynccontextmanager
    async def listen(self, uris: Sequence[str]) -> AsyncIterator[AsyncIterator[str]]:
        async with Client(self.server) as client, client.listen(resource_subscriptions=list(uris)) as subscription:

            async def updates() -> AsyncIterator[str]:
                async for event in subscription:
                    if isinstance(event, ResourceUpdated):
                        yield event.uri

            yield updates()
