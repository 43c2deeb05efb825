"""Running out of disk space: a write that finds no room fails with a StoreError that names the data
dir and says the disk is full, nothing is half written (the store and the saved FAISS and keyword
indexes with their manifests still agree), reads go on, and the next write after space returns
succeeds. Through the engine API and through an MCP tool call.

Two ways to run out of room, each a real filesystem condition:

- `tmpfs`: the data dir is a small tmpfs mounted for the test (needs root or CAP_SYS_ADMIN;
  skipped, with the reason, where mounting is impossible) and a filler file takes all its space
  (ENOSPC); deleting the filler gives the space back.
- `file-size-limit`: the scenario runs in a child process whose RLIMIT_FSIZE is lowered to 0, so
  every write past offset 0 fails with EFBIG; raising the limit again gives the room back. It
  needs no privileges, so it runs everywhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import anyio
import pytest

from aesoperator import ContextEngine
from aesoperator.config import Settings
from aesoperator.engine.keyword_index import KeywordIndex
from aesoperator.engine.stores.embedded import DB_FILE, EmbeddedGraphStore
from aesoperator.engine.vectors import VectorIndex
from aesoperator.errors import StoreError
from aesoperator.graph_schema.models import Entity

ROOT = Path(__file__).resolve().parent.parent
DISK_MB = 48
FILES = 12  # per round of documents


# -- running out of room ------------------------------------------------------------------------------
class Room(Protocol):
    kind: str

    def fill(self) -> None: ...

    def free(self) -> None: ...


class TmpfsRoom:
    """A tmpfs whose free space a filler file takes up."""

    kind = "tmpfs"

    def __init__(self, mount_point: Path) -> None:
        self.filler = mount_point / "filler.bin"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 12, 1):  # big writes, then the last pages
                chunk = b"\0" * size
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, chunk)
        finally:
            os.close(fd)
        probe = self.filler.with_name("probe.bin")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError) as info:
                os.write(fd, b"x" * 8192)
        finally:
            os.close(fd)
            probe.unlink()
        assert info.value.errno == errno.ENOSPC

    def free(self) -> None:
        self.filler.unlink()


class FileSizeLimitRoom:
    """RLIMIT_FSIZE at 0 in this process: every write to a regular file fails with EFBIG.
    Only for a child process whose output goes to pipes (they are not regular files)."""

    kind = "file-size-limit"

    def __init__(self) -> None:
        self.limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the first refused write kills the process

    def fill(self) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, self.limits[1]))

    def free(self) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, self.limits)


def assert_out_of_room(exc: BaseException, data_dir: Path, room: Room) -> str:
    message = str(exc)
    assert isinstance(exc, StoreError), f"{type(exc).__name__}: {message}"
    assert str(data_dir) in message, message
    if room.kind == "tmpfs":
        assert "disk holding" in message and "is full" in message, message
    else:
        assert "file size limit" in message, message
    assert "run it again" in message, message
    return message


# -- what the data dir holds ----------------------------------------------------------------------------
def checkpoint_wal(data_dir: Path) -> None:
    """Move the WAL into the database and truncate it, so that the next write needs new room
    (SQLite reuses the space of an old WAL otherwise)."""
    conn = sqlite3.connect(data_dir / DB_FILE, isolation_level=None)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        conn.close()
    assert (data_dir / f"{DB_FILE}-wal").stat().st_size == 0


def snapshot(store: EmbeddedGraphStore) -> dict[str, Any]:
    stats = store.stats()
    return {
        "entities": stats.entities,
        "relations": stats.relations,
        "vectors": stats.vectors,
        "last_seq": stats.last_seq,
        "ids": sorted(e.id for page in store.iter_entities() for e in page),
        "items": {s: sorted(store.source_items(s)) for s in store.source_names()},
    }


def index_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != ".lock"}


def assert_consistent(data_dir: Path, vector_dir: Path, keyword_dir: Path, model: str, dim: int) -> dict[str, Any]:
    """The store passes SQLite's integrity check, and the saved indexes load from their manifests
    (checksums verified), catch up from the change log without a rebuild, and then hold exactly
    the store's vectors and entities."""
    conn = sqlite3.connect(f"file:{data_dir / DB_FILE}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    for directory in (vector_dir, keyword_dir):
        strays = [p.name for p in directory.iterdir() if ".tmp" in p.name]
        assert not strays, f"left-over temporary files in {directory}: {strays}"
    store = EmbeddedGraphStore(data_dir)
    try:
        state = snapshot(store)
        vectors = VectorIndex(vector_dir, model, dim)
        vectors.load()
        assert not vectors.sync(store, persist=False).rebuilt
        with_vectors = {i for page in store.iter_vectors(model) for i in page[0]}
        assert len(vectors) == len(with_vectors) == state["vectors"]
        assert all(i in vectors for i in with_vectors)
        keywords = KeywordIndex(keyword_dir)
        try:
            keywords.load()
            assert not keywords.sync(store, persist=False).rebuilt
            assert len(keywords) == state["entities"]
            assert all(i in keywords for i in state["ids"])
        finally:
            keywords.close()
        return state
    finally:
        store.close()


def write_docs(folder: Path, round_: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(FILES):
        (folder / f"r{round_}-note{i:02d}.md").write_text(
            f"# Round {round_} note {i}\n\nShelf {i % 5} holds crate {round_ * 100 + i} of the inventory.\n"
        )


# -- the engine API -------------------------------------------------------------------------------------
def engine_scenario(data_dir: Path, docs: Path, room: Room, embedder: Any) -> None:
    settings = Settings(data_dir=data_dir, write_batch_size=5)
    engine = ContextEngine.open(settings=settings, embedder=embedder)
    try:
        write_docs(docs, 1)
        engine.ingest_path(docs, name="docs")
        engine.remember("The crate audit starts on Monday.", agent_id="clerk", session_id="s1")
        engine.search("crate audit", k=3)
        engine.refresh_index(save=True)
        engine.keywords.save()
        vector_dir, keyword_dir = engine.index.directory, engine.keywords.directory
        assert keyword_dir is not None
        saved = {d: index_files(d) for d in (vector_dir, keyword_dir)}
        # Written to the store but not yet to the indexes: their saves below have work to do.
        late = Entity(id="t:late", type="Document", name="Late ledger", text="A ledger of walnut crates.")
        engine.upsert([late])
        checkpoint_wal(data_dir)
        before = snapshot(engine.store)
        write_docs(docs, 2)

        room.fill()
        attempts = {
            "ingest": lambda: engine.ingest_path(docs, name="docs"),
            "remember": lambda: engine.remember("Second thought.", agent_id="clerk", session_id="s1"),
            "upsert": lambda: engine.upsert([Entity(id="t:new", type="Document", name="New", text="new text")]),
            "save the vector index": lambda: engine.refresh_index(save=True),
            "save the keyword index": lambda: engine.keywords.save(),
        }
        for what, attempt in attempts.items():
            with pytest.raises(StoreError) as info:
                attempt()
            message = assert_out_of_room(info.value, data_dir, room)
            if what == "ingest":
                assert "stopped after 0 batch(es)" in message and "resumes" in message
            if what.startswith("save"):
                assert "index saved before is unchanged" in message
        # Nothing changed, on disk or in the store; reads go on (the indexes caught up in memory).
        assert snapshot(engine.store) == before
        assert {d: index_files(d) for d in saved} == saved
        assert engine.search("walnut ledger", k=3).hits[0].id == "t:late"
        assert engine.get_entities(["t:late"])[0].name == "Late ledger"
        assert assert_consistent(data_dir, vector_dir, keyword_dir, engine.embedder.model_name, engine.embedder.dim)
        room.free()

        report = engine.ingest_path(docs, name="docs")
        assert report.records_changed == FILES and report.records_unchanged == FILES
        engine.remember("Second thought.", agent_id="clerk", session_id="s1")
        engine.upsert([Entity(id="t:new", type="Document", name="New", text="new text")])
        engine.keywords.save()
        after = snapshot(engine.store)
    finally:
        engine.close()
    state = assert_consistent(data_dir, vector_dir, keyword_dir, embedder.model_name, embedder.dim)
    assert state == after
    assert after["entities"] > before["entities"] and "t:new" in after["ids"]
    assert len(after["items"]["docs"]) == 2 * FILES + 1  # the files and the source's identity


# -- an MCP tool call -----------------------------------------------------------------------------------
async def mcp_scenario(data_dir: Path, audit_path: Path | None, room: Room, embedder: Any) -> None:
    from mcp import Client

    from aesoperator.security.audit import AuditLog
    from aesoperator.security.guard import CallGuard
    from aesoperator.serve.server import build_server

    engine = ContextEngine.open(settings=Settings(data_dir=data_dir), embedder=embedder)
    guard = CallGuard(audit=AuditLog(audit_path) if audit_path else None)
    server = build_server(engine, guard, warm=False)

    def text(result: Any) -> str:
        return " ".join(getattr(c, "text", "") for c in result.content)

    try:
        async with Client(server) as client:
            first = await client.call_tool("remember", {"content": "Pallets arrive at dock 4.", "agent_id": "clerk"})
            assert not first.is_error, text(first)
            checkpoint_wal(data_dir)
            before = snapshot(engine.store)

            room.fill()
            calls: dict[str, dict[str, Any]] = {
                "remember": {"content": "Dock 4 is closed today.", "agent_id": "clerk"},
                "create_entities": {"entities": [{"name": "Dock 4", "entityType": "Place", "observations": ["open"]}]},
            }
            for tool, arguments in calls.items():
                result = await client.call_tool(tool, arguments)
                assert result.is_error, f"{tool} succeeded on a full disk"
                message = text(result)
                assert f"tool {tool!r} failed" in message and "internal error" not in message, message
                assert_out_of_room(StoreError(message), data_dir, room)
                assert (result.meta or {})["aesoperator/error"]["type"] == "store"
            # The server keeps serving reads while the disk is full.
            found = await client.call_tool("recall", {"query": "pallets dock", "agent_id": "clerk"})
            assert not found.is_error and "Pallets arrive" in text(found), text(found)
            assert not (await client.call_tool("search", {"query": "dock pallets", "k": 3})).is_error
            assert snapshot(engine.store) == before
            room.free()

            again = await client.call_tool("remember", {"content": "Dock 4 is closed today.", "agent_id": "clerk"})
            assert not again.is_error, text(again)
            made = await client.call_tool("create_entities", calls["create_entities"])
            assert not made.is_error, text(made)
            found = await client.call_tool("recall", {"query": "dock closed", "agent_id": "clerk"})
            assert "Dock 4 is closed today." in text(found)
    finally:
        guard.close()
        engine.close()
    with EmbeddedGraphStore(data_dir) as store:
        after = snapshot(store)
    assert set(before["ids"]) < set(after["ids"])
    if audit_path is not None:
        log = AuditLog(audit_path)
        assert log.verify().ok
        decisions = [(r["tool"], r["decision"]) for r in log.tail(20) if r["tool"] in calls]
        assert decisions == [
            ("remember", "allow"),
            ("remember", "error"),
            ("create_entities", "error"),
            ("remember", "allow"),
            ("create_entities", "allow"),
        ]


# -- fixtures and the two ways of running out -------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A DISK_MB tmpfs mounted on a fresh directory, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0700", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}); the file-size-limit variant covers running out of room")
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip()
        pytest.skip(f"cannot mount a tmpfs here ({reason}); the file-size-limit variant covers running out of room")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], capture_output=True, timeout=30)


