"""PostgreSQL through an MCP server's SQL tool, as Database/Table/Column/Row entities.

Written for `@modelcontextprotocol/server-postgres` (its `query` tool takes `sql` and answers with
the rows as a JSON array); any server with a tool that runs one SQL statement and answers that way
fits (`query_tool`, `sql_argument`). The mapping is shared with SQLite (`mappers/relational.py`).

Options:
    allowed_tables:  required: the tables to read, by name, in `schema`. Nothing else is read: the
                     catalog queries themselves filter on these names, so other tables are never
                     named, described or read.
    schema:          the schema the tables live in (default "public")
    row_limit:       rows read per table, in primary key order (default 10000)
    page_size:       rows per query, paged by primary key (keyset, default 500)
    max_value_chars: longer text values are shortened in a row's properties (default 2000)
    query_tool / sql_argument: the SQL tool and its argument (default "query" / "sql")

Every statement is fixed text. Identifiers come from the catalog and are quoted; the few values a
statement carries (the allowed names, the key a page starts after) travel as hex digits decoded by
the server, so no character of theirs can end a literal. Rows are read as `row_to_json(...)::text`
so that numbers, timestamps and binary values arrive exactly as PostgreSQL writes them.

The server runs what it is sent inside a read-only transaction, which a crafted statement can end:
connect it with a role that can only read (for example one granted `pg_read_all_data`, or SELECT
on the allowed tables).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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

ROW_ALIAS = "aesop_row"
KEY_ALIAS = "aesop_key"


def quote_ident(name: str) -> str:
    """A catalog name as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def text_literal(value: str) -> str:
    """A text value as an expression made of hex digits only: nothing in it can end a literal."""
    return f"convert_from(decode('{value.encode('utf-8').hex()}', 'hex'), 'UTF8')"


def _text_array(values: Sequence[str]) -> str:
    return "ARRAY[" + ", ".join(text_literal(v) for v in values) + "]::text[]"


def _number(text: str) -> float | str:
    """A JSON number with a fraction or exponent: a float when that keeps it exactly, else its text."""
    value = float(text)
    return value if math.isfinite(value) and repr(value) == text else text


def parse_rows(text: str) -> list[dict[str, Any]]:
    data = json.loads(text, parse_float=_number)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError("expected a JSON array of row objects")
    return data


def database_uri(definition: SourceDefinition) -> str | None:
    """The connection URL the server was given, without credentials or options."""
    for arg in definition.args:
        if arg.startswith(("postgres://", "postgresql://")):
            parts = urlsplit(arg)
            host = parts.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            netloc = host + (f":{parts.port}" if parts.port else "")
            return urlunsplit(("postgresql", netloc, parts.path, "", ""))
    return None


