"""The `aesop` command: in-process through typer's CliRunner (real store, real model, clear
errors), plus two smoke tests that run it as a user does, as `python -m aesoperator.cli`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from aesoperator.cli import app

FIXTURE = Path(__file__).parent / "fixtures" / "docs"


def aesop(*args: str, data: Path, check: bool = True) -> Result:
    result = CliRunner().invoke(app, ["--data-dir", str(data), *args])
    if check and result.exit_code != 0:
        raise AssertionError(f"aesop {args} failed ({result.exit_code}):\n{result.stdout}\n{result.stderr}") from (
            result.exception
        )
    return result


def aesop_process(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "aesoperator.cli", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    shutil.copytree(FIXTURE, root / "bakery")
    data = root / "data"
    aesop("ingest", str(root / "bakery"), data=data)
    return data


def test_search_prints_ranked_explained_results(ingested: Path) -> None:
    result = aesop("search", "who invented the zero-gravity croissant?", "-k", "3", data=ingested)
    assert "1." in result.stdout and "why:" in result.stdout
    assert "Tobias" in result.stdout


def test_json_output_is_machine_readable(ingested: Path) -> None:
    result = aesop("--json", "search", "battery banks", "-k", "2", data=ingested)
    payload = json.loads(result.stdout)
    assert payload["hits"] and payload["hits"][0]["reasons"]
    stats = json.loads(aesop("--json", "stats", data=ingested).stdout)
    assert stats["entity_types"]["File"] == 4 and stats["backend"] == "embedded"


def test_a_separate_process_reads_what_the_cli_wrote(ingested: Path) -> None:
    """Smoke test: the real entry point, in its own process, on the store ingested above."""
    proc = aesop_process("--json", "stats", data=ingested)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["entity_types"]["File"] == 4 and stats["backend"] == "embedded"


def test_remember_and_recall_across_invocations(ingested: Path) -> None:
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


MISTAKES = [
    (("ingest", "/definitely/not/here"), "does not exist"),
    (("search", ""), "must not be empty"),
    (("search", "x", "--as-of", "yesterday-ish"), "is not an ISO date"),
    (("search", "x", "-k", "0"), "k must be"),
]


@pytest.mark.parametrize(("args", "message"), MISTAKES)
def test_user_mistakes_print_one_clear_line_and_fail(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = aesop(*args, data=tmp_path / "d", check=False)
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_mistake_in_a_real_process_is_one_line_without_traceback(tmp_path: Path) -> None:
    """Smoke test: the same, through `python -m aesoperator.cli` (the console script's `main`)."""
    args, message = MISTAKES[0]
    proc = aesop_process(*args, data=tmp_path / "d")
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
