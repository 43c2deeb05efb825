"""SQLite layout of the embedded graph store: tables, indexes, the FTS5 index and its triggers.

The entities table carries an integer primary key (`rid`) that never changes for a row, so the
FTS5 index can be an external-content table keyed on it: the text lives once, in `entities`, and
the triggers below keep the index in step inside the same transaction as every write.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path

from aesoperator.engine.data_dir import create_private_file
from aesoperator.errors import StoreError
from aesoperator.version import __version__

log = logging.getLogger(__name__)

STORE_SCHEMA_VERSION = 1

# How a data dir written by an earlier release is brought up to date, in place, when it is opened:
# UPGRADES[n] turns a store at schema n into schema n + 1 (ALTER TABLE, a data rewrite...). Every
# schema from 1 up to the current one has its step (tests/test_upgrade_path.py checks it). The steps
# run in the same transaction that records the new version, after a copy of the database is saved
# next to it, so an upgrade that fails leaves the store as it was. The tables and indexes the DDL
# below creates with IF NOT EXISTS need no step.
Upgrade = Callable[[sqlite3.Connection], None]
UPGRADES: Mapping[int, Upgrade] = {}
# How FTS5 cuts name and text into terms; the in-memory keyword index reuses it (fts_terms.py).
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"

PRAGMAS = (
    "PRAGMA busy_timeout = 30000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = OFF",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA cache_size = -65536",
    "PRAGMA secure_delete = OFF",
    "PRAGMA journal_size_limit = 67108864",
    # Checkpoint once the WAL holds 64 MiB (16384 pages of 4 KiB) instead of SQLite's 4 MiB: a
    # 1,000-row write dirties more than 4 MiB (FTS5 segments, index pages), so the default copied
    # and synced pages back into the database after nearly every commit, the same pages again and
    # again. Durability is unchanged: with WAL and synchronous=NORMAL a commit is in the WAL
    # before `write` returns, so it survives the process being killed; the checkpoint only moves
    # committed pages into the main file. The store's own connection turns this off and has the
    # same checkpoints run beside its writes (`wal_checkpoints.py`).
    "PRAGMA wal_autocheckpoint = 16384",
)

DDL = (
    """CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS entities (
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        name_lower TEXT NOT NULL,
        text TEXT NOT NULL,
        properties TEXT NOT NULL,
        source TEXT NOT NULL,
        provenance TEXT,
        namespace TEXT NOT NULL,
        valid_from TEXT,
        valid_to TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS entities_name_lower ON entities(name_lower)",
    """CREATE TABLE IF NOT EXISTS relations (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        src TEXT NOT NULL,
        dst TEXT NOT NULL,
        properties TEXT NOT NULL,
        source TEXT NOT NULL,
        provenance TEXT,
        namespace TEXT NOT NULL,
        valid_from TEXT,
        valid_to TEXT,
        recorded_at TEXT NOT NULL,
        expired_at TEXT
    )""",
    # a subject's facts of one predicate, without reading its other (possibly many) relations;
    # lookups by `src` alone use it too, so stores from before it are relieved of the index on
    # `src` alone, which cost every relation write an index update and served no query
    "CREATE INDEX IF NOT EXISTS relations_src_type ON relations(src, type)",
    "DROP INDEX IF EXISTS relations_src",
    "CREATE INDEX IF NOT EXISTS relations_dst ON relations(dst)",
    """CREATE TABLE IF NOT EXISTS vectors (
        entity_id TEXT NOT NULL,
        model TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        dim INTEGER NOT NULL,
        blob BLOB NOT NULL,
        PRIMARY KEY (entity_id, model)
    )""",
    "CREATE INDEX IF NOT EXISTS vectors_model ON vectors(model, entity_id)",
    """CREATE TABLE IF NOT EXISTS entity_history (
        id TEXT NOT NULL,
        version TEXT NOT NULL,
        replaced_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS entity_history_id ON entity_history(id)",
    """CREATE TABLE IF NOT EXISTS source_items (
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        entity_ids TEXT NOT NULL,
        relation_ids TEXT NOT NULL,
        cursor TEXT,
        PRIMARY KEY (source, key)
    )""",
    """CREATE TABLE IF NOT EXISTS changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        op TEXT NOT NULL,
        namespace TEXT NOT NULL
    )""",
    f"""CREATE VIRTUAL TABLE IF NOT EXISTS entities_fts USING fts5(
        name, text,
        content = 'entities', content_rowid = 'rid',
        tokenize = '{FTS_TOKENIZER}'
    )""",
    """CREATE TRIGGER IF NOT EXISTS entities_fts_insert AFTER INSERT ON entities BEGIN
        INSERT INTO entities_fts(rowid, name, text) VALUES (new.rid, new.name, new.text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS entities_fts_delete AFTER DELETE ON entities BEGIN
        INSERT INTO entities_fts(entities_fts, rowid, name, text)
        VALUES ('delete', old.rid, old.name, old.text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS entities_fts_update AFTER UPDATE OF name, text ON entities
    WHEN old.name IS NOT new.name OR old.text IS NOT new.text BEGIN
        INSERT INTO entities_fts(entities_fts, rowid, name, text)
        VALUES ('delete', old.rid, old.name, old.text);
        INSERT INTO entities_fts(rowid, name, text) VALUES (new.rid, new.name, new.text);
    END""",
)


def configure(conn: sqlite3.Connection) -> None:
    """Connection settings: WAL so readers never block the writer, a busy timeout so processes
    sharing a data directory wait for each other instead of failing."""
    for pragma in PRAGMAS:
        conn.execute(pragma).fetchall()
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"could not switch the store to WAL mode (journal_mode is {mode!r})")


def stored_schema_version(conn: sqlite3.Connection) -> int | None:
    """The schema version recorded in the store, or None for a new (empty) database."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if has_meta is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return None if row is None else int(row[0])


def create_schema(
    conn: sqlite3.Connection, *, current: int = STORE_SCHEMA_VERSION, upgrades: Mapping[int, Upgrade] = UPGRADES
) -> None:
    """Create missing tables in one transaction and check the stored schema version: a store of an
    earlier schema is upgraded in place (after a copy of it is saved, see `backup_before_upgrade`),
    one of a later schema is refused with what to do."""
    conn.execute("BEGIN IMMEDIATE")  # the write lock first: processes opening an old store upgrade it once
    try:
        stored = stored_schema_version(conn)
        if stored is not None and stored > current:
            raise StoreError(
                f"the store {database_path(conn)} was written by a newer aesoperator (schema {stored}; "
                f"aesoperator {__version__} reads schema {current} and older): upgrade aesoperator to open it "
                "(pip install --upgrade aesoperator)"
            )
        if stored is not None and stored < current:
            backup_before_upgrade(conn, stored)
            _upgrade(conn, stored, current, upgrades)
        for statement in DDL:
            conn.execute(statement)
        if stored != current:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(current),),
            )
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('written_by', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (f"aesoperator {__version__}",),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _upgrade(conn: sqlite3.Connection, stored: int, current: int, upgrades: Mapping[int, Upgrade]) -> None:
    missing = [n for n in range(stored, current) if n not in upgrades]
    if missing:
        raise StoreError(
            f"the store {database_path(conn)} has schema {stored} and aesoperator {__version__} has no upgrade "
            f"from schema {missing[0]}: open it with the release that wrote it, `aesop migrate --to` a Neo4j "
            "database or export what you need, then ingest into a new data dir"
        )
    for version in range(stored, current):
        log.info("upgrading the store %s from schema %d to %d", database_path(conn), version, version + 1)
        upgrades[version](conn)


def database_path(conn: sqlite3.Connection) -> Path:
    """The file of the connection's main database."""
    row = conn.execute("PRAGMA database_list").fetchone()
    return Path(row[2])


def backup_path(db_path: Path, stored: int) -> Path:
    """Where the copy of a store taken before its upgrade from schema `stored` is kept."""
    return db_path.with_name(f"{db_path.name}.schema-{stored}.bak")


def backup_before_upgrade(conn: sqlite3.Connection, stored: int) -> Path:
    """Copy the database to `graph.sqlite.schema-N.bak` before it is upgraded from schema N; an
    existing copy is kept.

    Called while `conn` holds the write lock and before it writes: the copy is read through a
    second connection (WAL lets it read the committed state meanwhile) with SQLite's backup API,
    into a temporary file renamed into place once whole, so a crash never leaves half a copy.
    """
    source = database_path(conn)
    target = backup_path(source, stored)
    if target.exists():
        return target
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    create_private_file(partial)
    reader = sqlite3.connect(str(source), timeout=30.0)
    try:
        copy = sqlite3.connect(str(partial))
        try:
            reader.backup(copy)
        finally:
            copy.close()
    finally:
        reader.close()
    os.replace(partial, target)
    log.warning("upgrading the store %s from schema %d: its previous state is saved in %s", source, stored, target)
    return target
