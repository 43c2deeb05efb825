"""Files to graph: Directory and File entities, text chunks, CONTAINS relations.

Used for a local folder and, with the same payload shape, for the filesystem MCP server.
Payload: {"path": posix path relative to the source root, "text": str, "size": int, "mtime": float}.
"""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime

from aesoperator.graph_schema.ids import content_hash, entity_id
from aesoperator.graph_schema.models import Entity, Provenance, Relation
from aesoperator.ingest.chunking import chunk_text
from aesoperator.ingest.records import MappedItem, SourceRecord

MARKDOWN_SUFFIXES = (".md", ".markdown", ".rst", ".txt", ".adoc")


class FilesMapper:
    kind = "files"

    def __init__(self, source: str, namespace: str, chunk_chars: int = 1200, overlap_chars: int = 150) -> None:
        self.source = source
        self.namespace = namespace
        self.chunk_chars = chunk_chars
        self.overlap_chars = overlap_chars

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
        text: str = record.payload["text"]
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
