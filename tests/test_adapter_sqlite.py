"""The SQLite adapter against the real `mcp-server-sqlite` from PyPI, on a database file the test
writes with Python's sqlite3.

`mcp-server-sqlite` is written against the 1.x `mcp` SDK and does not start next to the 2.x SDK
this project uses, so, as MCP clients do with `uvx`, it is installed into its own virtualenv under
`<repo>/.cache/pypi-mcp` once (or taken from `$AESOP_SQLITE_MCP_SERVER`, a command path)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.graph_schema.ids import relation_id
from aesoperator.ingest.adapters.kinds import make_adapter
from aesoperator.ingest.adapters.sqlite import literal, parse_rows
from aesoperator.ingest.client import open_connection
from aesoperator.ingest.mappers.relational import RelationalIds
from aesoperator.ingest.mcp_ingest import ingest_source
from aesoperator.ingest.sources import SourceDefinition
from tests.test_adapter_postgres import all_relations, assert_nowhere, check_rows, live

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mcp-server-sqlite==2025.4.25"
SECRET = "TOPSECRET-2b9d55aa"
SECRET_TABLE = "payroll_secrets"
ALLOWED = ["customers", "orders"]

SCHEMA_SQL = f"""
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT,
    referred_by INTEGER REFERENCES Customers  -- no column list, other case: the primary key
);
CREATE TABLE {SECRET_TABLE} (id INTEGER PRIMARY KEY, holder TEXT NOT NULL, secret TEXT NOT NULL);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER REFERENCES customers (id),
    item TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    price REAL,
    receipt BLOB,
    audit_id INTEGER REFERENCES {SECRET_TABLE} (id)
);
CREATE TABLE notes (body TEXT);
INSERT INTO {SECRET_TABLE} VALUES (1, 'Grace Hopper', '{SECRET}');
INSERT INTO customers VALUES
    (1, 'Ada Lovelace', 'London', 3),
    (2, 'Alan Turing', 'Manchester', 1),
    (3, 'Grace Hopper', 'Arlington', 2);
INSERT INTO orders VALUES
    (1, 1, 'brass telescope', 1, 249.99, X'00ff10', 1),
    (2, 1, 'analytical engine punch cards', 500, 0.1, NULL, NULL),
    (3, 2, 'enigma rotor', 3, 80.0, NULL, NULL),
    (4, 3, 'it''s a compiler manual', 2, 19.5, NULL, 1),
    (5, NULL, 'gift card', 1, NULL, NULL, NULL);
INSERT INTO notes VALUES ('first note'), ('second note'), ('third note');
"""


# -- the server ------------------------------------------------------------------------------------
def sqlite_server_command() -> list[str]:
    """`mcp-server-sqlite` in its own virtualenv, installed once (pip, with the 1.x SDK)."""
    override = os.environ.get("AESOP_SQLITE_MCP_SERVER")
    if override:
        return [override]
    prefix = REPO_ROOT / ".cache" / "pypi-mcp" / "mcp-server-sqlite"
    script = prefix / "bin" / "mcp-server-sqlite"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    ignore = prefix.parent.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# downloaded test support\n*\n")
    with open(prefix.parent / ".install.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            marker = prefix / ".installed"
            if not (marker.exists() and marker.read_text() == PACKAGE and script.exists()):
                shutil.rmtree(prefix, ignore_errors=True)
                subprocess.run(
                    [sys.executable, "-m", "venv", str(prefix)], check=True, capture_output=True, timeout=300
                )
                proc = subprocess.run(
                    [
                        str(prefix / "bin" / "python"),
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        PACKAGE,
                        "mcp>=1.6,<2",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"pip install {PACKAGE} failed:\n{proc.stderr.strip()[-4000:]}")
                marker.write_text(PACKAGE)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return [str(script)]


@pytest.fixture(scope="module")
def server_command() -> list[str]:
    return sqlite_server_command()


@pytest.fixture
def shop_db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_SQL)
    yield path


def write(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(sql)


def db_rows(path: Path, table: str, key: str = "id") -> list[dict[str, Any]]:
    """The table's rows, blobs written as `\\x<hex>` as the adapter keeps them."""
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f'SELECT * FROM "{table}" ORDER BY "{key}"').fetchall()
    return [{k: ("\\x" + r[k].hex() if isinstance(r[k], bytes) else r[k]) for k in r.keys()} for r in rows]  # noqa: SIM118


def definition(command: list[str], path: Path, name: str = "shop", **options: Any) -> SourceDefinition:
    return SourceDefinition(
        name=name,
        kind="sqlite",
        command=command[0],
        args=[*command[1:], "--db-path", str(path)],
        options={"allowed_tables": ALLOWED, "page_size": 2, **options},
        timeout_seconds=30,
    )


