"""Erasure in the Neo4j store: what an erasing batch does besides its deletes, and what can be
done about the server's files afterwards.

Inside the batch's transaction: the ids of the erased entities, relations and vectors are
replaced by `ERASED_ID` in every `:_ChangeLog` node that lists them (and in the batch's own
change rows), history versions of the entities the batch updates that name an erased id are
deleted, one `ERASED_ID` change is added (derived indexes rebuild when they replay it) and an
`:_Erasure {name: 'pending'}` node is set until `scrub` has run.

What Neo4j's own files keep is the server's business: deleted nodes, relationships and properties
are marked unused in the store files and their records are overwritten only when reused, and the
transaction logs keep every written value until they are rotated and pruned (the server's
`db.tx_log.rotation.retention_policy`). `scrub` asks for a checkpoint, which makes older
transaction log files prunable under that policy; nothing a client can call rewrites the store
files. For the strict right-to-erasure case on Neo4j, keep the retention policy short.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from neo4j import ManagedTransaction, Session
from neo4j.exceptions import Neo4jError

from aesoperator.engine.stores.base import ERASED_ID
from aesoperator.engine.stores.neo4j_autocommit import QueryRunner

ChangeRow = dict[str, Any]  # seq, kind, id, op, namespace


def mark_erased(
    tx: ManagedTransaction, changes: list[ChangeRow], updated_ids: Iterable[str], now: str
) -> ChangeRow | None:
    """Before the batch's change rows are logged: hide the erased ids (the batch's deletes) in the
    change log, its rows and the history, and note the erasure as pending.

    Args:
        tx: The batch's write transaction.
        changes: The batch's change rows so far; rows naming an erased id are rewritten in place.
        updated_ids: Ids of the entities the batch upserted.
        now: The batch's time stamp.

    Returns:
        The namespace-bearing template of the `ERASED_ID` change to append (None without deletes).
    """
    erased = sorted({c["id"] for c in changes if c["op"] == "delete"})
    if not erased:
        return None
    for change in changes:
        if change["id"] in erased:
            change["id"] = ERASED_ID
    tx.run(
        "MATCH (c:_ChangeLog) WHERE any(i IN c.ids WHERE i IN $erased) "
        "SET c.ids = [i IN c.ids | CASE WHEN i IN $erased THEN $tomb ELSE i END]",
        erased=erased,
        tomb=ERASED_ID,
    ).consume()
    updated = sorted(set(updated_ids))
    if updated:
        tx.run(
            "MATCH (v:_EntityVersion) WHERE v.entity_id IN $updated "
            "AND any(e IN $erased WHERE v.version CONTAINS e) DELETE v",
            updated=updated,
            erased=erased,
        ).consume()
    tx.run("MERGE (p:_Erasure {name: 'pending'}) SET p.at = $now", now=now).consume()
    namespace = next((c["namespace"] for c in changes if c["op"] == "delete"), "")
    return {"kind": "entity", "id": ERASED_ID, "op": "delete", "namespace": namespace}


def is_pending(tx: QueryRunner) -> bool:
    """Whether an erasure committed and `scrub` has not run since."""
    return tx.run("MATCH (p:_Erasure {name: 'pending'}) RETURN count(p) AS n").single(strict=True)["n"] > 0


def clear_pending(tx: ManagedTransaction) -> bool:
    """Forget the pending erasure; returns whether there was one."""
    record = tx.run("MATCH (p:_Erasure {name: 'pending'}) DELETE p RETURN count(*) AS n").single()
    return record is not None and int(record["n"]) > 0


def request_checkpoint(session: Session) -> bool:
    """Ask the server for a checkpoint (in a transaction of its own); False when it refused, e.g.
    to a user without the rights for it."""
    try:
        session.run("CALL db.checkpoint()").consume()
    except Neo4jError:
        return False
    return True
