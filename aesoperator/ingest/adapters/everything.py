"""A server's resources (and chosen tool results) as Document entities.

Written for `@modelcontextprotocol/server-everything`, the protocol's reference test server, whose
listed resources are documents and which can send resource updates; it fits any server whose
resources are documents. Each listed resource becomes a `Document` (name, description, an
excerpt) holding its text in `Chunk`s (CONTAINS). A binary resource that is a document file
(PDF, Word, PowerPoint, Excel, EPUB, ...: told by its bytes, name and MIME type) is loaded and
chunked by page, slide, sheet or chapter (`mappers.document_files`), its chunks' URIs pointing
there (`doc://…/report.pdf#page=3&char=…`); other binary resources become a Document that
describes them.

Options:
    tools:             tool calls whose text results also become Documents: a list of tool names
                       or of {"name": ..., "arguments": {...}} tables
    chunk_chars:       chunk size (default 1200); overlap_chars: overlap (default 150)
    simulate_updates:  when watching, ask server-everything to start sending resource updates
                       (its `toggle-subscriber-updates` tool; default true when the tool exists)

`include` / `exclude` globs match a resource's URI or name. A resource or tool that cannot be
read (too large, a server-side error) is skipped with its reason; the rest of the ingest goes on.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.graph_schema.ids import content_hash, entity_id
from aesoperator.graph_schema.models import Entity, Provenance, Relation
from aesoperator.ingest.adapters.base import McpConnection, ResourceContent, ResourceInfo
from aesoperator.ingest.chunking import chunk_text
from aesoperator.ingest.client import McpCallError
from aesoperator.ingest.loaders.model import LoaderLimits
from aesoperator.ingest.loaders.registry import LOADERS_VERSION, document_format
from aesoperator.ingest.mappers.document_files import chunk_label, chunk_properties, read_document
from aesoperator.ingest.pipeline import LIMITS_KEY
from aesoperator.ingest.records import MappedItem, SkippedRecord, SourceRecord
from aesoperator.ingest.sources import SourceDefinition

TEXT_MIME_PREFIXES = ("text/", "application/json", "application/xml", "application/yaml", "application/javascript")
MARKDOWN_MIMES = ("text/markdown", "text/x-markdown")
SIMULATE_UPDATES_TOOL = "toggle-subscriber-updates"
EXCERPT_CHARS = 400


def _reason(exc: Exception, source: str) -> str:
    """The error without the "source 'name': " prefix, which the item's source already says."""
    text = str(exc)
    prefix = f"source {source!r}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _is_text(mime: str | None) -> bool:
    return mime is None or mime.startswith(TEXT_MIME_PREFIXES)


