"""PostgreSQL through aesoperator's own postgres connector (`aesoperator.connectors.postgres`).

That connector takes no SQL: it describes its allowed tables (`describe_tables`) and pages rows
in primary key order (`read_rows`). This adapter reads through those two tools and hands the
result to the relational mapper shared with the other database adapters, so the graph looks the
same (Database, Table, Column, Row entities; FOREIGN_KEY relations) whichever server it came from.

The connector decides what can be read: tables outside its allow-list are never described and
never read, whatever this side asks. `options.allowed_tables` (required, as for every database
source) may narrow the connector's list further; `row_limit`, `page_size` and `max_value_chars`
work as in `aesoperator.ingest.adapters.postgres`.
"""

from __future__ import annotations

import json
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


def _payload(result: Any, what: str, source: str) -> dict[str, Any]:
    data = result.structured
    if data is None:
        try:
            data = json.loads(result.text)
        except ValueError:
            data = None
    if isinstance(data, dict) and "result" in data and len(data) == 1 and isinstance(data["result"], dict):
        data = data["result"]
    if not isinstance(data, dict):
        raise SourceError(f"source {source!r}: {what} did not answer with an object: {result.text[:200]!r}")
    return data


class ConnectorReader:
    """`RelationalReader` over the connector's `describe_tables` and `read_rows` tools."""

    def __init__(self, conn: McpConnection, source: str) -> None:
        self.conn = conn
        self.source = source
        self._described: dict[str, Any] | None = None

    async def _describe(self) -> dict[str, Any]:
        if self._described is None:
            result = await self.conn.call_tool("describe_tables", {})
            self._described = _payload(result, "describe_tables", self.source)
        return self._described

    async def database(self) -> DatabaseInfo:
        d = (await self._describe()).get("database") or {}
        return DatabaseInfo(
            name=str(d.get("name") or "postgres"),
            dialect=str(d.get("dialect") or "PostgreSQL"),
            version=str(d.get("version") or ""),
            uri=str(d.get("uri") or f"postgresql:///{d.get('name') or ''}"),
            default_schema="public",
        )

    async def tables(self, allowed: Sequence[str]) -> list[TableInfo]:
        wanted = set(allowed)
        out = []
        for t in (await self._describe()).get("tables") or []:
            if t.get("name") not in wanted or t.get("kind") not in (None, "table"):
                continue
            pk = tuple(t.get("primary_key") or ())
            out.append(
                TableInfo(
                    schema=str(t.get("schema") or "public"),
                    name=str(t["name"]),
                    columns=tuple(
                        ColumnInfo(
                            name=c["name"],
                            data_type=c["data_type"],
                            nullable=bool(c.get("nullable", True)),
                            default=c.get("default"),
                            position=int(c.get("position") or 0),
                            comment=c.get("comment"),
                        )
                        for c in t.get("columns") or []
                    ),
                    primary_key=pk,
                    key_columns=pk,
                    comment=t.get("comment"),
                )
            )
        return sorted(out, key=lambda t: t.name)

    async def foreign_keys(self, tables: Sequence[TableInfo]) -> list[ForeignKeyInfo]:
        names = {t.name for t in tables}
        out = []
        for t in (await self._describe()).get("tables") or []:
            if t.get("name") not in names:
                continue
            for fk in t.get("foreign_keys") or []:
                if fk.get("ref_table") in names:
                    out.append(
                        ForeignKeyInfo(
                            name=str(fk["name"]),
                            table=str(t["name"]),
                            columns=tuple(fk["columns"]),
                            ref_table=str(fk["ref_table"]),
                            ref_columns=tuple(fk["ref_columns"]),
                        )
                    )
        return out

    async def rows(self, table: TableInfo, after: Any, limit: int) -> RowPage:
        arguments: dict[str, Any] = {"table": table.name, "limit": int(limit)}
        if after is not None:
            arguments["after"] = json.loads(after)
        data = _payload(await self.conn.call_tool("read_rows", arguments), "read_rows", self.source)
        rows = [{c.name: r.get(c.name) for c in table.columns} for r in data.get("rows") or []]
        nxt = data.get("next_after")
        cursor = json.dumps(nxt, ensure_ascii=False) if nxt else None
        if rows and cursor is None and len(rows) >= limit:
            cursor = json.dumps({c: rows[-1][c] for c in table.key_columns}, ensure_ascii=False)
        return RowPage(rows=rows, cursor=cursor)


class PostgresConnectorAdapter:
    kind = "aesop_postgres"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        self.options = RelationalOptions.parse(definition.name, definition.options)
        self.mapper = RelationalMapper(definition.name, definition.namespace, self.options.max_value_chars)
        self.skipped: list[SkippedRecord] = []

    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        reader = ConnectorReader(conn, self.definition.name)
        async for record in relational_records(reader, self.options, self.definition.namespace, previous, self.skipped):
            yield record
