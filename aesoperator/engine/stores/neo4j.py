"""The Neo4j graph store: the server-mode backend, over Bolt with the official driver.

Entities are `:Entity` nodes that also carry their type as a label, relations are relationships
of their own type with an `id` property (see `neo4j_schema` for the whole layout). Writes run in
managed transactions (`execute_write`, which retries transient errors) as `UNWIND $rows MERGE`
statements in batches; one `WriteBatch` is one transaction. Reads run in `execute_read`.

Every value is a parameter. Labels and relationship types cannot be, so they are checked against
the type-name pattern and quoted by `cypher_name` before they are put into a query; user text
for the full-text index is reduced to quoted, escaped terms. Driver and server failures surface
as `StoreError` naming the server URI (never the password).

Reads on the query path return one record per statement, holding the rows as lists in a fixed
column order (`collect([...])`): the driver decodes one message instead of one per row, which
halves the client's CPU per search. Values are taken from records directly, never through
`Record.data()`, which copies every byte of a stored vector one by one.

When the `neo4j-rust-ext` package is installed the driver uses it by itself; it speeds up
decoding several times.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
from neo4j import Driver, GraphDatabase, ManagedTransaction, Session
from neo4j import exceptions as neo4j_errors

from aesoperator.engine.stores.base import (
    Change,
    GraphStore,
    SourceItemState,
    StoreStats,
    Subgraph,
    WriteBatch,
    WriteResult,
    WriteShortcutsMixin,
)
from aesoperator.engine.stores.neo4j_rows import (
    chunks,
    columns_to_entity,
    columns_to_relation,
    entity_columns,
    lucene_query,
    node_to_entity,
    relation_columns,
    row_to_relation,
)
from aesoperator.engine.stores.neo4j_schema import (
    FULLTEXT_INDEX,
    ensure_relation_types,
    setup_schema,
)
from aesoperator.engine.stores.neo4j_write import (
    VECTOR_KEY_SEP,
    apply_batch,
    check_batch_names,
    relation_types,
    relations_by_id,
)
from aesoperator.errors import SchemaError, StoreError
from aesoperator.graph_schema.models import Direction, Entity, Relation, to_iso, utcnow

T = TypeVar("T")

READ_CHUNK = 10_000
MAX_ROWS = 1_000_000_000
BOLT_SCHEMES = frozenset({"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"})
CONNECT_TIMEOUT_S = 15.0
RETRY_TIME_S = 30.0

_HOP_PATTERNS: dict[str, str] = {
    "out": "(a)-[r]->(b:Entity)",
    "in": "(a)<-[r]-(b:Entity)",
    "both": "(a)-[r]-(b:Entity)",
}
# `Relation.is_live` in Cypher over canonical ISO text, which compares in time order.
_LIVE_NOW = "r.expired_at IS NULL AND (r.valid_to IS NULL OR r.valid_to > $now)"
_LIVE_AT = (
    "(coalesce(r.valid_from, r.recorded_at) IS NULL OR coalesce(r.valid_from, r.recorded_at) <= $as_of) "
    "AND (coalesce(r.valid_to, r.expired_at) IS NULL OR coalesce(r.valid_to, r.expired_at) > $as_of)"
)
_NS_FILTER = "($ns IS NULL OR {var}.namespace IN $ns)"
_TYPE_FILTER = "($types IS NULL OR {var}.type IN $types)"


def _one_line(exc: BaseException) -> str:
    """The driver's message on one line (it spreads connection failures over several)."""
    return " ".join(str(exc).split())


def _page(size: int) -> int:
    """A caller-given page size or limit, clamped to what a Cypher LIMIT takes."""
    return min(max(size, 1), MAX_ROWS)


def _optional(values: Sequence[str] | None) -> list[str] | None:
    return None if values is None else list(values)


def _hop_query(direction: str, timed: bool) -> str:
    """One hop from every frontier entity, as a single record: a list of [fid, namespace, steps]
    with one [other id, relation columns] step per relation followed, in the server's expand
    order. The frontier's own namespace comes along, so the seeds need no query of their own."""
    return (
        "UNWIND $frontier AS fid MATCH (a:Entity {id: fid}) "
        f"OPTIONAL MATCH {_HOP_PATTERNS[direction]} "
        "WHERE ($types IS NULL OR type(r) IN $types) "
        "AND ($ns IS NULL OR (r.namespace IN $ns AND b.namespace IN $ns)) "
        f"AND {_LIVE_AT if timed else _LIVE_NOW} "
        f"WITH fid, a, collect(CASE WHEN r IS NULL THEN NULL ELSE [b.id, {relation_columns('r')}] END) AS steps "
        "RETURN collect([fid, a.namespace, steps]) AS rows"
    )