class McpResourceMapper:
    """Pure: a resource or tool record to a Document with its text in Chunks.

    Payload: {"uri", "name", "description", "mime_type", "origin": "resource" | "tool",
    "text": str | None, "blob_bytes": int | None}, plus {"data": bytes, "format": str} for a
    binary resource that is a document file.
    """

    kind = "documents"

    def __init__(self, source: str, namespace: str, chunk_chars: int = 1200, overlap_chars: int = 150) -> None:
        self.source = source
        self.namespace = namespace
        self.chunk_chars = chunk_chars
        self.overlap_chars = overlap_chars

    def map(self, record: SourceRecord) -> MappedItem:
        p = record.payload
        uri: str = p["uri"]
        name: str = p.get("name") or uri
        description: str = p.get("description") or ""
        mime: str | None = p.get("mime_type")
        text: str | None = p.get("text")
        provenance = Provenance(uri=uri, version=record.content_hash)
        if "data" in p:
            return self._document(record, name, description, provenance)
        if text is not None and text.strip():
            summary = f"{name}\n{description}\n{text[:EXCERPT_CHARS]}".replace("\n\n\n", "\n\n")
        else:
            what = f"binary resource ({mime or 'unknown type'}, {p.get('blob_bytes') or 0} bytes)"
            summary = f"{name}: {what if text is None else 'empty resource'}" + (
                f"\n{description}" if description else ""
            )
        document = Entity(
            id=entity_id(self.source, "doc", uri),
            type="Document",
            name=name,
            text=summary,
            properties={
                "uri": uri,
                "mime_type": mime,
                "origin": p.get("origin", "resource"),
                "chars": len(text) if text is not None else None,
                "blob_bytes": p.get("blob_bytes"),
            },
            source=self.source,
            provenance=provenance,
            namespace=self.namespace,
        )
        item = MappedItem(entities=[document])
        if text and text.strip():
            markdown = mime in MARKDOWN_MIMES or uri.lower().endswith((".md", ".markdown"))
            for chunk in chunk_text(text, self.chunk_chars, self.overlap_chars, markdown=markdown):
                label = f"{name} › {chunk.heading}" if chunk.heading else f"{name} #{chunk.index + 1}"
                piece = Entity(
                    id=entity_id(self.source, "chunk", f"{uri}#{chunk.index}"),
                    type="Chunk",
                    name=label,
                    text=chunk.text,
                    properties={
                        "uri": uri,
                        "index": chunk.index,
                        "start_line": chunk.start_line,
                        "end_line": chunk.end_line,
                        "heading": chunk.heading,
                    },
                    source=self.source,
                    provenance=Provenance(
                        uri=f"{uri}#L{chunk.start_line}-L{chunk.end_line}", version=content_hash(chunk.text)
                    ),
                    namespace=self.namespace,
                )
                item.entities.append(piece)
                item.relations.append(
                    Relation(
                        type="CONTAINS", src=document.id, dst=piece.id, source=self.source, namespace=self.namespace
                    )
                )
        return item

    def _document(self, record: SourceRecord, name: str, description: str, provenance: Provenance) -> MappedItem:
        """A document file served as a blob: loaded, chunked by its pages, slides, sheets or chapters."""
        p = record.payload
        uri: str = p["uri"]
        content = read_document(
            str(p["format"]), p["data"], LoaderLimits(), self.chunk_chars, self.overlap_chars, across_units=False
        )
        loaded = content.document
        document = Entity(
            id=entity_id(self.source, "doc", uri),
            type="Document",
            name=name,
            text="\n".join(part for part in (name, description, content.preview) if part),
            properties={
                "uri": uri,
                "mime_type": p.get("mime_type"),
                "origin": p.get("origin", "resource"),
                "blob_bytes": p.get("blob_bytes"),
                "format": loaded.format,
                "units": len(loaded.units),
                "title": loaded.title,
            },
            source=self.source,
            provenance=provenance,
            namespace=self.namespace,
        )
        item = MappedItem(entities=[document])
        base = uri.split("#", 1)[0]
        for chunk in content.chunks:
            props = {"uri": uri, **chunk_properties(name, loaded.format, chunk)}
            piece = Entity(
                id=entity_id(self.source, "chunk", f"{uri}#{chunk.index}"),
                type="Chunk",
                name=chunk_label(name, chunk),
                text=chunk.text,
                properties=props,
                source=self.source,
                provenance=Provenance(uri=f"{base}#{props['fragment']}", version=content_hash(chunk.text)),
                namespace=self.namespace,
            )
            item.entities.append(piece)
            item.relations.append(
                Relation(type="CONTAINS", src=document.id, dst=piece.id, source=self.source, namespace=self.namespace)
            )
        return item


def _tool_calls(raw: Any) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    for entry in raw or []:
        if isinstance(entry, str):
            calls.append((entry, {}))
        elif isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            calls.append((entry["name"], dict(entry.get("arguments") or {})))
        else:
            raise ValueError(f"options.tools entries are tool names or {{name, arguments}} tables, got {entry!r}")
    return calls


