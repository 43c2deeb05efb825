"""Local-folder ingest: idempotent, incremental, removes what disappeared, skips what it can't read."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aesoperator.engine.vector_policy import has_vector
from aesoperator.errors import SourceError

FIXTURE = Path(__file__).parent / "fixtures" / "docs"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "bakery"
    shutil.copytree(FIXTURE, target)
    return target


def test_ingest_creates_files_directories_chunks_and_contains(make_engine: Callable[..., Any], folder: Path) -> None:
    engine = make_engine()
    report = engine.ingest_path(folder)
    assert report.records_seen == 4 and report.records_changed == 4
    stats = engine.stats()
    assert stats.entity_types["File"] == 4
    assert stats.entity_types["Directory"] == 2
    assert stats.entity_types["Chunk"] >= 4
    chunks = engine.neighbors(["bakery:file:README.md"], relation_types=["CONTAINS"], direction="out")
    assert any(e.type == "Chunk" and "sourdough" in e.text for e in chunks.entities.values())
    # every entity the vector policy admits has a vector; the code symbols of the folder's script do not
    with_vectors = [e for batch in engine.store.iter_entities() for e in batch if has_vector(e)]
    assert stats.vectors == len(with_vectors) < stats.entities
    staff = engine.get_entities(["bakery:file:guide/staff.md"])[0]
    assert staff.type == "File" and staff.provenance is not None
    sub = engine.neighbors(["bakery:dir:guide"], depth=1, relation_types=["CONTAINS"], direction="out")
    assert {"bakery:file:guide/staff.md", "bakery:file:guide/recipes.txt"} <= set(sub.entities)


def test_ingesting_twice_adds_nothing(make_engine: Callable[..., Any], folder: Path) -> None:
    engine = make_engine()
    engine.ingest_path(folder)
    before = engine.stats()
    again = engine.ingest_path(folder)
    after = engine.stats()
    assert again.records_unchanged == 4 and again.records_changed == 0
    assert again.entities_written == 0 and again.texts_embedded == 0
    assert after.last_seq == before.last_seq
    assert (after.entities, after.relations, after.vectors) == (before.entities, before.relations, before.vectors)


def test_editing_one_file_updates_only_its_entities(make_engine: Callable[..., Any], folder: Path) -> None:
    engine = make_engine()
    engine.ingest_path(folder)
    seq = engine.store.last_seq()
    (folder / "guide" / "recipes.txt").write_text("Seaweed focaccia: proof overnight in the hydroponics bay.\n")
    report = engine.ingest_path(folder)
    assert report.records_changed == 1 and report.records_unchanged == 3
    changed = {c.id for c in engine.store.changes_since(seq) if c.kind == "entity"}
    assert changed and all(
        i.startswith("bakery:file:guide/recipes.txt") or i.startswith("bakery:chunk:guide/recipes.txt") for i in changed
    )
    hits = engine.search("seaweed focaccia hydroponics", k=3, hops=0)
    assert hits.hits[0].properties.get("path") == "guide/recipes.txt"
    assert not engine.search("caraway rye crispbread", k=5, hops=0, types=["Chunk"]).hits or all(
        "caraway" not in h.text for h in engine.search("caraway rye crispbread", k=5, hops=0, types=["Chunk"]).hits
    )


def test_deleted_file_disappears_from_graph_and_index(make_engine: Callable[..., Any], folder: Path) -> None:
    engine = make_engine()
    engine.ingest_path(folder)
    (folder / "tool.py").unlink()
    report = engine.ingest_path(folder)
    assert report.records_removed == 1
    assert engine.get_entities(["bakery:file:tool.py"]) == []
    result = engine.search("plan_rota round robin night shift", k=10, hops=0)
    assert all(h.properties.get("path") != "tool.py" for h in result.hits)


def test_unreadable_and_binary_files_are_skipped_not_fatal(make_engine: Callable[..., Any], folder: Path) -> None:
    (folder / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (folder / "empty.md").write_text("   \n")
    engine = make_engine()
    report = engine.ingest_path(folder)
    reasons = {s.key: s.reason for s in report.skipped}
    assert reasons["blob.txt"] == "binary content"
    assert reasons["empty.md"] == "empty file"
    assert report.records_changed == 4


def test_missing_folder_and_name_clash_are_clear_errors(
    make_engine: Callable[..., Any], folder: Path, tmp_path: Path
) -> None:
    engine = make_engine()
    with pytest.raises(SourceError, match="does not exist"):
        engine.ingest_path(tmp_path / "nope")
    engine.ingest_path(folder)
    other = tmp_path / "elsewhere" / "bakery"
    other.mkdir(parents=True)
    (other / "a.md").write_text("another bakery")
    with pytest.raises(SourceError, match="already holds"):
        engine.ingest_path(other)
    assert engine.stats().entity_types["File"] == 4  # nothing lost
    engine.ingest_path(other, name="bakery2")
    assert engine.stats().entity_types["File"] == 5


def test_ingest_without_embedding_then_embed_missing(make_engine: Callable[..., Any], folder: Path) -> None:
    engine = make_engine()
    engine.ingest_path(folder, embed=False)
    assert engine.stats().vectors == 0
    assert engine.search("zero-gravity croissant", k=3, channels=("keyword",), hops=0).hits
    embedded = engine.embed_missing()
    with_vectors = [e for batch in engine.store.iter_entities() for e in batch if has_vector(e)]
    assert embedded == len(with_vectors) == engine.stats().vectors
    engine.rebuild_index()
    assert engine.search("who looks after the batteries at night", k=3, channels=("vector",), hops=0).hits


def test_a_source_failing_mid_way_keeps_what_was_already_mapped(make_engine: Callable[..., Any]) -> None:
    from aesoperator.graph_schema.ids import content_hash
    from aesoperator.ingest.documents import DocumentsMapper
    from aesoperator.ingest.pipeline import IngestPipeline
    from aesoperator.ingest.records import SourceRecord

    engine = make_engine()

    def records() -> Any:
        for i in range(5):
            text = f"note number {i}"
            yield SourceRecord(f"n{i}", "document", content_hash(text), {"title": f"n{i}", "text": text}, f"x:{i}")
        raise SourceError("source 'flaky': connection lost")

    pipeline = IngestPipeline(engine.store, None, batch_size=1000)
    with pytest.raises(SourceError, match="connection lost"):
        pipeline.run("flaky", records(), DocumentsMapper("flaky", "default"))
    assert len(engine.store.source_items("flaky")) == 5
    assert len(engine.get_entities([f"flaky:doc:n{i}" for i in range(5)])) == 5


def test_removing_one_file_keeps_the_directory_links_other_files_share(
    make_engine: Callable[..., Any], folder: Path
) -> None:
    engine = make_engine()
    engine.ingest_path(folder)
    (folder / "guide" / "recipes.txt").unlink()
    engine.ingest_path(folder)
    sub = engine.neighbors(["bakery:dir:."], relation_types=["CONTAINS"], direction="out")
    assert "bakery:dir:guide" in sub.entities, "the root still contains guide/ (staff.md lives there)"
    sub = engine.neighbors(["bakery:dir:guide"], relation_types=["CONTAINS"], direction="out")
    assert set(sub.entities) == {"bakery:dir:guide", "bakery:file:guide/staff.md"}


def test_reingest_in_another_namespace_moves_the_sources_own_items(
    make_engine: Callable[..., Any], folder: Path
) -> None:
    engine = make_engine()
    engine.ingest_path(folder, namespace="team-a")
    (folder / "guide" / "recipes.txt").write_text("Seaweed focaccia: proof overnight in the hydroponics bay.\n")
    report = engine.ingest_path(folder, namespace="team-b")
    assert report.records_changed == 1
    moved = engine.get_entities(["bakery:file:guide/recipes.txt"])[0]
    assert moved.namespace == "team-b"
