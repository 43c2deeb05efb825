"""The embedded graph store: SQLite (WAL, FTS5) as the durable record, an in-memory view in numpy columns for traversal.

A data directory holds `graph.sqlite`. Several `EmbeddedGraphStore` instances, in one process or
in several, may share a directory: writes are serialised by SQLite (`BEGIN IMMEDIATE` with a busy
timeout), readers never block, and each instance's traversal view catches up from the change log
before it is used, so a write committed anywhere is visible to the next read everywhere.

One connection per instance is shared by all threads behind a re-entrant lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from aesoperator.engine.data_dir import create_private_file, make_private_dir
from aesoperator.engine.query_terms import prune_common_terms
from aesoperator.engine.stores.base import (
    Change,
    EntityText,
    GraphStore,
    Links,
    SourceItemState,
    StoreStats,
    Subgraph,
    WriteBatch,
    WriteResult,
    WriteShortcutsMixin,
)
from aesoperator.engine.stores.embedded_erase import is_pending, scrub
from aesoperator.engine.stores.embedded_rows import (
    ENTITY_COLUMNS,
    RELATION_COLUMNS,
    chunks,
    entity_from_history,
    fts_expression,
    json_list,
    row_to_entity,
    row_to_relation,
)
from aesoperator.engine.stores.embedded_schema import configure, create_schema
from aesoperator.engine.stores.embedded_write import apply_batch
from aesoperator.engine.stores.graph_view import ArrayGraphView, Traversal
from aesoperator.engine.stores.out_of_space import reraise_if_out_of_space
from aesoperator.engine.stores.wal_checkpoints import WalCheckpointer
from aesoperator.errors import StoreError
from aesoperator.graph_schema.models import Direction, Entity, Relation, to_iso, utcnow

T = TypeVar("T")
DB_FILE = "graph.sqlite"
MAX_ROWS = 1_000_000_000  # upper bound for caller-given limits (SQLite integers are 64-bit)
# bm25 column weights: a hit in the name counts twice a hit in the text.
BM25_WEIGHTS = (2.0, 1.0)
# Keyword queries drop terms found in more than this share of the entities (see
# `prune_common_terms`), but only on stores of at least KEYWORD_PRUNE_MIN_DOCS entities: below
# that, scoring every match costs a few milliseconds and the exact query is kept. At one half,
# FTS5's bm25 idf, ln((N - df + 0.5) / (df + 0.5)), is no longer positive and is clamped to 1e-6,
# so a dropped term never moved a score by more than a few millionths. Lower shares are faster
# but measurably hurt recall (on LoCoMo, 0.3 already costs 0.005 recall@10).
KEYWORD_MAX_DF = 0.5
KEYWORD_PRUNE_MIN_DOCS = 20_000
# The best matches are first taken from the FTS index alone, this many times k, before the
# entities table is read for ids and filters (see `_ranked_matches`).
KEYWORD_OVERFETCH = 4
_DF_CACHE_MAX = 50_000

_NS_FILTER = "(?{n} IS NULL OR {col} IN (SELECT value FROM json_each(?{n})))"
# What a failed write leaves: SQLite rolls the whole transaction back.
_NOTHING_WRITTEN = "the transaction was rolled back, so the store is as it was before this write"


def _page(size: int) -> int:
    return min(max(size, 1), MAX_ROWS)


def _optional_list(values: Sequence[str] | None) -> str | None:
    return None if values is None else json_list(list(values))


class EmbeddedGraphStore(WriteShortcutsMixin):
    """`GraphStore` over SQLite in `path/graph.sqlite` plus an in-memory traversal view (`graph_view.ArrayGraphView`)."""

    backend = "embedded"
    remote_reads = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db_path = self.path / DB_FILE
        self._lock = threading.RLock()
        self._closed = False
        self.keyword_max_df = KEYWORD_MAX_DF
        self.keyword_prune_min_docs = KEYWORD_PRUNE_MIN_DOCS
        # Document frequencies of query terms and the entity count, valid at one change-log seq.
        self._df_seq: int | None = None
        self._df: dict[str, int] = {}
        self._doc_count = 0
        try:
            make_private_dir(self.path)
            create_private_file(self.db_path)  # 0600 first: SQLite gives -wal and -shm its mode
            conn = sqlite3.connect(str(self.db_path), timeout=30.0, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            reraise_if_out_of_space(exc, self.path, f"open the graph store at {self.db_path}", _NOTHING_WRITTEN)
            raise StoreError(f"cannot open the graph store at {self.db_path}: {exc}") from exc
        self._conn = conn
        try:
            configure(conn)
            create_schema(conn)
        except sqlite3.Error as exc:
            conn.close()
            reraise_if_out_of_space(exc, self.path, f"initialise the graph store at {self.db_path}", _NOTHING_WRITTEN)
            raise StoreError(f"cannot initialise the graph store at {self.db_path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        try:  # WAL checkpoints beside the writes instead of in them (see wal_checkpoints)
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            conn.execute("PRAGMA wal_autocheckpoint = 0").fetchall()
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot configure the graph store at {self.db_path}: {exc}") from exc
        self._checkpoints = WalCheckpointer(self.db_path, page_size)
        self.view = ArrayGraphView()
        try:
            with self._read("build the graph view"):
                self.view.load(conn)
        except BaseException:
            self.close()
            raise

    # plumbing -------------------------------------------------------------------------------
    @contextmanager
    def _guard(self, action: str) -> Iterator[sqlite3.Connection]:
        """Hold the lock and turn SQLite errors into `StoreError` naming what failed."""
        with self._lock:
            if self._closed:
                raise StoreError(f"cannot {action}: the graph store at {self.db_path} is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                reraise_if_out_of_space(
                    exc, self.path, f"{action} in the graph store at {self.db_path}", _NOTHING_WRITTEN
                )
                raise StoreError(f"graph store at {self.db_path}: could not {action}: {exc}") from exc

    @contextmanager
    def _transaction(self, action: str, begin: str) -> Iterator[sqlite3.Connection]:
        with self._guard(action) as conn:
            conn.execute(begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _read(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction: every statement inside sees one snapshot."""
        return self._transaction(action, "BEGIN")

    def _write(self, batch: WriteBatch, expire_at: datetime | None = None) -> WriteResult:
        if batch.is_empty():
            return WriteResult(seq=self.last_seq())
        if batch.erase:
            with self._secure_delete("erase"), self._transaction("erase a batch", "BEGIN IMMEDIATE") as conn:
                result = apply_batch(conn, batch, utcnow(), expire_at)
        else:
            with self._transaction("write a batch", "BEGIN IMMEDIATE") as conn:
                result = apply_batch(conn, batch, utcnow(), expire_at)
        with self._guard("checkpoint the write-ahead log") as conn:
            self._checkpoints.after_commit(conn)
        return result

    @contextmanager
    def _secure_delete(self, action: str) -> Iterator[sqlite3.Connection]:
        """SQLite overwrites deleted content with zeros while this is held (see embedded_erase)."""
        with self._guard(action) as conn:
            conn.execute("PRAGMA secure_delete = ON").fetchall()
            try:
                yield conn
            finally:
                conn.execute("PRAGMA secure_delete = OFF").fetchall()

    def __enter__(self) -> EmbeddedGraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # writes ---------------------------------------------------------------------------------
    # reads ----------------------------------------------------------------------------------
    def get_entities(self, ids: Sequence[str], namespaces: Sequence[str] | None = None) -> list[Entity]:
        """Entities in the order of `ids`; unknown ids and other namespaces are left out."""
        with self._read("read entities") as conn:
            return self._load_entities(conn, ids, namespaces)

    def _load_entities(
        self, conn: sqlite3.Connection, ids: Sequence[str], namespaces: Sequence[str] | None = None
    ) -> list[Entity]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Entity] = {}
        ns = _optional_list(namespaces)
        sql = (
            f"SELECT {ENTITY_COLUMNS} FROM entities WHERE id IN (SELECT value FROM json_each(?1)) "
            f"AND {_NS_FILTER.format(n=2, col='namespace')}"
        )
        for part in chunks(wanted):
            for row in conn.execute(sql, (json_list(part), ns)):
                found[row[0]] = row_to_entity(row)
        return [found[i] for i in wanted if i in found]

    def get_relations(self, ids: Sequence[str]) -> list[Relation]:
        with self._read("read relations") as conn:
            return self._load_relations(conn, ids)

    def relations_on(self, links: Links) -> list[Relation]:
        """The relations `links` names, in its order (read by id: the primary key finds them)."""
        return self.get_relations(links.relation_ids)

    def _load_relations(self, conn: sqlite3.Connection, ids: Sequence[str]) -> list[Relation]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Relation] = {}
        sql = f"SELECT {RELATION_COLUMNS} FROM relations WHERE id IN (SELECT value FROM json_each(?))"
        for part in chunks(wanted):
            for row in conn.execute(sql, (json_list(part),)):
                found[row[0]] = row_to_relation(row)
        return [found[i] for i in wanted if i in found]

    def outgoing_relations(
        self, ids: Sequence[str], relation_types: Sequence[str], namespaces: Sequence[str] | None = None
    ) -> list[Relation]:
        """Every relation of one of `relation_types` leaving one of `ids`, expired or not, of the
        relation namespaces `namespaces` (None: all), by source, type, `valid_from` and id."""
        types = json_list(list(dict.fromkeys(relation_types)))
        sql = (
            f"SELECT {RELATION_COLUMNS} FROM relations WHERE src = ?1 "
            f"AND type IN (SELECT value FROM json_each(?2)) AND {_NS_FILTER.format(n=3, col='namespace')}"
        )
        found: list[Relation] = []
        if not relation_types:
            return found
        with self._read("read a subject's relations") as conn:
            for src in dict.fromkeys(ids):
                found.extend(
                    row_to_relation(row) for row in conn.execute(sql, (src, types, _optional_list(namespaces)))
                )
        found.sort(key=lambda r: (r.src, r.type, to_iso(r.valid_from) or "", r.id))
        return found

    def history(self, entity_id: str) -> list[Entity]:
        """Earlier versions of an entity, oldest first (each replaced by a changing upsert)."""
        with self._guard("read entity history") as conn:
            rows = conn.execute(
                "SELECT version FROM entity_history WHERE id = ? ORDER BY rowid", (entity_id,)
            ).fetchall()
        return [entity_from_history(r[0]) for r in rows]

    def neighbor_links(
        self,
        ids: Sequence[str],
        depth: int = 1,
        relation_types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        namespaces: Sequence[str] | None = None,
        limit: int = 1000,
        skip_prefixes: Sequence[str] = (),
    ) -> Links:
        """What `neighbors` reaches, as ids and relation types: the in-memory graph view answers
        it without reading a row."""
        if limit <= 0:
            return Links()
        with self._read("traverse the graph") as conn:
            walk = self._traverse(conn, ids, depth, relation_types, "both", as_of, namespaces, limit, skip_prefixes)
        return Links(hops=walk.hops, edges=walk.edges, relation_ids=walk.relation_ids)

    def _traverse(
        self,
        conn: sqlite3.Connection,
        ids: Sequence[str],
        depth: int,
        relation_types: Sequence[str] | None,
        direction: Direction,
        as_of: datetime | None,
        namespaces: Sequence[str] | None,
        limit: int,
        skip_prefixes: Sequence[str],
    ) -> Traversal:
        """The graph view's breadth-first walk, caught up with the store first."""
        self.view.catch_up(conn)
        return self.view.traverse(
            list(ids),
            max(depth, 0),
            relation_types,
            direction,
            to_iso(as_of),
            to_iso(utcnow()) or "",
            namespaces,
            limit,
            tuple(skip_prefixes),
        )

    def neighbors(
        self,
        ids: Sequence[str],
        depth: int = 1,
        relation_types: Sequence[str] | None = None,
        direction: Direction = "both",
        as_of: datetime | None = None,
        namespaces: Sequence[str] | None = None,
        limit: int = 1000,
        skip_prefixes: Sequence[str] = (),
    ) -> Subgraph:
        """Breadth-first neighbourhood of `ids` up to `depth` hops.

        Seeds are hop 0 (unknown seeds and seeds outside `namespaces` are dropped). From each
        entity at hop h < depth, every relation that is live at `as_of` (now when None), of an
        allowed type and namespace, is followed to an entity of an allowed namespace, which gets
        hop h + 1 unless it already has a smaller one. Entities of other namespaces are neither
        returned nor traversed through. At most `limit` entities are returned (seeds first, then
        by hop); the relations returned are those followed between returned entities. Entities
        whose id starts with one of `skip_prefixes` are neither reached nor walked through.
        """
        if direction not in ("out", "in", "both"):
            raise ValueError(f"direction must be 'out', 'in' or 'both', got {direction!r}")
        if limit <= 0:
            return Subgraph()
        with self._read("traverse the graph") as conn:
            walk = self._traverse(conn, ids, depth, relation_types, direction, as_of, namespaces, limit, skip_prefixes)
            entities = self._load_entities(conn, list(walk.hops))
            relations = self._load_relations(conn, walk.relation_ids)
        return Subgraph(
            entities={e.id: e for e in entities},
            relations=relations,
            hops={e.id: walk.hops[e.id] for e in entities},
        )

    def keyword_search(
        self,
        query: str,
        k: int = 10,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """BM25 over entity name and text; higher score is better. Query text is data, never syntax.

        Ties in score are broken by entity id. On a large store, terms so common that their idf is
        small are left out of the query (see `prune_common_terms`).
        """
        expression = fts_expression(query)
        if expression is None or k <= 0:
            return []
        k = min(k, MAX_ROWS)
        ns, ty = _optional_list(namespaces), _optional_list(types)
        with self._read("run a keyword search") as conn:
            # Every phrase of the expression is one quoted word, so " OR " only ever separates them.
            terms = self._terms_worth_matching(conn, expression.split(" OR "))
            if not terms:
                return []
            rows = self._ranked_matches(conn, " OR ".join(terms), k, ns, ty)
        return [(eid, max(-float(score), 1e-9)) for eid, score in rows]

    def _terms_worth_matching(self, conn: sqlite3.Connection, terms: list[str]) -> list[str]:
        """`terms` without the ones too common to be worth scoring (on large stores only)."""
        seq = int(conn.execute("SELECT max(seq) FROM changes").fetchone()[0] or 0)
        if seq != self._df_seq or len(self._df) > _DF_CACHE_MAX:
            self._df_seq, self._df = seq, {}
            self._doc_count = int(conn.execute("SELECT count(*) FROM entities").fetchone()[0])
        if self._doc_count < self.keyword_prune_min_docs:
            return terms
        for term in terms:
            if term not in self._df:
                self._df[term] = int(
                    conn.execute("SELECT count(*) FROM entities_fts WHERE entities_fts MATCH ?", (term,)).fetchone()[0]
                )
        return prune_common_terms(terms, self._df, self._doc_count, self.keyword_max_df)

    def _ranked_matches(
        self, conn: sqlite3.Connection, expression: str, k: int, ns: str | None, ty: str | None
    ) -> list[tuple[str, float]]:
        """The k best (id, bm25) matches passing the filters, ordered by (bm25, id): exactly what
        one query joining the FTS index with `entities` returns, usually much cheaper.

        FTS5 computes bm25 for every match either way; what the join adds is an entities lookup
        per match. So the best `KEYWORD_OVERFETCH * k` matches are taken from the FTS index
        alone, and only those are looked up. The answer is exact when the candidates were all
        the matches, or when the k-th filtered hit scores strictly better than the last
        candidate (everything left out scores no better than that, ties included). Otherwise
        (selective filters, ties at the cut) the joined query runs.
        """
        fetch = min(max(k * KEYWORD_OVERFETCH, 64), MAX_ROWS)
        weights = f"{BM25_WEIGHTS[0]}, {BM25_WEIGHTS[1]}"
        top = conn.execute(
            f"SELECT rowid, bm25(entities_fts, {weights}) AS score FROM entities_fts "
            "WHERE entities_fts MATCH ?1 ORDER BY score LIMIT ?2",
            (expression, fetch),
        ).fetchall()
        if not top:
            return []
        score_of = dict(top)
        wanted = json.dumps([rid for rid, _ in top])
        passing = conn.execute(
            "SELECT rid, id FROM entities WHERE rid IN (SELECT value FROM json_each(?1)) "
            f"AND {_NS_FILTER.format(n=2, col='namespace')} AND {_NS_FILTER.format(n=3, col='type')}",
            (wanted, ns, ty),
        ).fetchall()
        hits = sorted(((eid, float(score_of[rid])) for rid, eid in passing), key=lambda h: (h[1], h[0]))
        if len(top) < fetch or (len(hits) >= k and hits[k - 1][1] < float(top[-1][1])):
            return hits[:k]
        sql = (
            f"SELECT e.id, bm25(entities_fts, {weights}) AS score "
            "FROM entities_fts JOIN entities e ON e.rid = entities_fts.rowid "
            f"WHERE entities_fts MATCH ?1 AND {_NS_FILTER.format(n=2, col='e.namespace')} "
            f"AND {_NS_FILTER.format(n=3, col='e.type')} ORDER BY score, e.id LIMIT ?4"
        )
        return [(eid, float(score)) for eid, score in conn.execute(sql, (expression, ns, ty, k))]

    def name_lookup(
        self,
        names: Sequence[str],
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> dict[str, list[str]]:
        """Case-insensitive exact name matches: lower-cased name -> entity ids (sorted).

        Names without a match are left out.
        """
        keys = list(dict.fromkeys(n.lower() for n in names))
        sql = (
            "SELECT name_lower, id FROM entities WHERE name_lower IN (SELECT value FROM json_each(?1)) "
            f"AND {_NS_FILTER.format(n=2, col='namespace')} AND {_NS_FILTER.format(n=3, col='type')} "
            "ORDER BY name_lower, id"
        )
        out: dict[str, list[str]] = {}
        with self._read("look up names") as conn:
            for part in chunks(keys):
                for key, eid in conn.execute(sql, (json_list(part), _optional_list(namespaces), _optional_list(types))):
                    out.setdefault(key, []).append(eid)
        return out

    def iter_entities(
        self,
        batch_size: int = 1000,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> Iterator[list[Entity]]:
        """Pages of entities in id order (keyset pagination: each page starts after the last id)."""
        sql = (
            f"SELECT {ENTITY_COLUMNS} FROM entities WHERE id > ?1 AND "
            f"{_NS_FILTER.format(n=2, col='namespace')} AND {_NS_FILTER.format(n=3, col='type')} "
            "ORDER BY id LIMIT ?4"
        )
        params = (_optional_list(namespaces), _optional_list(types))
        return self._keyset_pages("iterate entities", sql, params, batch_size, row_to_entity)

    def iter_texts(self, batch_size: int = 1000) -> Iterator[list[EntityText]]:
        """Pages of every entity's id, type, name, text and namespace in id order (keyset pagination)."""
        sql = "SELECT id, type, name, coalesce(text, ''), namespace FROM entities WHERE id > ? ORDER BY id LIMIT ?"
        return self._keyset_pages("iterate entity texts", sql, (), batch_size, EntityText._make)

    def iter_relations(self, batch_size: int = 1000) -> Iterator[list[Relation]]:
        sql = f"SELECT {RELATION_COLUMNS} FROM relations WHERE id > ? ORDER BY id LIMIT ?"
        return self._keyset_pages("iterate relations", sql, (), batch_size, row_to_relation)

    def _keyset_pages(
        self, action: str, sql: str, params: tuple[Any, ...], batch_size: int, convert: Callable[[Any], T]
    ) -> Iterator[list[T]]:
        """Pages of `sql`'s rows in id order, each page starting after the last id of the one
        before (`sql` takes the last id first, then `params`, then the page size)."""
        last = ""
        while True:
            with self._guard(action) as conn:
                rows = conn.execute(sql, (last, *params, _page(batch_size))).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [convert(r) for r in rows]

    def iter_vectors(self, model: str, batch_size: int = 4096) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
        """(ids, namespaces, float32 matrix) batches of every stored vector of `model`, in id order."""
        sql = (
            "SELECT v.entity_id, e.namespace, v.dim, v.blob "
            "FROM vectors v JOIN entities e ON e.id = v.entity_id "
            "WHERE v.model = ? AND v.entity_id > ? ORDER BY v.entity_id LIMIT ?"
        )
        last = ""
        while True:
            with self._guard("iterate vectors") as conn:
                rows = conn.execute(sql, (model, last, _page(batch_size))).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            dim = int(rows[0][2])
            matrix = np.frombuffer(bytearray(b"".join(r[3] for r in rows)), dtype=np.float32)
            yield [r[0] for r in rows], [r[1] for r in rows], matrix.reshape(len(rows), dim)

    def get_vectors(self, ids: Sequence[str], model: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._read("read vectors") as conn:
            for part in chunks(list(dict.fromkeys(ids))):
                for eid, blob in conn.execute(
                    "SELECT entity_id, blob FROM vectors WHERE model = ? "
                    "AND entity_id IN (SELECT value FROM json_each(?))",
                    (model, json_list(part)),
                ):
                    out[eid] = np.frombuffer(bytearray(blob), dtype=np.float32)
        return out

    def vector_hashes(self, ids: Sequence[str], model: str) -> dict[str, str]:
        """Content hash of the text each stored vector was computed from (to skip re-embedding)."""
        out: dict[str, str] = {}
        with self._read("read vector hashes") as conn:
            for part in chunks(list(dict.fromkeys(ids))):
                for eid, digest in conn.execute(
                    "SELECT entity_id, content_hash FROM vectors WHERE model = ? "
                    "AND entity_id IN (SELECT value FROM json_each(?))",
                    (model, json_list(part)),
                ):
                    out[eid] = digest
        return out

    # change log and sync state -------------------------------------------------------------
    def last_seq(self) -> int:
        with self._guard("read the change log") as conn:
            return int(conn.execute("SELECT max(seq) FROM changes").fetchone()[0] or 0)

    def changes_since(self, seq: int, limit: int = 100_000) -> list[Change]:
        with self._guard("read the change log") as conn:
            rows = conn.execute(
                "SELECT seq, kind, id, op, namespace FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, min(max(limit, 0), MAX_ROWS)),
            ).fetchall()
        return [Change(seq=r[0], kind=r[1], id=r[2], op=r[3], namespace=r[4]) for r in rows]

    def source_items(self, source: str) -> dict[str, SourceItemState]:
        with self._guard("read source items") as conn:
            rows = conn.execute(
                "SELECT key, content_hash, entity_ids, relation_ids, cursor FROM source_items WHERE source = ?",
                (source,),
            ).fetchall()
        return {
            key: SourceItemState(
                source=source,
                key=key,
                content_hash=digest,
                entity_ids=tuple(json.loads(ents)),
                relation_ids=tuple(json.loads(rels)),
                cursor=cursor,
            )
            for key, digest, ents, rels, cursor in rows
        }

    def source_names(self) -> list[str]:
        with self._guard("list sources") as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT source FROM source_items ORDER BY source")]

    def vector_models(self) -> list[str]:
        with self._guard("list vector models") as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT model FROM vectors ORDER BY model")]

    def vector_namespace_counts(self, model: str) -> dict[str, int]:
        """How many vectors of `model` each namespace holds (beyond the protocol): the vector index
        builds its large namespaces in bounded memory with it (`vector_build`)."""
        sql = (
            "SELECT e.namespace, count(*) FROM vectors v JOIN entities e ON e.id = v.entity_id "
            "WHERE v.model = ? GROUP BY e.namespace"
        )
        with self._guard("count vectors per namespace") as conn:
            return {str(ns): int(n) for ns, n in conn.execute(sql, (model,))}

    def vector_count(self, model: str) -> int:
        """How many vectors of `model` are stored (beyond the protocol)."""
        with self._guard("count vectors") as conn:
            return int(conn.execute("SELECT count(*) FROM vectors WHERE model = ?", (model,)).fetchone()[0])

    def stats(self) -> StoreStats:
        now = to_iso(utcnow())
        with self._read("compute statistics") as conn:
            entities = int(conn.execute("SELECT count(*) FROM entities").fetchone()[0])
            relations = int(conn.execute("SELECT count(*) FROM relations").fetchone()[0])
            live = int(
                conn.execute(
                    "SELECT count(*) FROM relations WHERE expired_at IS NULL AND (valid_to IS NULL OR valid_to > ?)",
                    (now,),
                ).fetchone()[0]
            )
            vectors = int(conn.execute("SELECT count(*) FROM vectors").fetchone()[0])
            entity_types = dict(conn.execute("SELECT type, count(*) FROM entities GROUP BY type").fetchall())
            relation_types = dict(conn.execute("SELECT type, count(*) FROM relations GROUP BY type").fetchall())
            namespaces = dict(conn.execute("SELECT namespace, count(*) FROM entities GROUP BY namespace").fetchall())
            last_seq = int(conn.execute("SELECT max(seq) FROM changes").fetchone()[0] or 0)
        return StoreStats(
            entities=entities,
            relations=relations,
            live_relations=live,
            vectors=vectors,
            entity_types=entity_types,
            relation_types=relation_types,
            namespaces=namespaces,
            last_seq=last_seq,
            backend=self.backend,
        )

    # erasure ------------------------------------------------------------------------------
    def relations_of(self, ids: Sequence[str]) -> list[Relation]:
        """Every stored relation from or to these entities, expired ones included."""
        found: dict[str, Relation] = {}
        sql = (
            f"SELECT {RELATION_COLUMNS} FROM relations WHERE src IN (SELECT value FROM json_each(?1)) "
            f"UNION SELECT {RELATION_COLUMNS} FROM relations WHERE dst IN (SELECT value FROM json_each(?1))"
        )
        with self._read("read relations of entities") as conn:
            for part in chunks(list(dict.fromkeys(ids))):
                for row in conn.execute(sql, (json_list(part),)):
                    found[row[0]] = row_to_relation(row)
        return [found[k] for k in sorted(found)]

    def erasure_pending(self) -> bool:
        with self._guard("read the erasure state") as conn:
            return is_pending(conn)

    def scrub_erased(self) -> bool:
        """Rebuild the full-text index, VACUUM and truncate the WAL after committed erasures, so no
        freed page, old index segment or journal frame holds erased bytes (see `embedded_erase`)."""
        with self._checkpoints.paused(), self._secure_delete("scrub erased data") as conn:
            if not is_pending(conn):
                return False
            scrub(conn, str(self.db_path))
            return True

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._checkpoints.close()
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                raise StoreError(f"could not close the graph store at {self.db_path}: {exc}") from exc


def _conforms(store: EmbeddedGraphStore) -> GraphStore:
    """Static check (for mypy) that the class implements the protocol exactly."""
    return store
