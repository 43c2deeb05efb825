"""Conversions between the graph models and Neo4j properties, plus the safe full-text query.

Properties and provenance are stored as canonical JSON text, times as canonical ISO text (which
sorts in time order, so Cypher compares them as strings). Read back, rows become models through
`stored_model`: they were validated on the way in.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from aesoperator.engine.stores.canonical_json import canonical_json
from aesoperator.graph_schema.models import Entity, Provenance, Relation, from_iso, to_iso
from aesoperator.graph_schema.stored import stored_model

MAX_QUERY_TOKENS = 64
_WORD = re.compile(r"\w+")
_LUCENE_SPECIAL = re.compile(r'([+\-&|!(){}\[\]^"~*?:\\/])')


def chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def dump_properties(props: Mapping[str, Any]) -> str:
    return canonical_json(props) if props else "{}"


def _load_properties(text: str) -> dict[str, Any]:
    # Most items carry no properties: skip the JSON parser for the stored empty object.
    if text == "{}":
        return {}
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def dump_provenance(prov: Provenance | None) -> str | None:
    if prov is None:
        return None
    return canonical_json({"fetched_at": to_iso(prov.fetched_at), "uri": prov.uri, "version": prov.version})


def load_provenance(text: str | None) -> Provenance | None:
    if text is None:
        return None
    data = json.loads(text)
    return stored_model(
        Provenance, uri=data["uri"], fetched_at=from_iso(data.get("fetched_at")), version=data.get("version")
    )


def provenance_key(text: str | None) -> tuple[str, str | None] | None:
    """What of a provenance counts as content: where it came from and which version.

    `fetched_at` is left out, so re-fetching an unchanged item is not a change.
    """
    if text is None:
        return None
    data = json.loads(text)
    return (data["uri"], data.get("version"))


# entities -----------------------------------------------------------------------------------


def entity_props(e: Entity) -> dict[str, Any]:
    """The node properties of an entity, without `created_at`/`updated_at`/`seq` (set by the writer)."""
    return {
        "id": e.id,
        "type": e.type,
        "name": e.name,
        "name_lower": e.name.lower(),
        "text": e.text,
        "properties": dump_properties(e.properties),
        "source": e.source,
        "provenance": dump_provenance(e.provenance),
        "namespace": e.namespace,
        "valid_from": to_iso(e.valid_from),
        "valid_to": to_iso(e.valid_to),
    }


_ENTITY_CONTENT = ("type", "name", "text", "properties", "source", "namespace", "valid_from", "valid_to")


def entity_key(props: Mapping[str, Any]) -> tuple[Any, ...]:
    """What decides whether an entity changed: everything but timestamps and `fetched_at`."""
    return (*(props.get(k) for k in _ENTITY_CONTENT), provenance_key(props.get("provenance")))


def fingerprint(key: tuple[Any, ...]) -> str:
    """A digest of a content key, stored with the item so a re-upsert compares one short string."""
    # repr of str, None and tuples thereof is exact and stable across runs and versions.
    return hashlib.blake2b(repr(key).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def node_to_entity(p: Mapping[str, Any]) -> Entity:
    return stored_model(
        Entity,
        id=p["id"],
        type=p["type"],
        name=p["name"],
        text=p["text"],
        properties=json.loads(p["properties"]),
        source=p["source"],
        provenance=load_provenance(p.get("provenance")),
        namespace=p["namespace"],
        valid_from=from_iso(p.get("valid_from")),
        valid_to=from_iso(p.get("valid_to")),
        created_at=from_iso(p.get("created_at")),
        updated_at=from_iso(p.get("updated_at")),
    )


# Columns of an entity row: reads return each entity as a list in this order (inside one collected
# record per query), which the driver decodes far faster than one map record per entity.
ENTITY_COLUMNS = (
    "id",
    "type",
    "name",
    "text",
    "properties",
    "source",
    "provenance",
    "namespace",
    "valid_from",
    "valid_to",
    "created_at",
    "updated_at",
)


def entity_columns(var: str) -> str:
    """A Cypher list expression of `ENTITY_COLUMNS` of node `var`."""
    return "[" + ", ".join(f"{var}.{c}" for c in ENTITY_COLUMNS) + "]"


def columns_to_entity(row: Sequence[Any]) -> Entity:
    """An entity from a row in `ENTITY_COLUMNS` order."""
    eid, etype, name, text, props, source, prov, namespace, valid_from, valid_to, created, updated = row
    return stored_model(
        Entity,
        id=eid,
        type=etype,
        name=name,
        text=text,
        properties=_load_properties(props),
        source=source,
        provenance=load_provenance(prov),
        namespace=namespace,
        valid_from=from_iso(valid_from),
        valid_to=from_iso(valid_to),
        created_at=from_iso(created),
        updated_at=from_iso(updated),
    )


def entity_version_json(p: Mapping[str, Any]) -> str:
    """A stored entity as one JSON document, the form kept in `:_EntityVersion` nodes."""
    data = {
        k: p.get(k)
        for k in (
            "id",
            "type",
            "name",
            "text",
            "source",
            "namespace",
            "valid_from",
            "valid_to",
            "created_at",
            "updated_at",
        )
    }
    data["properties"] = json.loads(p["properties"])
    prov = p.get("provenance")
    data["provenance"] = None if prov is None else json.loads(prov)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


# relations ----------------------------------------------------------------------------------


def relation_props(r: Relation) -> dict[str, Any]:
    """The relationship properties of a relation, without `recorded_at`/`seq` (set by the writer).

    Type and endpoints are the relationship's own type and nodes; they are not repeated here.
    """
    return {
        "id": r.id,
        "properties": dump_properties(r.properties),
        "source": r.source,
        "provenance": dump_provenance(r.provenance),
        "namespace": r.namespace,
        "valid_from": to_iso(r.valid_from),
        "valid_to": to_iso(r.valid_to),
        "expired_at": to_iso(r.expired_at),
    }


_RELATION_CONTENT = ("type", "src", "dst", "properties", "source", "namespace", "valid_from", "valid_to", "expired_at")


# Columns of a relation row after its type, source id and target id (see `columns_to_relation`).
RELATION_COLUMNS = (
    "id",
    "properties",
    "source",
    "provenance",
    "namespace",
    "valid_from",
    "valid_to",
    "recorded_at",
    "expired_at",
)


def relation_columns(var: str) -> str:
    """A Cypher list expression: type, source id, target id, then `RELATION_COLUMNS` of `var`."""
    own = ", ".join(f"{var}.{c}" for c in RELATION_COLUMNS)
    return f"[type({var}), startNode({var}).id, endNode({var}).id, {own}]"


def columns_to_relation(row: Sequence[Any]) -> Relation:
    """A relation from a row built by `relation_columns`."""
    rtype, src, dst, rid, props, source, prov, namespace, valid_from, valid_to, recorded, expired = row
    return stored_model(
        Relation,
        id=rid,
        type=rtype,
        src=src,
        dst=dst,
        properties=_load_properties(props),
        source=source,
        provenance=load_provenance(prov),
        namespace=namespace,
        valid_from=from_iso(valid_from),
        valid_to=from_iso(valid_to),
        recorded_at=from_iso(recorded),
        expired_at=from_iso(expired),
    )


def relation_key(props: Mapping[str, Any]) -> tuple[Any, ...]:
    """What decides whether a relation changed (`props` carries type, src and dst too)."""
    return (*(props.get(k) for k in _RELATION_CONTENT), provenance_key(props.get("provenance")))


def row_to_relation(row: Mapping[str, Any]) -> Relation:
    """A relation from a row holding `r` (relationship properties), `type`, `src` and `dst`."""
    p = row["r"]
    return stored_model(
        Relation,
        id=p["id"],
        type=row["type"],
        src=row["src"],
        dst=row["dst"],
        properties=json.loads(p["properties"]),
        source=p["source"],
        provenance=load_provenance(p.get("provenance")),
        namespace=p["namespace"],
        valid_from=from_iso(p.get("valid_from")),
        valid_to=from_iso(p.get("valid_to")),
        recorded_at=from_iso(p.get("recorded_at")),
        expired_at=from_iso(p.get("expired_at")),
    )


# full-text ----------------------------------------------------------------------------------


def lucene_query(query: str) -> str | None:
    """A safe Lucene query: each word of `query` as a quoted, escaped term, OR-ed together.

    Nothing of the caller's text is read as Lucene syntax (operators, fields, wildcards, ranges,
    boosts); `None` means the query has no searchable word.
    """
    seen: dict[str, None] = {}
    for token in _WORD.findall(query):
        seen.setdefault(token.lower(), None)
        if len(seen) >= MAX_QUERY_TOKENS:
            break
    if not seen:
        return None
    return " OR ".join('"' + _LUCENE_SPECIAL.sub(r"\\\1", token) + '"' for token in seen)
