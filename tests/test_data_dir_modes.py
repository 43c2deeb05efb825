"""The data dir is open to its owner only: directories 0700, files 0600, whatever the umask.

A round of real `aesop` commands (ingest, search, remember, sources add, tokens add, an HTTP
serve with a tool call) runs under the common umask 022; then every file and directory the
engine made is checked, SQLite's -wal and -shm included while the server holds them open. An
older, looser data dir gets a startup warning naming the paths and the fix, and `aesop doctor`
says what is wrong and exits 1.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from aesoperator import ContextEngine
from tests.test_serve_tools import ServerProcess, aesop_command, bearer_transport, server_env

pytestmark = pytest.mark.timeout(600)
FIXTURE = Path(__file__).parent / "fixtures" / "docs"


@pytest.fixture
def common_umask() -> Iterator[None]:
    """The usual umask (group and others may read new files unless told otherwise)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def aesop(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        aesop_command(data, *args), capture_output=True, text=True, env=server_env(), timeout=300, cwd=data.parent
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"aesop {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def modes(data: Path) -> dict[str, int]:
    """Relative path -> permission bits of everything below `data` (itself as ".")."""
    found = {".": stat.S_IMODE(os.lstat(data).st_mode)}
    for directory, dirs, files in os.walk(data):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            found[str(path.relative_to(data))] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def assert_private(data: Path) -> dict[str, int]:
    found = modes(data)
    loose = {
        rel: f"{mode:04o}"
        for rel, mode in found.items()
        if mode != (0o700 if (data / rel).is_dir() and not (data / rel).is_symlink() else 0o600)
    }
    assert not loose, f"paths not private: {loose}"
    return found


def test_every_data_file_is_private_after_ingest_search_and_serve(tmp_path: Path, common_umask: None) -> None:
    folder = tmp_path / "bakery"
    shutil.copytree(FIXTURE, folder)
    data = tmp_path / "data"
    aesop(data, "ingest", str(folder))
    aesop(data, "search", "who invented the zero-gravity croissant?", "-k", "3")
    aesop(data, "remember", "Tobias asked for a new oven", "--agent", "a1", "--session", "s1")
    aesop(data, "sources", "add", "notes", "--kind", "filesystem", "--command", "npx", "--arg", str(folder))
    token = json.loads(
        aesop(data, "--json", "tokens", "add", "admin", "--scope", "read:*", "--scope", "tool:*").stdout
    )["token"]

    server = ServerProcess(aesop_command(data, "serve", "--http", "--port", "0", "--no-warm"), cwd=tmp_path)
    try:

        async def call() -> None:
            async with Client(bearer_transport(server.url, token)) as client:
                result = await client.call_tool("search", {"query": "zero-gravity croissant", "k": 3})
                assert not result.is_error, result.content

        anyio.run(call)
        while_serving = assert_private(data)
    finally:
        server.stop()
    after = assert_private(data)

    seen = set(while_serving) | set(after)
    names = {Path(rel).name for rel in seen}
    assert {"graph.sqlite", "graph.sqlite-wal", "graph.sqlite-shm"} <= names, sorted(seen)
    assert {"tokens.json", "sources.toml", "audit.log"} <= names, sorted(seen)
    assert any(n.endswith(".faiss") for n in names) and any(n.endswith(".npz") for n in names), sorted(seen)
    assert any("manifest" in n for n in names) and any(n.endswith(".key") for n in names), sorted(seen)
    # the registered source is a placeholder (npx with a folder): doctor finds it cannot start, and
    # that is its only problem
    doctor = json.loads(aesop(data, "--json", "doctor", check=False).stdout)
    problems = [f for f in doctor["findings"] if not f["ok"]]
    assert [f["check"] for f in problems] == ["sources"] and "source 'notes'" in problems[0]["message"]
    assert any(f["check"] == "data dir permissions" and f["ok"] for f in doctor["findings"])


def test_a_loose_data_dir_is_reported_at_startup_and_by_doctor(
    tmp_path: Path, common_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    ContextEngine.open(data_dir=data).close()
    assert assert_private(data)
    assert aesop(data, "doctor").returncode == 0

    # As an older version left it: the directory and the database open to everyone.
    data.chmod(0o755)
    (data / "graph.sqlite").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="aesoperator.engine.data_dir"):
        ContextEngine.open(data_dir=data).close()
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert f"directory {data} has mode 0755" in warning
    assert f"file {data / 'graph.sqlite'} has mode 0644 (open to its group and every local user)" in warning
    assert f"Run: chmod -R go-rwx {data}" in warning
    assert stat.S_IMODE(os.stat(data / "graph.sqlite").st_mode) == 0o644  # reported, not changed behind one's back

    doctor = aesop(data, "doctor", check=False)
    assert doctor.returncode == 1
    assert f"problem data dir permissions: directory {data} has mode 0755" in doctor.stdout
    assert f"file {data / 'graph.sqlite'} has mode 0644" in doctor.stdout and "expected 0600" in doctor.stdout
    assert f"fix: chmod -R go-rwx {data}" in doctor.stdout
    report = json.loads(aesop(data, "--json", "doctor", check=False).stdout)
    assert report["ok"] is False
    assert {f["message"].split(" has mode")[0] for f in report["findings"] if not f["ok"]} == {
        f"directory {data}",
        f"file {data / 'graph.sqlite'}",
    }

    subprocess.run(["chmod", "-R", "go-rwx", str(data)], check=True)  # the fix it names
    assert aesop(data, "doctor").returncode == 0
    assert assert_private(data)


def test_doctor_on_a_data_dir_not_made_yet(tmp_path: Path) -> None:
    proc = aesop(tmp_path / "absent", "doctor")
    assert "does not exist yet; it is created 0700" in proc.stdout
    assert not (tmp_path / "absent").exists()  # checking creates nothing
