"""The in-memory traversal view of the embedded store: a networkx MultiDiGraph.

Nodes are entity ids (attributes `namespace`, `type`); edges are keyed by relation id (attributes
`type`, `namespace` and those of `valid_from`, `valid_to`, `recorded_at`, `expired_at` that are
set, timestamps kept as canonical ISO text, which sorts in time order). The view is built once from SQLite and then caught
up from the change log: only the rows after the last applied `seq` are read, and only the entities
and relations they name are fetched again. Another process writing the same data directory is
therefore seen at the next read without a reload.

Callers hold a read transaction around `catch_up` and the queries that follow, so the view and the
rows they load come from one snapshot.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from aesoperator.engine.stores.base import ERASED_ID
from aesoperator.engine.stores.embedded_rows import chunks, json_list
from aesoperator.graph_schema.models import Direction

_EDGE_SQL = "SELECT id, type, src, dst, namespace, valid_from, valid_to, recorded_at, expired_at FROM relations"


def edge_is_live(attrs: dict[str, Any], as_of: str | None, now: str) -> bool:
    """`Relation.is_live` over ISO text: live now when not expired and not past `valid_to`; live
    at `as_of` when it started by then (`valid_from`, else `recorded_at`) and had not ended
    (`valid_to`, else `expired_at`)."""
    if as_of is None:
        if attrs.get("expired_at") is not None:
            return False
        valid_to = attrs.get("valid_to")
        return valid_to is None or valid_to > now
    start = attrs.get("valid_from") or attrs.get("recorded_at")
    if start is not None and start > as_of:
        return False
    end = attrs.get("valid_to") or attrs.get("expired_at")
    return end is None or end > as_of


@dataclass(slots=True)
class Traversal:
    hops: dict[str, int] = field(default_factory=dict)
    relation_ids: list[str] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, type) per relation


class NetworkxGraphView:
    """A process-local traversal view kept in step with the store's change log."""

    def __init__(self) -> None:
        self.graph: nx.MultiDiGraph = nx.MultiDiGraph()
        self.applied_seq = 0
        self.applied_changes = 0  # change-log rows applied incrementally since the last full load
        self.full_loads = 0
        self._ends: dict[str, tuple[str, str]] = {}

    # building -------------------------------------------------------------------------------
    def load(self, conn: sqlite3.Connection) -> None:
        """Build the view from scratch (at open, or if the change log went backwards)."""
        graph: nx.MultiDiGraph = nx.MultiDiGraph()
        seq_row = conn.execute("SELECT max(seq) FROM changes").fetchone()
        graph.add_nodes_from(
            (_shared(eid), _node_attrs(ns, typ))
            for eid, ns, typ in conn.execute("SELECT id, namespace, type FROM entities")
        )
        ends: dict[str, tuple[str, str]] = {}
        edges = []
        for row in conn.execute(_EDGE_SQL):
            if row[2] not in graph or row[3] not in graph:
                continue
            src, dst = _shared(row[2]), _shared(row[3])
            ends[row[0]] = (src, dst)
            edges.append((src, dst, row[0], _edge_attrs(row)))
        graph.add_edges_from(edges)
        self.graph = graph
        self._ends = ends
        self.applied_seq = int(seq_row[0] or 0)
        self.applied_changes = 0
        self.full_loads += 1

    def catch_up(self, conn: sqlite3.Connection) -> int:
        """Apply the change-log rows written since the last call; returns how many were read."""
        head = int(conn.execute("SELECT max(seq) FROM changes").fetchone()[0] or 0)
        if head == self.applied_seq:
            return 0
        if head < self.applied_seq:
            self.load(conn)
            return 0
        entity_ids: dict[str, None] = {}
        relation_ids: dict[str, None] = {}
        count = 0
        for kind, item_id in conn.execute(
            "SELECT kind, id FROM changes WHERE seq > ? AND seq <= ? ORDER BY seq", (self.applied_seq, head)
        ):
            count += 1
            if kind == "entity":
                entity_ids[item_id] = None
            elif kind == "relation":
                relation_ids[item_id] = None
        if ERASED_ID in entity_ids:  # rows naming erased items were rewritten: they cannot be replayed
            self.load(conn)
            return count
        self._refresh_entities(conn, list(entity_ids))
        self._refresh_relations(conn, list(relation_ids))
        self.applied_seq = head
        self.applied_changes += count
        return count

    def _refresh_entities(self, conn: sqlite3.Connection, ids: list[str]) -> None:
        if not ids:
            return
        current: dict[str, dict[str, str]] = {}
        for part in chunks(ids):
            for eid, ns, typ in conn.execute(
                "SELECT id, namespace, type FROM entities WHERE id IN (SELECT value FROM json_each(?))",
                (json_list(part),),
            ):
                current[_shared(eid)] = _node_attrs(ns, typ)
        graph = self.graph
        for eid in ids:
            if eid not in current and eid in graph:
                for _u, _v, key in [*graph.in_edges(eid, keys=True), *graph.out_edges(eid, keys=True)]:
                    self._ends.pop(key, None)
                graph.remove_node(eid)
        graph.add_nodes_from(current.items())

    def _refresh_relations(self, conn: sqlite3.Connection, ids: list[str]) -> None:
        if not ids:
            return
        current: dict[str, tuple[Any, ...]] = {}
        for part in chunks(ids):
            for row in conn.execute(_EDGE_SQL + " WHERE id IN (SELECT value FROM json_each(?))", (json_list(part),)):
                current[row[0]] = tuple(row)
        graph = self.graph
        ends = self._ends
        added: list[tuple[str, str, str, dict[str, Any]]] = []
        for rid in ids:
            row = current.get(rid)
            old = ends.get(rid)
            if old is not None:
                if row is not None and old == (row[2], row[3]):
                    # replaced, not merged: a time that is now unset has no key to overwrite it
                    attrs = graph.succ[old[0]][old[1]][rid]
                    attrs.clear()
                    attrs.update(_edge_attrs(row))
                    continue
                del ends[rid]
                if graph.has_edge(old[0], old[1], key=rid):
                    graph.remove_edge(old[0], old[1], key=rid)
            if row is None or row[2] not in graph or row[3] not in graph:
                continue
            src, dst = _shared(row[2]), _shared(row[3])
            ends[rid] = (src, dst)
            added.append((src, dst, rid, _edge_attrs(row)))
        graph.add_edges_from(added)

    # queries --------------------------------------------------------------------------------
    def namespace_of(self, entity_id: str) -> str | None:
        node = self.graph.nodes.get(entity_id)
        return None if node is None else str(node["namespace"])

    def traverse(
        self,
        seeds: Sequence[str],
        depth: int,
        relation_types: Iterable[str] | None,
        direction: Direction,
        as_of: str | None,
        now: str,
        namespaces: Iterable[str] | None,
        limit: int,
        skip_prefixes: tuple[str, ...] = (),
    ) -> Traversal:
        """Breadth-first search from `seeds` (see `EmbeddedGraphStore.neighbors`)."""
        graph = self.graph
        nodes = graph._node  # the node-attribute dict itself: see `_incident`
        allowed = None if namespaces is None else set(namespaces)
        types = None if relation_types is None else set(relation_types)
        result = Traversal()
        hops = result.hops
        for seed in seeds:
            if len(hops) >= limit:
                break
            node = nodes.get(seed)
            if node is None or seed in hops or (allowed is not None and node["namespace"] not in allowed):
                continue
            hops[seed] = 0
        followed: dict[str, None] = {}
        frontier = list(hops)
        for hop in range(1, depth + 1):
            if not frontier:
                break
            next_frontier: list[str] = []
            for current in frontier:
                for rid, other, attrs in _incident(graph, current, direction):
                    if types is not None and attrs["type"] not in types:
                        continue
                    if allowed is not None and attrs["namespace"] not in allowed:
                        continue
                    if not edge_is_live(attrs, as_of, now):
                        continue
                    if skip_prefixes and other not in hops and other.startswith(skip_prefixes):
                        continue
                    if other not in hops:
                        if allowed is not None and nodes[other]["namespace"] not in allowed:
                            continue
                        if len(hops) >= limit:
                            continue
                        hops[other] = hop
                        next_frontier.append(other)
                    if rid not in followed:
                        followed[rid] = None
                        result.edges.append((current, other, attrs["type"]))
            frontier = next_frontier
        result.relation_ids = list(followed)
        return result


