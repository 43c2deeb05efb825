"""SQLite layout of the embedded graph store: tables, indexes, the FTS5 index and its triggers.

The entities table carries an integer primary key (`rid`) that never changes for a row, so the
FTS5 index can be an external-content table keyed on it: the text lives once, in `entities`, and
the triggers below keep the index in step inside the same transaction as every write.
"""

from __future__ import annotations

import sqlite3

from aesoperator.errors import StoreError

STORE_SCHEMA_VERSION = 1
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
    "CREATE INDEX IF NOT EXISTS relations_src ON relations(src)",
    # a subject's facts of one predicate, without reading its other (possibly many) relations
    "CREATE INDEX IF NOT EXISTS relations_src_type ON relations(src, type)",
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


def create_schema(conn: sqlite3.Connection) -> None:
    """Create missing tables in one transaction and check the stored schema version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in DDL:
            conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(STORE_SCHEMA_VERSION),))
        elif int(row[0]) > STORE_SCHEMA_VERSION:
            raise StoreError(
                f"the store was written by a newer version (schema {row[0]}, this one reads "
                f"{STORE_SCHEMA_VERSION}): upgrade aesoperator to open it"
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
