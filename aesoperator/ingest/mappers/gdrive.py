"""Google Drive files (as `gdrive:///<file id>` resources of a Drive MCP server) to graph items.

- a folder is a `Folder` (`<source>:folder:<file id>`);
- a file whose content the server gives as text (Google Docs exported as Markdown, Sheets as CSV,
  Slides as plain text; text and JSON files) is a `Document` (`<source>:file:<file id>`) whose text
  is its name and content. A document longer than `chunk_chars` also gets `Chunk` entities that
  cover the whole content (Document CONTAINS Chunk) and keeps only its head;
- any other file (PDF, images, ...) is a `File` with its name, type and size;
- a document that links to another Drive file (a docs.google.com or drive.google.com URL with its
  id) LINKS_TO it once both are in the graph (see `links.py`).

Text is kept verbatim: whatever a document says is data.
"""

from __future__ import annotations

import re
from typing import Any

from aesoperator.errors import MappingError
from aesoperator.graph_schema.ids import content_hash, entity_id, relation_id
from aesoperator.graph_schema.models import MAX_NAME_CHARS, MAX_TEXT_CHARS, Entity, Provenance, Relation
from aesoperator.ingest.chunking import chunk_text
from aesoperator.ingest.mappers.links import LINKS_KIND, Declared, map_links
from aesoperator.ingest.records import MappedItem, SourceRecord, required

URI_PREFIX = "gdrive:///"
FOLDER_MIME = "application/vnd.google-apps.folder"
GOOGLE_KINDS = {
    "application/vnd.google-apps.document": "Google Docs document",
    "application/vnd.google-apps.spreadsheet": "Google Sheets spreadsheet",
    "application/vnd.google-apps.presentation": "Google Slides presentation",
    "application/vnd.google-apps.drawing": "Google Drawings drawing",
}
DEFAULT_CHUNK_CHARS = 1200
CHUNK_OVERLAP_CHARS = 150
# a Drive file id inside a Docs/Sheets/Slides/Drive URL
DRIVE_LINK = re.compile(
    r"https?://(?:docs|drive)\.google\.com/(?:document|spreadsheets|presentation|drawings|file|forms)/(?:u/\d+/)?d/"
    r"([A-Za-z0-9_-]{10,})|https?://drive\.google\.com/(?:drive/(?:u/\d+/)?folders/|open\?id=)([A-Za-z0-9_-]{10,})"
)


def file_id(uri: str) -> str:
    return uri[len(URI_PREFIX) :] if uri.startswith(URI_PREFIX) else uri


def linked_ids(text: str) -> list[str]:
    """Drive file ids that `text` links to, in order."""
    out: list[str] = []
    for match in DRIVE_LINK.finditer(text or ""):
        fid = match.group(1) or match.group(2)
        if fid and fid not in out:
            out.append(fid)
    return out


def open_url(fid: str, mime: str) -> str:
    if mime == FOLDER_MIME:
        return f"https://drive.google.com/drive/folders/{fid}"
    kind = {
        "application/vnd.google-apps.document": "document",
        "application/vnd.google-apps.spreadsheet": "spreadsheets",
        "application/vnd.google-apps.presentation": "presentation",
    }.get(mime)
    return f"https://docs.google.com/{kind}/d/{fid}/edit" if kind else f"https://drive.google.com/file/d/{fid}/view"


class DriveIds:
    def __init__(self, source: str) -> None:
        self.source = source

    def item(self, fid: str, mime: str) -> str:
        return entity_id(self.source, "folder" if mime == FOLDER_MIME else "file", fid)

    def chunk(self, fid: str, index: int) -> str:
        return entity_id(self.source, "chunk", f"{fid}#{index}")


def declared_links(payload: dict[str, Any], ids: DriveIds) -> Declared:
    """LINKS_TO for the Drive files a document's text links to."""
    fid, mime = required(payload, "id", str), required(payload, "mimeType", str)
    own = ids.item(fid, mime)
    return [["LINKS_TO", own, t] for t in linked_ids(payload.get("text") or "") if t != fid]


