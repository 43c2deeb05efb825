"""The `aesop` command as a user runs it: real subprocesses, real model, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "docs"


def aesop(*args: str, data: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "aesoperator.cli", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"aesop {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    shutil.copytree(FIXTURE, root / "bakery")
    data = root / "data"
    aesop("ingest", str(root / "bakery"), data=data)
    return data


def test_search_prints_ranked_explained_results(ingested: Path) -> None:
    proc = aesop("search", "who invented the zero-gravity croissant?", "-k", "3", data=ingested)
    assert "1." in proc.stdout and "why:" in proc.stdout
    assert "Tobias" in proc.stdout


def test_json_output_is_machine_readable(ingested: Path) -> None:
    proc = aesop("--json", "search", "battery banks", "-k", "2", data=ingested)
    payload = json.loads(proc.stdout)
    assert payload["hits"] and payload["hits"][0]["reasons"]
    stats = json.loads(aesop("--json", "stats", data=ingested).stdout)
    assert stats["entity_types"]["File"] == 4 and stats["backend"] == "embedded"


def test_remember_and_recall_across_processes(ingested: Path) -> None:
    aesop(
        "remember",
        "Tobias Lindqvist asked for a new oven in bay 4",
        "--agent",
        "cli-agent",
        "--session",
        "x",
        data=ingested,
    )
    payload = json.loads(
        aesop("--json", "recall", "what did the head baker ask for?", "--agent", "cli-agent", data=ingested).stdout
    )
    assert "oven" in payload["episodes"][0]["episode"]["content"]


def test_rebuild_index_after_deleting_it(ingested: Path) -> None:
    shutil.rmtree(ingested / "index")
    payload = json.loads(aesop("--json", "rebuild-index", data=ingested).stdout)
    assert payload["added"] > 0
    assert "Marguerite" in aesop("search", "night shift battery", "-k", "2", data=ingested).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ingest", "/definitely/not/here"), "does not exist"),
        (("search", ""), "must not be empty"),
        (("search", "x", "--as-of", "yesterday-ish"), "is not an ISO date"),
        (("search", "x", "-k", "0"), "k must be"),
    ],
)
def test_user_mistakes_print_one_clear_line_and_fail(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    proc = aesop(*args, data=tmp_path / "d", check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
