"""The PostgreSQL adapter against a real PostgreSQL (tests/postgres_support.py) read through the
real `@modelcontextprotocol/server-postgres` from npm.

The database holds two related tables that are allowed and one that is not, with a secret value;
the graph is checked entity by entity against the database, the disallowed table is shown to be
absent everywhere (graph, search, and every statement the server received), and a changed,
inserted and deleted row are shown to be the only changes a re-ingest applies."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anyio
import pytest

from aesoperator.errors import ConfigError, SourceError
from aesoperator.graph_schema.ids import relation_id
from aesoperator.graph_schema.models import Entity, Relation
from aesoperator.ingest.adapters.kinds import make_adapter
from aesoperator.ingest.client import open_connection
from aesoperator.ingest.mappers.relational import RelationalIds
from aesoperator.ingest.mcp_ingest import ingest_source
from aesoperator.ingest.sources import SourceDefinition
from tests.mcp_servers import npm_server_bin
from tests.postgres_support import PostgresServer

SERVER = "@modelcontextprotocol/server-postgres"
SECRET = "TOPSECRET-7f3a9c1e"
SECRET_TABLE = "payroll_secrets"

SCHEMA_SQL = f"""
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    city text,
    referred_by integer REFERENCES customers (id)
);
CREATE TABLE {SECRET_TABLE} (id integer PRIMARY KEY, holder text NOT NULL, secret text NOT NULL);
CREATE TABLE orders (
    id integer PRIMARY KEY,
    customer_id integer REFERENCES customers (id),
    item text NOT NULL,
    quantity integer NOT NULL,
    price numeric(10, 2),
    placed_at timestamptz,
    audit_id integer REFERENCES {SECRET_TABLE} (id)
);
COMMENT ON TABLE orders IS 'What customers bought';
INSERT INTO {SECRET_TABLE} VALUES (1, 'Grace Hopper', '{SECRET}');
INSERT INTO customers VALUES
    (1, 'Ada Lovelace', 'London', NULL),
    (2, 'Alan Turing', 'Manchester', 1),
    (3, 'Grace Hopper', 'Arlington', 2);
UPDATE customers SET referred_by = 3 WHERE id = 1;  -- a reference to a row read later
INSERT INTO orders VALUES
    (1, 1, 'brass telescope', 1, 249.99, '2024-03-01 10:00:00.123456+00', 1),
    (2, 1, 'analytical engine punch cards', 500, 0.05, '2024-03-02 11:30:00+00', NULL),
    (3, 2, 'enigma rotor', 3, 80.00, NULL, NULL),
    (4, 3, 'compiler manual', 2, 19.50, '2024-03-04 09:15:00+00', 1),
    (5, NULL, 'gift card', 1, 25.00, NULL, NULL);
"""
ALLOWED = ["customers", "orders"]


# -- helpers (shared with the SQLite test) ---------------------------------------------------------
def all_entities(engine: Any, source: str) -> list[Entity]:
    return [e for batch in engine.store.iter_entities() for e in batch if e.source == source]


def all_relations(engine: Any, source: str) -> list[Relation]:
    return [r for batch in engine.store.iter_relations() for r in batch if r.source == source]


def live(relations: list[Relation]) -> list[Relation]:
    return [r for r in relations if r.expired_at is None]


def expected_value_text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def same_value(stored: Any, expected: Any) -> bool:
    """A stored value equals the database's: numbers compared exactly, whatever their JSON form."""
    if isinstance(expected, Decimal):
        return not isinstance(stored, bool) and Decimal(str(stored)) == expected
    return bool(stored == expected)


def check_rows(
    engine: Any, ids: RelationalIds, schema: str, table: str, key: str, rows: list[dict[str, Any]]
) -> dict[Any, Entity]:
    """Every database row is a Row entity with the right id, text and values, and no other is."""
    entities = {e.id: e for batch in engine.store.iter_entities(types=["Row"]) for e in batch}
    mine = {i: e for i, e in entities.items() if e.properties.get("table") == table}
    assert set(mine) == {ids.row(schema, table, [r[key]]) for r in rows}
    by_pk = {}
    for r in rows:
        entity = mine[ids.row(schema, table, [r[key]])]
        assert entity.name == f"{table}({key}={r[key]})"
        assert entity.text == f"{table}: " + ", ".join(f"{c}={expected_value_text(v)}" for c, v in r.items())
        values = entity.properties["values"]
        assert set(values) == set(r)
        assert all(same_value(values[c], v) for c, v in r.items()), (values, r)
        assert entity.properties["primary_key"] == {key: r[key]}
        by_pk[r[key]] = entity
    return by_pk


