"""The Neo4j store's reads: Cypher and the transaction functions that run it.

Reads on the query path return one record per statement, holding the rows as lists in a fixed
column order (`collect([...])`): the driver decodes one message instead of one per row, which
halves the client's CPU per search. Values are taken from records directly, never through
`Record.data()`, which copies every byte of a stored vector one by one. Every value is a
parameter. `Neo4jGraphStore` (neo4j.py) runs these on a read session, each statement as an
auto-commit query (`neo4j_autocommit`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aesoperator.engine.stores.base import EntityText, Links, StoreStats, Subgraph
from aesoperator.engine.stores.neo4j_autocommit import QueryRunner
from aesoperator.engine.stores.neo4j_changes import last_seq, page_size
from aesoperator.engine.stores.neo4j_rows import (
    chunks,
    columns_to_entity,
    columns_to_relation,
    entity_columns,
    node_to_entity,
    relation_columns,
)
from aesoperator.engine.stores.neo4j_schema import FULLTEXT_INDEX, cypher_name
from aesoperator.engine.stores.neo4j_write import VECTOR_KEY_SEP
from aesoperator.engine.stores.neo4j_write import relation_types as relation_types_known
from aesoperator.graph_schema.models import Entity, Relation, to_iso, utcnow
from aesoperator.graph_schema.vocabulary import TYPE_NAME_PATTERN

READ_CHUNK = 10_000

HOP_PATTERNS: dict[str, str] = {
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


def optional_list(values: Sequence[str] | None) -> list[str] | None:
    """A query parameter from an optional filter.

    Args:
        values: The filter, or None for no filter.

    Returns:
        The values as a list, or None.
    """
    return None if values is None else list(values)


def _hop_query(direction: str, timed: bool, relation_types: list[str] | None, shape_only: bool) -> str:
    """One hop from every frontier entity, as a single record: a list of [fid, namespace, steps]
    with one step per relation followed, in the server's expand order: [other id, relation
    columns], or [other id, [relation type, relation id]] when `shape_only`. The frontier's own
    namespace comes along, so the seeds need no query of their own.

    Given relation types go into the pattern (quoted by `cypher_name`), so that Neo4j reads only
    those relationships of a node that has many of other types. A name no relation can have (not
    a safe type name) matches nothing, as it would as a parameter."""
    pattern = HOP_PATTERNS[direction]
    type_filter = "($types IS NULL OR type(r) IN $types) AND "
    storable = sorted({t for t in relation_types or () if TYPE_NAME_PATTERN.fullmatch(t)})
    if storable:
        pattern = pattern.replace("[r]", "[r:" + "|".join(cypher_name(t) for t in storable) + "]")
        type_filter = ""
    step = "[b.id, [type(r), r.id]]" if shape_only else f"[b.id, {relation_columns('r')}]"
    return (
        "UNWIND $frontier AS fid MATCH (a:Entity {id: fid}) "
        f"OPTIONAL MATCH {pattern} "
        f"WHERE {type_filter}"
        "($ns IS NULL OR (r.namespace IN $ns AND b.namespace IN $ns)) "
        f"AND {_LIVE_AT if timed else _LIVE_NOW} "
        f"WITH fid, a, collect(CASE WHEN r IS NULL THEN NULL ELSE {step} END) AS steps "
        "RETURN collect([fid, a.namespace, steps]) AS rows"
    )


_LOAD_ENTITIES = (
    f"UNWIND $ids AS id MATCH (e:Entity {{id: id}}) WHERE {_NS_FILTER.format(var='e')} "
    f"RETURN collect({entity_columns('e')}) AS rows"
)


def load_entities(tx: QueryRunner, ids: Sequence[str], namespaces: list[str] | None) -> dict[str, Entity]:
    """The entities with these ids.

    Args:
        tx: Where the statements run (a read session or transaction).
        ids: Entity ids (unknown ones are left out).
        namespaces: Only entities of these namespaces; None for all.

    Returns:
        Id -> entity.
    """
    found: dict[str, Entity] = {}
    for part in chunks(list(ids), READ_CHUNK):
        record = tx.run(_LOAD_ENTITIES, ids=part, ns=namespaces).single()
        for row in [] if record is None else record[0]:
            entity = columns_to_entity(row)
            found[entity.id] = entity
    return found


def _namespaces_of(tx: QueryRunner, ids: Sequence[str]) -> dict[str, str]:
    cypher = "UNWIND $ids AS id MATCH (e:Entity {id: id}) RETURN collect([id, e.namespace]) AS rows"
    out: dict[str, str] = {}
    for part in chunks(list(ids), READ_CHUNK):
        record = tx.run(cypher, ids=part).single()
        out.update((eid, ns) for eid, ns in ([] if record is None else record[0]))
    return out


def entity_versions(tx: QueryRunner, entity_id: str) -> list[Entity]:
    """Earlier versions of an entity, oldest first.

    Args:
        tx: Where the statements run (a read session or transaction).
        entity_id: The entity.

    Returns:
        Its replaced versions.
    """
    result = tx.run(
        "MATCH (v:_EntityVersion {entity_id: $id}) RETURN v.version AS version ORDER BY v.seq",
        id=entity_id,
    )
    out: list[Entity] = []
    for text in [r["version"] for r in result]:
        data = json.loads(text)
        data["properties"] = json.dumps(data["properties"])
        prov = data.get("provenance")
        data["provenance"] = None if prov is None else json.dumps(prov)
        out.append(node_to_entity(data))
    return out


_RELATIONS_AT = (
    "UNWIND $rows AS row MATCH (a:Entity {id: row[0]})-[r]-(b:Entity {id: row[1]}) WHERE r.id = row[2] "
    f"RETURN collect({relation_columns('r')}) AS rows"
)


def relations_at(tx: QueryRunner, rows: list[list[str]]) -> list[Relation]:
    """The relations named by [one end, other end, relation id] rows, found from their ends.

    Args:
        tx: Where the statements run (a read session or transaction).
        rows: One row per relation (unknown ones are left out).

    Returns:
        The relations, in no particular order.
    """
    out: list[Relation] = []
    for part in chunks(rows, READ_CHUNK):
        record = tx.run(_RELATIONS_AT, rows=part).single()
        out.extend(columns_to_relation(row) for row in ([] if record is None else record[0]))
    return out


def outgoing_of(
    tx: QueryRunner, ids: list[str], relation_types: list[str], namespaces: list[str] | None
) -> list[Relation]:
    """Every relation of the given types leaving the given entities, expired or not.

    Args:
        tx: Where the statements run (a read session or transaction).
        ids: Source entity ids.
        relation_types: Relation types (safe names; those the database has never seen are skipped).
        namespaces: Only relations of these namespaces; None for all.

    Returns:
        The relations, in no particular order.
    """
    known = set(relation_types) & set(relation_types_known(tx))
    if not known or not ids:
        return []
    pattern = "|".join(cypher_name(t) for t in sorted(known))  # typed: Neo4j reads only these of a dense node
    cypher = (
        f"UNWIND $ids AS id MATCH (a:Entity {{id: id}})-[r:{pattern}]->(b:Entity) "
        f"WHERE r.id IS NOT NULL AND {_NS_FILTER.format(var='r')} "
        f"RETURN collect({relation_columns('r')}) AS rows"
    )
    out: list[Relation] = []
    for part in chunks(ids, READ_CHUNK):
        record = tx.run(cypher, ids=part, ns=namespaces).single()
        out.extend(columns_to_relation(row) for row in ([] if record is None else record[0]))
    return out


@dataclass(frozen=True, slots=True)
class WalkSpec:
    """A breadth-first walk as `GraphStore.neighbors` describes it.

    seeds: distinct seed ids, hop 0 (unknown ones and ones outside `allowed` are dropped);
    depth: hops to follow; limit: at most this many entities (positive), seeds first, then by hop;
    direction: "out", "in" or "both"; relation_types: follow only these (None: all); allowed:
    entities and relations of these namespaces only (None: all); as_of: follow relations live
    then (None: now); skip_prefixes: entities whose id starts with one of these are neither
    reached nor walked through (seeds stay).
    """

    seeds: list[str]
    depth: int
    limit: int
    direction: str
    relation_types: list[str] | None
    allowed: list[str] | None
    as_of: datetime | None
    skip_prefixes: tuple[str, ...] = ()


@dataclass(slots=True)
class _Reached:
    """A breadth-first walk's result: hop per entity reached, and each relation followed once
    as (frontier entity, other end, step columns), in the order first followed."""

    hops: dict[str, int]
    followed: list[tuple[str, str, list[Any]]]


def _breadth_first(tx: QueryRunner, spec: WalkSpec, shape_only: bool) -> _Reached:
    """The walk, one query per hop (see `_hop_query`)."""
    query = _hop_query(spec.direction, spec.as_of is not None, spec.relation_types, shape_only)
    params: dict[str, Any] = {
        "types": spec.relation_types,
        "ns": spec.allowed,
        "now": to_iso(utcnow()),
        "as_of": to_iso(spec.as_of),
    }
    id_column = 1 if shape_only else 3  # where the relation id is in a step's columns

    def expand(frontier: list[str]) -> dict[str, tuple[str, list[list[Any]]]]:
        out: dict[str, tuple[str, list[list[Any]]]] = {}
        for part in chunks(frontier, READ_CHUNK):
            record = tx.run(query, frontier=part, **params).single()
            for fid, ns, steps in [] if record is None else record[0]:
                out[fid] = (ns, steps)
        return out

    hops: dict[str, int] = {}
    # The first hop is asked for every seed at once: it tells which seeds exist (and
    # their namespace) as well as where they lead.
    if spec.depth >= 1:
        steps_of = expand(spec.seeds)
        present = {fid: ns for fid, (ns, _steps) in steps_of.items()}
    else:
        steps_of = {}
        present = _namespaces_of(tx, spec.seeds)
    for seed in spec.seeds:
        if len(hops) >= spec.limit:
            break
        ns = present.get(seed)
        if ns is None or (spec.allowed is not None and ns not in spec.allowed):
            continue
        hops[seed] = 0
    followed: dict[str, tuple[str, str, list[Any]]] = {}
    skip = spec.skip_prefixes
    frontier = list(hops)
    for hop in range(1, max(spec.depth, 0) + 1):
        if not frontier:
            break
        if hop > 1:
            steps_of = expand(frontier)
        next_frontier: list[str] = []
        for fid in frontier:
            for other, columns in steps_of.get(fid, ("", []))[1]:
                if skip and other not in hops and other.startswith(skip):
                    continue
                if other not in hops:
                    if len(hops) >= spec.limit:
                        continue
                    hops[other] = hop
                    next_frontier.append(other)
                rid = columns[id_column]
                if rid not in followed:
                    followed[rid] = (fid, other, columns)
        frontier = next_frontier
    return _Reached(hops, list(followed.values()))


def neighborhood(tx: QueryRunner, spec: WalkSpec) -> Subgraph:
    """The entities the walk reaches with their hops, and the relations followed between them."""
    walk = _breadth_first(tx, spec, shape_only=False)
    found = load_entities(tx, list(walk.hops), None)
    return Subgraph(
        entities={eid: found[eid] for eid in walk.hops if eid in found},
        relations=[columns_to_relation(columns) for _fid, _other, columns in walk.followed],
        hops={eid: h for eid, h in walk.hops.items() if eid in found},
    )


def neighborhood_links(tx: QueryRunner, spec: WalkSpec) -> Links:
    """What `neighborhood` reaches, as ids, relation types and relation ids: one small query per
    hop, no entity or relation record read."""
    walk = _breadth_first(tx, spec, shape_only=True)
    return Links(
        hops=walk.hops,
        edges=[(fid, other, columns[0]) for fid, other, columns in walk.followed],
        relation_ids=[columns[1] for _fid, _other, columns in walk.followed],
    )


def keyword_hits(
    tx: QueryRunner, expression: str, k: int, namespaces: list[str] | None, types: list[str] | None
) -> list[tuple[str, float]]:
    """The full-text index's best hits that pass the filters.

    Args:
        tx: Where the statements run (a read session or transaction).
        expression: A Lucene query built by `lucene_query` (quoted, escaped terms only).
        k: At most this many hits (positive).
        namespaces: Only entities of these namespaces; None for all.
        types: Only entities of these types; None for all.

    Returns:
        (entity id, score) pairs, best first.
    """
    # The index yields hits best first, so the first k that pass the filters are the top k;
    # without filters Lucene itself can stop at k.
    unfiltered = namespaces is None and types is None
    cypher = (
        f"CALL db.index.fulltext.queryNodes($index, $text{', {limit: $k}' if unfiltered else ''}) "
        "YIELD node, score "
        f"WHERE node:Entity AND {_NS_FILTER.format(var='node')} AND {_TYPE_FILTER.format(var='node')} "
        "WITH node, score LIMIT $k RETURN collect([node.id, score]) AS hits"
    )
    params = {"index": FULLTEXT_INDEX, "text": expression, "ns": namespaces, "types": types, "k": page_size(k)}
    record = tx.run(cypher, params).single()
    return [] if record is None else [(eid, float(score)) for eid, score in record[0]]


def name_hits(
    tx: QueryRunner, keys: list[str], namespaces: list[str] | None, types: list[str] | None
) -> dict[str, list[str]]:
    """Entities whose lower-cased name is one of `keys`.

    Args:
        tx: Where the statements run (a read session or transaction).
        keys: Lower-cased names.
        namespaces: Only entities of these namespaces; None for all.
        types: Only entities of these types; None for all.

    Returns:
        Name -> entity ids (sorted); names without a match are left out.
    """
    cypher = (
        "UNWIND $names AS n MATCH (e:Entity {name_lower: n}) "
        f"WHERE {_NS_FILTER.format(var='e')} AND {_TYPE_FILTER.format(var='e')} "
        "WITH n, e.id AS id ORDER BY n, id RETURN collect([n, id]) AS hits"
    )
    out: dict[str, list[str]] = {}
    for part in chunks(keys, READ_CHUNK):
        record = tx.run(cypher, names=part, ns=namespaces, types=types).single()
        for name, eid in [] if record is None else record[0]:
            out.setdefault(name, []).append(eid)
    return out


def entity_page(
    tx: QueryRunner, after: str, size: int, namespaces: list[str] | None, types: list[str] | None
) -> list[Entity]:
    """The next page of entities in id order (keyset pagination).

    Args:
        tx: Where the statements run (a read session or transaction).
        after: The last id of the previous page ("" for the first).
        size: Page size.
        namespaces: Only entities of these namespaces; None for all.
        types: Only entities of these types; None for all.

    Returns:
        The page, empty at the end.
    """
    cypher = (
        "MATCH (e:Entity) WHERE e.id > $after "
        f"AND {_NS_FILTER.format(var='e')} AND {_TYPE_FILTER.format(var='e')} "
        f"WITH e ORDER BY e.id LIMIT $n RETURN collect({entity_columns('e')}) AS rows"
    )
    params = {"ns": namespaces, "types": types, "n": page_size(size), "after": after}
    record = tx.run(cypher, params).single()
    return [] if record is None else [columns_to_entity(row) for row in record[0]]


def entity_text_page(tx: QueryRunner, after: str, size: int) -> list[EntityText]:
    """The next page of entities' id, type, name, text and namespace in id order (keyset pagination).

    Args:
        tx: Where the statements run (a read session or transaction).
        after: The last id of the previous page ("" for the first).
        size: Page size.

    Returns:
        The page, empty at the end.
    """
    cypher = (
        "MATCH (e:Entity) WHERE e.id > $after WITH e ORDER BY e.id LIMIT $n "
        "RETURN collect([e.id, e.type, e.name, coalesce(e.text, ''), e.namespace]) AS rows"
    )
    record = tx.run(cypher, {"n": page_size(size), "after": after}).single()
    return [] if record is None else [EntityText._make(row) for row in record[0]]


def relation_rows_after(tx: QueryRunner, after: str, size: int) -> list[dict[str, Any]]:
    """The outgoing relations of the next `size` source entities in id order.

    Args:
        tx: Where the statements run (a read session or transaction).
        after: The last source id of the previous page ("" for the first).
        size: Source entities per page.

    Returns:
        Rows (src, r, type, dst) ordered by source and relation id; a source without relations
        gives one row whose r is None.
    """
    cypher = (
        "MATCH (a:Entity) WHERE a.id > $after WITH a ORDER BY a.id LIMIT $n "
        "OPTIONAL MATCH (a)-[r]->(b:Entity) WHERE r.id IS NOT NULL "
        "RETURN a.id AS src, r {.*} AS r, type(r) AS type, b.id AS dst ORDER BY src, r.id"
    )
    return [dict(r) for r in tx.run(cypher, after=after, n=size)]


def vector_page(tx: QueryRunner, prefix: str, after: str, size: int) -> list[list[Any]]:
    """The next page of stored vectors of one model, in key order.

    Args:
        tx: Where the statements run (a read session or transaction).
        prefix: The model's key prefix (model name and `VECTOR_KEY_SEP`).
        after: The last key of the previous page (the prefix for the first).
        size: Page size.

    Returns:
        [key, entity id, namespace, dim, little-endian float32 bytes] rows, empty at the end.
    """
    # One record per page: the bytes are taken as they come, never walked value by value.
    cypher = (
        "MATCH (v:_Vector) WHERE v.key > $after AND v.key STARTS WITH $prefix "
        "WITH v ORDER BY v.key LIMIT $n "
        "MATCH (e:Entity {id: v.entity_id}) "
        "RETURN collect([v.key, v.entity_id, e.namespace, v.dim, v.values]) AS rows"
    )
    record = tx.run(cypher, after=after, prefix=prefix, n=page_size(size)).single()
    return [] if record is None else list(record[0])


def vector_rows(tx: QueryRunner, ids: list[str], model: str, what: str) -> list[dict[str, Any]]:
    """One property of the stored vectors of `ids` for `model`.

    Args:
        tx: Where the statements run (a read session or transaction).
        ids: Distinct entity ids.
        model: The embedding model.
        what: The `_Vector` property: "values" or "hash".

    Returns:
        {"id", "value"} rows for the ids that have a vector.
    """
    cypher = f"UNWIND $ids AS id MATCH (v:_Vector {{key: $model + $sep + id}}) RETURN id, v.{what} AS value"
    out: list[dict[str, Any]] = []
    for part in chunks(ids, READ_CHUNK):
        out.extend(dict(r) for r in tx.run(cypher, ids=part, model=model, sep=VECTOR_KEY_SEP))
    return out


def vector_models(tx: QueryRunner) -> list[str]:
    """Names of the embedding models that have stored vectors.

    Args:
        tx: Where the statements run (a read session or transaction).

    Returns:
        The names, sorted.
    """
    return [r["m"] for r in tx.run("MATCH (v:_Vector) RETURN DISTINCT v.model AS m ORDER BY m")]


def store_stats(tx: QueryRunner, backend: str) -> StoreStats:
    """Counts of entities, relations and vectors by type and namespace.

    Args:
        tx: Where the statements run (a read session or transaction).
        backend: The backend name to report.

    Returns:
        The statistics.
    """
    now = to_iso(utcnow())
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
        last_seq=last_seq(tx),
        backend=backend,
    )


def vector_count(tx: QueryRunner, model: str) -> int:
    """How many vectors of `model` are stored.

    Args:
        tx: Where the statements run (a read session or transaction).
        model: the embedding model's storage name.

    Returns:
        The count.
    """
    record = tx.run("MATCH (v:_Vector) WHERE v.model = $model RETURN count(v) AS n", model=model).single()
    return int(record["n"]) if record is not None else 0


def vector_namespace_counts(tx: QueryRunner, model: str) -> dict[str, int]:
    """How many vectors of `model` each namespace holds.

    Args:
        tx: Where the statements run (a read session or transaction).
        model: the embedding model's storage name.

    Returns:
        Namespace -> count (namespaces without vectors are left out).
    """
    cypher = (
        "MATCH (v:_Vector) WHERE v.model = $model MATCH (e:Entity {id: v.entity_id}) "
        "RETURN e.namespace AS ns, count(v) AS n"
    )
    return {str(r["ns"]): int(r["n"]) for r in tx.run(cypher, model=model)}
