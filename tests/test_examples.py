"""The examples run as a user runs them (a separate process, `--json`), against real local servers:
the session's PostgreSQL, a git repository the example makes, recorded GitHub API responses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.postgres_support import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_analytics_db(postgres_server: PostgresServer, tmp_path: Path) -> None:
    db = postgres_server.create_database("example")
    out = run_example(
        "analytics_db.py",
        "--create-demo",
        postgres_server.url(db),
        "--data-dir",
        str(tmp_path / "data"),
        env={"ANALYTICS_DSN": postgres_server.reader_url(db)},
    )
    assert out["health"]["ok"] is True
    assert out["tables"] == ["users", "events"]
    assert out["refused"]["other_table"].startswith("PermissionDenied")
    assert out["refused"]["raw_sql"].startswith("PermissionDenied")
    assert len(out["recent_events"]) == 3
    task = out["task"]
    assert task["status"] == "completed" and task["operator_ran"] is True
    # Ada (3 days ago), Linus (10) and Margaret (1) were active in the last 30 days; Grace (40) was not
    assert task["output"] == {
        "metric": "retention",
        "date_range": "last_30_days",
        "users": 4,
        "active_users": 3,
        "retention": 0.75,
        "tables_seen": ["events", "users"],
        "context_items": task["output"]["context_items"],
    }
    assert task["sources"][0]["status"] == "ok" and len(task["episodes"]) == 2
    assert {c["type"] for c in task["context"]} <= {"Database", "Table", "Column", "Row"}
    assert all(c["uri"] and c["uri"].startswith("postgresql://") for c in task["context"])
    assert out["without_operator"]["status"] == "context_only"
    assert out["without_operator"]["operator_ran"] is False
    assert "no operator ran" in out["without_operator"]["message"]
    text = json.dumps(out)
    assert "4111" not in text and "payment_methods" not in text.replace(out["refused"]["other_table"], "")


def test_github_pr_review(tmp_path: Path) -> None:
    out = run_example("github_pr_review.py", "--pull-request", "3", "--data-dir", str(tmp_path / "data"), "--checklist")
    assert [s["status"] for s in out["sources"]] == ["ok", "ok"]
    assert [s["records_changed"] for s in out["sources"]] == [0, 0]  # the second run: nothing changed since
    context = {(c["type"], c["name"]): c for c in out["context"]}
    pr = context[("PullRequest", "#3 Clamp PID integral term to stop overshoot")]
    assert "the pull request under review (#3)" in pr["why"]
    for path in ("firmware/pid.c", "firmware/pid.h", "tests/test_pid.c"):
        assert any("changed by #3" in w for w in context[("File", path)]["why"])
    history = {
        c["name"].split(" ", 1)[1]: c["why"][0]
        for c in out["context"]
        if c["type"] == "Commit" and c["why"][0].startswith("history:")
    }
    # exactly the commits that changed the pull request's files, each saying which
    assert history == {
        "Tune integral gain for deck 2": "history: commit that changed firmware/pid.c",
        "Deck PID loop with proportional and integral terms": "history: commit that changed firmware/pid.c, firmware/pid.h",
    }
    assert ("Person", "Marta Kowalski") in context and ("Person", "mkowalski") in context
    assert any(
        "referenced by #3" in w
        for w in context[("Issue", "#1 Oven temperature drifts above 250°C during long bakes")]["why"]
    )
    assert (
        "#3 Clamp PID integral term to stop overshoot REFERENCES #1 Oven temperature drifts above 250°C during long bakes"
        in out["facts"]
    )
    assert out["pull_requests"] == [
        "#4 Export proofing schedule as CSV (open)",
        "#3 Clamp PID integral term to stop overshoot (closed)",
    ]
    assert out["status"] == "completed" and out["operator_ran"] is True
    assert out["output"]["files"] == ["firmware/pid.c", "firmware/pid.h", "tests/test_pid.c"]
    assert out["output"]["files_with_tests"] == ["tests/test_pid.c"]
    assert out["output"]["people_to_ask"] == ["Marta Kowalski", "mkowalski"]
    bare = out["without_operator"]
    assert bare["status"] == "context_only" and bare["operator_ran"] is False
    assert bare["message"].startswith("no operator ran")
