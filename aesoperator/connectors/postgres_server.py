"""The postgres connector as an MCP server: its tools and resources over a `PostgresSource`
(the rules and the SQL are in `postgres.py`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import anyio.to_thread
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import ToolAnnotations
from pydantic import Field

from aesoperator.connectors.base import ConnectorPolicy, ConnectorServer
from aesoperator.connectors.postgres import TABLE_URI_TEMPLATE, TABLES_URI, PostgresSource
from aesoperator.connectors.postgres_models import Filters, GroupBy, Metric, OrderBy
from aesoperator.errors import PermissionDenied, SchemaError
from aesoperator.security.envelope import report_count

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

INSTRUCTIONS = """\
A PostgreSQL database, limited to its allowed tables. Call `describe_tables` first; then `query` for
rows (filters, columns, order, limit), `aggregate` for counts/sums/averages grouped by columns or
dates, `read_rows` to page through a table in primary key order. No SQL is accepted.
"""


def build_server(source: PostgresSource, policy: ConnectorPolicy) -> ConnectorServer:
    """The MCP server for `source` under `policy`."""

    async def versions() -> Mapping[str, str]:
        return await anyio.to_thread.run_sync(source.versions)

    server = ConnectorServer(policy, instructions=INSTRUCTIONS, versions=versions, title="PostgreSQL connector")
    server.on_close.append(source.close)

    async def off_thread(fn: Callable[[], dict[str, Any]], count_key: str | None = "row_count") -> dict[str, Any]:
        result = await anyio.to_thread.run_sync(fn)
        if count_key is not None:
            report_count(int(result.get(count_key) or 0))
        return result

    @server.tool(annotations=READ_ONLY)
    async def describe_tables() -> dict[str, Any]:
        """The allowed tables: columns (name, type, nullable, default), primary and foreign keys,
        comments and estimated row counts, with the database's name and version."""
        result = await off_thread(source.describe, None)
        report_count(len(result["tables"]))
        return result

    @server.tool(annotations=READ_ONLY)
    async def query(
        table: Annotated[str, Field(max_length=200, description="An allowed table.")],
        columns: Annotated[list[str] | None, Field(description="Columns to return (default: all).")] = None,
        filters: Filters = None,
        order_by: list[OrderBy] | None = None,
        limit: Annotated[int | None, Field(ge=1, description="Rows to return (capped by the row limit).")] = None,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> dict[str, Any]:
        """Rows of an allowed table. Filters: {column: value} for equality (a list means IN), or
        [{column, op, value}] with op among =, !=, <, <=, >, >=, in, not in, like, ilike, between,
        is null, is not null."""
        return await off_thread(lambda: source.query(table, columns, filters, order_by, limit, offset))

    @server.tool(annotations=READ_ONLY)
    async def aggregate(
        table: Annotated[str, Field(max_length=200, description="An allowed table.")],
        metrics: list[Metric],
        group_by: list[GroupBy] | None = None,
        filters: Filters = None,
        limit: Annotated[int | None, Field(ge=1)] = None,
    ) -> dict[str, Any]:
        """Counts, distinct counts, sums, averages, minima and maxima, optionally grouped by columns
        or by dates truncated to minute/hour/day/week/month/quarter/year."""
        return await off_thread(lambda: source.aggregate(table, metrics, group_by or [], filters, limit))

    @server.tool(annotations=READ_ONLY)
    async def read_rows(
        table: Annotated[str, Field(max_length=200, description="An allowed table with a primary key.")],
        after: Annotated[
            dict[str, Any] | None, Field(description="Continue after this primary key (next_after of the last page).")
        ] = None,
        limit: Annotated[int | None, Field(ge=1)] = None,
    ) -> dict[str, Any]:
        """Every column of an allowed table, in primary key order, one page at a time."""
        return await off_thread(lambda: source.read_rows(table, after, limit))

    if not source.read_only:

        @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False))
        async def insert_rows(
            table: Annotated[str, Field(max_length=200, description="An allowed table.")],
            rows: list[dict[str, Any]],
        ) -> dict[str, Any]:
            """Insert rows (column -> value) into an allowed table."""
            return await off_thread(lambda: source.insert_rows(table, rows), "inserted")

    @server.resource(
        TABLES_URI,
        name="tables",
        title="Allowed tables",
        description="The schema of every allowed table, as JSON.",
        mime_type="application/json",
    )
    async def read_tables() -> str:
        return json.dumps(await anyio.to_thread.run_sync(source.describe), indent=2, default=str)

    @server.resource(
        TABLE_URI_TEMPLATE,
        name="table",
        title="Table schema",
        description="One allowed table's columns and keys, as JSON.",
        mime_type="application/json",
    )
    async def read_table(table: str) -> str:
        try:
            schema = await anyio.to_thread.run_sync(source.table, table)
        except (PermissionDenied, SchemaError):
            raise ResourceNotFoundError(f"no allowed table {table[:200]!r}") from None
        return json.dumps(schema.as_dict(), indent=2, default=str)

    return server