class EverythingAdapter:
    kind = "everything"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        options = definition.options
        self.mapper = McpResourceMapper(
            definition.name,
            definition.namespace,
            chunk_chars=int(options.get("chunk_chars", 1200)),
            overlap_chars=int(options.get("overlap_chars", 150)),
        )
        self.tools = _tool_calls(options.get("tools"))
        self.skipped: list[SkippedRecord] = []
        self._updates_enabled_for: tuple[int, int | None] | None = None

    # -- selection ----------------------------------------------------------------------------
    def wanted(self, resource: ResourceInfo) -> bool:
        def hit(patterns: Sequence[str]) -> bool:
            return any(fnmatch.fnmatch(resource.uri, p) or fnmatch.fnmatch(resource.name, p) for p in patterns)

        if self.definition.exclude and hit(self.definition.exclude):
            return False
        return not self.definition.include or hit(self.definition.include)

    async def _resources(self, conn: McpConnection) -> list[ResourceInfo]:
        return [r for r in await conn.list_resources() if self.wanted(r)]

    # -- records ------------------------------------------------------------------------------
    def _record(self, resource: ResourceInfo, content: ResourceContent) -> SourceRecord:
        mime = content.mime_type or resource.mime_type
        text = content.text
        if text is None and content.blob is not None and _is_text(mime):
            try:
                text = content.blob.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        payload: dict[str, Any] = {
            "uri": resource.uri,
            "name": resource.name,
            "description": resource.description,
            "mime_type": mime,
            "origin": "resource",
            "text": text,
            "blob_bytes": len(content.blob) if content.blob is not None else None,
        }
        body = (
            content_hash(text) if text is not None else hashlib.blake2b(content.blob or b"", digest_size=16).hexdigest()
        )
        digest = content_hash(json.dumps({**payload, "text": body}, sort_keys=True))
        if text is None and content.blob is not None:
            fmt = document_format(resource.name or resource.uri, content.blob, mime)
            if fmt is None and resource.name != resource.uri:
                fmt = document_format(resource.uri.rsplit("/", 1)[-1], content.blob, mime)
            if fmt is not None:  # the bytes go to the mapper, which loads them only if they changed
                digest = content_hash(f"{digest}|{fmt}|{LOADERS_VERSION}")
                payload.update(data=content.blob, format=fmt)
                payload[LIMITS_KEY] = LoaderLimits().signature()
        return SourceRecord(key=resource.uri, kind="resource", content_hash=digest, payload=payload, uri=resource.uri)

    async def _read(self, conn: McpConnection, resource: ResourceInfo) -> SourceRecord | None:
        try:
            return self._record(resource, await conn.read_resource(resource.uri))
        except McpCallError as exc:
            self.skipped.append(SkippedRecord(resource.uri, _reason(exc, self.definition.name)))
            return None

    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        # Resources carry no version the server vouches for, so each is read and its hash compared.
        for resource in await self._resources(conn):
            record = await self._read(conn, resource)
            if record is not None:
                yield record
        for name, arguments in self.tools:
            key = f"tool:{name}" + (f"?{json.dumps(arguments, sort_keys=True)}" if arguments else "")
            try:
                result = await conn.call_tool(name, arguments)
            except McpCallError as exc:
                self.skipped.append(SkippedRecord(key, _reason(exc, self.definition.name)))
                continue
            payload = {
                "uri": key,
                "name": f"{name} result",
                "description": f"Result of the tool {name}",
                "mime_type": "text/plain",
                "origin": "tool",
                "text": result.text,
                "blob_bytes": None,
            }
            digest = content_hash(json.dumps(payload, sort_keys=True))
            yield SourceRecord(key=key, kind="tool", content_hash=digest, payload=payload, uri=key)

    async def records_for(
        self, conn: McpConnection, uris: Sequence[str], previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        """Only the named resources (after an update notification); unknown URIs are ignored."""
        wanted = set(uris)
        for resource in await self._resources(conn):
            if resource.uri in wanted:
                record = await self._read(conn, resource)
                if record is not None:
                    yield record

    # -- watching -----------------------------------------------------------------------------
    async def watch_uris(self, conn: McpConnection) -> list[str]:
        return [r.uri for r in await self._resources(conn)]

    async def watch_started(self, conn: McpConnection) -> None:
        """server-everything only sends resource updates once asked to, per session; its tool
        toggles, so it is called once per session (re-subscribing must not turn updates off)."""
        if self.definition.options.get("simulate_updates", True) is False:
            return
        session = (id(conn), getattr(conn, "generation", None))
        if session == self._updates_enabled_for:
            return
        if any(t.name == SIMULATE_UPDATES_TOOL for t in await conn.list_tools()):
            await conn.call_tool(SIMULATE_UPDATES_TOOL, {})
            self._updates_enabled_for = session
