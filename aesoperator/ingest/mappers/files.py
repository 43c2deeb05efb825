"""Files to graph: Directory and File entities, text chunks, CONTAINS relations.

Used for a local folder and, with the same payload shape, for the filesystem MCP server.
Payload: {"path": posix path relative to the source root, "text": str, "size": int, "mtime": float};
a document file (PDF, Word, ...) has {"data": bytes, "format": str} instead of "text", and its
chunks follow its pages, slides, sheets or chapters (`document_files`).
"""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime

from aesoperator.graph_schema.ids import content_hash, entity_id
from aesoperator.graph_schema.models import Entity, Provenance, Relation
from aesoperator.ingest.chunking import chunk_text
from aesoperator.ingest.loaders.model import LoaderLimits
from aesoperator.ingest.mappers.document_files import DocumentContent, chunk_label, chunk_properties, read_document
from aesoperator.ingest.records import MappedItem, SourceRecord

MARKDOWN_SUFFIXES = (".md", ".markdown", ".rst", ".txt", ".adoc")


class FilesMapper:
    kind = "files"

    def __init__(
        self,
        source: str,
        namespace: str,
        chunk_chars: int = 1200,
        overlap_chars: int = 150,
        document_limits: LoaderLimits | None = None,
        chunks_across_units: bool = False,
    ) -> None:
        self.source = source
        self.namespace = namespace
        self.chunk_chars = chunk_chars
        self.overlap_chars = overlap_chars
        self.document_limits = document_limits or LoaderLimits()
        self.chunks_across_units = chunks_across_units

    def _dir_entity(self, path: str) -> Entity:
        name = posixpath.basename(path) or self.source
        return Entity(
            id=entity_id(self.source, "dir", path or "."),
            type="Directory",
            name=name,
            text=f"Directory {path or '.'} of {self.source}",
            properties={"path": path or "."},
            source=self.source,
            namespace=self.namespace,
        )

    def map(self, record: SourceRecord) -> MappedItem:
        path: str = record.payload["path"]
        document: DocumentContent | None = None
        if "data" in record.payload:
            fmt = str(record.payload["format"])
            document = read_document(
                fmt,
                record.payload["data"],
                self.document_limits,
                self.chunk_chars,
                self.overlap_chars,
                self.chunks_across_units,
            )
            text = document.preview
        else:
            text = record.payload["text"]
        mtime = record.payload.get("mtime")
        modified = datetime.fromtimestamp(mtime, UTC) if isinstance(mtime, int | float) else None
        provenance = Provenance(uri=record.uri, version=record.content_hash)
        item = MappedItem()

        # The directory chain up to the root is shared by every file below it.
        parts = path.split("/")[:-1]
        dir_paths = ["", *("/".join(parts[: i + 1]) for i in range(len(parts)))]
        dirs = [self._dir_entity(p) for p in dir_paths]
        item.shared_entities.extend(dirs)

        file_entity = Entity(
            id=entity_id(self.source, "file", path),
            type="File",
            name=path,
            text=f"File {path}\n" + text[:300],
            properties={
                "path": path,
                "size": record.payload.get("size", len(text)),
                "suffix": posixpath.splitext(path)[1],
                **(self._document_properties(document) if document is not None else {}),
            },
            source=self.source,
            provenance=provenance,
            namespace=self.namespace,
            valid_from=modified,
        )
        item.entities.append(file_entity)
        for parent, child in zip(dirs, [*dirs[1:], file_entity], strict=True):
            item.relations.append(
                Relation(type="CONTAINS", src=parent.id, dst=child.id, source=self.source, namespace=self.namespace)
            )

        if document is not None:
            self._document_chunks(item, record, file_entity, document, modified)
            return item
        markdown = path.lower().endswith(MARKDOWN_SUFFIXES)
        for chunk in chunk_text(text, self.chunk_chars, self.overlap_chars, markdown=markdown):
            label = f"{path} › {chunk.heading}" if chunk.heading else f"{path} #{chunk.index + 1}"
            chunk_entity = Entity(
                id=entity_id(self.source, "chunk", f"{path}#{chunk.index}"),
                type="Chunk",
                name=label,
                text=chunk.text,
                properties={
                    "path": path,
                    "index": chunk.index,
                    "start_line": chunk.start_line,
                    "end_line": chunk.end_line,
                    "heading": chunk.heading,
                },
                source=self.source,
                provenance=Provenance(
                    uri=f"{record.uri}#L{chunk.start_line}-L{chunk.end_line}",
                    version=content_hash(chunk.text),
                ),
                namespace=self.namespace,
                valid_from=modified,
            )
            item.entities.append(chunk_entity)
            item.relations.append(
                Relation(
                    type="CONTAINS",
                    src=file_entity.id,
                    dst=chunk_entity.id,
                    source=self.source,
                    namespace=self.namespace,
                )
            )
        return item

    @staticmethod
    def _document_properties(document: DocumentContent) -> dict[str, object]:
        loaded = document.document
        props: dict[str, object] = {"format": loaded.format, "units": len(loaded.units)}
        if loaded.units and loaded.units[0].kind != "document":
            props["unit"] = loaded.units[0].kind
        if loaded.title:
            props["title"] = loaded.title
        if loaded.notes:
            props["notes"] = list(loaded.notes)
        return props

    def _document_chunks(
        self,
        item: MappedItem,
        record: SourceRecord,
        file_entity: Entity,
        document: DocumentContent,
        modified: datetime | None,
    ) -> None:
        path = str(record.payload["path"])
        fmt = document.document.format
        base = record.uri.split("#", 1)[0]
        for chunk in document.chunks:
            props = chunk_properties(path, fmt, chunk)
            chunk_entity = Entity(
                id=entity_id(self.source, "chunk", f"{path}#{chunk.index}"),
                type="Chunk",
                name=chunk_label(path, chunk),
                text=chunk.text,
                properties=props,
                source=self.source,
                provenance=Provenance(uri=f"{base}#{props['fragment']}", version=content_hash(chunk.text)),
                namespace=self.namespace,
                valid_from=modified,
            )
            item.entities.append(chunk_entity)
            item.relations.append(
                Relation(
                    type="CONTAINS",
                    src=file_entity.id,
                    dst=chunk_entity.id,
                    source=self.source,
                    namespace=self.namespace,
                )
            )
