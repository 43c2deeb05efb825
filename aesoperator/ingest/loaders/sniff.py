"""Which document format a file is, from its first bytes (and, for text formats, its name).

Magic bytes win over the extension: a PDF saved as `report.bin` is a PDF, an HTML error page
saved as `report.pdf` is HTML. Text and code files are never taken for documents: only a file
that starts with `%PDF-` is a PDF whatever its name, and HTML is recognised by content only in a
file with no extension or a document's extension. Zip containers are told apart by their entries (`word/document.xml`,
`ppt/presentation.xml`, `xl/workbook.xml`, EPUB's `mimetype`). An OLE2 compound file under an
Office extension is an encrypted Office file (Office wraps password-protected OOXML in OLE2) or
a legacy binary one (.doc/.xls/.ppt), which is not read.
"""

from __future__ import annotations

import posixpath

from aesoperator.ingest.loaders.zip_guard import zip_names

PDF, DOCX, PPTX, XLSX, CSV, HTML, EPUB = "pdf", "docx", "pptx", "xlsx", "csv", "html", "epub"
OLE2 = "ole2"  # an encrypted or legacy Office file: reported, not read

EXTENSIONS: dict[str, str] = {
    ".pdf": PDF,
    ".docx": DOCX,
    ".docm": DOCX,
    ".pptx": PPTX,
    ".pptm": PPTX,
    ".xlsx": XLSX,
    ".xlsm": XLSX,
    ".csv": CSV,
    ".tsv": CSV,
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
    ".epub": EPUB,
}
# Formats recognised only by name: text, with no magic of their own.
TEXT_FORMATS = frozenset({CSV})
MIME_TYPES: dict[str, str] = {
    "application/pdf": PDF,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": DOCX,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": PPTX,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": XLSX,
    "text/csv": CSV,
    "text/tab-separated-values": CSV,
    "text/html": HTML,
    "application/xhtml+xml": HTML,
    "application/epub+zip": EPUB,
}
LEGACY_OFFICE_SUFFIXES = frozenset({".doc", ".xls", ".ppt"})  # read only to say they are not read
DOCUMENT_SUFFIXES = frozenset(EXTENSIONS) | LEGACY_OFFICE_SUFFIXES
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_HTML_STARTS = (b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")


def _zip_format(data: bytes) -> str | None:
    if data[30:38] == b"mimetype" and data[38:58].startswith(b"application/epub+zip"):
        return EPUB  # EPUB's first entry, stored uncompressed, says so
    names = zip_names(data)
    if names is None:
        return None
    if "word/document.xml" in names:
        return DOCX
    if "ppt/presentation.xml" in names:
        return PPTX
    if "xl/workbook.xml" in names:
        return XLSX
    if "META-INF/container.xml" in names:
        return EPUB
    return None


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not start.startswith(_HTML_STARTS):
        return False
    return not start.startswith(b"<?xml") or b"<html" in head[:2048].lower()


def sniff(name: str, data: bytes, mime_type: str | None = None) -> str | None:
    """The document format of a file named `name` holding `data`, or None for anything else
    (plain text and code, images, unknown binaries)."""
    suffix = posixpath.splitext(name)[1].lower()
    by_name = EXTENSIONS.get(suffix) or MIME_TYPES.get((mime_type or "").split(";")[0].strip().lower())
    if data.startswith(b"%PDF-") or (by_name == PDF and b"%PDF-" in data[:1024]):
        return PDF  # readers accept a little junk before the header, but only in a file named as a PDF
    if data.startswith(b"PK\x03\x04"):
        found = _zip_format(data)
        if found is not None:
            return found
        return by_name if by_name in (DOCX, PPTX, XLSX, EPUB) else None  # a damaged container: its loader says why
    if data.startswith(_OLE2_MAGIC):
        return OLE2 if by_name in (DOCX, PPTX, XLSX) or suffix in LEGACY_OFFICE_SUFFIXES else None
    if (by_name is not None or not suffix) and _looks_like_html(data[:4096]):
        return HTML  # a page saved without an extension or under another document's name; a .py or .md stays text
    if by_name in TEXT_FORMATS:
        return by_name
    if by_name is not None and by_name != HTML:
        return by_name  # claims a binary format it does not look like: its loader says what is wrong
    return None
