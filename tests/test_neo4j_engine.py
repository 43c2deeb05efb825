"""The engine on Neo4j: `--graph` selects it, FAISS works on top of it and is rebuilt from the
vectors Neo4j keeps, and `aesop migrate` copies an embedded store into it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "docs"
pytestmark = pytest.mark.neo4j


def _aesop(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "aesoperator.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_engine_on_neo4j_searches_and_rebuilds_index_from_neo4j(
    neo4j_store_factory: Callable[[], Any], make_engine: Callable[..., Any], tmp_path: Path, embedder: Any
) -> None:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    store = neo4j_store_factory()
    engine = ContextEngine(store, settings=Settings(data_dir=tmp_path / "replica"), embedder=embedder)
    folder = tmp_path / "bakery"
    shutil.copytree(FIXTURE, folder)
    engine.ingest_path(folder)
    top = engine.search("who runs the night shift?", k=3).hits[0]
    assert "Marguerite" in top.text
    # a fresh replica (another process, another machine) rebuilds its FAISS copy from Neo4j
    shutil.rmtree(tmp_path / "replica")
    replica = ContextEngine(store, settings=Settings(data_dir=tmp_path / "replica"), embedder=embedder)
    assert replica.index.last_sync is not None and replica.index.last_sync.rebuilt
    assert "Marguerite" in replica.search("who runs the night shift?", k=3, channels=("vector",)).hits[0].text


def test_cli_migrate_embedded_into_neo4j_and_query_it(
    neo4j_server: Any, neo4j_store_factory: Callable[[], Any], tmp_path: Path
) -> None:
    neo4j_store_factory()  # a clean database
    folder = tmp_path / "bakery"
    shutil.copytree(FIXTURE, folder)
    data = tmp_path / "data"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "AESOP_NEO4J_PASSWORD": neo4j_server.password,
        "AESOP_NEO4J_USER": neo4j_server.user,
    }
    _aesop(["--data-dir", str(data), "ingest", str(folder)], env)
    embedded = json.loads(_aesop(["--json", "--data-dir", str(data), "stats"], env).stdout)
    report = json.loads(_aesop(["--json", "--data-dir", str(data), "migrate", "--to", neo4j_server.uri], env).stdout)
    assert report["entities"] == embedded["entities"]
    # resumable: running it again copies nothing new and still verifies
    _aesop(["--json", "--data-dir", str(data), "migrate", "--to", neo4j_server.uri], env)
    on_neo4j = json.loads(
        _aesop(["--json", "--data-dir", str(tmp_path / "n"), "--graph", neo4j_server.uri, "stats"], env).stdout
    )
    assert on_neo4j["backend"] == "neo4j"
    assert (on_neo4j["entities"], on_neo4j["relations"], on_neo4j["vectors"]) == (
        embedded["entities"],
        embedded["relations"],
        embedded["vectors"],
    )
    found = _aesop(
        ["--data-dir", str(tmp_path / "n"), "--graph", neo4j_server.uri, "search", "zero-gravity croissant", "-k", "2"],
        env,
    )
    assert "croissant" in found.stdout