def assert_nowhere(engine: Any, source: str, *needles: str) -> None:
    """No entity or relation of the store (of any source) mentions any needle."""
    for batch in engine.store.iter_entities():
        for e in batch:
            blob = json.dumps([e.id, e.name, e.text, e.properties, e.provenance.uri if e.provenance else ""])
            for needle in needles:
                assert needle not in blob, f"{needle!r} found in entity {e.id}"
    for batch in engine.store.iter_relations():
        for r in batch:
            blob = json.dumps([r.id, r.src, r.dst, r.properties])
            for needle in needles:
                assert needle not in blob, f"{needle!r} found in relation {r.id}"
    for needle in needles:
        assert engine.store.keyword_search(needle, 10) == []
        for hit in engine.search(needle, k=10).hits:
            assert needle not in hit.text and needle not in json.dumps(hit.properties)


# -- PostgreSQL helpers ----------------------------------------------------------------------------
def db_rows(server: PostgresServer, database: str, table: str) -> list[dict[str, Any]]:
    """The table's rows as PostgreSQL renders them in JSON, numbers as exact Decimals."""
    out = server.sql(f"SELECT row_to_json(t.*)::text FROM {table} AS t ORDER BY id", database)
    return [json.loads(line, parse_float=Decimal) for line in out.splitlines() if line]


def db_columns(server: PostgresServer, database: str, table: str) -> list[tuple[str, str]]:
    out = server.sql(
        "SELECT a.attname || '|' || format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        f"WHERE a.attrelid = '{table}'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        database,
    )
    return [tuple(line.split("|", 1)) for line in out.splitlines()]  # type: ignore[misc]


def definition(server: PostgresServer, database: str, name: str = "shop", **options: Any) -> SourceDefinition:
    command = npm_server_bin(SERVER)
    return SourceDefinition(
        name=name,
        kind="postgres",
        command=command[0],
        args=[*command[1:], server.reader_url(database)],
        options={"allowed_tables": ALLOWED, "page_size": 2, **options},
        timeout_seconds=30,
    )


