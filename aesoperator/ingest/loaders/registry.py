"""The document loaders by format, and the one call that turns a file's bytes into units.

`load_document` never lets a library's exception escape: whatever goes wrong becomes a
`DocumentError` whose message says what is wrong with the file (and, for a missing library,
which extra to install), so the ingest quarantines the file and goes on.
"""

from __future__ import annotations

from aesoperator.errors import DocumentError
from aesoperator.ingest.loaders.csv_file import CsvLoader
from aesoperator.ingest.loaders.docx import DocxLoader
from aesoperator.ingest.loaders.epub import EpubLoader
from aesoperator.ingest.loaders.html import HtmlLoader
from aesoperator.ingest.loaders.model import DocumentLoader, LoadedDocument, LoaderLimits, corrupt
from aesoperator.ingest.loaders.pdf import PdfLoader
from aesoperator.ingest.loaders.pptx import PptxLoader
from aesoperator.ingest.loaders.sniff import OLE2, sniff
from aesoperator.ingest.loaders.xlsx import XlsxLoader

# Bumped when a loader's output changes, so files ingested before are read again.
LOADERS_VERSION = "1"

LOADERS: dict[str, DocumentLoader] = {
    loader.format: loader
    for loader in (PdfLoader(), DocxLoader(), PptxLoader(), XlsxLoader(), CsvLoader(), HtmlLoader(), EpubLoader())
}


def document_format(name: str, head: bytes, mime_type: str | None = None) -> str | None:
    """The format a loader reads (or "ole2" for an encrypted or legacy Office file), else None."""
    found = sniff(name, head, mime_type)
    return found if found in LOADERS or found == OLE2 else None


def load_document(fmt: str, data: bytes, limits: LoaderLimits) -> LoadedDocument:
    """The document in `data`, read by the loader for `fmt`.

    Raises:
        DocumentError: the file cannot be read (the message says why and what to do).
    """
    if fmt == OLE2:
        if b"E\x00n\x00c\x00r\x00y\x00p\x00t\x00e\x00d\x00P\x00a\x00c\x00k\x00a\x00g\x00e" in data:
            raise DocumentError(
                "password-protected Office file (encrypted): save a copy without the password to ingest it",
                kind="password-protected",
            )
        raise DocumentError(
            "a legacy binary Office file (.doc/.xls/.ppt) is not read: save it as .docx/.xlsx/.pptx to ingest it",
            kind="unsupported",
        )
    loader = LOADERS.get(fmt)
    if loader is None:
        raise DocumentError(f"no loader reads {fmt!r} files", kind="unsupported")
    try:
        return loader.load(data, limits)
    except DocumentError:
        raise
    except MemoryError:
        raise DocumentError(
            f"the {fmt} file needs more memory than there is to read (lower the document limits)", kind="too-large"
        ) from None
    except RecursionError:
        raise corrupt(f"{fmt} file", "its structure nests too deeply") from None
    except Exception as exc:  # a library failing on bad input in a way its loader did not expect
        raise corrupt(f"{fmt} file", f"{type(exc).__name__}: {exc}") from None
