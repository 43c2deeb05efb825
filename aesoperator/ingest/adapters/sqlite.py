"""SQLite through an MCP server's read-only query tool, as Database/Table/Column/Row entities.

Written for `mcp-server-sqlite` (PyPI; started as `mcp-server-sqlite --db-path FILE`), whose
`read_query` tool runs one SELECT and answers with the rows printed as a Python list of dicts
(errors come back as ordinary text starting with "Error:" or "Database error:"); a server that
answers with a JSON array of row objects fits too. The mapping is the PostgreSQL one
(`mappers/relational.py`): the catalog comes from `sqlite_master`, `pragma_table_info` and
`pragma_foreign_key_list`, rows are read in primary key order (rowid order for a table without
one), a page at a time, continuing after the last key read (keyset paging).

Options: `allowed_tables` (required; the names as the database spells them), `row_limit`,
`page_size`, `max_value_chars` as for PostgreSQL, and `query_tool` / `query_argument` (default
"read_query" / "query"). Only the allowed tables are ever named in a query. Identifiers come from
the catalog and are quoted; literal values are SQL string literals with quotes doubled (the only
escape SQLite has), or hex blobs.

A table's CREATE statement is read only to tell a WITHOUT ROWID table; it is not kept, since it
may name tables that are not allowed (in REFERENCES clauses).

Values: integers, reals and text as they are; a blob as `\\x` followed by its hex digits (as
PostgreSQL writes bytea); an infinite real as "Infinity"/"-Infinity".
"""

from __future__ import annotations

import ast
import json
import math
import posixpath
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.errors import SourceError
from aesoperator.ingest.adapters.base import McpConnection
from aesoperator.ingest.mappers.relational import (
    ColumnInfo,
    DatabaseInfo,
    ForeignKeyInfo,
    RelationalMapper,
    RelationalOptions,
    RowPage,
    TableInfo,
    relational_records,
)
from aesoperator.ingest.records import SkippedRecord, SourceRecord
from aesoperator.ingest.sources import SourceDefinition

SCHEMA = "main"
ROWID_NAMES = ("rowid", "_rowid_", "oid")
KEY_ALIAS = "aesop_rowid"
_ERROR_PREFIXES = ("Error:", "Database error:")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A value as an SQLite literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NULL"
        if math.isinf(value):
            return "9e999" if value > 0 else "-9e999"
        return repr(value)
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    text = str(value)
    if "\x00" in text:
        return f"CAST(X'{text.encode('utf-8').hex()}' AS TEXT)"
    return "'" + text.replace("'", "''") + "'"


def _in_list(values: Sequence[str]) -> str:
    return "(" + ", ".join(literal(v) for v in values) + ")"


# -- reading the server's answer -------------------------------------------------------------------
_NAMED_FLOATS = {"inf": math.inf, "nan": math.nan}