# -- tests -----------------------------------------------------------------------------------------
def test_postgres_tables_rows_and_keys_become_the_graph_and_only_changes_are_reapplied(
    postgres_server: PostgresServer, make_engine: Callable[..., Any]
) -> None:
    server = postgres_server
    database = server.create_database("shop")
    server.sql(SCHEMA_SQL, database)
    engine = make_engine()
    source = definition(server, database)
    ids = RelationalIds("shop")

    log_start = server.log_position()
    report = ingest_source(engine, source)
    statements = server.statements_since(log_start)
    assert not report.skipped and report.quarantined == 0

    # -- the schema, entity by entity
    db_entity = engine.get_entities([ids.database(database)])[0]
    assert db_entity.type == "Database" and db_entity.properties["tables"] == ALLOWED
    assert db_entity.properties["dialect"] == "PostgreSQL"
    for table in ALLOWED:
        columns = db_columns(server, database, table)
        entity = engine.get_entities([ids.table("public", table)])[0]
        assert entity.type == "Table" and entity.name == table
        assert entity.properties["columns"] == [c for c, _ in columns]
        assert entity.properties["primary_key"] == ["id"]
        for column, data_type in columns:
            col = engine.get_entities([ids.column("public", table, column)])[0]
            assert col.type == "Column" and col.properties["data_type"] == data_type
    orders_table = engine.get_entities([ids.table("public", "orders")])[0]
    assert "What customers bought" in orders_table.text
    assert [fk["ref_table"] for fk in orders_table.properties["foreign_keys"]] == ["customers"]

    # -- the rows, entity by entity, with exact values
    customers = db_rows(server, database, "customers")
    orders = db_rows(server, database, "orders")
    check_rows(engine, ids, "public", "customers", "id", customers)
    check_rows(engine, ids, "public", "orders", "id", orders)
    assert engine.get_entities([ids.row("public", "orders", [1])])[0].properties["values"]["placed_at"] == (
        "2024-03-01T10:00:00.123456+00:00"  # microseconds kept
    )

    # -- relations: structure, row-to-row foreign keys (a forward self-reference too), table keys
    rels = live(all_relations(engine, "shop"))
    pairs = {(r.type, r.src, r.dst) for r in rels}
    for table, rows in (("customers", customers), ("orders", orders)):
        for r in rows:
            assert ("HAS_ROW", ids.table("public", table), ids.row("public", table, [r["id"]])) in pairs
    expected_fk_rows = {
        (ids.row("public", "orders", [o["id"]]), ids.row("public", "customers", [o["customer_id"]]))
        for o in orders
        if o["customer_id"] is not None
    } | {
        (ids.row("public", "customers", [c["id"]]), ids.row("public", "customers", [c["referred_by"]]))
        for c in customers
        if c["referred_by"] is not None
    }
    row_fks = {(s, d) for t, s, d in pairs if t == "FOREIGN_KEY" and ":row:" in s}
    assert row_fks == expected_fk_rows
    table_fks = {(s, d) for t, s, d in pairs if t == "FOREIGN_KEY" and ":table:" in s}
    assert table_fks == {
        (ids.table("public", "orders"), ids.table("public", "customers")),
        (ids.table("public", "customers"), ids.table("public", "customers")),
    }
    assert sum(1 for t, _, _ in pairs if t == "HAS_COLUMN") == 4 + 7

    # -- the disallowed table: not in the graph, not findable, never named to the server
    assert_nowhere(engine, "shop", SECRET, SECRET_TABLE)
    assert SECRET_TABLE not in statements and SECRET not in statements
    assert SECRET_TABLE.encode().hex() not in statements  # not even as the hex the adapter sends names in
    assert "row_to_json" in statements and "LIMIT 2" in statements  # the rows were paged

    # -- search finds rows by meaning and by value
    hits = engine.search("who bought the brass telescope?", k=5).hits
    assert ids.row("public", "orders", [1]) in [h.id for h in hits[:3]]
    hits = engine.search("Alan Turing Manchester", k=5).hits
    assert hits[0].id == ids.row("public", "customers", [2])

    # -- update one row, insert one, delete one (and touch the secret table): only those change
    seq = engine.store.last_seq()
    server.sql(
        "UPDATE orders SET quantity = 2 WHERE id = 1; "
        "INSERT INTO orders VALUES (6, 2, 'bombe drum', 4, 12.00, '2024-03-06 08:00:00+00', NULL); "
        "DELETE FROM orders WHERE id = 3; "
        f"UPDATE {SECRET_TABLE} SET holder = 'someone else'",
        database,
    )
    again = ingest_source(engine, source)
    row1, row3, row6 = (ids.row("public", "orders", [i]) for i in (1, 3, 6))
    changes = engine.store.changes_since(seq)
    assert {(c.id, c.op) for c in changes if c.kind == "entity"} == {
        (row1, "upsert"),
        (row6, "upsert"),
        (row3, "delete"),
    }
    assert {(c.id, c.op) for c in changes if c.kind == "vector"} == {
        (row1, "upsert"),
        (row6, "upsert"),
        (row3, "delete"),
    }
    orders_id, cust2 = ids.table("public", "orders"), ids.row("public", "customers", [2])
    assert {c.id for c in changes if c.kind == "relation"} == {
        relation_id("HAS_ROW", orders_id, row6),
        relation_id("FOREIGN_KEY", row6, cust2, "orders_customer_id_fkey"),
        relation_id("HAS_ROW", orders_id, row3),
        relation_id("FOREIGN_KEY", row3, cust2, "orders_customer_id_fkey"),
    }
    assert again.records_changed == 4  # row 1, row 6, row 6's links, row 3's links (expired)
    assert again.records_removed == 1 and again.texts_embedded == 2
    assert engine.get_entities([row3]) == []
    assert "quantity=2" in engine.get_entities([row1])[0].text
    check_rows(engine, ids, "public", "orders", "id", db_rows(server, database, "orders"))
    assert (row6, cust2) in {(r.src, r.dst) for r in live(all_relations(engine, "shop")) if r.type == "FOREIGN_KEY"}
    assert not any(r.src == row3 or r.dst == row3 for r in all_relations(engine, "shop"))
    assert_nowhere(engine, "shop", SECRET, SECRET_TABLE, "someone else")

    # -- nothing changed: nothing is written
    seq = engine.store.last_seq()
    third = ingest_source(engine, source)
    assert third.records_changed == 0 and engine.store.changes_since(seq) == []


