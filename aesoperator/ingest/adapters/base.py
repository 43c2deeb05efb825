"""What a source adapter is: it knows one kind of MCP server's tools and resources, lists the
server's items as `SourceRecord`s (fetching only what changed when it can tell) and owns the
pure mapper that turns those records into graph items."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.ingest.records import Mapper, SkippedRecord, SourceRecord


@dataclass(frozen=True, slots=True)
class BlobContent:
    """Binary content of a tool result: an embedded blob resource, or image or audio data."""

    data: bytes
    mime_type: str | None = None
    uri: str | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool call's result, flattened: its text parts joined, its structured content if any, and
    its binary parts decoded."""

    text: str
    structured: Any | None
    is_error: bool
    size: int  # bytes of content received
    blobs: tuple[BlobContent, ...] = ()


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    uri: str
    name: str
    mime_type: str | None = None
    description: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class ResourceContent:
    uri: str
    text: str | None
    blob: bytes | None
    mime_type: str | None


@dataclass(frozen=True, slots=True)
class ToolInfo:
    name: str
    description: str | None = None
    input_schema: dict[str, Any] = field(default_factory=dict)


class McpConnection(Protocol):
    """An open MCP client session with timeouts, retries and size limits applied.
    Every failure raises `SourceError` naming the server and the call."""

    server_name: str

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolResult: ...

    async def list_tools(self) -> list[ToolInfo]: ...

    async def list_resources(self) -> list[ResourceInfo]: ...

    async def read_resource(self, uri: str) -> ResourceContent: ...


class SourceAdapter(Protocol):
    """One per source kind; constructed with the source's definition."""

    kind: str
    skipped: list[SkippedRecord]

    @property
    def mapper(self) -> Mapper:
        """The pure mapper for this source's records (an attribute in every adapter)."""
        ...

    def records(self, conn: McpConnection, previous: Mapping[str, SourceItemState]) -> AsyncIterator[SourceRecord]:
        """Yield every current item. For an item whose version is unchanged since `previous`
        (same content hash), yield `unchanged(key, previous[key])` without fetching its content."""
        ...


def unchanged(state: SourceItemState, uri: str = "") -> SourceRecord:
    """A record that stands for an item known to be unchanged; the pipeline skips it unmapped."""
    return SourceRecord(key=state.key, kind="unchanged", content_hash=state.content_hash, payload={}, uri=uri)
