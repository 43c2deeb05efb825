"""Erasure in the embedded store: what an erasing batch does besides its deletes, and scrubbing
the database file afterwards.

Inside the batch's transaction (run with `secure_delete` on, so SQLite overwrites the deleted
cells and freed pages with zeros): change-log rows naming an erased entity, relation or vector
are rewritten to `ERASED_ID`, history versions of the entities the batch updates that name an
erased id are dropped, one `ERASED_ID` row is appended (derived indexes rebuild when they replay
it) and `meta.erasure_pending` is set. The transaction commits or rolls back whole.

`scrub` then removes what is left in the files: bytes of the erased rows copied around before
(updates made without `secure_delete` leave old cells in free space), the FTS5 index's older
segments (a delete only adds a tombstone segment; `rebuild` writes the index anew from the
entities table), and the WAL (checkpointed and truncated to zero bytes). VACUUM rewrites the whole
database from its live rows, so its cost grows with the store. `erasure_pending` stays set until
all of it is done, so a process killed half-way finishes the scrub the next time the engine opens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from aesoperator.engine.stores.base import ERASED_ID
from aesoperator.engine.stores.embedded_rows import chunks, json_list
from aesoperator.errors import StoreError

PENDING_KEY = "erasure_pending"
ChangeRow = tuple[str, str, str, str]  # kind, id, op, namespace


def mark_erased(conn: sqlite3.Connection, changes: Iterable[ChangeRow], updated_ids: Iterable[str]) -> int:
    """Inside an erasing batch's transaction, after its change rows were logged: hide the erased
    ids (the batch's deletes) from the change log and the history, and record the erasure.

    Args:
        conn: The connection, inside the batch's write transaction.
        changes: The batch's change rows.
        updated_ids: Ids of the entities the batch upserted.

    Returns:
        The change-log position after the erasure row.
    """
    rows = list(changes)
    erased = sorted({item_id for _kind, item_id, op, _ns in rows if op == "delete"})
    namespace = next((ns for _kind, _id, op, ns in rows if op == "delete"), "")
    for part in chunks(erased):
        conn.execute(
            "UPDATE changes SET id = ?1 WHERE id IN (SELECT value FROM json_each(?2))", (ERASED_ID, json_list(part))
        )
    updated = sorted(set(updated_ids))
    if updated and erased:
        for names in chunks(erased):
            for ids in chunks(updated):
                conn.execute(
                    "DELETE FROM entity_history WHERE id IN (SELECT value FROM json_each(?1)) "
                    "AND EXISTS (SELECT 1 FROM json_each(?2) AS e WHERE instr(version, e.value) > 0)",
                    (json_list(ids), json_list(names)),
                )
    conn.execute(
        "INSERT INTO changes (kind, id, op, namespace) VALUES ('entity', ?, 'delete', ?)", (ERASED_ID, namespace)
    )
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '1')", (PENDING_KEY,))
    return int(conn.execute("SELECT max(seq) FROM changes").fetchone()[0] or 0)


def is_pending(conn: sqlite3.Connection) -> bool:
    """Whether an erasure committed and its scrub has not finished."""
    return conn.execute("SELECT 1 FROM meta WHERE key = ?", (PENDING_KEY,)).fetchone() is not None


def _truncate_wal(conn: sqlite3.Connection, db_path: str) -> None:
    busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        raise StoreError(
            f"could not truncate the write-ahead log of {db_path}: another connection is reading the database; "
            "the erasure stays pending and its scrub runs again when the engine next opens or forgets"
        )


def scrub(conn: sqlite3.Connection, db_path: str) -> None:
    """Remove the bytes committed erasures left in the database file and its WAL (see the module
    docstring). Call outside any transaction, on a connection with `secure_delete` on."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO entities_fts(entities_fts) VALUES ('rebuild')")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    _truncate_wal(conn, db_path)
    conn.execute("VACUUM")
    _truncate_wal(conn, db_path)
    conn.execute("DELETE FROM meta WHERE key = ?", (PENDING_KEY,))
    _truncate_wal(conn, db_path)
