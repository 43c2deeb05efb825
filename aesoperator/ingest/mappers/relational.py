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

Ids are `<source>:<kind>:<natural key>` with the natural keys `<schema>.<table>`,
`<schema>.<table>.<column>` and `<schema>.<table>:<primary key values>` (each part
percent-encoded where it holds `%`, `.`, `,`, `:` or `/`, so no two keys collide).

Records, in the order the walk yields them (relation endpoints are always written first):
``database``, one ``table:<table>`` per table, ``foreign-keys``, one ``row:<table>:<pk>`` per row,
then one ``links:<table>:<pk>`` per row whose foreign keys reach stored rows. A row's content hash
is a hash of its values, so a re-run re-maps only changed rows; rows that are gone are removed.
A ``links`` record that disappears is sent once more as an empty ``tombstone`` so that the
relations it held are expired.

The walk (`relational_records`) is dialect independent; the SQL lives in the adapters, behind the
`RelationalReader` protocol. Only allowed tables are ever named to the reader.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.errors import ConfigError, MappingError, SourceError
from aesoperator.graph_schema.ids import content_hash, entity_id, relation_id
from aesoperator.graph_schema.models import Entity, Provenance, Relation
from aesoperator.ingest.adapters.base import unchanged
from aesoperator.ingest.records import MappedItem, SkippedRecord, SourceRecord

log = logging.getLogger(__name__)

MAPPING_VERSION = 1
DEFAULT_ROW_LIMIT = 10_000
DEFAULT_PAGE_SIZE = 500
DEFAULT_MAX_VALUE_CHARS = 2_000
MAX_TEXT_VALUE_CHARS = 500  # a value longer than this is shortened in the row's text (not its properties)

DATABASE_KEY = "database"
FOREIGN_KEYS_KEY = "foreign-keys"
TABLE_PREFIX = "table:"
ROW_PREFIX = "row:"
LINKS_PREFIX = "links:"


# -- catalog ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ColumnInfo:
    name: str
    data_type: str
    nullable: bool = True
    default: str | None = None
    position: int = 0
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class TableInfo:
    """An allowed table. `key_columns` order its rows and identify them: the primary key, or a
    reader's own row key (SQLite's rowid) when the table has none; empty when rows can't be keyed."""

    schema: str
    name: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...] = ()
    key_columns: tuple[str, ...] = ()
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class ForeignKeyInfo:
    name: str
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    name: str
    dialect: str  # "PostgreSQL", "SQLite"
    version: str
    uri: str  # where it lives, without credentials
    default_schema: str  # the schema whose tables are shown without a prefix


@dataclass(frozen=True, slots=True)
class RowPage:
    """One page of rows in key order: JSON-safe values per row, and the reader's cursor after
    the last row (what `rows(..., after=cursor)` continues from)."""

    rows: list[dict[str, Any]]
    cursor: Any = None
    key_values: list[dict[str, Any]] | None = None  # per row, key columns that are not table columns


class RelationalReader(Protocol):
    """The SQL side of a relational source. Every method names allowed tables only."""

    async def database(self) -> DatabaseInfo: ...

    async def tables(self, allowed: Sequence[str]) -> list[TableInfo]:
        """The allowed tables that exist, with their columns and keys (others are not asked about)."""
        ...

    async def foreign_keys(self, tables: Sequence[TableInfo]) -> list[ForeignKeyInfo]:
        """Foreign keys whose both ends are among `tables`."""
        ...

    async def rows(self, table: TableInfo, after: Any, limit: int) -> RowPage:
        """Up to `limit` rows of `table` in key order, after the cursor `after` (None: from the start)."""
        ...


