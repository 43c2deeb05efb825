"""Google Drive through the Drive MCP server (`@modelcontextprotocol/server-gdrive`).

That server lists every file the account can see as a resource `gdrive:///<file id>` (name and
MIME type, ten per page) and reads one on request: Google Docs exported as Markdown, Sheets as
CSV, Slides as plain text, Drawings as PNG; other files as they are (text for text/* and JSON,
base64 otherwise). Its one tool, `search`, answers with names and types only, so it is not used.

Folders are listed like files; they are not read (the server cannot export a folder).

Incremental: the server lists neither modification times nor sizes nor parents, so the adapter
cannot tell an unchanged file from the listing: it reads every file on each run and compares a
hash of the content (and name and type) with the previous run. Unchanged files are not mapped or
embedded again; only changed, new and removed ones touch the graph. Folder hierarchy cannot be
read through this server, so folders stand alone. Mapping: see `mappers/gdrive.py`.

Options:
    chunk_chars:  documents with longer text also get Chunk entities (default 1200)
    binary_files: false to leave out files without text content (default true)

Credentials: the server reads an OAuth token file named by its environment, e.g.
``env = {GDRIVE_CREDENTIALS_PATH = "${GDRIVE_CREDENTIALS_PATH}"}``; it asks for the read-only
Drive scope when the token is made (`mcp-server-gdrive auth`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.errors import ConfigError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.ingest.adapters.base import McpConnection, unchanged
from aesoperator.ingest.client import McpCallError
from aesoperator.ingest.mappers.gdrive import (
    DEFAULT_CHUNK_CHARS,
    FOLDER_MIME,
    URI_PREFIX,
    DriveIds,
    DriveMapper,
    declared_links,
    file_id,
)
from aesoperator.ingest.mappers.links import Declared, declared_from_state, links_key, links_record
from aesoperator.ingest.records import SkippedRecord, SourceRecord
from aesoperator.ingest.sources import SourceDefinition

VERSION = "gd1"


class GDriveAdapter:
    kind = "gdrive"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        chunk_chars = definition.options.get("chunk_chars", DEFAULT_CHUNK_CHARS)
        if not isinstance(chunk_chars, int) or isinstance(chunk_chars, bool) or chunk_chars < 100:
            raise ConfigError(
                f"source {definition.name!r}: options.chunk_chars must be an integer of at least 100, "
                f"got {chunk_chars!r}"
            )
        self.binary_files = definition.options.get("binary_files", True) is not False
        self.mapper = DriveMapper(definition.name, definition.namespace, chunk_chars)
        self.ids = DriveIds(definition.name)
        self.skipped: list[SkippedRecord] = []

    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        listed = [r for r in await conn.list_resources() if r.uri.startswith(URI_PREFIX)]
        present: dict[str, str] = {}
        declared: dict[str, tuple[Declared, str]] = {}
        for info in listed:
            fid = file_id(info.uri)
            mime = info.mime_type or ""
            key = f"file:{fid}"
            state = previous.get(key)
            payload: dict[str, Any] = {"id": fid, "name": info.name, "mimeType": mime, "text": None}
            if mime != FOLDER_MIME:
                try:
                    content = await conn.read_resource(info.uri)
                except McpCallError as exc:
                    self.skipped.append(SkippedRecord(key, f"could not read {info.name!r}: {exc}"))
                    if state is not None:
                        present[fid] = self.ids.item(fid, mime)
                        declared[key] = (declared_from_state(previous.get(links_key(key))), info.uri)
                    continue
                payload["content_mime"] = content.mime_type
                if content.text is not None:
                    payload["text"] = content.text
                    payload["size"] = len(content.text.encode("utf-8"))
                elif content.blob is not None:
                    if not self.binary_files:
                        continue
                    payload["size"] = len(content.blob)
                    payload["blob_hash"] = hashlib.blake2b(content.blob, digest_size=16).hexdigest()
            version = f"{VERSION}:{content_hash(json.dumps(payload, sort_keys=True, ensure_ascii=False))}"
            present[fid] = self.ids.item(fid, mime)
            if state is not None and state.content_hash == version:
                declared[key] = (declared_from_state(previous.get(links_key(key))), info.uri)
                yield unchanged(state, info.uri)
                continue
            declared[key] = (declared_links(payload, self.ids), info.uri)
            yield SourceRecord(key, "file", version, payload, info.uri)

        for key, (links, uri) in declared.items():
            record = links_record(key, links, present, uri, previous)
            if record is not None:
                yield record
