"""Upgrading: a data dir written by an earlier release opens with this one.

Data dirs recorded by earlier releases (tests/upgrade_fixture.py) are opened with the current code
and must answer what they answered then; the in-place upgrade steps of the embedded store's schema
run in one transaction after a copy of the store is saved; a store of a newer schema is refused
with the command that fixes it, and left as it was.
"""

from __future__ import annotations

import json
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import pytest

from aesoperator.context import ContextEngine
from aesoperator.engine.stores.embedded import DB_FILE, EmbeddedGraphStore
from aesoperator.engine.stores.embedded_schema import (
    STORE_SCHEMA_VERSION,
    UPGRADES,
    backup_path,
    configure,
    create_schema,
    stored_schema_version,
)
from aesoperator.errors import StoreError
from aesoperator.graph_schema.models import Entity
from tests.upgrade_fixture import FIXTURES

RECORDED = sorted(FIXTURES.glob("datadir_*.tar.gz"))


def description_of(archive: Path) -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(archive.with_name(archive.name.replace(".tar.gz", ".json")).read_text())
    return facts


def unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "data"


def schema_of(db: Path) -> int | None:
    conn = sqlite3.connect(db)
    try:
        return stored_schema_version(conn)
    finally:
        conn.close()


def test_releases_are_recorded() -> None:
    assert RECORDED, "no data dir of an earlier release in tests/fixtures: run python -m tests.upgrade_fixture"
    assert min(description_of(a)["store_schema_version"] for a in RECORDED) <= STORE_SCHEMA_VERSION


def test_every_earlier_schema_has_an_upgrade_step() -> None:
    missing = [n for n in range(1, STORE_SCHEMA_VERSION) if n not in UPGRADES]
    assert not missing, f"schema {missing} has no step in embedded_schema.UPGRADES to the next one"


@pytest.mark.parametrize("archive", RECORDED, ids=lambda p: p.name)
def test_a_data_dir_of_an_earlier_release_opens_and_answers(archive: Path, tmp_path: Path, embedder: Any) -> None:
    facts = description_of(archive)
    data = unpack(archive, tmp_path)
    assert schema_of(data / DB_FILE) == facts["store_schema_version"]

    engine = ContextEngine.open(data_dir=data, embedder=embedder)
    try:
        stats = engine.stats()
        assert (stats.entities, stats.relations) == (facts["entities"], facts["relations"]), "opening lost data"
        for query, word in facts["searches"].items():
            texts = [hit.text for hit in engine.search(query, k=3).hits]
            assert any(word in text for text in texts), f"{query!r} no longer finds {word!r}: {texts}"
        for query, want in facts["recalls"].items():
            recalled = engine.recall(query, want["agent_id"])
            assert any(want["expect"] in item.episode.content for item in recalled.episodes), query
        # still writable after the upgrade
        (tmp_path / "new").mkdir()
        (tmp_path / "new" / "tides.md").write_text("Spring tides follow the new moon and the full moon.\n")
        engine.ingest_path(tmp_path / "new")
        assert any("Spring tides" in hit.text for hit in engine.search("spring tides moon", k=3).hits)
    finally:
        engine.close()
    assert schema_of(data / DB_FILE) == STORE_SCHEMA_VERSION
    upgraded = facts["store_schema_version"] < STORE_SCHEMA_VERSION
    assert backup_path(data / DB_FILE, facts["store_schema_version"]).exists() == upgraded


def current_store(tmp_path: Path) -> Path:
    """A store written by the current code, holding one entity."""
    store = EmbeddedGraphStore(tmp_path)
    try:
        store.upsert([Entity(id="t:one", type="Document", name="One", text="the first entity")])
    finally:
        store.close()
    return tmp_path / DB_FILE


def open_raw(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    configure(conn)
    return conn


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def add_importance(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE entities ADD COLUMN importance REAL NOT NULL DEFAULT 0.5")


def test_an_upgrade_runs_in_place_and_keeps_a_copy(tmp_path: Path) -> None:
    db = current_store(tmp_path)
    conn = open_raw(db)
    try:
        create_schema(conn, current=STORE_SCHEMA_VERSION + 1, upgrades={STORE_SCHEMA_VERSION: add_importance})
        assert stored_schema_version(conn) == STORE_SCHEMA_VERSION + 1
        assert conn.execute("SELECT name, importance FROM entities").fetchall() == [("One", 0.5)]
        assert conn.execute("SELECT value FROM meta WHERE key = 'written_by'").fetchone()[0].startswith("aesoperator ")
        # opening again runs no step twice
        create_schema(conn, current=STORE_SCHEMA_VERSION + 1, upgrades={})
    finally:
        conn.close()
    copy = backup_path(db, STORE_SCHEMA_VERSION)
    assert schema_of(copy) == STORE_SCHEMA_VERSION
    assert not list(tmp_path.glob("*.partial")), "the copy is renamed into place once whole"
    old = sqlite3.connect(copy)
    try:
        assert "importance" not in columns(old, "entities")
        assert old.execute("SELECT name FROM entities").fetchall() == [("One",)]
    finally:
        old.close()


def test_a_failing_upgrade_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    db = current_store(tmp_path)

    def half_done(conn: sqlite3.Connection) -> None:
        add_importance(conn)
        raise sqlite3.OperationalError("disk I/O error")

    conn = open_raw(db)
    try:
        with pytest.raises(sqlite3.OperationalError):
            create_schema(conn, current=STORE_SCHEMA_VERSION + 1, upgrades={STORE_SCHEMA_VERSION: half_done})
        assert stored_schema_version(conn) == STORE_SCHEMA_VERSION
        assert "importance" not in columns(conn, "entities")
    finally:
        conn.close()
    store = EmbeddedGraphStore(tmp_path)
    try:
        assert store.stats().entities == 1
    finally:
        store.close()


def test_a_missing_upgrade_step_is_a_clear_error(tmp_path: Path) -> None:
    db = current_store(tmp_path)
    conn = open_raw(db)
    try:
        with pytest.raises(StoreError, match=rf"has schema {STORE_SCHEMA_VERSION} .* no upgrade from schema"):
            create_schema(conn, current=STORE_SCHEMA_VERSION + 2, upgrades={STORE_SCHEMA_VERSION: add_importance})
        assert stored_schema_version(conn) == STORE_SCHEMA_VERSION
        assert "importance" not in columns(conn, "entities")
    finally:
        conn.close()


def test_a_store_of_a_newer_schema_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    db = current_store(tmp_path)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(STORE_SCHEMA_VERSION + 1),))
    conn.close()
    with pytest.raises(StoreError) as refused:
        EmbeddedGraphStore(tmp_path)
    message = str(refused.value)
    assert str(db) in message and "newer" in message and "pip install --upgrade aesoperator" in message
    assert schema_of(db) == STORE_SCHEMA_VERSION + 1
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT name FROM entities").fetchall() == [("One",)]
    finally:
        conn.close()
    assert not list(tmp_path.glob("*.bak"))