class Neo4jGraphStore(WriteShortcutsMixin):
    """`GraphStore` over a Neo4j server (5.7 or later), reached at `uri` over Bolt."""

    backend = "neo4j"

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
        scheme, _, rest = uri.partition("://")
        # Never echo credentials someone put into the URI.
        shown = f"{scheme}://***@{rest.split('@', 1)[1]}" if "@" in rest.split("/", 1)[0] else uri
        if scheme not in BOLT_SCHEMES or not rest:
            raise StoreError(
                f"invalid Neo4j URI {shown!r}: use bolt:// or neo4j:// (optionally +s or +ssc), "
                "e.g. neo4j://127.0.0.1:7687"
            )
        self.uri = shown
        self.user = user
        self.batch_size = batch_size
        self.max_retry_time = max_retry_time
        self.connection_timeout = connection_timeout
        self._closed = False
        self._ensured_types: set[str] = set()
        try:
            self._driver: Driver = GraphDatabase.driver(
                uri,
                auth=(user, password),
                connection_timeout=connection_timeout,
                max_transaction_retry_time=max_retry_time,
                connection_acquisition_timeout=connection_timeout * 2,
                # Queries on an empty database name labels and keys that do not exist yet; the
                # server's hints about that are noise here (filtering needs Neo4j 5.7+).
                notifications_min_severity="OFF",
            )
        except (ValueError, neo4j_errors.ConfigurationError) as exc:
            raise StoreError(f"invalid Neo4j URI {shown!r}: {exc}".replace(uri, shown)) from None
        try:
            with self._guard("connect"):
                self._driver.verify_connectivity()
                self.database = database or self._home_database()
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
        where = f"Neo4j at {self.uri}"
        try:
            yield
        except (SchemaError, StoreError):
            raise
        except neo4j_errors.AuthError:
            raise StoreError(
                f"{where} rejected the credentials of user {self.user!r} (could not {action}): "
                "check the user name and password"
            ) from None
        except neo4j_errors.IncompleteCommit as exc:
            raise StoreError(
                f"{where} is not reachable: the connection was lost while committing (could not {action}), "
                f"so the write may or may not have been applied ({_one_line(exc)}); writes are idempotent: "
                "once the server is back, run the same write or ingest again"
            ) from exc
        except (neo4j_errors.ServiceUnavailable, neo4j_errors.SessionExpired) as exc:
            raise StoreError(
                f"{where} is not reachable (could not {action}; retried for up to {self.max_retry_time:g} s, "
                f"connection timeout {self.connection_timeout:g} s): {_one_line(exc)}; "
                "check that the server is running"
            ) from exc
        except neo4j_errors.Neo4jError as exc:
            raise StoreError(f"{where} could not {action}: {exc.code}: {exc.message}") from exc
        except neo4j_errors.DriverError as exc:
            raise StoreError(f"{where}: could not {action}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"{where}: could not {action}: {exc}") from exc

    def _session(self) -> Session:
        return self._driver.session(database=getattr(self, "database", None))

    def _home_database(self) -> str:
        with self._driver.session() as session:
            record = session.run("CALL db.info() YIELD name RETURN name").single()
        if record is None:
            raise StoreError(f"Neo4j at {self.uri} did not name its home database")
        return str(record["name"])

    def _read(self, action: str, work: Callable[[ManagedTransaction], T]) -> T:
        with self._guard(action), self._session() as session:
            return session.execute_read(work)

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
        found = self._read("read entities", lambda tx: _load_entities(tx, wanted, _optional(namespaces)))
        return [found[i] for i in wanted if i in found]

    def get_relations(self, ids: Sequence[str]) -> list[Relation]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []

        def work(tx: ManagedTransaction) -> dict[str, dict[str, Any]]:
            return relations_by_id(tx, wanted, relation_types(tx), READ_CHUNK)

        rows = self._read("read relations", work)
        return [row_to_relation(rows[i]) for i in wanted if i in rows]

    def history(self, entity_id: str) -> list[Entity]:
        """Earlier versions of an entity, oldest first (each replaced by a changing upsert)."""

        def work(tx: ManagedTransaction) -> list[str]:
            result = tx.run(
                "MATCH (v:_EntityVersion {entity_id: $id}) RETURN v.version AS version ORDER BY v.seq",
                id=entity_id,
            )
            return [r["version"] for r in result]

        out: list[Entity] = []
        for text in self._read("read entity history", work):
            data = json.loads(text)
            data["properties"] = json.dumps(data["properties"])
            prov = data.get("provenance")
            data["provenance"] = None if prov is None else json.dumps(prov)
            out.append(node_to_entity(data))
        return out

    def neighbors(
        self,
        ids: Sequence[str],
        depth: int = 1,
        relation_types: Sequence[str] | None = None,
        direction: Direction = "both",
        as_of: datetime | None = None,
        namespaces: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> Subgraph:
        """Breadth-first neighbourhood of `ids` up to `depth` hops.

        Seeds are hop 0 (unknown seeds and seeds outside `namespaces` are dropped). From each
        entity at hop h < depth, every relation that is live at `as_of` (now when None), of an
        allowed type and namespace, is followed to an entity of an allowed namespace, which gets
        hop h + 1 unless it already has a smaller one. Entities of other namespaces are neither
        returned nor traversed through. At most `limit` entities are returned (seeds first, then
        by hop); the relations returned are those followed between returned entities.
        """
        if direction not in _HOP_PATTERNS:
            raise ValueError(f"direction must be 'out', 'in' or 'both', got {direction!r}")
        if limit <= 0:
            return Subgraph()
        allowed = _optional(namespaces)
        params: dict[str, Any] = {
            "types": _optional(relation_types),
            "ns": allowed,
            "now": to_iso(utcnow()),
            "as_of": to_iso(as_of),
        }
        query = _hop_query(direction, as_of is not None)
        seeds = list(dict.fromkeys(ids))

        def expand(tx: ManagedTransaction, frontier: list[str]) -> dict[str, tuple[str, list[list[Any]]]]:
            out: dict[str, tuple[str, list[list[Any]]]] = {}
            for part in chunks(frontier, READ_CHUNK):
                record = tx.run(query, frontier=part, **params).single()
                for fid, ns, steps in [] if record is None else record[0]:
                    out[fid] = (ns, steps)
            return out

        def work(tx: ManagedTransaction) -> Subgraph:
            hops: dict[str, int] = {}
            # The first hop is asked for every seed at once: it tells which seeds exist (and
            # their namespace) as well as where they lead.
            if depth >= 1:
                steps_of = expand(tx, seeds)
                present = {fid: ns for fid, (ns, _steps) in steps_of.items()}
            else:
                steps_of = {}
                present = _namespaces_of(tx, seeds)
            for seed in seeds:
                if len(hops) >= limit:
                    break
                ns = present.get(seed)
                if ns is None or (allowed is not None and ns not in allowed):
                    continue
                hops[seed] = 0
            followed: dict[str, Relation] = {}
            frontier = list(hops)
            for hop in range(1, max(depth, 0) + 1):
                if not frontier:
                    break
                if hop > 1:
                    steps_of = expand(tx, frontier)
                next_frontier: list[str] = []
                for fid in frontier:
                    for other, columns in steps_of.get(fid, ("", []))[1]:
                        if other not in hops:
                            if len(hops) >= limit:
                                continue
                            hops[other] = hop
                            next_frontier.append(other)
                        rid = columns[3]
                        if rid not in followed:
                            followed[rid] = columns_to_relation(columns)
                frontier = next_frontier
            found = _load_entities(tx, list(hops), None)
            return Subgraph(
                entities={eid: found[eid] for eid in hops if eid in found},
                relations=list(followed.values()),
                hops={eid: h for eid, h in hops.items() if eid in found},
            )

        return self._read("traverse the graph", work)

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
        # The index yields hits best first, so the first k that pass the filters are the top k;
        # without filters Lucene itself can stop at k.
        unfiltered = namespaces is None and types is None
        cypher = (
            f"CALL db.index.fulltext.queryNodes($index, $text{', {limit: $k}' if unfiltered else ''}) "
            "YIELD node, score "
            f"WHERE node:Entity AND {_NS_FILTER.format(var='node')} AND {_TYPE_FILTER.format(var='node')} "
            "WITH node, score LIMIT $k RETURN collect([node.id, score]) AS hits"
        )
        params = {"index": FULLTEXT_INDEX, "text": expression, "ns": _optional(namespaces),
                  "types": _optional(types), "k": _page(k)}  # fmt: skip

        def work(tx: ManagedTransaction) -> list[tuple[str, float]]:
            record = tx.run(cypher, params).single()
            return [] if record is None else [(eid, float(score)) for eid, score in record[0]]

        return self._read("run a keyword search", work)

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
        cypher = (
            "UNWIND $names AS n MATCH (e:Entity {name_lower: n}) "
            f"WHERE {_NS_FILTER.format(var='e')} AND {_TYPE_FILTER.format(var='e')} "
            "WITH n, e.id AS id ORDER BY n, id RETURN collect([n, id]) AS hits"
        )

        def work(tx: ManagedTransaction) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for part in chunks(keys, READ_CHUNK):
                record = tx.run(cypher, names=part, ns=_optional(namespaces), types=_optional(types)).single()
                for name, eid in [] if record is None else record[0]:
                    out.setdefault(name, []).append(eid)
            return out

        found = self._read("look up names", work)
        return {key: found[key] for key in keys if key in found}

    def iter_entities(
        self,
        batch_size: int = 1000,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> Iterator[list[Entity]]:
        """Pages of entities in id order (keyset pagination: each page starts after the last id)."""
        cypher = (
            "MATCH (e:Entity) WHERE e.id > $after "
            f"AND {_NS_FILTER.format(var='e')} AND {_TYPE_FILTER.format(var='e')} "
            f"WITH e ORDER BY e.id LIMIT $n RETURN collect({entity_columns('e')}) AS rows"
        )
        params: dict[str, Any] = {"ns": _optional(namespaces), "types": _optional(types), "n": _page(batch_size)}
        last = ""
        while True:
            after = last

            def work(tx: ManagedTransaction, after: str = after) -> list[Entity]:
                record = tx.run(cypher, {**params, "after": after}).single()
                return [] if record is None else [columns_to_entity(row) for row in record[0]]

            page = self._read("iterate entities", work)
            if not page:
                return
            last = page[-1].id
            yield page

    def iter_relations(self, batch_size: int = 1000) -> Iterator[list[Relation]]:
        """Pages of relations, grouped by source entity in id order (keyset pagination over the
        source entities, so each page is one index range read)."""
        size = _page(batch_size)
        cypher = (
            "MATCH (a:Entity) WHERE a.id > $after WITH a ORDER BY a.id LIMIT $n "
            "OPTIONAL MATCH (a)-[r]->(b:Entity) WHERE r.id IS NOT NULL "
            "RETURN a.id AS src, r {.*} AS r, type(r) AS type, b.id AS dst ORDER BY src, r.id"
        )
        pending: list[Relation] = []
        last = ""
        while True:
            after = last

            def work(tx: ManagedTransaction, after: str = after) -> list[dict[str, Any]]:
                return [dict(r) for r in tx.run(cypher, after=after, n=size)]

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
        # One record per page (a list of [key, id, namespace, dim, bytes] in key order): the
        # bytes are taken as they come, never walked value by value.
        cypher = (
            "MATCH (v:_Vector) WHERE v.key > $after AND v.key STARTS WITH $prefix "
            "WITH v ORDER BY v.key LIMIT $n "
            "MATCH (e:Entity {id: v.entity_id}) "
            "RETURN collect([v.key, v.entity_id, e.namespace, v.dim, v.values]) AS rows"
        )
        last = prefix
        while True:
            after = last

            def work(tx: ManagedTransaction, after: str = after) -> list[list[Any]]:
                record = tx.run(cypher, after=after, prefix=prefix, n=_page(batch_size)).single()
                return [] if record is None else list(record[0])

            rows = self._read("iterate vectors", work)
            if not rows:
                return
            last = rows[-1][0]
            dim = int(rows[0][3])
            matrix = np.frombuffer(b"".join(r[4] for r in rows), dtype="<f4").reshape(len(rows), dim)
            yield [r[1] for r in rows], [r[2] for r in rows], matrix.astype(np.float32)

    def _vector_rows(self, ids: Sequence[str], model: str, what: str) -> list[dict[str, Any]]:
        wanted = list(dict.fromkeys(ids))
        cypher = f"UNWIND $ids AS id MATCH (v:_Vector {{key: $model + $sep + id}}) RETURN id, v.{what} AS value"

        def work(tx: ManagedTransaction) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for part in chunks(wanted, READ_CHUNK):
                out.extend(dict(r) for r in tx.run(cypher, ids=part, model=model, sep=VECTOR_KEY_SEP))
            return out

        return self._read("read vectors", work) if wanted else []

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

        def work(tx: ManagedTransaction) -> list[str]:
            return [r["m"] for r in tx.run("MATCH (v:_Vector) RETURN DISTINCT v.model AS m ORDER BY m")]

        return self._read("list vector models", work)

    # change log and sync state -------------------------------------------------------------
    def last_seq(self) -> int:
        return self._read("read the change log", _last_seq)

    def changes_since(self, seq: int, limit: int = 100_000) -> list[Change]:
        if limit <= 0:
            return []

        def work(tx: ManagedTransaction) -> list[Change]:
            # Log nodes cover consecutive, non-overlapping seq ranges, so ordering by `last`
            # (index order) is seq order; each node holds at least one change.
            result = tx.run(
                "MATCH (c:_ChangeLog) WHERE c.last > $seq WITH c ORDER BY c.last LIMIT $limit RETURN c {.*} AS c",
                seq=seq,
                limit=_page(limit),
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

        return self._read("read the change log", work)

    def source_items(self, source: str) -> dict[str, SourceItemState]:
        def work(tx: ManagedTransaction) -> list[dict[str, Any]]:
            return [r["s"] for r in tx.run("MATCH (s:_SourceItem {source: $source}) RETURN s {.*} AS s", source=source)]

        return {
            s["key"]: SourceItemState(
                source=source,
                key=s["key"],
                content_hash=s["content_hash"],
                entity_ids=tuple(json.loads(s["entity_ids"])),
                relation_ids=tuple(json.loads(s["relation_ids"])),
                cursor=s.get("cursor"),
            )
            for s in self._read("read source items", work)
        }

    def source_names(self) -> list[str]:
        """Sources that have sync state stored (beyond the protocol)."""

        def work(tx: ManagedTransaction) -> list[str]:
            return [r["s"] for r in tx.run("MATCH (s:_SourceItem) RETURN DISTINCT s.source AS s ORDER BY s")]

        return self._read("list sources", work)

    def stats(self) -> StoreStats:
        now = to_iso(utcnow())

        def work(tx: ManagedTransaction) -> StoreStats:
            entity_types: dict[str, int] = {}
            namespaces: dict[str, int] = {}
            entities = 0
            for r in tx.run("MATCH (e:Entity) RETURN e.type AS t, e.namespace AS ns, count(*) AS n"):
                n = int(r["n"])
                entities += n
                entity_types[r["t"]] = entity_types.get(r["t"], 0) + n
                namespaces[r["ns"]] = namespaces.get(r["ns"], 0) + n
            relation_counts: dict[str, int] = {}
            relations = live = 0
            for r in tx.run(
                "MATCH (:Entity)-[r]->(:Entity) WHERE r.id IS NOT NULL "
                f"RETURN type(r) AS t, count(*) AS n, sum(CASE WHEN {_LIVE_NOW} THEN 1 ELSE 0 END) AS live",
                now=now,
            ):
                relation_counts[r["t"]] = int(r["n"])
                relations += int(r["n"])
                live += int(r["live"])
            record = tx.run("MATCH (v:_Vector) RETURN count(v) AS n").single()
            vectors = 0 if record is None else int(record["n"])
            return StoreStats(
                entities=entities,
                relations=relations,
                live_relations=live,
                vectors=vectors,
                entity_types=entity_types,
                relation_types=relation_counts,
                namespaces=namespaces,
                last_seq=_last_seq(tx),
                backend=self.backend,
            )

        return self._read("compute statistics", work)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._driver.close()
        except Exception as exc:  # the driver raises its own types and OSError
            raise StoreError(f"could not close the connection to Neo4j at {self.uri}: {exc}") from exc


_LOAD_ENTITIES = (
    f"UNWIND $ids AS id MATCH (e:Entity {{id: id}}) WHERE {_NS_FILTER.format(var='e')} "
    f"RETURN collect({entity_columns('e')}) AS rows"
)


def _load_entities(tx: ManagedTransaction, ids: Sequence[str], namespaces: list[str] | None) -> dict[str, Entity]:
    found: dict[str, Entity] = {}
    for part in chunks(list(ids), READ_CHUNK):
        record = tx.run(_LOAD_ENTITIES, ids=part, ns=namespaces).single()
        for row in [] if record is None else record[0]:
            entity = columns_to_entity(row)
            found[entity.id] = entity
    return found


def _namespaces_of(tx: ManagedTransaction, ids: Sequence[str]) -> dict[str, str]:
    cypher = "UNWIND $ids AS id MATCH (e:Entity {id: id}) RETURN collect([id, e.namespace]) AS rows"
    out: dict[str, str] = {}
    for part in chunks(list(ids), READ_CHUNK):
        record = tx.run(cypher, ids=part).single()
        out.update((eid, ns) for eid, ns in ([] if record is None else record[0]))
    return out


def _last_seq(tx: ManagedTransaction) -> int:
    record = tx.run("MATCH (k:_Counter {name: 'changes'}) RETURN k.seq AS seq").single()
    return 0 if record is None or record["seq"] is None else int(record["seq"])


def _conforms(store: Neo4jGraphStore) -> GraphStore:
    """Static check (for mypy) that the class implements the protocol exactly."""
    return store
