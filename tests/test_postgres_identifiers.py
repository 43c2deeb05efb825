"""Table, column and type names holding `%`, `%s`, `%(x)s`, quotes and spaces, against a real
PostgreSQL: every tool of the postgres connector, the connector's own ingest, and the ingest
through `@modelcontextprotocol/server-postgres`.

psycopg reads `%` in a statement with parameters as placeholder syntax, inside quoted identifiers
too; a name is data and must never change how values bind."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aesoperator as aesop
from aesoperator.connectors.postgres import Filter, GroupBy, Metric, OrderBy, PostgresSource
from aesoperator.ingest.mappers.relational import RelationalIds
from aesoperator.ingest.sources import SourceDefinition
from tests.mcp_servers import npm_server_bin
from tests.postgres_support import PostgresServer

pytestmark = pytest.mark.timeout(300)

TABLE = 'ledger %s 50% "q" %(x)s'
KEY_TYPE = "key%s"  # a domain: its name comes back from the catalog into read_rows' cast
COLUMNS = ["id", "pct%", "fmt%s", "named%(x)s", 'say "hi"', "it's", "with space", "%%"]


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


SCHEMA_SQL = f"""
CREATE DOMAIN {quoted(KEY_TYPE)} AS integer;
CREATE TABLE {quoted(TABLE)} (
    id {quoted(KEY_TYPE)} PRIMARY KEY,
    {quoted("pct%")} text,
    {quoted("fmt%s")} text,
    {quoted("named%(x)s")} integer,
    {quoted('say "hi"')} text,
    {quoted("it's")} text,
    {quoted("with space")} text,
    {quoted("%%")} text
);
INSERT INTO {quoted(TABLE)} VALUES
    (1, 'ten percent', 'a', 10, 'hello', 'yes', 'one', 'g1'),
    (2, 'twenty percent', 'b', 20, 'hi', 'no', 'two', 'g1'),
    (3, 'thirty percent', 'c', 30, 'hey', 'maybe', 'three', 'g2');
"""


@pytest.fixture(scope="module")
def database(postgres_server: PostgresServer) -> tuple[PostgresServer, str]:
    name = postgres_server.create_database("pct")
    postgres_server.sql(SCHEMA_SQL, name)
    return postgres_server, name


@pytest.fixture
def source(database: tuple[PostgresServer, str]) -> Iterator[PostgresSource]:
    server, name = database
    pg = PostgresSource(dsn=server.url(name), allowed_tables=[TABLE], read_only=False)
    yield pg
    pg.close()


def test_every_connector_tool_takes_percent_signs_in_names(source: PostgresSource) -> None:
    described = source.describe()
    assert [c["name"] for c in described["tables"][0]["columns"]] == COLUMNS
    for column in COLUMNS[1:]:
        got = source.query(TABLE, filters=[Filter(column=column, op="is not null")], columns=["id", column])
        assert got["columns"] == ["id", column] and [r["id"] for r in got["rows"]] == [1, 2, 3]
    by_value = source.query(
        TABLE,
        filters=[Filter(column="fmt%s", op="in", value=["a", "c"]), Filter(column="named%(x)s", op=">", value=5)],
        order_by=[OrderBy(column="named%(x)s", direction="desc")],
    )
    assert [(r["id"], r["pct%"], r["%%"]) for r in by_value["rows"]] == [
        (3, "thirty percent", "g2"),
        (1, "ten percent", "g1"),
    ]
    totals = source.aggregate(
        TABLE, metrics=[Metric(fn="sum", column="named%(x)s"), Metric(fn="count")], group_by=[GroupBy(column="%%")]
    )
    assert totals["columns"] == ["%%", "sum_named%(x)s", "count"]
    assert totals["rows"] == [
        {"%%": "g1", "sum_named%(x)s": 30, "count": 2},
        {"%%": "g2", "sum_named%(x)s": 30, "count": 1},
    ]
    page = source.read_rows(TABLE, limit=2)
    assert [r["id"] for r in page["rows"]] == [1, 2] and page["next_after"] == {"id": 2}
    rest = source.read_rows(TABLE, after=page["next_after"], limit=2)
    assert [r["id"] for r in rest["rows"]] == [3]
    assert source.insert_rows(TABLE, [{"id": 4, "pct%": "forty", "fmt%s": "%s", "named%(x)s": 40}])["inserted"] == 1
    inserted = source.query(TABLE, filters=[Filter(column="id", op="=", value=4)])["rows"][0]
    assert (inserted["pct%"], inserted["fmt%s"], inserted["named%(x)s"]) == ("forty", "%s", 40)
    assert source.versions()[f"postgres://tables/{TABLE}"].startswith("4:")


def test_ingest_through_the_connector_process(
    database: tuple[PostgresServer, str], tmp_path: Path, make_engine: Callable[..., Any]
) -> None:
    server, name = database
    connector = aesop.MCPServer(
        name="ledger", connection_string=server.url(name), allowed_tables=[TABLE], data_dir=tmp_path / "d"
    )
    try:
        engine = make_engine()
        report = engine.ingest_source(connector.source_definition())
        assert not report.skipped
        check_rows(engine, "ledger")
    finally:
        connector.close()


def test_ingest_through_the_reference_postgres_server(
    database: tuple[PostgresServer, str], make_engine: Callable[..., Any]
) -> None:
    server, name = database
    command = npm_server_bin("@modelcontextprotocol/server-postgres")
    definition = SourceDefinition(
        name="ledger",
        kind="postgres",
        command=command[0],
        args=[*command[1:], server.reader_url(name)],
        options={"allowed_tables": [TABLE], "page_size": 2},
        timeout_seconds=30,
    )
    engine = make_engine()
    report = engine.ingest_source(definition)
    assert not report.skipped
    check_rows(engine, "ledger")


def check_rows(engine: Any, source: str) -> None:
    ids = RelationalIds(source)
    rows = {e.id: e for batch in engine.store.iter_entities(types=["Row"]) for e in batch}
    table_rows = [e for e in rows.values() if e.properties.get("table") == TABLE]
    keys = sorted(e.properties["primary_key"]["id"] for e in table_rows)
    assert keys[:3] == [1, 2, 3]
    first = rows[ids.row("public", TABLE, [1])]
    assert first.properties["values"] == {
        "id": 1,
        "pct%": "ten percent",
        "fmt%s": "a",
        "named%(x)s": 10,
        'say "hi"': "hello",
        "it's": "yes",
        "with space": "one",
        "%%": "g1",
    }
    table = engine.get_entities([ids.table("public", TABLE)])[0]
    assert table.properties["columns"] == COLUMNS, json.dumps(table.properties)
