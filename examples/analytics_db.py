"""Analytics over a PostgreSQL database through the brief's API, with the database's rules enforced
at the source: only `users` and `events` are readable, no SQL is accepted, and the connection is
read-only.

    ANALYTICS_DSN=postgresql://reader@127.0.0.1:5432/analytics python examples/analytics_db.py
    python examples/analytics_db.py --dsn postgresql://reader@127.0.0.1:5432/analytics --json

The database needs the tables `users (id, name, signup_at)` and `events (id, user_id, kind, at)`;
`--create-demo` fills them (with a connection string that may write) for a first run. What it does:

1. declares the database as an `MCPServer` with `allowed_tables=["users", "events"]`;
2. asks it through `aesop.mcp_query`: the tables' schema and a few events; a query that names
   another table, or sends SQL, is refused by the connector;
3. runs the task `user_analysis` (metric: retention over the last 30 days): the engine syncs the
   allowed tables into its graph, assembles context (the tables' schema and relevant rows, with
   provenance) and the task's operator computes the metric with the connector's aggregate tool.
   The operator is plain code that counts; nothing here pretends to reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aesoperator as aesop
from aesoperator import MCPServer
from aesoperator import ContextEngine
from aesoperator.errors import AesopError

DEMO_SQL = """
CREATE TABLE IF NOT EXISTS users (id serial PRIMARY KEY, name text NOT NULL, signup_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id bigserial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), kind text NOT NULL, at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS payment_methods (id serial PRIMARY KEY, user_id int, card_number text);
TRUNCATE events, users, payment_methods RESTART IDENTITY;
INSERT INTO users (name, signup_at) VALUES
    ('Ada', now() - interval '90 days'), ('Grace', now() - interval '60 days'),
    ('Linus', now() - interval '45 days'), ('Margaret', now() - interval '20 days');
INSERT INTO events (user_id, kind, at) VALUES
    (1, 'login', now() - interval '3 days'), (1, 'report_viewed', now() - interval '3 days'),
    (2, 'login', now() - interval '40 days'), (3, 'login', now() - interval '10 days'),
    (4, 'login', now() - interval '1 day'), (4, 'export', now() - interval '1 day');
INSERT INTO payment_methods (user_id, card_number) VALUES (1, '4111 1111 1111 1111');
"""


def create_demo(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DEMO_SQL)


def retention_operator(context: aesop.TaskContext) -> dict[str, Any]:
    """The share of users active in the task's date range, counted by the database connector."""
    days = 30 if context.inputs.get("date_range", "last_30_days") == "last_30_days" else 7
    since = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    users = aesop.mcp_query("analytics_db", "users", {"metrics": [{"fn": "count", "alias": "users"}]})
    active = aesop.mcp_query(
        "analytics_db",
        "events",
        {
            "metrics": [{"fn": "count_distinct", "column": "user_id", "alias": "active_users"}],
            "filters": [{"column": "at", "op": ">=", "value": since}],
        },
    )
    total = int(users["rows"][0]["users"])
    active_users = int(active["rows"][0]["active_users"])
    return {
        "metric": context.inputs.get("metric"),
        "date_range": context.inputs.get("date_range"),
        "users": total,
        "active_users": active_users,
        "retention": round(active_users / total, 4) if total else None,
        "tables_seen": sorted(t["name"] for info in context.live.values() for t in info.get("tables") or []),
        "context_items": len(context.items),
    }


def run(dsn: str, data_dir: Path) -> dict[str, Any]:
    db_server = MCPServer(
        name="analytics_db",
        connection_string=dsn,
        allowed_tables=["users", "events"],
        data_dir=data_dir,
    )
    aesop.register_server(db_server)
    refused: dict[str, str] = {}
    for label, query in (("other_table", "payment_methods"), ("raw_sql", "SELECT * FROM payment_methods")):
        try:
            aesop.mcp_query("analytics_db", query)
            refused[label] = "NOT REFUSED"
        except AesopError as exc:
            refused[label] = f"{type(exc).__name__}: {exc}"
    schema = aesop.mcp_query("analytics_db", "describe")
    recent = aesop.mcp_query(
        "analytics_db", "events", {"order_by": [{"column": "at", "direction": "desc"}], "limit": 3}
    )
    with ContextEngine.open(data_dir=data_dir) as engine:
        aesop.register_server(name="engine", engine=engine)
        task = aesop.Task(
            name="user_analysis",
            mcp_context=[db_server],
            inputs={"metric": "retention", "date_range": "last_30_days"},
            operator=retention_operator,
        )
        result = aesop.execute_task(task, engine=engine)
        bare = aesop.execute_task(task.model_copy(update={"operator": None}), engine=engine)
    aesop.unregister_server("engine")
    aesop.unregister_server("analytics_db")
    return {
        "health": {k: v for k, v in db_server.health().items() if k in ("ok", "tools", "error")},
        "tables": [t["name"] for t in schema["tables"]],
        "recent_events": recent["rows"],
        "refused": refused,
        "task": {
            "status": result.status,
            "operator_ran": result.operator_ran,
            "output": result.output,
            "sources": [s.model_dump() for s in result.sources],
            "context": [
                {"type": i.type, "name": i.name, "uri": i.uri, "reasons": i.reasons[:2]} for i in result.context[:8]
            ],
            "episodes": result.episodes,
        },
        "without_operator": {"status": bare.status, "operator_ran": bare.operator_ran, "message": bare.message},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="connection string (default: $ANALYTICS_DSN)")
    parser.add_argument("--data-dir", type=Path, help="the engine's data dir (default: a temporary one)")
    parser.add_argument("--create-demo", metavar="WRITER_DSN", help="create and fill the demo tables first")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    args = parser.parse_args(argv)
    dsn = args.dsn or os.environ.get("ANALYTICS_DSN")
    if not dsn:
        parser.error("give --dsn or set ANALYTICS_DSN")
    if args.create_demo:
        create_demo(args.create_demo)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="aesop-analytics-"))
    outcome = run(dsn, data_dir)
    if args.json:
        print(json.dumps(outcome, indent=2, default=str))
        return 0
    print(f"health: {outcome['health']}")
    print(f"allowed tables: {outcome['tables']}")
    for label, reason in outcome["refused"].items():
        print(f"refused ({label}): {reason}")
    task = outcome["task"]
    print(f"task user_analysis: {task['status']} (operator ran: {task['operator_ran']})")
    print(json.dumps(task["output"], indent=2))
    print("context:")
    for item in task["context"]:
        print(f"  {item['type']:8} {item['name']}  <{item['uri']}>")
    print(f"without an operator: {outcome['without_operator']['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