def _incident(graph: nx.MultiDiGraph, node: str, direction: Direction) -> list[tuple[str, str, dict[str, Any]]]:
    """(relation id, other end, attributes) of every relation at `node`, outgoing first.

    Reads networkx's adjacency dicts (`_succ`, `_pred`) rather than the `succ`/`pred` views:
    the views iterate through `collections.abc.Mapping`, a Python call per item, which was most
    of a traversal's time. The order is the same (the views iterate these dicts)."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    if direction in ("out", "both"):
        for other, keyed in graph._succ[node].items():
            out.extend((rid, other, attrs) for rid, attrs in keyed.items())
    if direction in ("in", "both"):
        for other, keyed in graph._pred[node].items():
            out.extend((rid, other, attrs) for rid, attrs in keyed.items())
    return out


def _shared(text: str) -> str:
    """One object for equal strings. Each row read from SQLite brings its own copy of an entity
    id (as a node and again as every relation's end), a type, a namespace and a write time; at a
    million entities those copies were a fifth of the view's memory. Interned strings are freed
    when nothing else holds them."""
    return sys.intern(text)


def _node_attrs(namespace: str, entity_type: str) -> dict[str, str]:
    return {"namespace": _shared(namespace), "type": _shared(entity_type)}


_EDGE_TIMES = ((5, "valid_from"), (6, "valid_to"), (7, "recorded_at"), (8, "expired_at"))


def _edge_attrs(row: Sequence[Any]) -> dict[str, Any]:
    """An edge's attributes; unset times are left out (read with `.get`): a dict of up to five
    keys takes 184 bytes and one of six 272, which at a million relations is 160 MB."""
    attrs: dict[str, Any] = {"type": _shared(row[1]), "namespace": _shared(row[4])}
    for index, name in _EDGE_TIMES:
        if row[index] is not None:
            attrs[name] = _shared(row[index])
    return attrs
