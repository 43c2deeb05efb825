"""The Neo4j graph store: the server-mode backend, over Bolt with the official driver.

Entities are `:Entity` nodes that also carry their type as a label, relations are relationships
of their own type with an `id` property (see `neo4j_schema` for the whole layout). Writes run in
managed transactions (`execute_write`, which retries transient errors) as `UNWIND $rows MERGE`
statements in batches; one `WriteBatch` is one transaction. Reads run in `execute_read`.

Every value is a parameter. Labels and relationship types cannot be, so they are checked against
the type-name pattern and quoted by `cypher_name` before they are put into a query; user text
for the full-text index is reduced to quoted, escaped terms.

The pieces: `neo4j_connection` (the driver, its settings, errors as `StoreError` naming the
server URI, never the password), `neo4j_reads` (the read queries), `neo4j_changes` (the change
log and sync state), `neo4j_write` and `neo4j_schema`; this module is the `GraphStore` that runs
them in transactions.

When the `neo4j-rust-ext` package is installed the driver uses it by itself; it speeds up
decoding several times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
from neo4j import Driver, Session

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
from aesoperator.engine.stores.neo4j_autocommit import QueryRunner, read_with_retries
from aesoperator.engine.stores.neo4j_changes import (
    MAX_ROWS,
    changes_after,
    last_seq,
    page_size,
    source_item_states,
    source_names,
)
from aesoperator.engine.stores.neo4j_connection import (
    BOLT_SCHEMES,
    CONNECT_TIMEOUT_S,
    RETRY_TIME_S,
    home_database,
    neo4j_errors_as_store_errors,
    open_driver,
    require_server_version,
    shown_uri,
)
from aesoperator.engine.stores.neo4j_erase import clear_pending, request_checkpoint
from aesoperator.engine.stores.neo4j_erase import is_pending as erasure_is_pending
from aesoperator.engine.stores.neo4j_reads import (
    HOP_PATTERNS,
    READ_CHUNK,
    WalkSpec,
    entity_page,
    entity_text_page,
    entity_versions,
    keyword_hits,
    load_entities,
    name_hits,
    neighborhood,
    neighborhood_links,
    optional_list,
    outgoing_of,
    relation_rows_after,
    relations_at,
    store_stats,
    vector_page,
    vector_rows,
)
from aesoperator.engine.stores.neo4j_reads import vector_count as read_vector_count
from aesoperator.engine.stores.neo4j_reads import vector_models as read_vector_models
from aesoperator.engine.stores.neo4j_reads import vector_namespace_counts as read_vector_namespace_counts
from aesoperator.engine.stores.neo4j_rows import lucene_query, row_to_relation
from aesoperator.engine.stores.neo4j_schema import ensure_relation_types, setup_schema
from aesoperator.engine.stores.neo4j_write import (
    VECTOR_KEY_SEP,
    apply_batch,
    check_batch_names,
    relation_types,
    relations_by_id,
)
from aesoperator.errors import StoreError
from aesoperator.graph_schema.models import Direction, Entity, Relation, to_iso, utcnow

T = TypeVar("T")


class Neo4jGraphStore(WriteShortcutsMixin):
    """`GraphStore` over a Neo4j server (5.7 or later), reached at `uri` over Bolt."""

    backend = "neo4j"
    remote_reads = True

    def __init__(
        self,
        uri: str,
        user: str,
        password: str,
        database: str | None = None,
        batch_size: int = 1000,
        *,
        max_retry_time: float = RETRY_TIME_S,
        connection_timeout: float = CONNECT_TIMEOUT_S,
    ) -> None:
        """Connect, check the credentials and set up the schema (idempotent).

        `batch_size` is the number of rows per `UNWIND` statement; a `WriteBatch` of any size is
        still one transaction. `max_retry_time` bounds how long a transaction is retried on
        transient errors (a leader switch, a dropped connection) before `StoreError`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.uri = shown_uri(uri)
        self.user = user
        self.batch_size = batch_size
        self.max_retry_time = max_retry_time
        self.connection_timeout = connection_timeout
        self._closed = False
        self._ensured_types: set[str] = set()
        self._driver: Driver = open_driver(uri, user, password, connection_timeout, max_retry_time)
        try:
            with self._guard("connect"):
                self._driver.verify_connectivity()
                require_server_version(self._driver, self.uri)
                self.database = database or home_database(self._driver, self.uri)
                with self._session() as session:
                    setup_schema(session)
        except BaseException:
            self._driver.close()
            raise

    # plumbing -------------------------------------------------------------------------------
    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn driver and server errors into `StoreError` naming the server and what failed."""
        if self._closed:
            raise StoreError(f"cannot {action}: the Neo4j store at {self.uri} is closed")
        with neo4j_errors_as_store_errors(action, self.uri, self.user, self.max_retry_time, self.connection_timeout):
            yield

    def _session(self) -> Session:
        return self._driver.session(database=getattr(self, "database", None))

    def _read(self, action: str, work: Callable[[QueryRunner], T]) -> T:
        """Run a read, its statements as auto-commit queries (`neo4j_autocommit`)."""
        with self._guard(action):
            return read_with_retries(self._driver, getattr(self, "database", None), work, self.max_retry_time)

    def __enter__(self) -> Neo4jGraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # writes ---------------------------------------------------------------------------------
    def _write(self, batch: WriteBatch, expire_at: datetime | None = None) -> WriteResult:
        if batch.is_empty():
            return WriteResult(seq=self.last_seq())
        check_batch_names(batch)
        now = to_iso(utcnow()) or ""
        at = to_iso(expire_at) or now
        with self._guard("write a batch"), self._session() as session:
            new_types = {r.type for r in batch.relations} - self._ensured_types
            if new_types:
                ensure_relation_types(session, sorted(new_types))
                self._ensured_types |= new_types
            return session.execute_write(apply_batch, batch, now, at, self.batch_size)

    # reads ----------------------------------------------------------------------------------
    def get_entities(self, ids: Sequence[str], namespaces: Sequence[str] | None = None) -> list[Entity]:
        """Entities in the order of `ids`; unknown ids and other namespaces are left out."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        found = self._read("read entities", lambda tx: load_entities(tx, wanted, optional_list(namespaces)))
        return [found[i] for i in wanted if i in found]

    def get_relations(self, ids: Sequence[str]) -> list[Relation]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []

        def work(tx: QueryRunner) -> dict[str, dict[str, Any]]:
            return relations_by_id(tx, wanted, relation_types(tx), READ_CHUNK)

        rows = self._read("read relations", work)
        return [row_to_relation(rows[i]) for i in wanted if i in rows]

    def relations_on(self, links: Links) -> list[Relation]:
        """The relations `links` names, in its order: each found from its ends (two index seeks
        and the relationships between them), one query for all."""
        rows = [[a, b, rid] for (a, b, _type), rid in zip(links.edges, links.relation_ids, strict=True)]
        if not rows:
            return []
        found = {r.id: r for r in self._read("read relations", lambda tx: relations_at(tx, rows))}
        return [found[rid] for rid in dict.fromkeys(links.relation_ids) if rid in found]

    def outgoing_relations(
        self, ids: Sequence[str], relation_types: Sequence[str], namespaces: Sequence[str] | None = None
    ) -> list[Relation]:
        """Every relation of one of `relation_types` leaving one of `ids`, expired or not, of the
        relation namespaces `namespaces` (None: all), by source, type, `valid_from` and id."""
        wanted, types = list(dict.fromkeys(ids)), list(dict.fromkeys(relation_types))
        if not wanted or not types:
            return []
        found = self._read(
            "read a subject's relations", lambda tx: outgoing_of(tx, wanted, types, optional_list(namespaces))
        )
        found.sort(key=lambda r: (r.src, r.type, to_iso(r.valid_from) or "", r.id))
        return found

    def history(self, entity_id: str) -> list[Entity]:
        """Earlier versions of an entity, oldest first (each replaced by a changing upsert)."""
        return self._read("read entity history", lambda tx: entity_versions(tx, entity_id))

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
        """What `neighbors` reaches, as ids, relation types and relation ids: one small query per
        hop, no record read."""
        if limit <= 0:
            return Links()
        spec = _walk(ids, depth, relation_types, "both", as_of, namespaces, limit, skip_prefixes)
        return self._read("traverse the graph", lambda tx: neighborhood_links(tx, spec))

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
        if direction not in HOP_PATTERNS:
            raise ValueError(f"direction must be 'out', 'in' or 'both', got {direction!r}")
        if limit <= 0:
            return Subgraph()
        spec = _walk(ids, depth, relation_types, direction, as_of, namespaces, limit, skip_prefixes)
        return self._read("traverse the graph", lambda tx: neighborhood(tx, spec))

    def keyword_search(
        self,
        query: str,
        k: int = 10,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """BM25 over entity name and text; higher score is better. Query text is data, never syntax."""
        expression = lucene_query(query)
        if expression is None or k <= 0:
            return []
        ns, wanted = optional_list(namespaces), optional_list(types)
        return self._read("run a keyword search", lambda tx: keyword_hits(tx, expression, k, ns, wanted))

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
        if not keys:
            return {}
        ns, wanted = optional_list(namespaces), optional_list(types)
        found = self._read("look up names", lambda tx: name_hits(tx, keys, ns, wanted))
        return {key: found[key] for key in keys if key in found}

    def iter_entities(
        self,
        batch_size: int = 1000,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> Iterator[list[Entity]]:
        """Pages of entities in id order (keyset pagination: each page starts after the last id)."""
        ns, wanted = optional_list(namespaces), optional_list(types)
        last = ""
        while True:
            after = last

            def work(tx: QueryRunner, after: str = after) -> list[Entity]:
                return entity_page(tx, after, batch_size, ns, wanted)

            page = self._read("iterate entities", work)
            if not page:
                return
            last = page[-1].id
            yield page

    def iter_texts(self, batch_size: int = 1000) -> Iterator[list[EntityText]]:
        """Pages of every entity's id, type, name, text and namespace in id order (keyset pagination)."""
        last = ""
        while True:
            after = last

            def work(tx: QueryRunner, after: str = after) -> list[EntityText]:
                return entity_text_page(tx, after, batch_size)

            page = self._read("iterate entity texts", work)
            if not page:
                return
            last = page[-1].id
            yield page

    def iter_relations(self, batch_size: int = 1000) -> Iterator[list[Relation]]:
        """Pages of relations, grouped by source entity in id order (keyset pagination over the
        source entities, so each page is one index range read)."""
        size = page_size(batch_size)
        pending: list[Relation] = []
        last = ""
        while True:
            after = last

            def work(tx: QueryRunner, after: str = after) -> list[dict[str, Any]]:
                return relation_rows_after(tx, after, size)

            rows = self._read("iterate relations", work)
            if not rows:
                break
            last = rows[-1]["src"]
            pending.extend(row_to_relation(row) for row in rows if row["r"] is not None)
            while len(pending) >= size:
                yield pending[:size]
                pending = pending[size:]
        if pending:
            yield pending

    def iter_vectors(self, model: str, batch_size: int = 4096) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
        """(ids, namespaces, float32 matrix) batches of every stored vector of `model`, in id order."""
        prefix = f"{model}{VECTOR_KEY_SEP}"
        last = prefix
        while True:
            after = last

            def work(tx: QueryRunner, after: str = after) -> list[list[Any]]:
                return vector_page(tx, prefix, after, batch_size)

            rows = self._read("iterate vectors", work)
            if not rows:
                return
            last = rows[-1][0]
            dim = int(rows[0][3])
            matrix = np.frombuffer(b"".join(r[4] for r in rows), dtype="<f4").reshape(len(rows), dim)
            yield [r[1] for r in rows], [r[2] for r in rows], matrix.astype(np.float32)

    def _vector_rows(self, ids: Sequence[str], model: str, what: str) -> list[dict[str, Any]]:
        wanted = list(dict.fromkeys(ids))
        return self._read("read vectors", lambda tx: vector_rows(tx, wanted, model, what)) if wanted else []

    def get_vectors(self, ids: Sequence[str], model: str) -> dict[str, np.ndarray]:
        return {
            r["id"]: np.frombuffer(bytearray(r["value"]), dtype="<f4").astype(np.float32, copy=False)
            for r in self._vector_rows(ids, model, "values")
        }

    def vector_hashes(self, ids: Sequence[str], model: str) -> dict[str, str]:
        """Content hash of the text each stored vector was computed from (to skip re-embedding)."""
        return {r["id"]: r["value"] for r in self._vector_rows(ids, model, "hash")}

    def vector_models(self) -> list[str]:
        """Names of the embedding models that have stored vectors (beyond the protocol)."""
        return self._read("list vector models", read_vector_models)

    def vector_namespace_counts(self, model: str) -> dict[str, int]:
        """How many vectors of `model` each namespace holds (beyond the protocol)."""
        return self._read("count vectors per namespace", lambda tx: read_vector_namespace_counts(tx, model))

    def vector_count(self, model: str) -> int:
        """How many vectors of `model` are stored (beyond the protocol)."""
        return self._read("count vectors", lambda tx: read_vector_count(tx, model))

    # change log and sync state -------------------------------------------------------------
    def last_seq(self) -> int:
        return self._read("read the change log", last_seq)

    def changes_since(self, seq: int, limit: int = 100_000) -> list[Change]:
        if limit <= 0:
            return []
        return self._read("read the change log", lambda tx: changes_after(tx, seq, limit))

    def source_items(self, source: str) -> dict[str, SourceItemState]:
        return self._read("read source items", lambda tx: source_item_states(tx, source))

    def source_names(self) -> list[str]:
        """Sources that have sync state stored (beyond the protocol)."""
        return self._read("list sources", source_names)

    def stats(self) -> StoreStats:
        return self._read("compute statistics", lambda tx: store_stats(tx, self.backend))

    # erasure ------------------------------------------------------------------------------
    def relations_of(self, ids: Sequence[str]) -> list[Relation]:
        """Every stored relation from or to these entities, expired ones included."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []

        def work(tx: QueryRunner) -> list[dict[str, Any]]:
            return [
                dict(r)
                for r in tx.run(
                    "UNWIND $ids AS id MATCH (:Entity {id: id})-[r]-(:Entity) WHERE r.id IS NOT NULL "
                    "RETURN DISTINCT r {.*} AS r, type(r) AS type, startNode(r).id AS src, endNode(r).id AS dst",
                    ids=wanted,
                )
            ]

        rows = self._read("read relations of entities", work)
        return sorted((row_to_relation(row) for row in rows), key=lambda r: r.id)

    def erasure_pending(self) -> bool:
        return self._read("read the erasure state", erasure_is_pending)

    def scrub_erased(self) -> bool:
        """Ask the server for a checkpoint after committed erasures and clear the pending mark.
        Neo4j's store files and transaction logs are the server's to reclaim (see `neo4j_erase`)."""
        if not self.erasure_pending():
            return False
        with self._guard("request a checkpoint"), self._session() as session:
            request_checkpoint(session)
        with self._guard("clear the erasure state"), self._session() as session:
            return bool(session.execute_write(clear_pending))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._driver.close()
        except Exception as exc:  # the driver raises its own types and OSError
            raise StoreError(f"could not close the connection to Neo4j at {self.uri}: {exc}") from exc


def _walk(
    ids: Sequence[str],
    depth: int,
    relation_types: Sequence[str] | None,
    direction: str,
    as_of: datetime | None,
    namespaces: Sequence[str] | None,
    limit: int,
    skip_prefixes: Sequence[str],
) -> WalkSpec:
    """A walk's specification from the arguments of `neighbors` / `neighbor_links`."""
    return WalkSpec(
        seeds=list(dict.fromkeys(ids)),
        depth=depth,
        limit=limit,
        direction=direction,
        relation_types=optional_list(relation_types),
        allowed=optional_list(namespaces),
        as_of=as_of,
        skip_prefixes=tuple(skip_prefixes),
    )


def _conforms(store: Neo4jGraphStore) -> GraphStore:
    """Static check (for mypy) that the class implements the protocol exactly."""
    return store


__all__ = ["BOLT_SCHEMES", "CONNECT_TIMEOUT_S", "MAX_ROWS", "READ_CHUNK", "RETRY_TIME_S", "Neo4jGraphStore"]
