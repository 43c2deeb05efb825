"""Relational databases to graph: Database, Table, Column and Row entities, shared by the
PostgreSQL and SQLite adapters.

What a database becomes:

- one `Database` entity; each allowed table a `Table` (Database CONTAINS Table) with a `Column`
  per column (Table HAS_COLUMN Column); a foreign key between two allowed tables is a
  `FOREIGN_KEY` relation between the tables;
- each row (of an allowed table, up to a per-table limit) a `Row` entity whose id comes from the
  primary key and whose text reads "orders: id=7, customer_id=2, item=Lamp" (Table HAS_ROW Row);
- a row's foreign key values that point at another stored row become a `FOREIGN_KEY` relation
  from the row to that row (foreign keys to a unique key other than the primary key, and to
  rows past the row limit, stay at table level). A table without a primary key is described
  but its rows are not read (reported as skipped), unless the reader has a row key of its own
  (SQLite's rowid).

The pieces: `relational_catalog` (what a reader reports, the options, ids and natural keys),
`relational_walk` (`relational_records`: the records a source yields, in order, re-reading only
what changed); this module maps each record to graph items (`RelationalMapper`) and re-exports
the names the adapters use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aesoperator.errors import MappingError
from aesoperator.graph_schema.ids import entity_id, relation_id
from aesoperator.graph_schema.models import Entity, Provenance, Relation
from aesoperator.ingest.mappers.relational_catalog import (
    DEFAULT_MAX_VALUE_CHARS,
    DEFAULT_PAGE_SIZE,
    DEFAULT_ROW_LIMIT,
    ColumnInfo,
    DatabaseInfo,
    ForeignKeyInfo,
    RelationalIds,
    RelationalOptions,
    RelationalReader,
    RowPage,
    TableInfo,
    display_table,
    id_part,
    pk_key,
    row_natural_key,
    row_pk,
    table_key,
)
from aesoperator.ingest.mappers.relational_walk import (
    DATABASE_KEY,
    FOREIGN_KEYS_KEY,
    LINKS_PREFIX,
    MAPPING_VERSION,
    ROW_PREFIX,
    TABLE_PREFIX,
    relational_records,
)
from aesoperator.ingest.records import MappedItem, SourceRecord

MAX_TEXT_VALUE_CHARS = 500  # a value longer than this is shortened in the row's text (not its properties)


# -- text ------------------------------------------------------------------------------------------
def value_text(value: Any, limit: int = MAX_TEXT_VALUE_CHARS) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = " ".join(text.split()) if "\n" in text or "\r" in text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def row_text(display: str, values: Mapping[str, Any]) -> str:
    """`orders: id=7, customer_id=2, item=Lamp`."""
    return f"{display}: " + ", ".join(f"{col}={value_text(v)}" for col, v in values.items())


def clip_values(values: Mapping[str, Any], max_chars: int) -> tuple[dict[str, Any], list[str]]:
    """Values with strings longer than `max_chars` shortened; the names of the shortened columns."""
    out: dict[str, Any] = {}
    clipped: list[str] = []
    for col, value in values.items():
        if isinstance(value, str) and len(value) > max_chars:
            out[col] = value[:max_chars]
            clipped.append(col)
        elif not isinstance(value, str | int | float | bool | type(None)):
            text = json.dumps(value, ensure_ascii=False, sort_keys=True)
            if len(text) > max_chars:
                out[col] = text[:max_chars]
                clipped.append(col)
            else:
                out[col] = value
        else:
            out[col] = value
    return out, clipped


# -- the mapper ------------------------------------------------------------------------------------
class RelationalMapper:
    """Pure: one relational record to graph items. Payloads hold the catalog dataclasses above.

    kinds: "database" {"database": DatabaseInfo, "tables": [TableInfo]};
    "table" {"database": DatabaseInfo, "table": TableInfo, "foreign_keys": [ForeignKeyInfo]};
    "foreign_keys" {"database": DatabaseInfo, "schema": str, "foreign_keys": [ForeignKeyInfo]};
    "row" {"database": DatabaseInfo, "table": TableInfo, "values": {...}, "key_values": {...}};
    "links" {"row": row natural key, "links": [[fk name, columns, ref_columns, target row natural key]]};
    "tombstone" {} (maps to nothing: the record's previous relations are expired).
    """

    kind = "relational"

    def __init__(self, source: str, namespace: str, max_value_chars: int = DEFAULT_MAX_VALUE_CHARS) -> None:
        self.source = source
        self.namespace = namespace
        self.max_value_chars = max_value_chars
        self.ids = RelationalIds(source)

    def _entity(
        self, eid: str, etype: str, name: str, text: str, props: dict[str, Any], uri: str, version: str
    ) -> Entity:
        return Entity(
            id=eid,
            type=etype,
            name=name,
            text=text,
            properties=props,
            source=self.source,
            provenance=Provenance(uri=uri, version=version),
            namespace=self.namespace,
        )

    def _relation(self, rtype: str, src: str, dst: str, key: str = "", props: dict[str, Any] | None = None) -> Relation:
        return Relation(
            id=relation_id(rtype, src, dst, key),
            type=rtype,
            src=src,
            dst=dst,
            properties=props or {},
            source=self.source,
            namespace=self.namespace,
        )

    def map(self, record: SourceRecord) -> MappedItem:
        handler = {
            "database": self._map_database,
            "table": self._map_table,
            "foreign_keys": self._map_foreign_keys,
            "row": self._map_row,
            "links": self._map_links,
            "tombstone": lambda r: MappedItem(),
        }.get(record.kind)
        if handler is None:
            raise MappingError(f"unknown relational record kind {record.kind!r}")
        return handler(record)

    def _map_database(self, record: SourceRecord) -> MappedItem:
        db: DatabaseInfo = record.payload["database"]
        tables: list[TableInfo] = record.payload["tables"]
        names = [display_table(t.schema, t.name, db.default_schema) for t in tables]
        text = f"Database {db.name} ({db.dialect} {db.version})" + (
            f" with tables: {', '.join(names)}" if names else " (no allowed table found)"
        )
        entity = self._entity(
            self.ids.database(db.name),
            "Database",
            db.name,
            text,
            {"dialect": db.dialect, "version": db.version, "tables": names, "uri": db.uri},
            db.uri,
            record.content_hash,
        )
        return MappedItem(entities=[entity])

    def _map_table(self, record: SourceRecord) -> MappedItem:
        db: DatabaseInfo = record.payload["database"]
        table: TableInfo = record.payload["table"]
        fks: list[ForeignKeyInfo] = record.payload["foreign_keys"]
        display = display_table(table.schema, table.name, db.default_schema)
        table_id = self.ids.table(table.schema, table.name)
        uri = f"{db.uri}#{table_key(table.schema, table.name)}"
        refs: dict[str, str] = {}
        for fk in fks:
            target = display_table(table.schema, fk.ref_table, db.default_schema)
            for name, ref in zip(fk.columns, fk.ref_columns, strict=True):
                refs[name] = f"{target}.{ref}"
        pk = set(table.primary_key)

        def describe(col: ColumnInfo) -> str:
            bits = [col.data_type or "untyped"]
            if col.name in pk:
                bits.append("primary key")
            elif not col.nullable:
                bits.append("not null")
            if col.name in refs:
                bits.append(f"references {refs[col.name]}")
            return f"{col.name} {' '.join(bits)}"

        text = f"Table {display} in database {db.name}. Columns: " + "; ".join(describe(c) for c in table.columns)
        if table.comment:
            text += f". {table.comment}"
        entity = self._entity(
            table_id,
            "Table",
            display,
            text,
            {
                "database": db.name,
                "schema": table.schema,
                "table": table.name,
                "columns": [c.name for c in table.columns],
                "primary_key": list(table.primary_key),
                "foreign_keys": [
                    {
                        "name": f.name,
                        "columns": list(f.columns),
                        "ref_table": f.ref_table,
                        "ref_columns": list(f.ref_columns),
                    }
                    for f in fks
                ],
                "comment": table.comment,
            },
            uri,
            record.content_hash,
        )
        item = MappedItem(entities=[entity])
        item.relations.append(self._relation("CONTAINS", self.ids.database(db.name), table_id))
        for col in table.columns:
            col_id = self.ids.column(table.schema, table.name, col.name)
            col_text = f"Column {display}.{describe(col)}" + (f" default {col.default}" if col.default else "")
            if col.comment:
                col_text += f". {col.comment}"
            item.entities.append(
                self._entity(
                    col_id,
                    "Column",
                    f"{display}.{col.name}",
                    col_text,
                    {
                        "schema": table.schema,
                        "table": table.name,
                        "column": col.name,
                        "data_type": col.data_type,
                        "nullable": col.nullable,
                        "default": col.default,
                        "position": col.position,
                        "primary_key": col.name in pk,
                        "references": refs.get(col.name),
                        "comment": col.comment,
                    },
                    f"{uri}.{id_part(col.name)}",
                    record.content_hash,
                )
            )
            item.relations.append(self._relation("HAS_COLUMN", table_id, col_id, props={"position": col.position}))
        return item

    def _map_foreign_keys(self, record: SourceRecord) -> MappedItem:
        schema: str = record.payload["schema"]
        fks: list[ForeignKeyInfo] = record.payload["foreign_keys"]
        item = MappedItem()
        for fk in fks:
            item.relations.append(
                self._relation(
                    "FOREIGN_KEY",
                    self.ids.table(schema, fk.table),
                    self.ids.table(schema, fk.ref_table),
                    key=fk.name,
                    props={"constraint": fk.name, "columns": list(fk.columns), "ref_columns": list(fk.ref_columns)},
                )
            )
        return item

    def _map_row(self, record: SourceRecord) -> MappedItem:
        db: DatabaseInfo = record.payload["database"]
        table: TableInfo = record.payload["table"]
        values: dict[str, Any] = record.payload["values"]
        key_values: dict[str, Any] = record.payload.get("key_values") or {}
        pk = row_pk(table, values, key_values)
        display = display_table(table.schema, table.name, db.default_schema)
        row_id = self.ids.row(table.schema, table.name, pk)
        stored, clipped = clip_values(values, self.max_value_chars)
        key_text = ", ".join(f"{c}={value_text(v, 100)}" for c, v in zip(table.key_columns, pk, strict=True))
        props: dict[str, Any] = {
            "schema": table.schema,
            "table": table.name,
            "primary_key": dict(zip(table.key_columns, pk, strict=True)),
            "values": stored,
        }
        if clipped:
            props["clipped_columns"] = clipped
        entity = self._entity(
            row_id,
            "Row",
            f"{display}({key_text})",
            row_text(display, values),
            props,
            f"{db.uri}#{row_natural_key(table.schema, table.name, pk)}",
            record.content_hash,
        )
        relation = self._relation("HAS_ROW", self.ids.table(table.schema, table.name), row_id)
        return MappedItem(entities=[entity], relations=[relation])

    def _map_links(self, record: SourceRecord) -> MappedItem:
        row_id = entity_id(self.source, "row", record.payload["row"])
        item = MappedItem()
        for name, columns, ref_columns, target in record.payload["links"]:
            item.relations.append(
                self._relation(
                    "FOREIGN_KEY",
                    row_id,
                    entity_id(self.source, "row", target),
                    key=name,
                    props={"constraint": name, "columns": list(columns), "ref_columns": list(ref_columns)},
                )
            )
        return item


__all__ = [
    "DATABASE_KEY",
    "DEFAULT_MAX_VALUE_CHARS",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_ROW_LIMIT",
    "FOREIGN_KEYS_KEY",
    "LINKS_PREFIX",
    "MAPPING_VERSION",
    "MAX_TEXT_VALUE_CHARS",
    "ROW_PREFIX",
    "TABLE_PREFIX",
    "ColumnInfo",
    "DatabaseInfo",
    "ForeignKeyInfo",
    "RelationalIds",
    "RelationalMapper",
    "RelationalOptions",
    "RelationalReader",
    "RowPage",
    "TableInfo",
    "clip_values",
    "display_table",
    "pk_key",
    "relational_records",
    "row_natural_key",
    "row_pk",
    "row_text",
    "table_key",
    "value_text",
]