class DriveMapper:
    """Pure: one Drive record to graph items.

    kinds: "file" {"id", "name", "mimeType", "text" (None when not text), "content_mime", "size"};
    "links" (see links.py).
    """

    kind = "gdrive"

    def __init__(self, source: str, namespace: str, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> None:
        self.source = source
        self.namespace = namespace
        self.chunk_chars = chunk_chars
        self.ids = DriveIds(source)

    def map(self, record: SourceRecord) -> MappedItem:
        if record.kind == "file":
            return self._map_file(record)
        if record.kind == LINKS_KIND:
            return map_links(record, self.source, self.namespace)
        raise MappingError(f"unknown gdrive record kind {record.kind!r}")

    def _entity(self, eid: str, etype: str, name: str, text: str, props: dict[str, Any], version: str) -> Entity:
        name = " ".join(name.split()) or "Untitled"
        return Entity(
            id=eid,
            type=etype,
            name=name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1] + "…",
            text=text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…",
            properties=props,
            source=self.source,
            provenance=Provenance(uri=str(props["url"]), version=version),
            namespace=self.namespace,
        )

    def _map_file(self, record: SourceRecord) -> MappedItem:
        p = record.payload
        fid = str(required(p, "id", (str, int)))
        name, mime = str(p.get("name") or fid), str(p.get("mimeType") or "")
        own = self.ids.item(fid, mime)
        kind = "folder" if mime == FOLDER_MIME else GOOGLE_KINDS.get(mime, mime or "file")
        props: dict[str, Any] = {
            "drive_id": fid,
            "mimeType": mime,
            "kind": kind,
            "url": open_url(fid, mime),
            "resource": record.uri,
        }
        for extra in ("content_mime", "size"):
            if p.get(extra) is not None:
                props[extra] = p[extra]
        if mime == FOLDER_MIME:
            return MappedItem(
                entities=[self._entity(own, "Folder", name, f"Folder {name}", props, record.content_hash)]
            )
        text = p.get("text")
        if not isinstance(text, str) or not text.strip():
            size = f", {p['size']} bytes" if p.get("size") is not None else ""
            entity = self._entity(own, "File", name, f"File {name} ({kind}{size})", props, record.content_hash)
            return MappedItem(entities=[entity])

        head = f"{name} ({kind})"
        markdown = (p.get("content_mime") or "") in ("text/markdown", "text/x-markdown")
        chunks = chunk_text(text, self.chunk_chars, CHUNK_OVERLAP_CHARS, markdown=markdown)
        long_doc = len(text) > self.chunk_chars and len(chunks) > 1
        props["chars"] = len(text)
        body = chunks[0].text if long_doc else text.strip()
        out = MappedItem(
            entities=[self._entity(own, "Document", name, f"{head}\n\n{body}", props, record.content_hash)]
        )
        if long_doc:
            for chunk in chunks:
                label = f"{name} › {chunk.heading}" if chunk.heading else f"{name} #{chunk.index + 1}"
                chunk_props = {
                    "drive_id": fid,
                    "index": chunk.index,
                    "heading": chunk.heading,
                    "start_line": chunk.start_line,
                    "end_line": chunk.end_line,
                    "url": props["url"],
                }
                entity = self._entity(
                    self.ids.chunk(fid, chunk.index),
                    "Chunk",
                    label,
                    f"{name}\n{chunk.text}",
                    chunk_props,
                    content_hash(chunk.text),
                )
                out.entities.append(entity)
                out.relations.append(
                    Relation(
                        id=relation_id("CONTAINS", own, entity.id),
                        type="CONTAINS",
                        src=own,
                        dst=entity.id,
                        source=self.source,
                        namespace=self.namespace,
                    )
                )
        return out
