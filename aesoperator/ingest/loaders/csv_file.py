"""CSV and TSV files through the standard library's `csv` (the delimiter sniffed): one sheet unit,
the first non-empty row as the header, each row with its line number."""

from __future__ import annotations

import csv
import io
from typing import Any

from aesoperator.errors import DocumentError
from aesoperator.ingest.loaders.model import LoadedDocument, LoaderLimits, corrupt
from aesoperator.ingest.loaders.sheets import decode_text, table_unit


class CsvLoader:
    format = "csv"
    what = "CSV file"

    def load(self, data: bytes, limits: LoaderLimits) -> LoadedDocument:
        if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise corrupt(self.what, "binary content (NUL bytes)")
        text = decode_text(data)
        sample = text[:20_000]
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel_tab if sample.count("\t") > sample.count(",") else csv.excel
        csv.field_size_limit(1 << 20)
        reader = csv.reader(io.StringIO(text, newline=""), dialect)
        try:
            unit = table_unit("data", 1, ((reader.line_num, row) for row in reader), self.what, limits, [0])
        except csv.Error as exc:
            raise corrupt(self.what, exc) from None
        if not unit.blocks:
            raise DocumentError("no values in the CSV file", kind="no-text")
        unit.name = None
        return LoadedDocument(self.format, [unit])
