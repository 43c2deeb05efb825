"""The `McpConnection` calls: tools, paged listings and resources, each within the size limit."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import mcp_types as types
from mcp import Client

from aesoperator.errors import SourceError
from aesoperator.ingest.adapters.base import BlobContent, ResourceContent, ResourceInfo, ToolInfo, ToolResult
from aesoperator.ingest.client.errors import (
    ResponseTooLarge,
    ServerRequestError,
    ToolCallError,
    clip,
)
from aesoperator.ingest.client.sessions import ConnectionSessions

MAX_PAGES: Final = 10_000


def _text_bytes(text: str | None) -> int:
    return len(text.encode("utf-8", "surrogatepass")) if text else 0


def _b64_bytes(data: str | None) -> int:
    return (len(data) * 3) // 4 if data else 0


async def _with_cursor(
    fetch: Callable[[Client, str | None], Awaitable[Any]], cursor: str | None, client: Client
) -> Any:
    return await fetch(client, cursor)


class ConnectionCalls(ConnectionSessions):
    """call_tool, list_tools, list_resources, read_resource."""

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolResult:
        """Call a tool.

        Args:
            name: The tool.
            arguments: Its arguments.

        Returns:
            The text and structured content of the result, and its size.

        Raises:
            ToolCallError: The tool reported an error.
            ResponseTooLarge: The result is over max_response_bytes.
            SourceError: The call failed otherwise (timeout, server error, lost connection).
        """
        what = f"call_tool {name}"
        args = dict(arguments) if arguments is not None else None
        result = await self._call(what, lambda c: c.call_tool(name, args))
        texts: list[str] = []
        encoded: list[tuple[str, str | None, str | None]] = []  # (base64, mime type, uri)
        size = 0
        for block in result.content:
            if isinstance(block, types.TextContent):
                texts.append(block.text)
                size += _text_bytes(block.text)
            elif isinstance(block, types.ImageContent | types.AudioContent):
                size += _b64_bytes(block.data)
                encoded.append((block.data, block.mime_type, None))
            elif isinstance(block, types.EmbeddedResource):
                inner = block.resource
                if isinstance(inner, types.TextResourceContents):
                    texts.append(inner.text)
                    size += _text_bytes(inner.text)
                else:
                    size += _b64_bytes(inner.blob)
                    encoded.append((inner.blob, inner.mime_type, str(inner.uri)))
        structured = result.structured_content
        if structured is not None:
            size += len(json.dumps(structured, ensure_ascii=False, default=str).encode("utf-8"))
        if size > self.definition.max_response_bytes:
            raise ResponseTooLarge(
                self._label(
                    f"{what}: the response holds {size} bytes, over max_response_bytes "
                    f"{self.definition.max_response_bytes}; it was discarded"
                )
            )
        text = "\n".join(texts)
        if result.is_error:
            raise ToolCallError(self._label(f"{what} failed: {clip(text) or 'the tool reported an error'}"))
        blobs: list[BlobContent] = []
        for data, mime, uri in encoded:
            try:
                blobs.append(BlobContent(base64.b64decode(data, validate=True), mime, uri))
            except ValueError:
                raise ServerRequestError(self._label(f"{what}: a binary part is not valid base64")) from None
        return ToolResult(text=text, structured=structured, is_error=False, size=size, blobs=tuple(blobs))

    async def _paged(self, what: str, fetch: Callable[[Client, str | None], Awaitable[Any]]) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        seen: set[str] = set()
        for page in range(MAX_PAGES):
            label = what if page == 0 else f"{what} (page {page + 1})"
            result = await self._call(label, functools.partial(_with_cursor, fetch, cursor))
            items.extend(result.tools if hasattr(result, "tools") else result.resources)
            cursor = result.next_cursor
            if not cursor:
                return items
            if cursor in seen:
                raise SourceError(self._label(f"{what}: the server repeated the page cursor {cursor!r}"))
            seen.add(cursor)
        raise SourceError(self._label(f"{what}: more than {MAX_PAGES} pages"))

    async def list_tools(self) -> list[ToolInfo]:
        """Every tool the server offers, all pages.

        Returns:
            Name, description and input schema of each tool.

        Raises:
            SourceError: The listing failed or its pages did not end.
        """
        tools = await self._paged("list_tools", lambda c, cur: c.list_tools(cursor=cur, cache_mode="bypass"))
        return [ToolInfo(name=t.name, description=t.description, input_schema=dict(t.input_schema)) for t in tools]

    async def list_resources(self) -> list[ResourceInfo]:
        """Every resource the server lists, all pages.

        Returns:
            URI, name, MIME type, description and size of each resource.

        Raises:
            SourceError: The listing failed or its pages did not end.
        """
        resources = await self._paged(
            "list_resources", lambda c, cur: c.list_resources(cursor=cur, cache_mode="bypass")
        )
        return [
            ResourceInfo(uri=str(r.uri), name=r.name, mime_type=r.mime_type, description=r.description, size=r.size)
            for r in resources
        ]

    async def read_resource(self, uri: str) -> ResourceContent:
        """Read one resource.

        Args:
            uri: The resource.

        Returns:
            Its text (parts joined) or, without text, its first blob decoded.

        Raises:
            ResponseTooLarge: The resource is over max_response_bytes.
            ServerRequestError: The server refused the read or sent an invalid blob.
            SourceError: The call failed otherwise.
        """
        what = f"read_resource {uri}"
        result = await self._call(what, lambda c: c.read_resource(uri, cache_mode="bypass"))
        size = 0
        texts: list[str] = []
        blob: bytes | None = None
        mime: str | None = None
        for part in result.contents:
            mime = mime or part.mime_type
            if isinstance(part, types.TextResourceContents):
                size += _text_bytes(part.text)
                texts.append(part.text)
            else:
                size += _b64_bytes(part.blob)
        if size > self.definition.max_response_bytes:
            raise ResponseTooLarge(
                self._label(
                    f"{what}: the resource holds {size} bytes, over max_response_bytes "
                    f"{self.definition.max_response_bytes}; it was discarded"
                )
            )
        if not texts:
            first_blob = next((p for p in result.contents if isinstance(p, types.BlobResourceContents)), None)
            if first_blob is not None:
                try:
                    blob = base64.b64decode(first_blob.blob, validate=True)
                except ValueError:
                    raise ServerRequestError(self._label(f"{what}: the blob is not valid base64")) from None
        return ResourceContent(uri=uri, text="\n".join(texts) if texts else None, blob=blob, mime_type=mime)
