"""Context for reviewing a pull request: the pull request, the files it changes and their history,
the issues it relates to and the people involved, assembled from two MCP servers.

    python examples/github_pr_review.py --pull-request 3
    python examples/github_pr_review.py --repo-path ~/src/ovenctl --pull-request 3 --json

- a local git repository (`--repo-path`; by default one is created, standing in for the
  project's checkout) served by the built-in git connector, read-only;
- the GitHub connector for `acme-bakery/ovenctl` with the data sources `issues` and
  `pull_requests`. The hosted API is not reachable from here, so by default it answers from
  recorded responses of the real API (`--recorded`, tests/fixtures/recorded/github); with
  `--live` it calls api.github.com with the token in $GITHUB_TOKEN.

The task `pull_request_review` syncs both sources into the engine (incrementally), then gathers
the context. No operator runs, and the result says so; with `--checklist` the task runs again
with a small operator that turns the context into a reviewer's checklist by counting (files
without tests, people who changed the same files): plain code, no model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aesoperator as aesop
from aesoperator import MCPServer
from aesoperator import ContextEngine

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "tests" / "fixtures" / "recorded" / "github"
REPO = "acme-bakery/ovenctl"

# (author, email, date, message, {path: content})
HISTORY: list[tuple[str, str, str, str, dict[str, str]]] = [
    (
        "Marta Kowalski",
        "marta@acme-bakery.example",
        "2024-11-04T09:00:00+01:00",
        "Deck PID loop with proportional and integral terms",
        {
            "firmware/pid.h": "typedef struct { float kp, ki, integral; } pid_t;\nfloat pid_step(pid_t *pid, float error, float dt);\n",
            "firmware/pid.c": '#include "pid.h"\n\nfloat pid_step(pid_t *pid, float error, float dt) {\n    pid->integral += error * dt;\n    return pid->kp * error + pid->ki * pid->integral;\n}\n',
        },
    ),
    (
        "Priya Natarajan",
        "priya@acme-bakery.example",
        "2025-01-15T14:30:00+01:00",
        "Probe calibration notes",
        {"docs/calibration.md": "# Calibration\n\nMeasure the probe offset at 200 C.\n"},
    ),
    (
        "Marta Kowalski",
        "marta@acme-bakery.example",
        "2025-02-20T10:15:00+01:00",
        "Tune integral gain for deck 2",
        {
            "firmware/pid.c": '#include "pid.h"\n\n/* deck 2 runs hot: ki lowered */\nfloat pid_step(pid_t *pid, float error, float dt) {\n    pid->integral += error * dt;\n    return pid->kp * error + pid->ki * pid->integral;\n}\n',
        },
    ),
    (
        "Tomas Reyes",
        "tomas@acme-bakery.example",
        "2025-03-01T16:45:00+01:00",
        "Control app: weekly proofing schedule view",
        {"app/schedule.py": "def weekly(schedule):\n    return sorted(schedule, key=lambda s: s['start'])\n"},
    ),
]


def make_repository(path: Path) -> Path:
    """A small git repository whose history touches the files pull request #3 changes."""
    path.mkdir(parents=True, exist_ok=True)

    def git(*args: str, env: dict[str, str] | None = None) -> None:
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, env={**os.environ, **(env or {})})

    git("init", "-q", "-b", "main")
    for author, email, date, message, files in HISTORY:
        for rel, text in files.items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            git("add", rel)
        who = {
            "GIT_AUTHOR_NAME": author,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": author,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_COMMITTER_DATE": date,
        }
        git("-c", "commit.gpgsign=false", "commit", "-q", "-m", message, env=who)
    return path