# -- options ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RelationalOptions:
    allowed_tables: tuple[str, ...]
    row_limit: int = DEFAULT_ROW_LIMIT
    page_size: int = DEFAULT_PAGE_SIZE
    max_value_chars: int = DEFAULT_MAX_VALUE_CHARS

    @classmethod
    def parse(cls, source: str, options: Mapping[str, Any]) -> RelationalOptions:
        allowed = options.get("allowed_tables")
        if (
            not isinstance(allowed, list | tuple)
            or not allowed
            or not all(isinstance(t, str) and t.strip() for t in allowed)
        ):
            raise ConfigError(
                f"source {source!r}: options.allowed_tables must list the tables to read, e.g. "
                'allowed_tables = ["orders", "customers"]; no table is read without it'
            )

        def positive(name: str, default: int) -> int:
            value = options.get(name, default)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"source {source!r}: options.{name} must be a positive integer, got {value!r}")
            return value

        return cls(
            allowed_tables=tuple(dict.fromkeys(allowed)),
            row_limit=positive("row_limit", DEFAULT_ROW_LIMIT),
            page_size=positive("page_size", DEFAULT_PAGE_SIZE),
            max_value_chars=positive("max_value_chars", DEFAULT_MAX_VALUE_CHARS),
        )


# -- keys and ids ----------------------------------------------------------------------------------
_SEPARATORS = str.maketrans({"%": "%25", ".": "%2E", ",": "%2C", ":": "%3A", "/": "%2F"})


def _part(text: str) -> str:
    """A name or key value as an id part: the separators ids use are percent-encoded, nothing else."""
    return text.translate(_SEPARATORS)


def table_key(schema: str, table: str) -> str:
    return f"{_part(schema)}.{_part(table)}"


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def pk_key(values: Sequence[Any]) -> str:
    """The primary key values as one id part: `7`, or `1,2` for a composite key."""
    return ",".join(_part(_scalar_text(v)) for v in values)


def row_natural_key(schema: str, table: str, pk: Sequence[Any]) -> str:
    return f"{table_key(schema, table)}:{pk_key(pk)}"


class RelationalIds:
    def __init__(self, source: str) -> None:
        self.source = source

    def database(self, name: str) -> str:
        return entity_id(self.source, "database", _part(name))

    def table(self, schema: str, table: str) -> str:
        return entity_id(self.source, "table", table_key(schema, table))

    def column(self, schema: str, table: str, column: str) -> str:
        return entity_id(self.source, "column", f"{table_key(schema, table)}.{_part(column)}")

    def row(self, schema: str, table: str, pk: Sequence[Any]) -> str:
        return entity_id(self.source, "row", row_natural_key(schema, table, pk))


def display_table(schema: str, table: str, default_schema: str) -> str:
    return table if schema == default_schema else f"{schema}.{table}"


def row_pk(table: TableInfo, values: Mapping[str, Any], key_values: Mapping[str, Any] | None = None) -> list[Any]:
    """A row's key values, in key column order (`key_values` holds keys that are not columns)."""
    out = []
    for col in table.key_columns:
        if key_values is not None and col in key_values:
            out.append(key_values[col])
        else:
            out.append(values[col])
    return out


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


def _digest(data: Any) -> str:
    return content_hash(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str))


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
                    f"{uri}.{_part(col.name)}",
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


# -- the walk --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Resolvable:
    """A foreign key whose values can be matched to the primary key of the referenced table's rows."""

    fk: ForeignKeyInfo
    ref: TableInfo
    source_columns: tuple[str, ...]  # the referencing columns, in the referenced table's key order


@dataclass(frozen=True, slots=True)
class _PendingLinks:
    key: str  # the links record key
    row: str  # the row's natural key
    targets: tuple[tuple[ForeignKeyInfo, str, str], ...]  # (fk, referenced table, target pk key)


def _resolvable(fks: Sequence[ForeignKeyInfo], tables: Mapping[str, TableInfo]) -> dict[str, list[_Resolvable]]:
    out: dict[str, list[_Resolvable]] = {}
    for fk in fks:
        ref = tables.get(fk.ref_table)
        if ref is None or not ref.primary_key or set(fk.ref_columns) != set(ref.primary_key):
            continue  # references a unique key other than the primary key: kept at table level only
        by_ref = dict(zip(fk.ref_columns, fk.columns, strict=True))
        out.setdefault(fk.table, []).append(_Resolvable(fk, ref, tuple(by_ref[c] for c in ref.primary_key)))
    return out


