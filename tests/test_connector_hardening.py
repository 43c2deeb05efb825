"""Folders holding things that are not plain files, read through the real filesystem connector
(`python -m aesoperator.connectors filesystem`, over stdio) and the local folder ingest.

A FIFO with no writer blocks whoever opens it for reading, a socket or a device file is no
text either, a symbolic link may lead out of the folder, and a 1,100-level tree exhausts a
recursive walk. Each tool must answer promptly, read none of them, and say what it skipped.
Every test runs under a timeout, so a hang fails it instead of stalling the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from aesoperator.ingest.client import McpCallError, McpClientConnection, open_connection
from aesoperator.ingest.file_access import UnreadableFile, read_regular_file, run_with_timeout
from aesoperator.ingest.local_files import LocalFolderExtractor
from aesoperator.ingest.sources import SourceDefinition

pytestmark = pytest.mark.timeout(240)
DEPTH = 1_100
CALL_SECONDS = 30  # a tool call that takes longer than this has hung


@pytest.fixture
def special_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with a text file, a FIFO, a listening socket's file, a character device (when
    allowed) and a link to a file outside the folder, all named like text files."""
    root = tmp_path / "notes"
    root.mkdir()
    (root / "plan.md").write_text("# Plan\nShip the retention dashboard.\n")
    os.mkfifo(root / "pipe.md")
    monkeypatch.chdir(root)  # a socket path must fit in 108 bytes: bind it by a relative name
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("sock.md")
    listener.listen(1)
    monkeypatch.chdir(tmp_path)
    # /dev/zero's numbers: endless if read. Where creating it is not allowed, the FIFO and the
    # socket still cover the special files.
    with contextlib.suppress(PermissionError):
        os.mknod(root / "zero.md", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    (tmp_path / "salary.md").write_text("retention bonus: confidential\n")
    (root / "leak.md").symlink_to(tmp_path / "salary.md")
    yield root
    listener.close()
    if (root / "archive").is_dir():
        remove_deep_tree(root / "archive")


def deep_tree(root: Path, depth: int = DEPTH) -> None:
    """`root/d/d/.../d/deep.md`, `depth` directories down, plus `root/top.md`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "top.md").write_text("retention at the top\n")
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        out = os.open("deep.md", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, b"retention at the bottom\n")
        os.close(out)
    finally:
        os.close(fd)


def remove_deep_tree(root: Path) -> None:
    """Remove what `deep_tree` made without recursing 1,100 levels (shutil.rmtree, and pytest's
    clean-up of old temporary folders, would exceed Python's recursion limit): each round lifts
    the subtree below `root/d` one level up and removes the emptied directory."""
    top = root / "d"
    lifted = root / "lifted"
    while top.is_dir():
        below = top / "d"
        if below.is_dir():
            os.rename(below, lifted)
            shutil.rmtree(top)
            os.rename(lifted, top)
        else:
            shutil.rmtree(top)
    shutil.rmtree(root, ignore_errors=True)


def connector(root: Path, *extra: str) -> SourceDefinition:
    args = ["-m", "aesoperator.connectors", "filesystem", "--name", "notes", "--root", str(root), *extra]
    return SourceDefinition(
        name="notes", kind="filesystem", command=sys.executable, args=args, timeout_seconds=CALL_SECONDS, retries=0
    )


def with_connector(definition: SourceDefinition, body: Callable[[McpClientConnection], Any]) -> Any:
    async def run() -> Any:
        async with open_connection(definition) as conn:
            return await body(conn)

    return anyio.run(run)


async def call(conn: McpClientConnection, tool: str, **arguments: Any) -> Any:
    with anyio.fail_after(CALL_SECONDS):
        result = await conn.call_tool(tool, arguments)
    if isinstance(result.structured, dict) and set(result.structured) == {"result"}:
        return result.structured["result"]  # a tool's return value, as the SDK wraps it
    return result.text


# -- the connector ---------------------------------------------------------------------------------
def test_connector_tools_never_read_fifos_sockets_or_devices(special_root: Path) -> None:
    root = special_root
    specials = [p for p in ("pipe.md", "sock.md", "zero.md") if (root / p).exists()]

    async def body(conn: McpClientConnection) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["grep"] = await call(conn, "search_text", path=str(root), text="retention")
        # More concurrent searches than the server has worker threads: none may stall the rest.
        started = time.monotonic()

        async def grep() -> None:
            await call(conn, "search_text", path=str(root), text="retention")

        async with anyio.create_task_group() as tg:
            for _ in range(45):
                tg.start_soon(grep)
        out["many_seconds"] = time.monotonic() - started
        out["listing"] = await call(conn, "list_directory", path=str(root))
        out["tree"] = json.loads(await call(conn, "directory_tree", path=str(root)))
        out["found"] = await call(conn, "search_files", path=str(root), pattern=".md")
        out["infos"] = {p: await call(conn, "get_file_info", path=str(root / p)) for p in specials}
        out["many"] = await call(conn, "read_multiple_files", paths=[str(root / p) for p in (*specials, "plan.md")])
        out["refused"] = {}
        for name in specials:
            try:
                await call(conn, "read_text_file", path=str(root / name))
            except McpCallError as exc:
                out["refused"][name] = str(exc)
        return out

    out = with_connector(connector(root), body)
    grep = out["grep"]
    matches = [g for g in grep if "line" in g]
    assert matches == [{"path": str(root / "plan.md"), "line": 2, "text": "Ship the retention dashboard."}]
    skipped = {Path(g["path"]).name: g["skipped"] for g in grep if "skipped" in g}
    assert skipped["pipe.md"] == "a FIFO (named pipe), not a regular file: not read"
    assert skipped["sock.md"] == "a socket, not a regular file: not read"
    if "zero.md" in specials:
        assert skipped["zero.md"] == "a character device, not a regular file: not read"
    assert "leak.md" not in skipped  # a link leading outside stays invisible, as in every listing
    assert out["many_seconds"] < CALL_SECONDS
    assert "[FILE] pipe.md" in out["listing"] and "leak.md" not in out["listing"]
    assert {n["name"] for n in out["tree"]} == {"plan.md", *specials}
    assert str(root / "pipe.md") in out["found"]
    for name, info in out["infos"].items():
        assert "isFile: false" in info, name
    for name in specials:
        assert "not a regular file: not read" in out["refused"][name]
        assert f"{root / name}: Error - " in out["many"]
    assert out["many"].endswith(f"{root / 'plan.md'}:\n# Plan\nShip the retention dashboard.\n\n")


def test_connector_walks_a_1100_level_tree_up_to_its_depth_limit(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root = tmp_path / "deep"
    deep_tree(root)
    request.addfinalizer(lambda: remove_deep_tree(root))

    async def body(conn: McpClientConnection) -> dict[str, Any]:
        return {
            "grep": await call(conn, "search_text", path=str(root), text="retention"),
            "found": await call(conn, "search_files", path=str(root), pattern="*.md"),
            "tree": json.loads(await call(conn, "directory_tree", path=str(root))),
            "version": (await conn.read_resource("file-roots://tree")).text,
        }

    out = with_connector(connector(root, "--max-depth", "40"), body)
    grep = out["grep"]
    assert [g["path"] for g in grep if "line" in g] == [str(root / "top.md")]
    too_deep = str(root) + "/d" * 41
    assert [(g["path"], g["skipped"]) for g in grep if "skipped" in g] == [
        (too_deep, "more than 40 directory levels deep: not walked (raise max_depth to include it)")
    ]
    assert out["found"].split("\n") == [
        str(root / "top.md"),
        f"skipped {too_deep}: more than 40 directory levels deep: not walked (raise max_depth to include it)",
    ]
    node, levels = out["tree"][0], 1
    while node.get("children"):
        node, levels = node["children"][0], levels + 1
    assert levels == 41 and node["name"] == "d" and "40 directory levels" in node["skipped"]
    assert len(out["version"]) == 32


def test_engine_ingests_through_the_connector_skipping_what_it_cannot_read(
    special_root: Path, make_engine: Callable[..., Any]
) -> None:
    deep_tree(special_root / "archive", depth=DEPTH)
    engine = make_engine()
    report = engine.ingest_source(connector(special_root))
    reasons = {s.key: s.reason for s in report.skipped}
    assert reasons["pipe.md"] == "not a regular file"
    assert reasons["sock.md"] == "not a regular file"
    too_deep = "archive" + "/d" * 128 + "/"
    assert reasons[too_deep] == "more than 128 directory levels deep: not walked (raise max_depth to include it)"
    files = {e.name for batch in engine.store.iter_entities() for e in batch if e.type == "File"}
    assert {"plan.md", "archive/top.md"} <= {f.split(":")[-1] for f in files} | files
    assert not any("leak" in f or "salary" in f for f in files)


# -- the local folder ingest -------------------------------------------------------------------------
def test_local_ingest_skips_special_files_escaping_links_and_deep_directories(
    special_root: Path, make_engine: Callable[..., Any]
) -> None:
    deep_tree(special_root / "archive", depth=DEPTH)
    engine = make_engine()
    report = engine.ingest_path(special_root, embed=False)
    reasons = {s.key: s.reason for s in report.skipped}
    assert reasons["pipe.md"] == "a FIFO (named pipe), not a regular file: not read"
    assert reasons["sock.md"] == "a socket, not a regular file: not read"
    if (special_root / "zero.md").exists():
        assert reasons["zero.md"] == "a character device, not a regular file: not read"
    assert reasons["leak.md"] == "a symbolic link to outside the folder: not read"
    assert reasons["archive" + "/d" * 128 + "/"].startswith("more than 128 directory levels deep")
    texts = " ".join(e.text for batch in engine.store.iter_entities() for e in batch)
    assert "Ship the retention dashboard" in texts and "retention at the top" in texts
    assert "confidential" not in texts


def test_local_extractor_depth_limit_is_a_setting(tmp_path: Path) -> None:
    deep_tree(tmp_path / "t", depth=5)
    shallow = LocalFolderExtractor(tmp_path / "t", "t", max_depth=2)
    assert [p.name for p in shallow.paths()] == ["top.md"]
    assert [(s.key, s.reason) for s in shallow.skipped] == [
        ("d/d/d/", "more than 2 directory levels deep: not walked (raise max_depth to include it)")
    ]
    full = LocalFolderExtractor(tmp_path / "t", "t", max_depth=5)
    assert [p.name for p in full.paths()] == ["top.md", "deep.md"] and not full.skipped


# -- reads have a timeout -----------------------------------------------------------------------------
def test_a_read_that_blocks_gives_up_after_its_timeout(tmp_path: Path) -> None:
    """A blocking open of a FIFO stands in for a hung mount: the caller gets its answer in time."""
    fifo = tmp_path / "hang"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(UnreadableFile, match=r"no answer within 0.5 s"):
        run_with_timeout(lambda: fifo.read_bytes(), 0.5, "reading the file")
    assert time.monotonic() - started < 5
    # Release the stuck reader: a writer that opens and closes gives it end-of-file.
    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    with pytest.raises(UnreadableFile, match="a FIFO"):
        read_regular_file(fifo, max_bytes=100, timeout=5)
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * 101)
    with pytest.raises(UnreadableFile, match="101 bytes is over the 100 limit"):
        read_regular_file(big, max_bytes=100, timeout=5)
    assert read_regular_file(big, max_bytes=101, timeout=5) == b"x" * 101
