"""Excel (.xlsx) through openpyxl (MIT), in read-only streaming mode: one unit per sheet, the
first non-empty row as the header. Formulas give their cached values (what Excel last showed)."""

from __future__ import annotations

import io

from aesoperator.errors import DocumentError
from aesoperator.ingest.loaders.model import LoadedDocument, LoaderLimits, corrupt, missing_library, over_limit
from aesoperator.ingest.loaders.sheets import table_unit
from aesoperator.ingest.loaders.zip_guard import open_checked_zip


class XlsxLoader:
    format = "xlsx"
    what = "Excel workbook"

    def load(self, data: bytes, limits: LoaderLimits) -> LoadedDocument:
        try:
            import openpyxl
        except ImportError:
            raise missing_library("Excel", "openpyxl") from None
        open_checked_zip(data, self.what, limits).close()
        try:
            workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds on a damaged package
            raise corrupt(self.what, exc) from None
        try:
            sheets = [ws for ws in workbook.worksheets if hasattr(ws, "iter_rows")]
            if len(sheets) > limits.max_pages:
                raise over_limit(self.what, f"{len(sheets):,} sheets", "document_max_pages", limits.max_pages)
            cells = [0]
            units = [
                table_unit(
                    ws.title,
                    number,
                    ((i, row) for i, row in enumerate(ws.iter_rows(values_only=True), 1)),
                    self.what,
                    limits,
                    cells,
                )
                for number, ws in enumerate(sheets, 1)
            ]
        except DocumentError:
            raise
        except Exception as exc:
            raise corrupt(self.what, exc) from None
        finally:
            workbook.close()
        kept = [u for u in units if u.blocks]
        if not kept:
            raise DocumentError("no values in any sheet of the Excel workbook", kind="no-text")
        title = (workbook.properties.title or "").strip() or None
        return LoadedDocument(self.format, kept, title=title)
