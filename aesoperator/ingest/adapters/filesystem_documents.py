"""Document files (PDF, Word, PowerPoint, Excel, CSV, HTML, EPUB) through the filesystem MCP server.

The server's text tools decode every file as UTF-8, which mangles binaries; its `read_media_file`
answers with the exact bytes, base64-encoded: image and audio files as `image`/`audio` content,
anything else as an embedded resource (`{"type": "resource", "resource": {"uri", "mimeType":
"application/octet-stream", "blob"}}`). It sends them twice (the content and the structured
content), so a response holds about 2.7 times the file's size: `max_document_bytes` (default
7,000,000) keeps a document's answer within the default `max_response_bytes` of 20,000,000.

Documents are read one per call, only when their version (size and times) changed, and go to the
same mapper as local document files. Options: `max_document_bytes`, `document_max_pages`,
`document_max_uncompressed_bytes`, `document_max_zip_entries`, `document_max_cells`,
`document_max_chars` (as the settings of the same names), `document_chunks_across_units`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aesoperator.errors import ConfigError
from aesoperator.ingest.adapters.base import McpConnection
from aesoperator.ingest.loaders.model import LoaderLimits
from aesoperator.ingest.loaders.registry import document_format
from aesoperator.ingest.pipeline import LIMITS_KEY
from aesoperator.ingest.records import SourceRecord

DEFAULT_MAX_DOCUMENT_BYTES = 7_000_000
_LIMIT_OPTIONS = {
    "document_max_pages": "max_pages",
    "document_max_uncompressed_bytes": "max_uncompressed_bytes",
    "document_max_zip_entries": "max_zip_entries",
    "document_max_cells": "max_cells",
    "document_max_chars": "max_chars",
}


def document_limits(options: Mapping[str, Any], source: str) -> LoaderLimits:
    values: dict[str, int] = {}
    for option, field in _LIMIT_OPTIONS.items():
        if option in options:
            value = options[option]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"source {source!r}: options.{option} must be a positive integer")
            values[field] = value
    return LoaderLimits(**values)


async def read_document_bytes(conn: McpConnection, absolute: str) -> tuple[bytes, str | None]:
    """The file's exact bytes and the MIME type the server gave, via `read_media_file`.

    Raises:
        ValueError: the answer holds no binary content.
        SourceError: the call failed (McpCallError for a refused read).
    """
    result = await conn.call_tool("read_media_file", {"path": absolute})
    if not result.blobs:
        raise ValueError("read_media_file answered without binary content")
    blob = result.blobs[0]
    return blob.data, blob.mime_type


def document_record(
    key: str, data: bytes, mime_type: str | None, version: str, uri: str, mtime: float | None, limits: LoaderLimits
) -> SourceRecord | None:
    """The record for a document file, or None when its bytes are not a document after all."""
    fmt = document_format(key, data, None if mime_type == "application/octet-stream" else mime_type)
    if fmt is None:
        return None
    payload = {
        "path": key,
        "data": data,
        "format": fmt,
        "size": len(data),
        "mtime": mtime,
        LIMITS_KEY: limits.signature(),
    }
    return SourceRecord(key, "file", version, payload, uri)


def settled_probe(key: str, version: str, uri: str, limits: LoaderLimits) -> SourceRecord:
    """A record that stands for an unchanged document the pipeline quarantined for good: it is
    not read, and the pipeline reports it as still quarantined."""
    return SourceRecord(key, "unchanged", version, {LIMITS_KEY: limits.signature()}, uri)
