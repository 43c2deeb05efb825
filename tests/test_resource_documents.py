"""Binary MCP resources that are document files (a PDF, a workbook served as blobs by a real MCP
server over stdio) are loaded and chunked by page and sheet; a damaged one is quarantined once and
not loaded again while unchanged; other binaries stay described, not read."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from aesoperator import ContextEngine
from aesoperator.ingest import mcp_ingest
from aesoperator.ingest.pipeline import quarantined
from aesoperator.ingest.sources import SourceDefinition
from benchmarks.documents.corpus import history_pdf, prices_xlsx

pytest.importorskip("pypdf")
pytest.importorskip("reportlab")

SERVER = Path(__file__).parent / "fixtures" / "mcp_servers" / "documents_server.py"


def test_blob_resources_that_are_documents(make_engine: Callable[..., ContextEngine], tmp_path: Path) -> None:
    folder = tmp_path / "served"
    folder.mkdir()
    history_pdf(folder / "history.pdf")
    prices_xlsx(folder / "prices.xlsx")
    (folder / "damaged.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    definition = SourceDefinition(
        name="served",
        kind="everything",
        command=sys.executable,
        args=[str(SERVER)],
        env={"FIXTURE_DOCS_DIR": str(folder)},
        timeout_seconds=30,
    )
    engine = make_engine()
    first = mcp_ingest.ingest_source(engine, definition)
    assert first.quarantined == 1 and first.skipped[0].key == "doc://library/damaged.pdf"
    assert "corrupt PDF" in first.skipped[0].reason

    hit = next(h for h in engine.search("When was the Ostrava foundry founded?", k=5).hits if h.type == "Chunk")
    assert hit.provenance is not None and hit.provenance.uri.startswith("doc://library/history.pdf#page=2&")
    assert "history.pdf#page=2" in engine.search("When was the Ostrava foundry founded?", k=3).context_text()
    hit = next(h for h in engine.search("What does a box of saffron threads cost?", k=5).hits if h.type == "Chunk")
    assert hit.provenance is not None and hit.provenance.uri.startswith("doc://library/prices.xlsx#sheet=Spices&rows=")
    logo = engine.get_entities(["served:doc:doc://library/logo.png"])[0]
    assert "binary resource (image/png" in logo.text

    again = mcp_ingest.ingest_source(engine, definition)
    assert again.records_changed == 0 and again.quarantined == 0
    assert [s.reason.endswith("(quarantined; unchanged since)") for s in again.skipped] == [True]
    assert [k for k, _, _ in quarantined(engine.store.source_items("served"))] == ["doc://library/damaged.pdf"]
