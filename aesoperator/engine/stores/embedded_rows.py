"""Conversions between the graph models and SQLite rows, plus small query helpers.

Rows read back are turned into models with `stored_model`: they were validated on the way in,
and skipping validation keeps reads of large neighbourhoods cheap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from aesoperator.engine.stores.canonical_json import canonical_json
from aesoperator.graph_schema.models import Entity, Provenance, Relation, from_iso, to_iso
from aesoperator.graph_schema.stored import stored_model

ENTITY_COLUMNS = (
    "id, type, name, text, properties, source, provenance, namespace, valid_from, valid_to, created_at, updated_at"
)
RELATION_COLUMNS = (
    "id, type, src, dst, properties, source, provenance, namespace, valid_from, valid_to, recorded_at, expired_at"
)

# Enough for any batch while keeping every JSON parameter a few hundred kilobytes at most.
CHUNK = 5000
MAX_QUERY_TOKENS = 64
# Query words are cut where FTS5's unicode61 cuts (underscores included), so each is one FTS5
# term and the in-memory keyword index (keyword_index.py) scores exactly what FTS5 scores.
_WORD = re.compile(r"[^\W_]+")


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def json_list(items: Sequence[str] | set[str]) -> str:
    """A JSON array parameter, read in SQL with `json_each(?)`: one bound value per list."""
    return json.dumps(list(items), ensure_ascii=False)


def dump_properties(props: dict[str, Any]) -> str:
    return canonical_json(props) if props else "{}"


def dump_provenance(prov: Provenance | None) -> str | None:
    if prov is None:
        return None
    version = "null" if prov.version is None else canonical_json(prov.version)
    return f'{{"uri":{canonical_json(prov.uri)},"version":{version},"fetched_at":"{to_iso(prov.fetched_at)}"}}'


def load_provenance(text: str | None) -> Provenance | None:
    if text is None:
        return None
    data = json.loads(text)
    return stored_model(
        Provenance, uri=data["uri"], fetched_at=from_iso(data.get("fetched_at")), version=data.get("version")
    )


def provenance_key(text: str | None) -> tuple[str, str | None] | None:
    """What of a provenance counts as content: where it came from and which version.

    `fetched_at` is left out on purpose, so re-fetching an unchanged item is not a change.
    """
    if text is None:
        return None
    data = json.loads(text)
    return (data["uri"], data.get("version"))


def entity_content(e: Entity) -> tuple[Any, ...]:
    """The stored columns that define an entity's content, in `entity_content_key` order,
    with provenance as JSON text (for writing)."""
    return (
        e.type,
        e.name,
        e.text,
        dump_properties(e.properties),
        e.source,
        dump_provenance(e.provenance),
        e.namespace,
        to_iso(e.valid_from),
        to_iso(e.valid_to),
    )


def content_key(content: Sequence[Any], prov_index: int) -> tuple[Any, ...]:
    """Turn a content tuple into a comparison key (provenance reduced to uri and version)."""
    values = list(content)
    values[prov_index] = provenance_key(values[prov_index])
    return tuple(values)


ENTITY_PROV_INDEX = 5


def relation_content(r: Relation) -> tuple[Any, ...]:
    return (
        r.type,
        r.src,
        r.dst,
        dump_properties(r.properties),
        r.source,
        dump_provenance(r.provenance),
        r.namespace,
        to_iso(r.valid_from),
        to_iso(r.valid_to),
        to_iso(r.expired_at),
    )


RELATION_PROV_INDEX = 5


def row_to_entity(row: Sequence[Any]) -> Entity:
    return stored_model(
        Entity,
        id=row[0],
        type=row[1],
        name=row[2],
        text=row[3],
        properties=json.loads(row[4]),
        source=row[5],
        provenance=load_provenance(row[6]),
        namespace=row[7],
        valid_from=from_iso(row[8]),
        valid_to=from_iso(row[9]),
        created_at=from_iso(row[10]),
        updated_at=from_iso(row[11]),
    )


def row_to_relation(row: Sequence[Any]) -> Relation:
    return stored_model(
        Relation,
        id=row[0],
        type=row[1],
        src=row[2],
        dst=row[3],
        properties=json.loads(row[4]),
        source=row[5],
        provenance=load_provenance(row[6]),
        namespace=row[7],
        valid_from=from_iso(row[8]),
        valid_to=from_iso(row[9]),
        recorded_at=from_iso(row[10]),
        expired_at=from_iso(row[11]),
    )


def entity_row_json(row: Sequence[Any]) -> str:
    """A stored entity row as one JSON document, the form kept in `entity_history`."""
    names = [c.strip() for c in ENTITY_COLUMNS.split(",")]
    data = dict(zip(names, row, strict=True))
    data["properties"] = json.loads(data["properties"])
    if data["provenance"] is not None:
        data["provenance"] = json.loads(data["provenance"])
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def entity_from_history(text: str) -> Entity:
    data = json.loads(text)
    prov = data.get("provenance")
    return row_to_entity(
        [
            data["id"],
            data["type"],
            data["name"],
            data["text"],
            json.dumps(data["properties"]),
            data["source"],
            None if prov is None else json.dumps(prov),
            data["namespace"],
            data["valid_from"],
            data["valid_to"],
            data["created_at"],
            data["updated_at"],
        ]
    )


# English function words. They match most documents, so BM25 gives them almost no weight, yet
# scoring every document they match is what makes a keyword query slow on a large store.
_STOP_TEXT = """a an and are as at be been but by did do does for from had has have he her his how i if in
into is it its me my no not of on or our she so than that the their them then there these they this to
was we were what when where which who whom why will with would you your"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def query_phrases(query: str) -> list[str]:
    """The words of `query` a keyword search looks for: lower-cased, first occurrence first, at
    most MAX_QUERY_TOKENS, stop words left out unless the query has nothing else."""
    seen: dict[str, None] = {}
    for token in _WORD.findall(query):
        seen.setdefault(token.lower(), None)
        if len(seen) >= MAX_QUERY_TOKENS:
            break
    return [t for t in seen if t not in STOP_WORDS] or list(seen)


def fts_expression(query: str) -> str | None:
    """A safe FTS5 query: each word of `query` quoted as a literal phrase, OR-ed together.

    Nothing of the caller's text is ever read as FTS syntax (operators, column filters, quotes,
    parentheses); `None` means the query has no searchable word. Stop words are left out unless
    the query has nothing else.
    """
    terms = query_phrases(query)
    if not terms:
        return None
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
