"""Word (.docx) through python-docx (MIT): paragraphs and tables in reading order.

Headings are paragraphs in a "Title" or "Heading N" style; tables keep their first row as the
header. A .docx has no fixed pages (Word lays them out when it renders), so pages are counted
from the page breaks the file records: explicit ones, and the `lastRenderedPageBreak` marks Word
writes where its last layout broke the page. A file Word saved gets the page numbers Word showed;
one that never went through Word's layout is page 1 until its first explicit break.
"""

from __future__ import annotations

import io
import re
from typing import Any

from aesoperator.errors import DocumentError
from aesoperator.ingest.loaders.model import (
    DocumentBlock,
    DocumentUnit,
    LoadedDocument,
    LoaderLimits,
    TableRow,
    TextBudget,
    corrupt,
    missing_library,
    over_limit,
)
from aesoperator.ingest.loaders.zip_guard import open_checked_zip

WHAT = "Word document"
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def _heading_level(paragraph: Any) -> int | None:
    try:
        name = (paragraph.style.name or "") if paragraph.style is not None else ""
    except (KeyError, AttributeError):
        return None
    if name.lower() == "title":
        return 1
    match = _HEADING_STYLE.match(name)
    return int(match.group(1)) if match else None


def _breaks(element: Any) -> tuple[bool, int]:
    """(does a page break come before any text?, how many page breaks the element holds)."""
    count = 0
    before_text = False
    seen_text = False
    for node in element.iter():
        tag = node.tag
        if tag == f"{_W}t" and (node.text or "").strip():
            seen_text = True
        elif (tag == f"{_W}br" and node.get(f"{_W}type") == "page") or tag == f"{_W}lastRenderedPageBreak":
            count += 1
            if not seen_text:
                before_text = True
        elif tag == f"{_W}pageBreakBefore" and node.get(f"{_W}val", "true") not in ("0", "false"):
            count += 1
            before_text = True
    return before_text, count


def _row_cells(row: Any) -> tuple[str, ...]:
    cells: list[str] = []
    previous: Any = None
    for cell in row.cells:
        if previous is not None and cell._tc is previous:  # a merged cell is listed once per grid column
            continue
        previous = cell._tc
        cells.append(" ".join(cell.text.split()))
    return tuple(cells)


class DocxLoader:
    format = "docx"

    def load(self, data: bytes, limits: LoaderLimits) -> LoadedDocument:
        try:
            import docx
        except ImportError:
            raise missing_library("Word", "python-docx") from None
        open_checked_zip(data, WHAT, limits).close()
        try:
            document = docx.Document(io.BytesIO(data))
            return self._read(document, limits)
        except DocumentError:
            raise
        except Exception as exc:  # python-docx raises many kinds on a damaged package
            raise corrupt(WHAT, exc) from None

    def _read(self, document: Any, limits: LoaderLimits) -> LoadedDocument:
        from docx.table import Table

        budget = TextBudget(WHAT, limits)
        page = 1
        units = [DocumentUnit("page", 1)]
        cells = 0
        for item in document.iter_inner_content():
            before, count = _breaks(item._element)
            if before and count:
                page += 1
                count -= 1
                units.append(DocumentUnit("page", page))
            if isinstance(item, Table):
                rows = [TableRow(_row_cells(row), number=i + 1) for i, row in enumerate(item.rows)]
                cells += sum(len(r.cells) for r in rows)
                if cells > limits.max_cells:
                    raise over_limit(
                        WHAT, f"more than {limits.max_cells:,} table cells", "document_max_cells", limits.max_cells
                    )
                rows = [r for r in rows if any(r.cells)]
                if rows:
                    budget.take(" ".join(c for r in rows for c in r.cells))
                    units[-1].blocks.append(DocumentBlock("table", header=rows[0], rows=tuple(rows[1:])))
            else:
                text = budget.take(item.text.strip())
                if text:
                    level = _heading_level(item)
                    units[-1].blocks.append(
                        DocumentBlock("heading", text, level=level) if level else DocumentBlock("text", text)
                    )
            for _ in range(count):
                page += 1
                units.append(DocumentUnit("page", page))
            if page > limits.max_pages:
                raise over_limit(WHAT, f"more than {limits.max_pages:,} pages", "document_max_pages", limits.max_pages)
        units = [u for u in units if u.blocks]
        if not units:
            raise DocumentError("no text in the Word document", kind="no-text")
        title = (document.core_properties.title or "").strip() or None
        return LoadedDocument(self.format, units, title=title)
