"""Document files through the real `@modelcontextprotocol/server-filesystem`: read as bytes with
`read_media_file` (the server answers a binary with an embedded blob resource), chunked by page,
slide, sheet or chapter, searched, and not read again while unchanged; a damaged one is
quarantined once and not read again either."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from aesoperator import ContextEngine
from aesoperator.ingest import mcp_ingest
from aesoperator.ingest.client import open_connection
from aesoperator.ingest.pipeline import quarantined
from aesoperator.ingest.sources import SourceDefinition
from benchmarks.documents.corpus import FACTS, build_corpus
from tests.mcp_servers import npm_server_bin
from tests.test_adapter_filesystem import RecordingConnection, sessions  # noqa: F401  (the fixture)

pytest.importorskip("pypdf")
pytest.importorskip("reportlab")

SERVER = "@modelcontextprotocol/server-filesystem"


@pytest.fixture
def shelf(tmp_path: Path) -> Path:
    root = build_corpus(tmp_path / "shelf")
    (root / "notes.md").write_text("# Notes\n\nThe archive opens at nine.\n")
    (root / "damaged.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n")
    return root


@pytest.fixture
def definition(shelf: Path) -> SourceDefinition:
    command = npm_server_bin(SERVER)
    return SourceDefinition(name="shelf", kind="filesystem", command=command[0], args=[*command[1:], str(shelf)])


def media_reads(conn: RecordingConnection) -> set[str]:
    return {args["path"] for name, args in conn.calls if name == "read_media_file"}


def test_the_server_answers_a_binary_with_an_embedded_blob(definition: SourceDefinition, shelf: Path) -> None:
    async def read() -> Any:
        async with open_connection(definition) as conn:
            return await conn.call_tool("read_media_file", {"path": str(shelf / "history.pdf")})

    result = anyio.run(read)
    assert len(result.blobs) == 1
    assert result.blobs[0].data == (shelf / "history.pdf").read_bytes()
    assert result.blobs[0].mime_type == "application/octet-stream"
    assert result.blobs[0].uri == (shelf / "history.pdf").as_uri()


def test_documents_from_the_filesystem_server(
    make_engine: Callable[..., ContextEngine],
    definition: SourceDefinition,
    shelf: Path,
    sessions: list[RecordingConnection],  # noqa: F811
) -> None:
    engine = make_engine()
    first = mcp_ingest.ingest_source(engine, definition)
    documents = {p.name for p in shelf.iterdir() if p.suffix != ".md"}
    assert media_reads(sessions[-1]) == {str(shelf / name) for name in documents}
    assert {s.key for s in first.skipped} == {"damaged.pdf"} and first.quarantined == 1
    assert "corrupt PDF" in first.skipped[0].reason

    for fact in FACTS:
        hits = [h for h in engine.search(fact.question, k=8).hits if h.type == "Chunk"]
        best = hits[0]
        assert best.properties["path"] == fact.file, fact.question
        assert best.provenance is not None
        uri, _, where = best.provenance.uri.partition("#")
        assert uri == (shelf / fact.file).as_uri() and where.startswith(fact.fragment), best.provenance.uri

    # nothing changed: no document is read again, the damaged one stays quarantined unread
    seq = engine.store.last_seq()
    again = mcp_ingest.ingest_source(engine, definition)
    assert media_reads(sessions[-1]) == set()
    assert again.records_changed == 0
    assert not [c for c in engine.store.changes_since(seq) if c.kind == "entity"]
    assert [k for k, _, _ in quarantined(engine.store.source_items("shelf"))] == ["damaged.pdf"]

    # a changed document is read again, alone
    shutil.copy(shelf / "history.pdf", shelf / "copy.pdf")
    (shelf / "prices.xlsx").unlink()
    update = mcp_ingest.ingest_source(engine, definition)
    assert media_reads(sessions[-1]) == {str(shelf / "copy.pdf")}
    assert update.records_removed == 1
    assert not [h for h in engine.search("saffron threads price", k=8).hits if "prices.xlsx" in h.id]