def checklist(context: aesop.TaskContext) -> dict[str, Any]:
    """A reviewer's checklist, counted from the assembled context."""
    pr = next((i for i in context.items if i.type == "PullRequest"), None)
    files = sorted(i.name for i in context.items if i.type == "File" and any("changed by" in r for r in i.reasons))
    tests = [f for f in files if "test" in f]
    history = [i for i in context.items if i.type == "Commit"]
    people = sorted(
        {
            i.name
            for i in context.items
            if i.type == "Person" and any(" of #" in r or "history:" in r for r in i.reasons)
        }
    )
    issues = [i.name for i in context.items if i.type == "Issue"]
    return {
        "pull_request": pr.name if pr else None,
        "files": files,
        "files_with_tests": tests,
        "earlier_commits_on_these_files": [c.name for c in history],
        "people_to_ask": people,
        "related_issues": issues,
        "checks": [
            f"{len(files)} files changed; tests touched: {', '.join(tests) or 'none'}",
            f"{len(history)} earlier commits touched these files",
            f"related issues: {', '.join(issues) or 'none'}",
        ],
    }


def run(repo_path: Path, data_dir: Path, number: int, recorded: Path | None, with_checklist: bool) -> dict[str, Any]:
    git_server = MCPServer(name="ovenctl-git", repo=str(repo_path), data_dir=data_dir)
    github = MCPServer(
        name="ovenctl-github",
        repo=REPO,
        data_sources=["issues", "pull_requests"],
        recorded=recorded,
        data_dir=data_dir,
    )
    aesop.register_server(git_server)
    aesop.register_server(github)
    with ContextEngine.open(data_dir=data_dir) as engine:
        task = aesop.Task(
            name="pull_request_review",
            mcp_context=[git_server, github],
            inputs={"pull_request": number, "repository": REPO},
        )
        bare = aesop.execute_task(task, engine=engine)  # no operator: the context, and the word that none ran
        result = bare
        if with_checklist:
            result = aesop.execute_task(task.model_copy(update={"operator": checklist}), engine=engine)
    open_prs = aesop.mcp_query("ovenctl-github", "pulls", {"state": "all"})
    log = aesop.mcp_query("ovenctl-git", "log", {"max_count": 3})
    for name in ("ovenctl-git", "ovenctl-github"):
        aesop.unregister_server(name)
    return {
        "status": result.status,
        "operator_ran": result.operator_ran,
        "message": result.message,
        "output": result.output,
        "sources": [s.model_dump() for s in result.sources],
        "context": [
            {"type": i.type, "name": i.name, "server": i.properties.get("server"), "uri": i.uri, "why": i.reasons}
            for i in result.context
        ],
        "facts": result.facts[:40],
        "episodes": result.episodes,
        "without_operator": {"status": bare.status, "operator_ran": bare.operator_ran, "message": bare.message},
        "pull_requests": [f"#{p['number']} {p['title']} ({p['state']})" for p in open_prs["items"]],
        "recent_commits": log["text"].count("Commit: "),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pull-request", type=int, default=3)
    parser.add_argument("--repo-path", type=Path, help="a local checkout (default: a generated one)")
    parser.add_argument("--data-dir", type=Path, help="the engine's data dir (default: a temporary one)")
    parser.add_argument("--recorded", type=Path, default=RECORDED, help="recorded GitHub API responses")
    parser.add_argument("--live", action="store_true", help="call the GitHub API itself (token in $GITHUB_TOKEN)")
    parser.add_argument("--checklist", action="store_true", help="run the checklist operator on the context")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="aesop-pr-review-"))
    repo_path = args.repo_path or make_repository(work / "ovenctl")
    data_dir = args.data_dir or work / "data"
    outcome = run(repo_path, data_dir, args.pull_request, None if args.live else args.recorded, args.checklist)
    if args.json:
        print(json.dumps(outcome, indent=2, default=str))
        return 0
    print(f"{outcome['status']}: {outcome['message']}")
    for item in outcome["context"]:
        print(f"  {item['type']:11} {item['name'][:70]:70} [{item['server']}] {item['why'][0] if item['why'] else ''}")
    if outcome["output"]:
        print(json.dumps(outcome["output"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
