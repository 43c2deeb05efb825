"""`aesop doctor` on real broken states: a data dir ingested for real, then a file deleted or
damaged, a mode loosened, a store from a newer version, a source that cannot start, Neo4j on a
closed port. Each check must name the problem in words and say how to fix it."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from aesoperator.config import Settings
from aesoperator.doctor import Finding, run_checks
from aesoperator.engine.context import keyword_index_dir, vector_index_dir
from aesoperator.security.tokens import TokenStore
from tests.test_data_dir_modes import aesop

pytestmark = pytest.mark.timeout(300)


def _problems(settings: Settings, check: str) -> list[Finding]:
    return [f for f in run_checks(settings) if f.check == check and not f.ok]


@pytest.fixture
def ingested(tmp_path: Path, make_engine: Any) -> Settings:
    """A data dir with a few documents ingested, the engine closed (indexes saved)."""
    data = tmp_path / "data"
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"n{i}.md").write_text(f"# Note {i}\nGrace Hopper reviewed compiler design note {i}.\n")
    engine = make_engine(data)
    engine.ingest_path(docs, name="docs")
    engine.search("compiler design", k=2)  # builds and saves the keyword index
    engine.rebuild_index()
    engine.close()
    return Settings(data_dir=data)  # type: ignore[call-arg]


def test_a_healthy_data_dir_passes_every_check(ingested: Settings) -> None:
    findings = run_checks(ingested)
    assert [f for f in findings if not f.ok] == []
    checks = {f.check for f in findings}
    assert {"vector index", "keyword index", "versions", "tokens file", "neo4j", "sources"} <= checks
    [vectors] = [f for f in findings if f.check == "vector index"]
    assert "in step with the store" in vectors.message


def test_a_deleted_vector_index_file_is_reported_until_rebuilt(ingested: Settings) -> None:
    directory = vector_index_dir(ingested, ingested.embedding_model)
    manifest = json.loads((directory / "manifest.json").read_text())
    victim = directory / sorted(manifest["checksums"])[0]
    victim.unlink()
    [problem] = _problems(ingested, "vector index")
    assert f"{victim.name} is missing" in problem.message and problem.fix == "aesop rebuild-index"
    cli = aesop(ingested.data_dir, "doctor", check=False)
    assert cli.returncode == 1 and f"{victim.name} is missing" in cli.stdout
    assert "fix: aesop rebuild-index" in cli.stdout
    aesop(ingested.data_dir, "rebuild-index")
    assert _problems(ingested, "vector index") == []


def test_a_missing_vector_index_and_a_damaged_keyword_index(ingested: Settings) -> None:
    (vector_index_dir(ingested, ingested.embedding_model) / "manifest.json").unlink()
    [problem] = _problems(ingested, "vector index")
    assert "no saved index" in problem.message and "the store holds" in problem.message
    keywords = keyword_index_dir(ingested)
    [npz] = list(keywords.glob("keywords-g*.npz"))
    npz.write_bytes(b"not the saved index")
    [damaged] = _problems(ingested, "keyword index")
    assert f"{npz.name} does not match its checksum" in damaged.message


def test_a_loose_or_corrupt_tokens_file(ingested: Settings) -> None:
    TokenStore.in_data_dir(ingested.data_dir).add("ops", ["read:*"])
    path = ingested.data_dir / "tokens.json"
    assert _problems(ingested, "tokens file") == []
    path.chmod(0o644)
    [loose] = _problems(ingested, "tokens file")
    assert "mode 0644" in loose.message and loose.fix == f"chmod 600 {path}"
    path.chmod(0o600)
    path.write_text("{not json")
    [corrupt] = _problems(ingested, "tokens file")
    assert "cannot be read" in corrupt.message


def test_a_store_from_a_newer_version(ingested: Settings) -> None:
    with sqlite3.connect(ingested.data_dir / "graph.sqlite") as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    [problem] = _problems(ingested, "versions")
    assert "store schema 99" in problem.message and problem.fix == "pip install -U aesoperator"


def test_sources_that_start_and_one_that_cannot(ingested: Settings, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("hello")
    (ingested.data_dir / "sources.toml").write_text(
        f"""
[sources.notes]
kind = "filesystem"
command = "{sys.executable}"
args = ["-m", "aesoperator.connectors", "filesystem", "--root", "{notes}"]
env = {{ PYTHONPATH = "{os.getcwd()}", HF_HUB_OFFLINE = "1" }}

[sources.gone]
kind = "filesystem"
command = "{tmp_path / "no-such-server"}"
"""
    )
    findings = [f for f in run_checks(ingested) if f.check == "sources"]
    by_ok = {f.ok: f for f in findings}
    assert len(findings) == 2
    assert "source 'notes' answers" in by_ok[True].message
    assert "source 'gone'" in by_ok[False].message and "cannot be reached" in by_ok[False].message


def test_neo4j_on_a_closed_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    settings = Settings(data_dir=tmp_path / "data", graph=f"neo4j://127.0.0.1:{port}", neo4j_connection_timeout=3)  # type: ignore[call-arg]
    [problem] = _problems(settings, "neo4j")
    assert f"127.0.0.1:{port} cannot be reached" in problem.message and "start Neo4j" in (problem.fix or "")
    assert not (tmp_path / "data" / "graph.sqlite").exists()  # doctor creates nothing