def test_postgres_row_limit_tables_without_key_and_awkward_names(
    postgres_server: PostgresServer, make_engine: Callable[..., Any]
) -> None:
    server = postgres_server
    database = server.create_database("odd")
    awkward = "odd \"name'; DROP TABLE customers; --"
    quoted = '"' + awkward.replace('"', '""') + '"'
    server.sql(
        SCHEMA_SQL
        + f"CREATE TABLE {quoted} (k text PRIMARY KEY, note text); "
        + f"INSERT INTO {quoted} VALUES ('a.b:c/d', 'x'), ('it''s', 'y'), ('zz', 'z'); "
        + "CREATE TABLE events (happened text); INSERT INTO events VALUES ('no key here');",
        database,
    )
    engine = make_engine()
    source = definition(server, database, name="odd", row_limit=2, allowed_tables=[*ALLOWED, awkward, "events", "nope"])
    report = ingest_source(engine, source)
    ids = RelationalIds("odd")

    rows = {e.id for batch in engine.store.iter_entities(types=["Row"]) for e in batch}
    assert rows == {ids.row("public", t, [k]) for t in ("customers", "orders") for k in (1, 2)} | {
        ids.row("public", awkward, [k]) for k in ("a.b:c/d", "it's")
    }
    # customer 1 refers to customer 3, which is past the row limit: no relation to a missing row
    fks = {(r.src, r.dst) for r in live(all_relations(engine, "odd")) if r.type == "FOREIGN_KEY" and ":row:" in r.src}
    assert fks == {
        (ids.row("public", "customers", [2]), ids.row("public", "customers", [1])),
        (ids.row("public", "orders", [1]), ids.row("public", "customers", [1])),
        (ids.row("public", "orders", [2]), ids.row("public", "customers", [1])),
    }
    assert [(s.key, s.reason) for s in report.skipped] == [
        ("row:public.events", "table events has no primary key, so its rows cannot be identified; they are not read")
    ]
    assert engine.get_entities([ids.table("public", "events")])[0].properties["columns"] == ["happened"]
    assert server.sql("SELECT count(*) FROM customers", database) == "3"  # the name was data, not SQL
    assert_nowhere(engine, "odd", SECRET, SECRET_TABLE)


def test_postgres_source_must_name_its_tables() -> None:
    cases: list[dict[str, Any]] = [{}, {"allowed_tables": []}, {"allowed_tables": "orders"}, {"allowed_tables": [""]}]
    for options in cases:
        bad = SourceDefinition(name="pg", kind="postgres", command="true", options=options)
        with pytest.raises(ConfigError, match="allowed_tables"):
            make_adapter(bad)
    with pytest.raises(ConfigError, match="row_limit"):
        make_adapter(
            SourceDefinition(
                name="pg", kind="postgres", command="true", options={"allowed_tables": ["a"], "row_limit": 0}
            )
        )


def test_postgres_reader_role_cannot_write_past_the_servers_read_only_transaction(
    postgres_server: PostgresServer,
) -> None:
    """server-postgres wraps each statement in a read-only transaction that the statement itself
    can end; the role it connects with is what keeps the database unchanged."""
    database = postgres_server.create_database("ro")
    postgres_server.sql("CREATE TABLE kept (id integer PRIMARY KEY); INSERT INTO kept VALUES (1)", database)
    source = definition(postgres_server, database, name="ro")

    async def attempt() -> None:
        async with open_connection(source) as conn:
            with pytest.raises(SourceError, match="read-only transaction"):
                await conn.call_tool("query", {"sql": "COMMIT; DELETE FROM kept"})

    anyio.run(attempt)
    assert postgres_server.sql("SELECT count(*) FROM kept", database) == "1"
