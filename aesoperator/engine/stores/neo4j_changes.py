"""The Neo4j store's change log and sync state, read in a transaction.

Every write bumps the `_Counter {name: 'changes'}` node's seq and records its changes on
`_ChangeLog` nodes covering consecutive, non-overlapping seq ranges (see `neo4j_write`); the
derived indexes replay them. `_SourceItem` nodes hold what each source item produced last time.
"""

from __future__ import annotations

import json

from aesoperator.engine.stores.base import Change, SourceItemState
from aesoperator.engine.stores.neo4j_autocommit import QueryRunner

MAX_ROWS = 1_000_000_000


def page_size(size: int) -> int:
    """A caller-given page size or limit, clamped to what a Cypher LIMIT takes.

    Args:
        size: The size asked for.

    Returns:
        The size, at least 1 and at most `MAX_ROWS`.
    """
    return min(max(size, 1), MAX_ROWS)


def last_seq(tx: QueryRunner) -> int:
    """The seq of the last change written.

    Args:
        tx: Where the statements run (a read session or transaction).

    Returns:
        The seq, 0 before the first write.
    """
    record = tx.run("MATCH (k:_Counter {name: 'changes'}) RETURN k.seq AS seq").single()
    return 0 if record is None or record["seq"] is None else int(record["seq"])


def changes_after(tx: QueryRunner, seq: int, limit: int) -> list[Change]:
    """The changes with a seq above `seq`, in seq order.

    Args:
        tx: Where the statements run (a read session or transaction).
        seq: The last seq already seen.
        limit: At most this many changes (positive).

    Returns:
        The changes.
    """
    # Log nodes cover consecutive, non-overlapping seq ranges, so ordering by `last`
    # (index order) is seq order; each node holds at least one change.
    result = tx.run(
        "MATCH (c:_ChangeLog) WHERE c.last > $seq WITH c ORDER BY c.last LIMIT $limit RETURN c {.*} AS c",
        seq=seq,
        limit=page_size(limit),
    )
    out: list[Change] = []
    for record in result:
        node = record["c"]
        first = int(node["first"])
        rows = zip(node["kinds"], node["ids"], node["ops"], node["namespaces"], strict=True)
        for offset, (kind, item_id, op, namespace) in enumerate(rows):
            if first + offset <= seq:
                continue
            out.append(Change(seq=first + offset, kind=kind, id=item_id, op=op, namespace=namespace))
            if len(out) >= limit:
                return out
    return out


def source_item_states(tx: QueryRunner, source: str) -> dict[str, SourceItemState]:
    """The stored sync state of every item of one source.

    Args:
        tx: Where the statements run (a read session or transaction).
        source: The source name.

    Returns:
        Item key -> its state.
    """
    rows = [r["s"] for r in tx.run("MATCH (s:_SourceItem {source: $source}) RETURN s {.*} AS s", source=source)]
    return {
        s["key"]: SourceItemState(
            source=source,
            key=s["key"],
            content_hash=s["content_hash"],
            entity_ids=tuple(json.loads(s["entity_ids"])),
            relation_ids=tuple(json.loads(s["relation_ids"])),
            cursor=s.get("cursor"),
        )
        for s in rows
    }


def source_names(tx: QueryRunner) -> list[str]:
    """Sources that have sync state stored.

    Args:
        tx: Where the statements run (a read session or transaction).

    Returns:
        Their names, sorted.
    """
    return [r["s"] for r in tx.run("MATCH (s:_SourceItem) RETURN DISTINCT s.source AS s ORDER BY s")]
