"""What the spreadsheet loaders share: a sheet of rows as one unit, and decoding text files.

One unit per sheet (a CSV file is one sheet); the first non-empty row is the header, kept with
every chunk of the rows below it, and each row keeps its row number. Cells are counted as they
stream and the file is refused past `max_cells`, so a sheet whose declared size is huge costs no
more than the limit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from aesoperator.ingest.loaders.model import (
    DocumentBlock,
    DocumentUnit,
    LoaderLimits,
    TableRow,
    TextBudget,
    over_limit,
)

MAX_CELL_CHARS = 2000


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and not (value.hour or value.minute or value.second):
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return " ".join(str(value).split())[:MAX_CELL_CHARS]


def table_unit(
    kind_name: str,
    number: int,
    rows: Iterable[tuple[int, Iterable[Any]]],
    what: str,
    limits: LoaderLimits,
    cells: list[int],
) -> DocumentUnit:
    """A sheet unit from (row number, values) pairs; `cells` is the running count across sheets."""
    budget = TextBudget(what, limits)
    parsed: list[TableRow] = []
    for row_number, values in rows:
        texts = [_cell_text(v) for v in values]
        cells[0] += len(texts)
        if cells[0] > limits.max_cells:
            raise over_limit(what, f"more than {limits.max_cells:,} cells", "document_max_cells", limits.max_cells)
        while texts and not texts[-1]:
            texts.pop()
        if texts:
            budget.take(" ".join(texts))
            parsed.append(TableRow(tuple(texts), number=row_number))
    unit = DocumentUnit("sheet", number, name=kind_name)
    if parsed:
        unit.blocks.append(DocumentBlock("table", header=parsed[0], rows=tuple(parsed[1:])))
    return unit


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with a BOM, else what charset-normalizer finds, else Latin-1."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data[:200_000]).best()
        if best is not None and best.encoding:
            return data.decode(best.encoding, "replace")
    except ImportError:
        pass
    return data.decode("latin-1")