class PostgresReader:
    """The catalog and row queries, sent through the server's SQL tool."""

    def __init__(self, conn: McpConnection, definition: SourceDefinition, schema: str) -> None:
        self.conn = conn
        self.source = definition.name
        self.schema = schema
        self.tool = str(definition.options.get("query_tool", "query"))
        self.argument = str(definition.options.get("sql_argument", "sql"))
        self.uri = database_uri(definition)

    async def query(self, sql: str) -> list[dict[str, Any]]:
        result = await self.conn.call_tool(self.tool, {self.argument: sql})
        try:
            return parse_rows(result.text)
        except ValueError as exc:
            raise SourceError(
                f"source {self.source!r}: the {self.tool} tool did not answer with rows ({exc}): {result.text[:200]!r}"
            ) from None

    def _in_schema(self, table_alias: str = "c", ns_alias: str = "n") -> str:
        return f"{ns_alias}.nspname = {text_literal(self.schema)} AND {table_alias}.relkind IN ('r', 'p')"

    async def database(self) -> DatabaseInfo:
        rows = await self.query("SELECT current_database() AS name, current_setting('server_version') AS version")
        name, version = str(rows[0]["name"]), str(rows[0]["version"])
        uri = self.uri or f"postgresql:///{name}"
        return DatabaseInfo(name=name, dialect="PostgreSQL", version=version, uri=uri, default_schema="public")

    async def tables(self, allowed: Sequence[str]) -> list[TableInfo]:
        names = _text_array(allowed)
        tables = await self.query(
            "SELECT c.relname::text AS name, pg_catalog.obj_description(c.oid, 'pg_class') AS comment "
            "FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace "
            f"WHERE {self._in_schema()} AND c.relname::text = ANY ({names}) ORDER BY 1"
        )
        if not tables:
            return []
        columns = await self.query(
            "SELECT c.relname::text AS table_name, a.attnum AS position, a.attname::text AS name, "
            "pg_catalog.format_type(a.atttypid, a.atttypmod) AS data_type, a.attnotnull AS not_null, "
            "pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS default_value, "
            "pg_catalog.col_description(c.oid, a.attnum) AS comment "
            "FROM pg_catalog.pg_attribute AS a "
            "JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            f"WHERE a.attnum > 0 AND NOT a.attisdropped AND {self._in_schema()} "
            f"AND c.relname::text = ANY ({names}) ORDER BY 1, 2"
        )
        keys = await self.query(
            "SELECT c.relname::text AS table_name, a.attname::text AS name, k.ord AS ord "
            "FROM pg_catalog.pg_constraint AS con "
            "JOIN pg_catalog.pg_class AS c ON c.oid = con.conrelid "
            "JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace "
            "CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = k.attnum "
            f"WHERE con.contype = 'p' AND {self._in_schema()} AND c.relname::text = ANY ({names}) ORDER BY 1, 3"
        )
        cols: dict[str, list[ColumnInfo]] = {}
        for r in columns:
            cols.setdefault(r["table_name"], []).append(
                ColumnInfo(
                    name=r["name"],
                    data_type=r["data_type"],
                    nullable=not r["not_null"],
                    default=r["default_value"],
                    position=int(r["position"]),
                    comment=r["comment"],
                )
            )
        pks: dict[str, list[str]] = {}
        for r in keys:
            pks.setdefault(r["table_name"], []).append(r["name"])
        out = []
        for t in tables:
            pk = tuple(pks.get(t["name"], ()))
            out.append(
                TableInfo(
                    schema=self.schema,
                    name=t["name"],
                    columns=tuple(cols.get(t["name"], ())),
                    primary_key=pk,
                    key_columns=pk,
                    comment=t["comment"],
                )
            )
        return out

    async def foreign_keys(self, tables: Sequence[TableInfo]) -> list[ForeignKeyInfo]:
        names = _text_array([t.name for t in tables])
        rows = await self.query(
            "SELECT con.conname::text AS name, c.relname::text AS table_name, fc.relname::text AS ref_table, "
            "a.attname::text AS column_name, fa.attname::text AS ref_column, k.ord AS ord "
            "FROM pg_catalog.pg_constraint AS con "
            "JOIN pg_catalog.pg_class AS c ON c.oid = con.conrelid "
            "JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace "
            "JOIN pg_catalog.pg_class AS fc ON fc.oid = con.confrelid "
            "JOIN pg_catalog.pg_namespace AS fn ON fn.oid = fc.relnamespace "
            "CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(attnum, fattnum, ord) "
            "JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = k.attnum "
            "JOIN pg_catalog.pg_attribute AS fa ON fa.attrelid = fc.oid AND fa.attnum = k.fattnum "
            f"WHERE con.contype = 'f' AND {self._in_schema()} AND {self._in_schema('fc', 'fn')} "
            f"AND c.relname::text = ANY ({names}) AND fc.relname::text = ANY ({names}) "
            "ORDER BY 2, 1, 6"
        )
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            grouped.setdefault((r["table_name"], r["name"]), []).append(r)
        return [
            ForeignKeyInfo(
                name=name,
                table=table,
                columns=tuple(p["column_name"] for p in parts),
                ref_table=parts[0]["ref_table"],
                ref_columns=tuple(p["ref_column"] for p in parts),
            )
            for (table, name), parts in grouped.items()
        ]

    async def rows(self, table: TableInfo, after: Any, limit: int) -> RowPage:
        relation = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
        key = [f"{ROW_ALIAS}.{quote_ident(c)}" for c in table.key_columns]
        sql = f"SELECT row_to_json({ROW_ALIAS}.*)::text AS r FROM {relation} AS {ROW_ALIAS}"
        if after is not None:
            types = {c.name: c.data_type for c in table.columns}
            definition = ", ".join(f"{quote_ident(c)} {types[c]}" for c in table.key_columns)
            picked = ", ".join(f"{KEY_ALIAS}.{quote_ident(c)}" for c in table.key_columns)
            sql += (
                f" WHERE ({', '.join(key)}) > (SELECT {picked} FROM json_to_record({text_literal(after)}::json) "
                f"AS {KEY_ALIAS}({definition}))"
            )
        sql += f" ORDER BY {', '.join(key)} LIMIT {int(limit)}"
        rows = []
        for r in await self.query(sql):
            values = json.loads(r["r"], parse_float=_number)
            rows.append({c.name: values.get(c.name) for c in table.columns})
        cursor = None
        if rows:
            last = rows[-1]
            cursor = json.dumps({c: last[c] for c in table.key_columns}, ensure_ascii=False)
        return RowPage(rows=rows, cursor=cursor)


class PostgresAdapter:
    kind = "postgres"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        self.options = RelationalOptions.parse(definition.name, definition.options)
        self.schema = str(definition.options.get("schema", "public"))
        self.mapper = RelationalMapper(definition.name, definition.namespace, self.options.max_value_chars)
        self.skipped: list[SkippedRecord] = []

    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        reader = PostgresReader(conn, self.definition, self.schema)
        async for record in relational_records(reader, self.options, self.definition.namespace, previous, self.skipped):
            yield record
