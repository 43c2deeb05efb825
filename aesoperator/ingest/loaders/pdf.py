"""PDF through pypdf (BSD-3-Clause, pure Python): one unit per page.

Headings come from two places: the document outline (bookmarks), and lines set in a font clearly
larger than the body text (pypdf reports each text run's font size). pypdf caps what one stream
may inflate to, so a compressed stream cannot blow up memory; the page count is checked before
any page is read. A PDF without a text layer on any page is reported as scanned (no OCR here).
"""

from __future__ import annotations

import io
import logging
import math
import statistics
from typing import Any

from aesoperator.errors import DocumentError
from aesoperator.ingest.loaders.model import (
    DocumentBlock,
    DocumentUnit,
    LoadedDocument,
    LoaderLimits,
    TextBudget,
    corrupt,
    missing_library,
    over_limit,
    password_protected,
    truncated,
)

HEADING_SIZE_RATIO = 1.15  # a line this much larger than the body text is a heading
MAX_HEADING_CHARS = 120
WHAT = "PDF"


def _outline_titles(reader: Any) -> dict[int, list[tuple[str, int]]]:
    """(title, level) of the outline entries, by 0-based page index."""
    out: dict[int, list[tuple[str, int]]] = {}
    pending: list[tuple[list[Any], int]] = [(list(reader.outline), 1)]
    seen = 0
    while pending and seen < 10_000:
        items, level = pending.pop()
        for item in items:
            seen += 1
            if isinstance(item, list):
                pending.append((item, level + 1))
                continue
            try:
                page = reader.get_destination_page_number(item)
                title = " ".join(str(item.title).split())
            except Exception:  # a broken bookmark is not worth failing the file for
                continue
            if title and page is not None and page >= 0:
                out.setdefault(page, []).append((title, level))
    return out


def _page_runs(page: Any) -> tuple[str, list[tuple[str, float]]]:
    """The page's text and its text runs with their rendered font sizes."""
    runs: list[tuple[str, float]] = []

    def visit(text: str, cm: Any, tm: Any, font: Any, size: Any) -> None:
        if text.strip():
            try:
                scale = math.hypot(float(tm[2]), float(tm[3])) * math.hypot(float(cm[2]), float(cm[3]))
                runs.append((text, float(size) * (scale or 1.0)))
            except (TypeError, ValueError, IndexError):
                pass

    text = page.extract_text(visitor_text=visit) or ""
    return text, runs


def _headings(runs: list[tuple[str, float]], body: float) -> set[str]:
    return {
        " ".join(t.split())
        for t, size in runs
        if size >= body * HEADING_SIZE_RATIO and 2 < len(t.strip()) <= MAX_HEADING_CHARS
    }


def _page_blocks(text: str, titles: dict[str, int], large: set[str]) -> list[DocumentBlock]:
    """A page's lines as headings (outline titles, large type) and the paragraphs between them."""
    blocks: list[DocumentBlock] = []
    paragraph: list[str] = []
    for line in [*text.splitlines(), ""]:
        flat = " ".join(line.split())
        if flat and flat not in titles and flat not in large:
            paragraph.append(line.rstrip())
            continue
        if paragraph:
            blocks.append(DocumentBlock("text", "\n".join(paragraph)))
            paragraph = []
        if flat:
            blocks.append(DocumentBlock("heading", flat, level=titles.get(flat, 1)))
    return blocks


def _has_images(page: Any) -> bool:
    try:
        resources = page.get("/Resources") or {}
        xobjects = resources.get("/XObject") or {}
        return any(obj.get_object().get("/Subtype") == "/Image" for obj in xobjects.values())
    except Exception:
        return False


class PdfLoader:
    format = "pdf"

    def load(self, data: bytes, limits: LoaderLimits) -> LoadedDocument:
        try:
            from pypdf import PdfReader
            from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError
        except ImportError:
            raise missing_library("PDF", "pypdf") from None
        if b"%PDF-" not in data[:1024]:
            raise corrupt(WHAT, "not a PDF at all: it has no %PDF- header")
        if b"%%EOF" not in data[-2048:]:
            raise truncated(WHAT, "no %%EOF marker at its end")
        logging.getLogger("pypdf").setLevel(logging.ERROR)  # recoverable quirks are not news
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                try:
                    if not reader.decrypt(""):  # an empty user password opens many "protected" PDFs
                        raise password_protected(WHAT)
                except (FileNotDecryptedError, NotImplementedError):
                    raise password_protected(WHAT) from None
            count = len(reader.pages)
            if count > limits.max_pages:
                raise over_limit(WHAT, f"{count:,} pages", "document_max_pages", limits.max_pages)
            return self._read(reader, count, limits)
        except DocumentError:
            raise
        except FileNotDecryptedError:
            raise password_protected(WHAT) from None
        except (ImportError, DependencyError):  # AES needs the `cryptography` package
            raise missing_library("encrypted PDF", "cryptography") from None
        except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
            raise corrupt(WHAT, exc) from None
        except RecursionError:
            raise corrupt(WHAT, "its object structure nests too deeply") from None

    def _read(self, reader: Any, count: int, limits: LoaderLimits) -> LoadedDocument:
        budget = TextBudget(WHAT, limits)
        outline = _outline_titles(reader)
        pages: list[tuple[str, list[tuple[str, float]]]] = []
        image_pages = 0
        for page in reader.pages:
            text, runs = _page_runs(page)
            pages.append((budget.take(text), runs))
            if not text.strip() and _has_images(page):
                image_pages += 1
        if not any(text.strip() for text, _ in pages):
            if image_pages:
                raise DocumentError(
                    f"no text layer on any of its {count} pages, only images: a scanned PDF? "
                    "OCR is not done; run it through an OCR tool first to ingest it",
                    kind="no-text",
                )
            raise DocumentError(f"no extractable text on any of its {count} pages", kind="no-text")
        sizes = [size for _, runs in pages for text, size in runs for _ in range(min(len(text), 200))]
        body = statistics.median(sizes) if sizes else 0.0
        units: list[DocumentUnit] = []
        empty: list[int] = []
        for index, (text, runs) in enumerate(pages):
            titles = {t: level for t, level in outline.get(index, [])}
            large = _headings(runs, body) if body else set()
            blocks = _page_blocks(text, titles, large)
            if not blocks:
                empty.append(index + 1)
            units.append(DocumentUnit("page", index + 1, blocks=blocks))
        notes = [f"pages without text (not read): {', '.join(map(str, empty[:20]))}"] if empty else []
        title = None
        try:
            meta = reader.metadata
            title = str(meta.title).strip() if meta is not None and meta.title else None
        except Exception:
            title = None
        return LoadedDocument(self.format, units, title=title, notes=notes)
