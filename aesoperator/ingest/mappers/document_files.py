"""Document files (PDF, Word, PowerPoint, Excel, CSV, HTML, EPUB) to a File's text and Chunk entities.

A record of a document file carries its bytes (`payload["data"]`) and format; the document is
loaded here, in the pipeline's map stage, so an unchanged file (same content hash) is never read
again, and a file that cannot be read raises `DocumentError`, which quarantines it.

Each chunk's provenance URI points into the file: `file:///…/report.pdf#page=12&char=120,980`,
`#slide=3`, `#sheet=Prices&rows=2-40`, `#chapter=2`; the page, slide, sheet or chapter, the
section heading and the character range are also chunk properties.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import quote

from aesoperator.graph_schema.ids import content_hash
from aesoperator.ingest.document_chunks import DocumentChunk, chunk_document, unit_text
from aesoperator.ingest.loaders.model import LoadedDocument, LoaderLimits
from aesoperator.ingest.loaders.registry import LOADERS_VERSION, load_document

UNIT_LABELS = {"page": "p.", "slide": "slide ", "sheet": "sheet ", "chapter": "ch. "}


def document_content_hash(data: bytes, fmt: str) -> str:
    """Changes with the file's bytes and the loaders' version. (The limits are not part of it:
    raising one must not read every document again; the record's payload carries them, and a
    file quarantined for a limit is read again when they change.)"""
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    return content_hash(f"document|{fmt}|{LOADERS_VERSION}|{digest}")


def fragment(chunk: DocumentChunk) -> str:
    """Where in the file a chunk is, as a URI fragment (`page=12&char=120,980`)."""
    parts: list[str] = []
    if chunk.unit_kind == "page":
        parts.append(f"page={chunk.unit_number}")
    elif chunk.unit_kind == "slide":
        parts.append(f"slide={chunk.unit_number}")
    elif chunk.unit_kind == "sheet" and chunk.unit_name:
        parts.append(f"sheet={quote(chunk.unit_name, safe='')}")
    elif chunk.unit_kind == "chapter":
        parts.append(f"chapter={chunk.unit_number}")
    if chunk.rows is not None:
        parts.append(f"rows={chunk.rows[0]}-{chunk.rows[1]}")
    else:
        parts.append(f"char={chunk.char_start},{chunk.char_end}")
    return "&".join(parts)


def chunk_label(path: str, chunk: DocumentChunk) -> str:
    where = ""
    if chunk.unit_kind in UNIT_LABELS and not (chunk.unit_kind == "sheet" and not chunk.unit_name):
        value = chunk.unit_name if chunk.unit_kind == "sheet" and chunk.unit_name else str(chunk.unit_number)
        where = f" › {UNIT_LABELS[chunk.unit_kind]}{value}"
        if chunk.last_unit_number != chunk.unit_number:
            where += f"–{chunk.last_unit_number}"
    section = f" › {chunk.heading}" if chunk.heading else ""
    return f"{path}{where}{section}"


def chunk_properties(path: str, fmt: str, chunk: DocumentChunk) -> dict[str, object]:
    props: dict[str, object] = {
        "path": path,
        "index": chunk.index,
        "format": fmt,
        "unit": chunk.unit_kind,
        "heading": chunk.heading,
        "char_start": chunk.char_start,
        "char_end": chunk.char_end,
        "fragment": fragment(chunk),
    }
    if chunk.unit_kind == "sheet":
        if chunk.unit_name:
            props["sheet"] = chunk.unit_name
    elif chunk.unit_kind != "document":
        props[chunk.unit_kind] = chunk.unit_number
        if chunk.unit_name:
            props[f"{chunk.unit_kind}_title"] = chunk.unit_name
    if chunk.last_unit_number != chunk.unit_number:
        props[f"last_{chunk.unit_kind}"] = chunk.last_unit_number
    if chunk.rows is not None:
        props["rows"] = list(chunk.rows)
    return props


@dataclass(frozen=True, slots=True)
class DocumentContent:
    """What the files mapper needs of a loaded document."""

    document: LoadedDocument
    chunks: list[DocumentChunk]
    preview: str  # the start of its text, for the File entity


def read_document(
    fmt: str, data: bytes, limits: LoaderLimits, chunk_chars: int, overlap_chars: int, across_units: bool
) -> DocumentContent:
    """Load and chunk a document. Raises `DocumentError` for a file that cannot be read."""
    document = load_document(fmt, data, limits)
    chunks = chunk_document(document, chunk_chars, overlap_chars, across_units=across_units)
    preview = "\n".join(p for p in (document.title, unit_text(document.units[0])[:300]) if p)
    return DocumentContent(document, chunks, preview[:300])