def _record(key: str, kind: str, payload: dict[str, Any], digest: str, uri: str) -> SourceRecord:
    return SourceRecord(key=key, kind=kind, content_hash=digest, payload=payload, uri=uri)


def _unchanged(previous: Mapping[str, SourceItemState], key: str, digest: str) -> SourceItemState | None:
    state = previous.get(key)
    return state if state is not None and state.content_hash == digest else None


class _TableWalk:
    """One pass over a relational source (see `relational_records`)."""

    def __init__(
        self,
        reader: RelationalReader,
        options: RelationalOptions,
        namespace: str,
        previous: Mapping[str, SourceItemState],
        skipped: list[SkippedRecord],
    ) -> None:
        self.reader = reader
        self.options = options
        self.previous = previous
        self.skipped = skipped
        self.settings = {"v": MAPPING_VERSION, "namespace": namespace, "max_value_chars": options.max_value_chars}
        self.yielded: set[str] = set()
        self.seen_keys: dict[str, set[str]] = {}  # referenced table -> pk keys of its stored rows
        self.pending: list[_PendingLinks] = []

    def _emit(self, key: str, kind: str, payload: dict[str, Any], digest: str, uri: str) -> SourceRecord:
        self.yielded.add(key)
        before = _unchanged(self.previous, key, digest)
        return unchanged(before, uri) if before is not None else _record(key, kind, payload, digest, uri)

    async def records(self) -> AsyncIterator[SourceRecord]:
        db = await self.reader.database()
        tables = await self.reader.tables(self.options.allowed_tables)
        missing = sorted(set(self.options.allowed_tables) - {t.name for t in tables})
        if missing:
            log.warning("allowed tables not found in database %s: %s", db.name, ", ".join(missing))
        by_name = {t.name: t for t in tables}
        fks = [f for f in (await self.reader.foreign_keys(tables) if tables else []) if f.ref_table in by_name]
        db_data = asdict(db)

        digest = _digest({**self.settings, "database": db_data, "tables": [(t.schema, t.name) for t in tables]})
        yield self._emit(DATABASE_KEY, "database", {"database": db, "tables": tables}, digest, db.uri)
        for table in tables:
            own = [f for f in fks if f.table == table.name]
            payload = {"database": db, "table": table, "foreign_keys": own}
            digest = _digest({**self.settings, "db": db_data, "table": asdict(table), "fks": [asdict(f) for f in own]})
            yield self._emit(TABLE_PREFIX + table_key(table.schema, table.name), "table", payload, digest, db.uri)
        schema = tables[0].schema if tables else db.default_schema
        digest = _digest({**self.settings, "schema": schema, "fks": [asdict(f) for f in fks]})
        payload = {"database": db, "schema": schema, "foreign_keys": fks}
        yield self._emit(FOREIGN_KEYS_KEY, "foreign_keys", payload, digest, db.uri)

        resolvable = _resolvable(fks, by_name)
        self.seen_keys = {r.ref.name: set() for group in resolvable.values() for r in group}
        for table in tables:
            async for record in self._rows(db, table, resolvable.get(table.name, [])):
                yield record
        for record in self._links(db, schema):
            yield record
        for key, state in self.previous.items():
            if key.startswith(LINKS_PREFIX) and key not in self.yielded and state.relation_ids:
                yield _record(key, "tombstone", {}, "tombstone", db.uri)

    async def _rows(
        self, db: DatabaseInfo, table: TableInfo, resolvable: Sequence[_Resolvable]
    ) -> AsyncIterator[SourceRecord]:
        tkey = table_key(table.schema, table.name)
        if not table.key_columns:
            reason = f"table {table.name} has no primary key, so its rows cannot be identified; they are not read"
            self.skipped.append(SkippedRecord(f"{ROW_PREFIX}{tkey}", reason))
            return
        table_digest = _digest({**self.settings, "db": db.name, "table": asdict(table)})
        seen = self.seen_keys.get(table.name)
        read = 0
        cursor: Any = None
        limit = self.options.row_limit
        try:
            while read < limit:
                asked = min(self.options.page_size, limit - read)
                page = await self.reader.rows(table, cursor, asked)
                keys: list[dict[str, Any] | None] = (
                    list(page.key_values) if page.key_values is not None else [None] * len(page.rows)
                )
                for values, key_values in zip(page.rows, keys, strict=True):
                    pk = row_pk(table, values, key_values)
                    pkk = pk_key(pk)
                    key = f"{ROW_PREFIX}{tkey}:{pkk}"
                    if key in self.yielded:
                        continue
                    digest = _digest({"t": table_digest, "values": values, "key": key_values})
                    payload = {"database": db, "table": table, "values": values, "key_values": key_values}
                    yield self._emit(key, "row", payload, digest, f"{db.uri}#{tkey}:{pkk}")
                    if seen is not None:
                        seen.add(pkk)
                    targets = []
                    for r in resolvable:
                        target = [values.get(c) for c in r.source_columns]
                        if all(v is not None for v in target):
                            targets.append((r.fk, r.ref.name, pk_key(target)))
                    if targets:
                        self.pending.append(
                            _PendingLinks(f"{LINKS_PREFIX}{tkey}:{pkk}", f"{tkey}:{pkk}", tuple(targets))
                        )
                read += len(page.rows)
                if len(page.rows) < asked or page.cursor is None:
                    break
                cursor = page.cursor
            if read >= limit:
                log.info("table %s: stopped at the row limit of %d rows", table.name, limit)
        except SourceError as exc:
            # Unreadable now is not the same as gone: what was stored for this table's rows stays.
            self.skipped.append(SkippedRecord(f"{ROW_PREFIX}{tkey}", f"rows of table {table.name} not read: {exc}"))
            for prefix in (f"{ROW_PREFIX}{tkey}:", f"{LINKS_PREFIX}{tkey}:"):
                for key, state in self.previous.items():
                    if key.startswith(prefix) and key not in self.yielded:
                        self.yielded.add(key)
                        if seen is not None and prefix.startswith(ROW_PREFIX):
                            seen.add(key[len(prefix) :])
                        yield unchanged(state, db.uri)
            self.pending = [p for p in self.pending if not p.key.startswith(f"{LINKS_PREFIX}{tkey}:")]

    def _links(self, db: DatabaseInfo, schema: str) -> list[SourceRecord]:
        out = []
        for pending in self.pending:
            if pending.key in self.yielded:
                continue
            links = [
                [fk.name, list(fk.columns), list(fk.ref_columns), f"{table_key(schema, ref)}:{target}"]
                for fk, ref, target in pending.targets
                if target in self.seen_keys.get(ref, ())
            ]
            if not links:
                continue
            digest = _digest({**self.settings, "row": pending.row, "links": links})
            out.append(self._emit(pending.key, "links", {"row": pending.row, "links": links}, digest, db.uri))
        return out


async def relational_records(
    reader: RelationalReader,
    options: RelationalOptions,
    namespace: str,
    previous: Mapping[str, SourceItemState],
    skipped: list[SkippedRecord],
) -> AsyncIterator[SourceRecord]:
    """Every record of a relational source, in an order that writes relation endpoints first.

    Rows are read a page at a time in key order; what stays in memory between pages is the key
    of each row (to resolve foreign keys once every table is read), never the rows themselves.
    A table whose rows cannot be read is reported in `skipped` and what was stored for it stays."""
    async for record in _TableWalk(reader, options, namespace, previous, skipped).records():
        yield record
