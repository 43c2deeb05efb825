"""The in-memory traversal view of the embedded store: the entity–relation graph in numpy columns.

Entities and relations are numbered densely. Per entity the view keeps its id (once: the list
and the id → number dict share the string), namespace and type; per relation its id, ends, type,
namespace and times (microseconds since the epoch, `NO_TIME` when unset), about 70 bytes of
columns besides the id. Adjacency is one CSR of both directions built at load, plus the relations added
since, per entity, in the order they came. A node's relations are listed grouped by the other
end, in the order the store first lists a relation between the two, then in the store's order
(the order networkx's adjacency dicts had); relations added later follow them. Replaced or
deleted relations are only marked dead; once the additions and dead entries outgrow a share of
the CSR, it is rebuilt from the columns in memory (`_compact`), the added relations joining
their groups.

The view is built once from SQLite and then caught up from the change log: only the rows after
the last applied `seq` are read, and only the entities and relations they name are fetched
again. Another process writing the same data directory is therefore seen at the next read
without a reload. Callers hold a read transaction around `catch_up` and the queries that follow,
so the view and the rows they load come from one snapshot.

Why not networkx: a MultiDiGraph holds per relation a key dict, an attribute dict and an adjacency
entry on both ends, and per entity three dicts; at a million entities that was 2.3 GB of the
process. These columns take a tenth of that, and a hop's filters run over a frontier's relations
at once instead of one Python call per relation. (`aesoperator.notebook.graph_view` still gives
analysts a networkx graph of what they ask for.)
"""

from __future__ import annotations

import array
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, cast

import numpy as np

from aesoperator.engine.growable import GrowableColumn
from aesoperator.engine.heap import release_free_heap
from aesoperator.engine.stores.base import ERASED_ID
from aesoperator.engine.stores.embedded_rows import chunks, json_list
from aesoperator.engine.text_codes import TextCodes
from aesoperator.graph_schema.models import Direction, from_iso

_EDGE_SQL = "SELECT id, type, src, dst, namespace, valid_from, valid_to, recorded_at, expired_at FROM relations"
NO_TIME = np.iinfo(np.int64).min  # an unset time
TIME_FIELDS = ("valid_from", "valid_to", "recorded_at", "expired_at")  # columns 5-8 of `_EDGE_SQL`
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Rebuild the CSR once the relations added or marked dead since the last build exceed this share
# of it (and at least `_COMPACT_MIN` of them): amortised, each change is copied a few times.
_COMPACT_SHARE = 0.25
_COMPACT_MIN = 50_000


def _ragged_range(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions `starts[i] .. starts[i] + lengths[i] - 1` of every i, concatenated."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = starts - (np.cumsum(lengths) - lengths)
    return np.arange(total, dtype=np.int64) + np.repeat(shift, lengths)


def time_micros(text: str | None) -> int:
    """Microseconds since the epoch of a stored ISO time (`to_iso`'s text), `NO_TIME` for none.

    For the canonical text the order is the text's order, so comparisons agree with the store's."""
    moment = from_iso(text)
    if moment is None:
        return int(NO_TIME)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


@dataclass(slots=True)
class Traversal:
    hops: dict[str, int] = field(default_factory=dict)
    relation_ids: list[str] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, type) per relation


@dataclass(frozen=True, slots=True)
class ViewEdge:
    """One live relation as the view holds it (for inspection and tests)."""

    id: str
    src: str
    dst: str
    type: str
    namespace: str
    times: tuple[int, int, int, int]  # `TIME_FIELDS`, microseconds, `NO_TIME` when unset


@dataclass(slots=True)
class _Adjacency:
    """Both directions in one CSR: node n's entries are `[offsets[n], offsets[n + 1])`, its
    `out_counts[n]` outgoing relations first, then its incoming ones; per entry the relation's
    number and the node at its other end. One gather serves a frontier in any direction."""

    offsets: np.ndarray  # int64, nodes + 1
    out_counts: np.ndarray  # int64, per node
    edges: np.ndarray  # int32, two entries a relation
    other: np.ndarray  # int32, the far end of each entry

    @classmethod
    def empty(cls) -> _Adjacency:
        return cls(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), _no_edges(), _no_edges())

    def spans(self, nodes: np.ndarray, direction: Direction) -> tuple[np.ndarray, np.ndarray]:
        """(start, length) of each node's entries in `direction`."""
        starts, ends = self.offsets[nodes], self.offsets[nodes + 1]
        if direction == "out":
            ends = starts + self.out_counts[nodes]
        elif direction == "in":
            starts = starts + self.out_counts[nodes]
        return starts, ends - starts