def _literal_node(node: ast.AST) -> Any:
    """Python literal syntax to values, plus the `inf` and `nan` that repr() prints for floats.
    Only literals are accepted; nothing is evaluated."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes | int | float | bool | type(None)):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal_node(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("unexpected ** in a result")
        return {
            _literal_node(k): _literal_node(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None
        }
    if isinstance(node, ast.Name) and node.id in _NAMED_FLOATS:
        return _NAMED_FLOATS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal_node(node.operand)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise ValueError(f"unexpected {type(node).__name__} in a result")


def parse_rows(text: str) -> list[dict[str, Any]]:
    """The rows of a result printed as JSON or as a Python list of dicts."""
    stripped = text.strip()
    try:
        data: Any = json.loads(stripped)
    except ValueError:
        data = _literal_node(ast.parse(stripped, mode="eval").body)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError("expected a list of rows")
    return data


def json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


class SqliteReader:
    def __init__(self, conn: McpConnection, definition: SourceDefinition) -> None:
        self.conn = conn
        self.source = definition.name
        self.tool = str(definition.options.get("query_tool", "read_query"))
        self.argument = str(definition.options.get("query_argument", "query"))

    async def query(self, sql: str) -> list[dict[str, Any]]:
        result = await self.conn.call_tool(self.tool, {self.argument: sql})
        text = result.text.strip()
        if text.startswith(_ERROR_PREFIXES):
            raise SourceError(f"source {self.source!r}: {self.tool} failed: {text[:500]}")
        try:
            return parse_rows(text)
        except (ValueError, SyntaxError, RecursionError) as exc:
            raise SourceError(
                f"source {self.source!r}: the {self.tool} tool did not answer with rows ({exc}): {text[:200]!r}"
            ) from None

    async def database(self) -> DatabaseInfo:
        rows = await self.query(
            "SELECT (SELECT file FROM pragma_database_list WHERE name = 'main') AS file, sqlite_version() AS version"
        )
        path = str(rows[0].get("file") or "")
        name = posixpath.basename(path.replace("\\", "/")) or "main"
        uri = f"sqlite://{path}" if path.startswith("/") else f"sqlite:///{path or name}"
        return DatabaseInfo(
            name=name, dialect="SQLite", version=str(rows[0]["version"]), uri=uri, default_schema=SCHEMA
        )

    async def tables(self, allowed: Sequence[str]) -> list[TableInfo]:
        names = _in_list(allowed)
        tables = await self.query(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN {names} ORDER BY name"
        )
        if not tables:
            return []
        columns = await self.query(
            'SELECT m.name AS table_name, p.cid AS cid, p.name AS name, p.type AS type, p."notnull" AS not_null, '
            "p.dflt_value AS default_value, p.pk AS pk "
            "FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p "
            f"WHERE m.type = 'table' AND m.name IN {names} ORDER BY m.name, p.cid"
        )
        cols: dict[str, list[dict[str, Any]]] = {}
        for c in columns:
            cols.setdefault(c["table_name"], []).append(c)
        out = []
        for t in tables:
            info = cols.get(t["name"], [])
            pk = tuple(c["name"] for c in sorted((c for c in info if c["pk"]), key=lambda c: int(c["pk"])))
            names_here = {c["name"].lower() for c in info}
            without_rowid = bool(re.search(r"\bWITHOUT\s+ROWID\b", t.get("sql") or "", re.IGNORECASE))
            key: tuple[str, ...] = pk
            if not key and not without_rowid:
                key = next(((n,) for n in ROWID_NAMES if n not in names_here), ())
            out.append(
                TableInfo(
                    schema=SCHEMA,
                    name=t["name"],
                    columns=tuple(
                        ColumnInfo(
                            name=c["name"],
                            data_type=c["type"] or "",
                            nullable=not c["not_null"] and c["name"] not in pk,
                            default=None if c["default_value"] is None else str(c["default_value"]),
                            position=int(c["cid"]) + 1,
                        )
                        for c in info
                    ),
                    primary_key=pk,
                    key_columns=key,
                )
            )
        return out

    async def foreign_keys(self, tables: Sequence[TableInfo]) -> list[ForeignKeyInfo]:
        names = _in_list([t.name for t in tables])
        rows = await self.query(
            'SELECT m.name AS table_name, f.id AS id, f.seq AS seq, f."table" AS ref_table, f."from" AS column_name, '
            'f."to" AS ref_column FROM sqlite_master AS m JOIN pragma_foreign_key_list(m.name) AS f '
            f"WHERE m.type = 'table' AND m.name IN {names} AND f.\"table\" COLLATE NOCASE IN {names} "
            "ORDER BY m.name, f.id, f.seq"
        )
        by_lower = {t.name.lower(): t for t in tables}  # SQLite matches table names without case
        grouped: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for r in rows:
            grouped.setdefault((r["table_name"], int(r["id"])), []).append(r)
        out = []
        for (table, _), parts in grouped.items():
            ref = by_lower.get(str(parts[0]["ref_table"]).lower())
            if ref is None:
                continue
            columns = tuple(p["column_name"] for p in parts)
            ref_columns = tuple(p["ref_column"] for p in parts)
            if any(c is None for c in ref_columns):  # REFERENCES t without columns: its primary key
                ref_columns = ref.primary_key
            if len(ref_columns) != len(columns):
                continue
            out.append(
                ForeignKeyInfo(
                    name=f"fk_{table}_{'_'.join(columns)}",
                    table=table,
                    columns=columns,
                    ref_table=ref.name,
                    ref_columns=tuple(ref_columns),
                )
            )
        return out

    async def rows(self, table: TableInfo, after: Any, limit: int) -> RowPage:
        rowid = not table.primary_key  # keyed by the rowid, which is no column
        key_exprs = [quote_ident(c) for c in table.key_columns]
        select = [f"{quote_ident(table.key_columns[0])} AS {quote_ident(KEY_ALIAS)}"] if rowid else []
        select += [quote_ident(c.name) for c in table.columns]
        sql = f"SELECT {', '.join(select)} FROM {quote_ident(table.name)}"
        if after is not None:
            sql += f" WHERE ({', '.join(key_exprs)}) > ({', '.join(literal(v) for v in after)})"
        sql += f" ORDER BY {', '.join(key_exprs)} LIMIT {int(limit)}"
        rows: list[dict[str, Any]] = []
        keys: list[dict[str, Any]] = []
        last: list[Any] = []
        for raw in await self.query(sql):
            values = {c.name: json_safe(raw.get(c.name)) for c in table.columns}
            if rowid:
                keys.append({table.key_columns[0]: raw[KEY_ALIAS]})
                last = [raw[KEY_ALIAS]]
            else:
                last = [raw.get(c) for c in table.key_columns]
            rows.append(values)
        return RowPage(rows=rows, cursor=last if rows else None, key_values=keys if rowid else None)


class SqliteAdapter:
    kind = "sqlite"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        self.options = RelationalOptions.parse(definition.name, definition.options)
        self.mapper = RelationalMapper(definition.name, definition.namespace, self.options.max_value_chars)
        self.skipped: list[SkippedRecord] = []

    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        reader = SqliteReader(conn, self.definition)
        async for record in relational_records(reader, self.options, self.definition.namespace, previous, self.skipped):
            yield record
