"""Document ingest on real files: a PDF, a Word file with a table, a PowerPoint deck, an Excel
workbook, a CSV file, a saved web page and an EPUB book, written with the formats' own libraries
(`benchmarks/documents/corpus.py`), ingested through `ContextEngine.ingest_path`, then asked
questions whose evidence sits on a known page, slide, sheet or chapter."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aesoperator.cli import app as cli_app
from aesoperator.graph_schema.ids import entity_id
from benchmarks.documents.corpus import FACTS, build_corpus, docx_bytes, handbook_docx

pytest.importorskip("pypdf")
pytest.importorskip("reportlab")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("corpus") / "library")


@pytest.fixture
def library(corpus: Path, tmp_path: Path) -> Path:
    target = tmp_path / "library"
    shutil.copytree(corpus, target)
    return target


def chunks_of(engine: Any, source: str, path: str) -> list[Any]:
    found = [e for batch in engine.store.iter_entities(types=["Chunk"]) for e in batch if e.source == source]
    return sorted((c for c in found if c.properties["path"] == path), key=lambda c: c.properties["index"])


@pytest.fixture(scope="module")
def ingested(corpus: Path, tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Iterator[tuple[Any, Path]]:
    """One engine with the corpus ingested, shared by the questions."""
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    folder = tmp_path_factory.mktemp("asked") / "library"
    shutil.copytree(corpus, folder)
    engine = ContextEngine.open(settings=Settings(data_dir=folder.parent / "data"), embedder=embedder)  # type: ignore[arg-type]
    report = engine.ingest_path(folder)
    assert report.records_changed == len(list(folder.iterdir())) and not report.skipped
    yield engine, folder
    engine.close()


@pytest.mark.parametrize("fact", FACTS, ids=[f.file + ":" + f.fragment for f in FACTS])
def test_answers_point_to_their_page_slide_sheet_or_chapter(ingested: tuple[Any, Path], fact: Any) -> None:
    engine, folder = ingested
    hits = [h for h in engine.search(fact.question, k=8).hits if h.type == "Chunk"]
    assert hits, fact.question
    best = hits[0]
    assert best.properties["path"] == fact.file
    assert best.provenance is not None
    uri, _, where = best.provenance.uri.partition("#")
    assert uri == (folder / fact.file).as_uri()
    assert where.startswith(fact.fragment), (fact.question, best.provenance.uri)
    assert fact.phrase in best.text


def test_packed_context_and_cli_show_the_page(make_engine: Callable[..., Any], library: Path, tmp_path: Path) -> None:
    engine = make_engine()
    engine.ingest_path(library)
    result = engine.search("When was the Ostrava foundry founded?", k=3)
    assert "history.pdf#page=2" in result.context_text()
    assert "(history.pdf#page=2&char=" not in result.context_text()  # the packed reference is short
    engine.close()

    from typer.testing import CliRunner

    out = CliRunner().invoke(
        cli_app, ["--data-dir", str(tmp_path / "data"), "search", "Which ferry route does the Aurora vessel serve?"]
    )
    assert out.exit_code == 0, out.output
    assert "fleet.csv#rows=" in out.output


def test_unchanged_documents_are_not_read_again(make_engine: Callable[..., Any], library: Path) -> None:
    engine = make_engine()
    first = engine.ingest_path(library)
    assert first.records_changed == 7
    seq = engine.store.last_seq()
    again = engine.ingest_path(library)
    assert again.records_changed == 0 and again.records_unchanged == 7 and again.texts_embedded == 0
    assert engine.store.last_seq() == seq

    # one document changes: only its entities are rewritten, its old text is gone
    old = {c.id: c.text for c in chunks_of(engine, "library", "handbook.docx")}
    (library / "handbook.docx").write_bytes(docx_bytes(["The tidal gauges are now maintained by Ole Brun."]))
    update = engine.ingest_path(library)
    assert update.records_changed == 1 and update.records_unchanged == 6
    # (entities that knowledge extraction found in the old and new text come and go too)
    changed = {c.id for c in engine.store.changes_since(seq) if c.kind == "entity" and c.id.startswith("library:")}
    assert changed and all("handbook.docx" in i for i in changed)
    new = chunks_of(engine, "library", "handbook.docx")
    assert [c.text for c in new] == ["The tidal gauges are now maintained by Ole Brun."]
    assert set(old) - {c.id for c in new} <= {c.id for c in engine.store.changes_since(seq) if c.op == "delete"}


def test_one_file_can_be_ingested_alone(make_engine: Callable[..., Any], tmp_path: Path) -> None:
    path = tmp_path / "handbook.docx"
    handbook_docx(path)
    engine = make_engine()
    report = engine.ingest_path(path)
    assert report.records_seen == 1 and report.source == "handbook.docx"
    file_entity = engine.get_entities([entity_id("handbook.docx", "file", "handbook.docx")])[0]
    assert file_entity.properties["format"] == "docx" and file_entity.properties["title"] == "Station handbook"