_CHILD = """
import sys
from pathlib import Path
import anyio
from aesoperator.engine.embeddings import Embedder
from tests import test_disk_full as t

which, data_dir, extra = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
embedder = Embedder()
embedder.embed(["load the model before the limit"])
room = t.FileSizeLimitRoom()
if which == "engine":
    t.engine_scenario(data_dir, extra, room, embedder)
else:
    anyio.run(t.mcp_scenario, data_dir, None, room, embedder)
print("scenario passed")
"""


def _run_child(which: str, data_dir: Path, extra: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, which, str(data_dir), str(extra)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0 and "scenario passed" in done.stdout, done.stderr[-6000:]


@pytest.mark.timeout(300)
def test_engine_writes_on_a_full_tmpfs(small_disk: Path, tmp_path: Path, embedder: Any) -> None:
    engine_scenario(small_disk / "data", tmp_path / "docs", TmpfsRoom(small_disk), embedder)


@pytest.mark.timeout(300)
def test_engine_writes_past_the_file_size_limit(tmp_path: Path) -> None:
    _run_child("engine", tmp_path / "data", tmp_path / "docs")


@pytest.mark.timeout(300)
def test_mcp_tool_calls_on_a_full_tmpfs(small_disk: Path, tmp_path: Path, embedder: Any) -> None:
    # The audit log lives off the full disk here: what a full disk does to it is the audit log's
    # own concern (a call that cannot be audited is refused), and would hide the store's answer.
    anyio.run(mcp_scenario, small_disk / "data", tmp_path / "audit" / "audit.log", TmpfsRoom(small_disk), embedder)


@pytest.mark.timeout(300)
def test_mcp_tool_calls_past_the_file_size_limit(tmp_path: Path) -> None:
    _run_child("mcp", tmp_path / "data", tmp_path / "unused")


_SAVE_CHILD = """
import resource, signal, sys
from pathlib import Path
import numpy as np
from aesoperator.engine.index_files import IndexLoadError
from aesoperator.engine.vectors import VectorIndex
from aesoperator.errors import StoreError

directory, count, limit = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows = np.random.default_rng(7).standard_normal((count + 1, 384)).astype(np.float32)
index = VectorIndex(directory, "m", 384, exact_max=1000, nprobe=8)
index.add(["v0"], ["a"], rows[:1])
index.save()
index.add([f"v{i}" for i in range(1, count + 1)], ["b"] * count, rows[1:])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limits = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limits[1]))
try:
    index.save()
    print("saved")
except StoreError as exc:
    print("refused:", exc)
resource.setrlimit(resource.RLIMIT_FSIZE, limits)
loaded = VectorIndex(directory, "m", 384, exact_max=1000, nprobe=8)
try:
    loaded.load()
    print("loaded", len(loaded))
except IndexLoadError as exc:
    print("unloadable:", exc)
"""


@pytest.mark.parametrize(
    ("vectors", "limit"),
    [
        # 1.6 kB of FAISS file, buffered whole and cut at the final flush; the id file (30 B) and
        # the manifest (under 1 kB) fit, so only the FAISS file comes out short.
        (1, 1200),
        # 32 kB: cut in the middle of the vectors.
        (20, 4096),
    ],
    ids=["cut-at-the-final-flush", "cut-mid-write"],
)
def test_a_faiss_file_cut_short_fails_the_save(tmp_path: Path, vectors: int, limit: int) -> None:
    """FAISS's own writer only prints a failed final flush to stderr, so a save could commit a
    manifest whose checksum matches a truncated file. Written through Python's file I/O, the save
    fails with a StoreError instead, and the index saved before stays the one on disk."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _SAVE_CHILD, str(tmp_path / "index"), str(vectors), str(limit)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused: could not save the vector index"), done.stdout
    assert "file size limit" in lines[0]
    assert lines[1] == "loaded 1", done.stdout
    assert not [p.name for p in (tmp_path / "index").iterdir() if ".tmp" in p.name or "g000002" in p.name]


def test_an_out_of_space_os_error_is_a_clear_tool_error() -> None:
    from aesoperator.security.failures import classify

    failure = classify(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/notes.bin"), "tool 'remember'")
    assert failure.info.type == "store"
    assert "no room left to write /data/notes.bin" in failure.info.message
    assert "internal" not in failure.info.message
    other = classify(OSError(errno.EACCES, os.strerror(errno.EACCES), "/data/notes.bin"), "tool 'remember'")
    assert other.info.type == "internal"
