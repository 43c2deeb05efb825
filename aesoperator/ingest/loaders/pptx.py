"""PowerPoint (.pptx) through python-pptx (MIT): one unit per slide.

A slide's title is its heading; its other text frames follow in reading order (top to bottom,
then left to right), groups are opened, tables keep their header row, and the speaker notes
come last under "Notes".
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
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

WHAT = "PowerPoint file"
MAX_GROUP_DEPTH = 20


def _reading_order(shapes: Iterable[Any]) -> list[Any]:
    return sorted(shapes, key=lambda s: (s.top if s.top is not None else 0, s.left if s.left is not None else 0))


def _shapes(shapes: Iterable[Any], depth: int = 0) -> Iterator[Any]:
    for shape in _reading_order(shapes):
        if getattr(shape, "shape_type", None) is not None and hasattr(shape, "shapes") and depth < MAX_GROUP_DEPTH:
            yield from _shapes(shape.shapes, depth + 1)  # a group
        else:
            yield shape


class PptxLoader:
    format = "pptx"

    def load(self, data: bytes, limits: LoaderLimits) -> LoadedDocument:
        try:
            from pptx import Presentation
        except ImportError:
            raise missing_library("PowerPoint", "python-pptx") from None
        open_checked_zip(data, WHAT, limits).close()
        try:
            presentation = Presentation(io.BytesIO(data))
            count = len(presentation.slides)
            if count > limits.max_pages:
                raise over_limit(WHAT, f"{count:,} slides", "document_max_pages", limits.max_pages)
            return self._read(presentation, limits)
        except DocumentError:
            raise
        except Exception as exc:  # python-pptx raises many kinds on a damaged package
            raise corrupt(WHAT, exc) from None

    def _read(self, presentation: Any, limits: LoaderLimits) -> LoadedDocument:
        budget = TextBudget(WHAT, limits)
        units: list[DocumentUnit] = []
        cells = 0
        for number, slide in enumerate(presentation.slides, 1):
            title_shape = slide.shapes.title
            title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
            unit = DocumentUnit("slide", number, name=title or None)
            if title:
                unit.blocks.append(DocumentBlock("heading", budget.take(title), level=1))
            for shape in _shapes(slide.shapes):
                if title_shape is not None and shape.shape_id == title_shape.shape_id:
                    continue
                if getattr(shape, "has_table", False) and shape.has_table:
                    rows = [
                        TableRow(tuple(" ".join(c.text.split()) for c in row.cells), number=i + 1)
                        for i, row in enumerate(shape.table.rows)
                    ]
                    cells += sum(len(r.cells) for r in rows)
                    if cells > limits.max_cells:
                        raise over_limit(
                            WHAT, f"more than {limits.max_cells:,} table cells", "document_max_cells", limits.max_cells
                        )
                    rows = [r for r in rows if any(r.cells)]
                    if rows:
                        budget.take(" ".join(c for r in rows for c in r.cells))
                        unit.blocks.append(DocumentBlock("table", header=rows[0], rows=tuple(rows[1:])))
                elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
                    text = "\n".join(p.text.strip() for p in shape.text_frame.paragraphs if p.text.strip())
                    if text:
                        unit.blocks.append(DocumentBlock("text", budget.take(text)))
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                text = notes.text.strip() if notes is not None else ""
                if text:
                    unit.blocks.append(DocumentBlock("text", budget.take(f"Notes: {text}")))
            units.append(unit)
        kept = [u for u in units if u.blocks]
        if not kept:
            raise DocumentError("no text on any slide", kind="no-text")
        empty = [u.number for u in units if not u.blocks]
        notes = [f"slides without text: {', '.join(map(str, empty[:20]))}"] if empty else []
        core_title = str(presentation.core_properties.title or "").strip()
        return LoadedDocument(self.format, kept, title=core_title or None, notes=notes)