class RecordingConnection:
    """Passes calls through to a connection and keeps every tool call's arguments."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.server_name = conn.server_name
        self.calls: list[tuple[str, str]] = []  # (tool or method, the query or argument)

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
        self.calls.append((name, str((arguments or {}).get("query", json.dumps(arguments)))))
        return await self.conn.call_tool(name, arguments)

    async def list_tools(self) -> Any:
        self.calls.append(("list_tools", ""))
        return await self.conn.list_tools()

    async def list_resources(self) -> Any:
        self.calls.append(("list_resources", ""))
        return await self.conn.list_resources()

    async def read_resource(self, uri: str) -> Any:
        self.calls.append(("read_resource", uri))
        return await self.conn.read_resource(uri)


def sent_queries(source: SourceDefinition, previous: Mapping[str, SourceItemState]) -> list[tuple[str, str]]:
    """Every call the adapter makes during one full pass."""

    async def run() -> list[tuple[str, str]]:
        adapter = make_adapter(source)
        async with open_connection(source) as conn:
            spy = RecordingConnection(conn)
            async for _ in adapter.records(spy, previous):
                pass
            return spy.calls

    return anyio.run(run)


# -- tests -----------------------------------------------------------------------------------------
def test_sqlite_tables_rows_and_keys_become_the_graph_and_only_changes_are_reapplied(
    server_command: list[str], shop_db: Path, make_engine: Callable[..., Any]
) -> None:
    engine = make_engine()
    source = definition(server_command, shop_db)
    ids = RelationalIds("shop")
    report = ingest_source(engine, source)
    assert not report.skipped and report.quarantined == 0

    db_entity = engine.get_entities([ids.database("shop.db")])[0]
    assert db_entity.properties["dialect"] == "SQLite" and db_entity.properties["tables"] == ALLOWED
    for table, columns in (
        ("customers", [("id", "INTEGER"), ("name", "TEXT"), ("city", "TEXT"), ("referred_by", "INTEGER")]),
        (
            "orders",
            [
                ("id", "INTEGER"),
                ("customer_id", "INTEGER"),
                ("item", "TEXT"),
                ("quantity", "INTEGER"),
                ("price", "REAL"),
                ("receipt", "BLOB"),
                ("audit_id", "INTEGER"),
            ],
        ),
    ):
        entity = engine.get_entities([ids.table("main", table)])[0]
        assert entity.properties["columns"] == [c for c, _ in columns]
        assert entity.properties["primary_key"] == ["id"]
        for column, data_type in columns:
            assert engine.get_entities([ids.column("main", table, column)])[0].properties["data_type"] == data_type

    customers, orders = db_rows(shop_db, "customers"), db_rows(shop_db, "orders")
    check_rows(engine, ids, "main", "customers", "id", customers)
    by_id = check_rows(engine, ids, "main", "orders", "id", orders)
    assert by_id[1].properties["values"]["receipt"] == "\\x00ff10"
    assert by_id[4].text.startswith("orders: id=4, customer_id=3, item=it's a compiler manual")

    pairs = {(r.type, r.src, r.dst) for r in live(all_relations(engine, "shop"))}
    row_fks = {(s, d) for t, s, d in pairs if t == "FOREIGN_KEY" and ":row:" in s}
    assert row_fks == {
        (ids.row("main", "orders", [o["id"]]), ids.row("main", "customers", [o["customer_id"]]))
        for o in orders
        if o["customer_id"] is not None
    } | {(ids.row("main", "customers", [c["id"]]), ids.row("main", "customers", [c["referred_by"]])) for c in customers}
    assert {(s, d) for t, s, d in pairs if t == "FOREIGN_KEY" and ":table:" in s} == {
        (ids.table("main", "orders"), ids.table("main", "customers")),
        (ids.table("main", "customers"), ids.table("main", "customers")),
    }

    # -- the disallowed table: not in the graph, not findable, never named in a query
    assert_nowhere(engine, "shop", SECRET, SECRET_TABLE)
    calls = sent_queries(source, engine.store.source_items("shop"))
    assert {name for name, _ in calls} == {"read_query"}  # no list_tables, no resources
    assert not any(SECRET_TABLE in query or SECRET in query for _, query in calls)
    assert any('WHERE ("id") > (2) ORDER BY "id" LIMIT 2' in query for _, query in calls)  # keyset paging

    hits = engine.search("who bought the brass telescope?", k=5).hits
    assert ids.row("main", "orders", [1]) in [h.id for h in hits[:3]]

    # -- update, insert, delete: only those change
    seq = engine.store.last_seq()
    write(
        shop_db,
        "UPDATE orders SET quantity = 2 WHERE id = 1; "
        "INSERT INTO orders VALUES (6, 2, 'bombe drum', 4, 12.0, NULL, NULL); "
        f"DELETE FROM orders WHERE id = 3; UPDATE {SECRET_TABLE} SET holder = 'someone else';",
    )
    again = ingest_source(engine, source)
    row1, row3, row6 = (ids.row("main", "orders", [i]) for i in (1, 3, 6))
    changes = engine.store.changes_since(seq)
    assert {(c.id, c.op) for c in changes if c.kind == "entity"} == {
        (row1, "upsert"),
        (row6, "upsert"),
        (row3, "delete"),
    }
    orders_id, cust2 = ids.table("main", "orders"), ids.row("main", "customers", [2])
    assert {c.id for c in changes if c.kind == "relation"} == {
        relation_id("HAS_ROW", orders_id, row6),
        relation_id("FOREIGN_KEY", row6, cust2, "fk_orders_customer_id"),
        relation_id("HAS_ROW", orders_id, row3),
        relation_id("FOREIGN_KEY", row3, cust2, "fk_orders_customer_id"),
    }
    assert again.records_changed == 4 and again.records_removed == 1
    assert engine.get_entities([row3]) == []
    check_rows(engine, ids, "main", "orders", "id", db_rows(shop_db, "orders"))

    seq = engine.store.last_seq()
    assert ingest_source(engine, source).records_changed == 0 and engine.store.changes_since(seq) == []


def test_sqlite_rowid_tables_row_limit_and_awkward_names(
    server_command: list[str], shop_db: Path, make_engine: Callable[..., Any]
) -> None:
    awkward = 'it\'s "odd"; DROP TABLE customers'
    quoted = '"' + awkward.replace('"', '""') + '"'
    write(
        shop_db,
        f"CREATE TABLE {quoted} (k TEXT PRIMARY KEY, v REAL); INSERT INTO {quoted} VALUES ('a.b:c', 1e999), ('o''k', -2.5);",
    )
    engine = make_engine()
    source = definition(server_command, shop_db, name="odd", row_limit=2, allowed_tables=[*ALLOWED, "notes", awkward])
    report = ingest_source(engine, source)
    assert not report.skipped
    ids = RelationalIds("odd")
    rows = {e.id: e for batch in engine.store.iter_entities(types=["Row"]) for e in batch}
    assert set(rows) == {ids.row("main", t, [k]) for t in ("customers", "orders", "notes") for k in (1, 2)} | {
        ids.row("main", awkward, [k]) for k in ("a.b:c", "o'k")
    }
    note = rows[ids.row("main", "notes", [1])]
    assert note.name == "notes(rowid=1)" and note.text == "notes: body=first note"
    assert rows[ids.row("main", awkward, ["a.b:c"])].properties["values"]["v"] == "Infinity"
    # customer 1 refers to customer 3, past the row limit: no relation is made to a row not stored
    fks = {(r.src, r.dst) for r in live(all_relations(engine, "odd")) if r.type == "FOREIGN_KEY" and ":row:" in r.src}
    assert (ids.row("main", "customers", [1]), ids.row("main", "customers", [3])) not in fks
    assert (ids.row("main", "customers", [2]), ids.row("main", "customers", [1])) in fks
    assert len(db_rows(shop_db, "customers")) == 3

    # a deleted rowid row goes; the others stay untouched
    seq = engine.store.last_seq()
    write(shop_db, "DELETE FROM notes WHERE rowid = 1;")
    ingest_source(engine, source)
    changes = engine.store.changes_since(seq)
    assert {(c.id, c.op) for c in changes if c.kind == "entity"} == {
        (ids.row("main", "notes", [1]), "delete"),
        (ids.row("main", "notes", [3]), "upsert"),  # the row limit now reaches the third note
    }


def test_sqlite_result_parsing_and_literals() -> None:
    assert parse_rows("[{'a': 1, 'b': 'x\\'y', 'c': b'\\x00', 'd': inf, 'e': -inf, 'f': None}]") == [
        {"a": 1, "b": "x'y", "c": b"\x00", "d": float("inf"), "e": float("-inf"), "f": None}
    ]
    assert parse_rows('[{"a": 1}]') == [{"a": 1}]
    for bad in ("[{'a': __import__('os')}]", "[{'a': (lambda: 1)()}]", "Error: no such table"):
        with pytest.raises((ValueError, SyntaxError)):
            parse_rows(bad)
    assert literal("it's") == "'it''s'" and literal(b"\x01") == "X'01'" and literal(None) == "NULL"
    assert literal(float("inf")) == "9e999" and literal(2.5) == "2.5" and literal("a\x00b").startswith("CAST(X'")