def _no_edges() -> np.ndarray:
    return np.zeros(0, dtype=np.int32)


class ArrayGraphView:
    """A process-local traversal view kept in step with the store's change log."""

    def __init__(self) -> None:
        self.applied_seq = 0
        self.applied_changes = 0  # change-log rows applied incrementally since the last full load
        self.full_loads = 0
        self.compactions = 0
        self._clear()

    def _clear(self) -> None:
        self._texts = TextCodes()
        self._node_of: dict[str, int] = {}
        self._node_ids: list[str | None] = []  # None: removed
        self._node_ns = GrowableColumn(np.int32)
        self._node_type = GrowableColumn(np.int32)
        self._edge_of: dict[str, int] = {}
        self._edge_ids: list[str | None] = []  # None: replaced or deleted
        self._src = GrowableColumn(np.int32)
        self._dst = GrowableColumn(np.int32)
        self._edge_type = GrowableColumn(np.int32)
        self._edge_ns = GrowableColumn(np.int32)
        self._edge_live = GrowableColumn(np.bool_)
        self._times = [GrowableColumn(np.int64) for _ in TIME_FIELDS]
        self._adjacency = _Adjacency.empty()
        self._csr_nodes = 0  # nodes numbered below this have CSR rows
        self._csr_edges = 0  # relations numbered below this are in the CSR
        self._out_added: dict[int, list[int]] = {}
        self._in_added: dict[int, list[int]] = {}
        self._dead_edges = 0

    # building -------------------------------------------------------------------------------
    def load(self, conn: sqlite3.Connection) -> None:
        """Build the view from scratch (at open, or if the change log went backwards)."""
        self._load_rows(conn)
        release_free_heap()  # the rows' strings and the CSR's sort buffers, freed by now

    def _load_rows(self, conn: sqlite3.Connection) -> None:
        self._clear()
        seq_row = conn.execute("SELECT max(seq) FROM changes").fetchone()
        texts = self._texts
        node_of = self._node_of
        node_ids = self._node_ids
        node_ns, node_type = array.array("i"), array.array("i")
        for eid, ns, typ in conn.execute("SELECT id, namespace, type FROM entities"):
            node_of[eid] = len(node_ids)
            node_ids.append(eid)
            node_ns.append(texts.code(ns))
            node_type.append(texts.code(typ))
        edge_of = self._edge_of
        edge_ids = self._edge_ids
        src, dst, types, nss = array.array("i"), array.array("i"), array.array("i"), array.array("i")
        times: list[array.array[int]] = [array.array("q") for _ in TIME_FIELDS]
        parsed: dict[str | None, int] = {None: int(NO_TIME)}  # a batch's rows share their times
        for row in conn.execute(_EDGE_SQL):
            s, d = node_of.get(row[2]), node_of.get(row[3])
            if s is None or d is None:
                continue
            edge_of[row[0]] = len(edge_ids)
            edge_ids.append(row[0])
            src.append(s)
            dst.append(d)
            types.append(texts.code(row[1]))
            nss.append(texts.code(row[4]))
            for column, text in zip(times, row[5:9], strict=True):
                micros = parsed.get(text)
                if micros is None:
                    micros = parsed[text] = time_micros(text)
                column.append(micros)
        self._node_ns = GrowableColumn(np.int32, np.frombuffer(node_ns, dtype=np.int32))
        self._node_type = GrowableColumn(np.int32, np.frombuffer(node_type, dtype=np.int32))
        self._src = GrowableColumn(np.int32, np.frombuffer(src, dtype=np.int32))
        self._dst = GrowableColumn(np.int32, np.frombuffer(dst, dtype=np.int32))
        self._edge_type = GrowableColumn(np.int32, np.frombuffer(types, dtype=np.int32))
        self._edge_ns = GrowableColumn(np.int32, np.frombuffer(nss, dtype=np.int32))
        self._edge_live = GrowableColumn(np.bool_, np.ones(len(edge_ids), dtype=np.bool_))
        self._times = [GrowableColumn(np.int64, np.frombuffer(column, dtype=np.int64)) for column in times]
        self._build_csr()
        self.applied_seq = int(seq_row[0] or 0)
        self.applied_changes = 0
        self.full_loads += 1

    def _build_csr(self) -> None:
        """The CSR of both directions over every node and relation. A node's relations (in each
        direction) are grouped by the other end, the groups in order of their first relation, and
        the relations of a group in order; relations are numbered in the order the store listed
        them or they arrived."""
        nodes = len(self._node_ids)
        src, dst = self._src.view(), self._dst.view()
        number = np.arange(len(src), dtype=np.int64)
        pairs = src.astype(np.int64) * max(nodes, 1) + dst
        _unique, first, inverse = np.unique(pairs, return_index=True, return_inverse=True)
        pair_first = first[inverse.reshape(-1)]
        out_counts = np.bincount(src, minlength=nodes).astype(np.int64)
        in_counts = np.bincount(dst, minlength=nodes).astype(np.int64)
        offsets = np.zeros(nodes + 1, dtype=np.int64)
        np.cumsum(out_counts + in_counts, out=offsets[1:])
        edges = np.empty(2 * len(src), dtype=np.int32)
        other = np.empty(2 * len(src), dtype=np.int32)
        for ends, far, counts, block_start in (
            (src, dst, out_counts, offsets[:-1]),
            (dst, src, in_counts, offsets[:-1] + out_counts),
        ):
            order = np.lexsort((number, pair_first, ends))  # by node, then the pair's group, then number
            owner = ends[order]
            first_of_owner = np.cumsum(counts) - counts  # where each node's run starts in `order`
            slot = block_start[owner] + (number - first_of_owner[owner])
            edges[slot] = order
            other[slot] = far[order]
        self._adjacency = _Adjacency(offsets, out_counts, edges, other)
        self._csr_nodes = nodes
        self._csr_edges = len(src)
        self._out_added = {}
        self._in_added = {}

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
        added = (len(self._edge_ids) - self._csr_edges) + self._dead_edges
        if added > max(_COMPACT_MIN, _COMPACT_SHARE * self._csr_edges):
            self._compact()
        return count

    def _refresh_entities(self, conn: sqlite3.Connection, ids: list[str]) -> None:
        if not ids:
            return
        current: dict[str, tuple[str, str]] = {}
        for part in chunks(ids):
            for eid, ns, typ in conn.execute(
                "SELECT id, namespace, type FROM entities WHERE id IN (SELECT value FROM json_each(?))",
                (json_list(part),),
            ):
                current[eid] = (ns, typ)
        for eid in ids:
            if eid not in current:
                self._remove_node(eid)
        texts = self._texts
        for eid, (ns, typ) in current.items():
            node = self._node_of.get(eid)
            if node is None:
                self._node_of[eid] = len(self._node_ids)
                self._node_ids.append(eid)
                self._node_ns.append(texts.code(ns))
                self._node_type.append(texts.code(typ))
            else:
                self._node_ns.data[node] = texts.code(ns)
                self._node_type.data[node] = texts.code(typ)

    def _remove_node(self, entity_id: str) -> None:
        node = self._node_of.pop(entity_id, None)
        if node is None:
            return
        self._node_ids[node] = None
        for edge in self._frontier_edges([node], "both")[0].tolist():
            if self._edge_live.data[edge]:
                self._kill_edge(edge)

    def _kill_edge(self, edge: int) -> None:
        rid = self._edge_ids[edge]
        if rid is not None:
            del self._edge_of[rid]
        self._edge_ids[edge] = None
        self._edge_live.data[edge] = False
        self._dead_edges += 1

    def _refresh_relations(self, conn: sqlite3.Connection, ids: list[str]) -> None:
        if not ids:
            return
        current: dict[str, tuple[Any, ...]] = {}
        for part in chunks(ids):
            for row in conn.execute(_EDGE_SQL + " WHERE id IN (SELECT value FROM json_each(?))", (json_list(part),)):
                current[row[0]] = tuple(row)
        node_of = self._node_of
        for rid in ids:
            row = current.get(rid)
            edge = self._edge_of.get(rid)
            ends = None if row is None else (node_of.get(row[2]), node_of.get(row[3]))
            if edge is not None:
                if row is not None and ends == (int(self._src.data[edge]), int(self._dst.data[edge])):
                    self._set_edge_fields(edge, row)
                    continue
                self._kill_edge(edge)
            if row is None or ends is None or ends[0] is None or ends[1] is None:
                continue
            edge = len(self._edge_ids)
            self._edge_of[rid] = edge
            self._edge_ids.append(rid)
            self._src.append(ends[0])
            self._dst.append(ends[1])
            self._edge_live.append(True)
            for column in (self._edge_type, self._edge_ns, *self._times):
                column.append(0)
            self._set_edge_fields(edge, row)
            self._out_added.setdefault(ends[0], []).append(edge)
            self._in_added.setdefault(ends[1], []).append(edge)

    def _set_edge_fields(self, edge: int, row: tuple[Any, ...]) -> None:
        self._edge_type.data[edge] = self._texts.code(row[1])
        self._edge_ns.data[edge] = self._texts.code(row[4])
        for column, text in zip(self._times, row[5:9], strict=True):
            column.data[edge] = time_micros(text)

    def _compact(self) -> None:
        """Drop removed nodes and dead relations, renumber, and rebuild the CSR: the relations
        added since the last build join their pair's group, as in a fresh load."""
        node_keep = np.fromiter((eid is not None for eid in self._node_ids), dtype=np.bool_, count=len(self._node_ids))
        edge_keep = self._edge_live.view().copy()
        renumber = np.cumsum(node_keep, dtype=np.int64) - 1
        node_ids = [eid for eid in self._node_ids if eid is not None]
        self._node_of = {eid: number for number, eid in enumerate(node_ids)}
        self._node_ids = cast(list[str | None], node_ids)
        self._node_ns = GrowableColumn(np.int32, self._node_ns.view()[node_keep])
        self._node_type = GrowableColumn(np.int32, self._node_type.view()[node_keep])
        edge_ids = [rid for rid in self._edge_ids if rid is not None]
        self._edge_of = {rid: number for number, rid in enumerate(edge_ids)}
        self._edge_ids = cast(list[str | None], edge_ids)
        self._src = GrowableColumn(np.int32, renumber[self._src.view()[edge_keep]])
        self._dst = GrowableColumn(np.int32, renumber[self._dst.view()[edge_keep]])
        self._edge_type = GrowableColumn(np.int32, self._edge_type.view()[edge_keep])
        self._edge_ns = GrowableColumn(np.int32, self._edge_ns.view()[edge_keep])
        self._times = [GrowableColumn(np.int64, column.view()[edge_keep]) for column in self._times]
        self._edge_live = GrowableColumn(np.bool_, np.ones(len(edge_ids), dtype=np.bool_))
        self._dead_edges = 0
        self._build_csr()
        self.compactions += 1

    # reading --------------------------------------------------------------------------------
    def nodes(self) -> Iterator[tuple[str, str, str]]:
        """(id, namespace, type) of every entity."""
        texts = self._texts.text
        for node, eid in enumerate(self._node_ids):
            if eid is not None:
                yield eid, texts[self._node_ns.data[node]], texts[self._node_type.data[node]]

    def edges(self) -> Iterator[ViewEdge]:
        """Every live relation."""
        texts = self._texts.text
        for edge, rid in enumerate(self._edge_ids):
            if rid is None:
                continue
            yield ViewEdge(
                id=rid,
                src=str(self._node_ids[self._src.data[edge]]),
                dst=str(self._node_ids[self._dst.data[edge]]),
                type=texts[self._edge_type.data[edge]],
                namespace=texts[self._edge_ns.data[edge]],
                times=tuple(int(column.data[edge]) for column in self._times),  # type: ignore[arg-type]
            )

    def _frontier_edges(self, frontier: list[int], direction: Direction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every relation at the frontier's nodes (dead ones too), in traversal order: per node its
        outgoing relations, then its incoming ones, each the CSR's then those added since.
        Returns (relation, from, to) columns."""
        adjacency = self._adjacency
        nodes = np.asarray(frontier, dtype=np.int64)
        added = [
            n
            for n in frontier
            if (direction != "in" and n in self._out_added) or (direction != "out" and n in self._in_added)
        ]
        if not added and (not len(nodes) or int(nodes.max()) < self._csr_nodes):  # the usual case: one gather
            starts, lengths = adjacency.spans(nodes, direction)
            where = _ragged_range(starts, lengths)
            return adjacency.edges[where], np.repeat(nodes, lengths), adjacency.other[where]
        relations: list[np.ndarray] = []
        others: list[np.ndarray] = []
        counts: list[int] = []
        for node in frontier:
            total = 0
            for wanted, extra, far in (("out", self._out_added, self._dst), ("in", self._in_added, self._src)):
                if direction not in (wanted, "both"):
                    continue
                if node < self._csr_nodes:
                    start, length = adjacency.spans(np.asarray([node]), cast(Direction, wanted))
                    span = slice(int(start[0]), int(start[0] + length[0]))
                    relations.append(adjacency.edges[span])
                    others.append(adjacency.other[span])
                    total += int(length[0])
                later = np.asarray(extra.get(node, ()), dtype=np.int32)
                relations.append(later)
                others.append(far.data[later])
                total += len(later)
            counts.append(total)
        return np.concatenate(relations), np.repeat(nodes, counts), np.concatenate(others)

    def _live_mask(self, relation: np.ndarray, as_of: int | None, now: int) -> np.ndarray:
        """Which relations are live: now, when not expired and not past `valid_to`; at `as_of`,
        when they started by then (`valid_from`, else `recorded_at`) and had not ended
        (`valid_to`, else `expired_at`). `Relation.is_live` over the time columns."""
        valid_from, valid_to, recorded_at, expired_at = self._times
        if as_of is None:
            ends = valid_to.data[relation]
            return (expired_at.data[relation] == NO_TIME) & ((ends == NO_TIME) | (ends > now))
        start = np.where(valid_from.data[relation] != NO_TIME, valid_from.data[relation], recorded_at.data[relation])
        end = np.where(valid_to.data[relation] != NO_TIME, valid_to.data[relation], expired_at.data[relation])
        return ((start == NO_TIME) | (start <= as_of)) & ((end == NO_TIME) | (end > as_of))

    def _code_mask(self, texts: Iterable[str]) -> np.ndarray:
        """One flag per known code: whether it is one of `texts`."""
        mask = np.zeros(len(self._texts.text), dtype=np.bool_)
        mask[self._texts.codes(texts)] = True
        return mask

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
        node_ids = self._node_ids
        node_ns = self._node_ns.data
        allowed = None if namespaces is None else self._code_mask(namespaces)
        types = None if relation_types is None else self._code_mask(relation_types)
        as_of_micros = None if as_of is None else time_micros(as_of)
        now_micros = time_micros(now)
        hops: dict[int, int] = {}
        for seed in seeds:
            if len(hops) >= limit:
                break
            node = self._node_of.get(seed)
            if node is None or node in hops or (allowed is not None and not allowed[node_ns[node]]):
                continue
            hops[node] = 0
        followed: dict[int, None] = {}
        found: list[tuple[int, int, int]] = []  # (from, to, type code) per relation followed
        frontier = list(hops)
        for hop in range(1, depth + 1):
            if not frontier:
                break
            relation, origin, other = self._frontier_edges(frontier, direction)
            keep = self._edge_live.data[relation] & self._live_mask(relation, as_of_micros, now_micros)
            if types is not None:
                keep &= types[self._edge_type.data[relation]]
            if allowed is not None:
                keep &= allowed[self._edge_ns.data[relation]] & allowed[node_ns[other]]
            kept = np.flatnonzero(keep)
            next_frontier: list[int] = []
            for rel, current, reached, type_code in zip(
                relation[kept].tolist(),
                origin[kept].tolist(),
                other[kept].tolist(),
                self._edge_type.data[relation[kept]].tolist(),
                strict=True,
            ):
                if reached not in hops:
                    if skip_prefixes and str(node_ids[reached]).startswith(skip_prefixes):
                        continue
                    if len(hops) >= limit:
                        continue
                    hops[reached] = hop
                    next_frontier.append(reached)
                if rel not in followed:
                    followed[rel] = None
                    found.append((current, reached, type_code))
            frontier = next_frontier
        ids = cast(list[str], node_ids)  # every node a walk reaches is live
        starts, ends, codes = zip(*found, strict=True) if found else ((), (), ())
        return Traversal(
            hops=dict(zip(_pick(ids, hops), hops.values(), strict=True)),
            relation_ids=_pick(cast(list[str], self._edge_ids), followed),
            edges=list(zip(_pick(ids, starts), _pick(ids, ends), _pick(self._texts.text, codes), strict=True)),
        )


def _pick(items: list[str], positions: Iterable[int]) -> list[str]:
    """`[items[p] for p in positions]`, gathered in C (`itemgetter`): walks return thousands."""
    wanted = list(positions)
    if len(wanted) < 2:
        return [items[p] for p in wanted]
    return list(itemgetter(*wanted)(items))
