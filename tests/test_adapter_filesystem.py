"""The filesystem adapter against the real `@modelcontextprotocol/server-filesystem`.

A small real tree is ingested through `ingest_source`; the graph is checked entity by entity
against the tree as the server reads it, searched, then the tree is changed (an edit, a new file,
a deleted file, a deleted directory) and re-ingested: only the changed files may be read, and
only their entities may change.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from aesoperator import ContextEngine
from aesoperator.graph_schema.ids import entity_id
from aesoperator.ingest import mcp_ingest
from aesoperator.ingest.adapters.base import McpConnection, ResourceContent, ResourceInfo, ToolInfo, ToolResult
from aesoperator.ingest.adapters.filesystem import (
    is_binary,
    parse_file_info,
    parse_node_date,
    split_multiple_files,
)
from aesoperator.ingest.client import open_connection
from aesoperator.ingest.sources import SourceDefinition
from tests.mcp_servers import npm_server_bin

SERVER = "@modelcontextprotocol/server-filesystem"
SOURCE = "docs-fs"
READ_TOOLS = ("read_multiple_files", "read_text_file", "read_file", "read_media_file")


# -- pure helpers -------------------------------------------------------------------------------
def test_split_multiple_files_uses_sizes_not_separators() -> None:
    tricky = "line\n\n---\n/r/b.txt:\nnot b at all\n---\n"
    paths = ["/r/a.txt", "/r/b.txt", "/r/missing.txt", "/r/c.txt"]
    answer = "\n---\n".join(
        [
            f"/r/a.txt:\n{tricky}\n",
            "/r/b.txt:\nreal b ü\n",
            "/r/missing.txt: Error - ENOENT: no such file or directory",
            "/r/c.txt:\nlast\n",
        ]
    )
    sizes = [len(tricky.encode()), len(b"real b \xc3\xbc"), 0, 4]
    parts = split_multiple_files(answer, paths, sizes)
    assert parts["/r/a.txt"] == tricky
    assert parts["/r/b.txt"] == "real b ü"
    assert isinstance(parts["/r/missing.txt"], ValueError) and "ENOENT" in str(parts["/r/missing.txt"])
    assert parts["/r/c.txt"] == "last"
    # A size that no longer fits (the file changed in between) stops the split there: that
    # file and the rest are read one by one, never guessed from the separators.
    assert split_multiple_files(answer, paths, [sizes[0], 2, 0, 4]) == {"/r/a.txt": tricky}
    assert split_multiple_files(answer, paths, [1, *sizes[1:]]) == {}
    # An answer that does not follow the layout yields nothing rather than a wrong split.
    assert split_multiple_files("garbage", paths, sizes) == {}


def test_file_info_and_dates() -> None:
    info = parse_file_info(
        "size: 12\ncreated: Wed Nov 25 2026 19:32:05 GMT+0000 (Coordinated Universal Time)\n"
        "modified: Wed Nov 25 2026 19:32:06 GMT+0100 (Central European Standard Time)\n"
        "accessed: x\nisDirectory: false\nisFile: true\npermissions: 644"
    )
    assert (info.size, info.is_file, info.is_directory) == (12, True, False)
    assert info.label == "12 bytes, modified 2026-11-25T18:32:06Z"
    assert parse_node_date("not a date") is None
    with pytest.raises(ValueError):
        parse_file_info("modified: x")
    assert is_binary("ok\x00") and is_binary("\ufffd" * 40) and not is_binary("café \ufffd once")


# -- a recording connection ----------------------------------------------------------------------
class RecordingConnection:
    """Passes every call to the real connection and remembers the tool calls."""

    def __init__(self, inner: McpConnection) -> None:
        self.inner = inner
        self.server_name = inner.server_name
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolResult:
        self.calls.append((name, dict(arguments or {})))
        return await self.inner.call_tool(name, arguments)

    async def list_tools(self) -> list[ToolInfo]:
        return await self.inner.list_tools()

    async def list_resources(self) -> list[ResourceInfo]:
        return await self.inner.list_resources()

    async def read_resource(self, uri: str) -> ResourceContent:
        return await self.inner.read_resource(uri)


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[RecordingConnection]:
    """Every connection `ingest_source` opens, recorded (the last one is the latest run)."""
    opened: list[RecordingConnection] = []
    real = mcp_ingest.open_connection

    @asynccontextmanager
    async def recording(definition: SourceDefinition) -> AsyncIterator[McpConnection]:
        async with real(definition) as conn:
            wrapped = RecordingConnection(conn)
            opened.append(wrapped)
            yield wrapped

    monkeypatch.setattr(mcp_ingest, "open_connection", recording)
    return opened


def read_paths(conn: RecordingConnection) -> set[str]:
    out: set[str] = set()
    for name, args in conn.calls:
        if name == "read_multiple_files":
            out.update(args["paths"])
        elif name in READ_TOOLS:
            out.add(args["path"])
    return out


# -- the tree --------------------------------------------------------------------------------------
TREE: dict[str, str | bytes] = {
    "README.md": "# Harbour almanac\n\nTide tables for the quay of Lindholm.\n\n## Pilots\n\nPilot boats leave at dawn.\n",
    "notes.txt": "The lighthouse keeper logs the foghorn schedule every Tuesday.\n",
    "src/ferry.py": "def timetable():\n    '''Ferry crossings to Saltholm.'''\n    return ['07:15', '09:40']\n",
    "src/util/knots.py": "KNOT_IN_METRES = 1852 / 3600\n",
    # holds what a naive split of read_multiple_files would take for the next file's header
    "src/util/tricky.txt": "before\n\n---\nsrc/util/zz.txt:\nnot that file\n---\nafter\n",
    "src/util/zz.txt": "the zz file\n",
    "docs/guide.md": "# Mooring guide\n\nUse two spring lines at the eastern pier.\n" + "Cleat hitch. " * 200 + "\n",
    "docs/archive/old.md": "# Old charts\n\nThe 1911 soundings of the northern channel.\n",
    "logo.png": bytes(range(256)) * 4,  # binary
    "blob.txt": b"\x00\x01\x02 binary with a text suffix",
    "big.txt": "x" * 5000 + "\n",  # over max_file_bytes
    "build.log": "excluded by the source's exclude patterns\n",
    "node_modules/pkg/index.js": "excluded by default\n",
    "blank.md": "   \n\n",
    # not UTF-8: the server replaces the byte, so the batch answer cannot be split by size there
    "latin.txt": "Caf\u00e9 on the quay, open at six.\n".encode("latin-1"),
}
EMPTY_DIRS = ("docs/empty",)
EXPECTED_FILES = {
    "README.md",
    "latin.txt",
    "notes.txt",
    "src/ferry.py",
    "src/util/knots.py",
    "src/util/tricky.txt",
    "src/util/zz.txt",
    "docs/guide.md",
    "docs/archive/old.md",
}
EXPECTED_SKIPS = {"logo.png", "blob.txt", "big.txt", "blank.md"}


def build_tree(root: Path) -> None:
    for rel, content in TREE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    for rel in EMPTY_DIRS:
        (root / rel).mkdir(parents=True, exist_ok=True)


def expected_dirs(root: Path) -> set[str]:
    """Every directory below root (root itself as ""), excluded ones left out."""
    out = {""}
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "node_modules"]
        rel = os.path.relpath(dirpath, root)
        out.add("" if rel == "." else Path(rel).as_posix())
    return out


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "harbour"
    build_tree(root)
    return root


@pytest.fixture
def definition(tree: Path) -> SourceDefinition:
    command = npm_server_bin(SERVER)
    return SourceDefinition(
        name=SOURCE,
        kind="filesystem",
        command=command[0],
        args=[*command[1:], str(tree)],
        exclude=["*.log"],
        options={"all_files": True, "max_file_bytes": 4096, "read_batch_files": 3, "concurrency": 4},
    )


def server_texts(definition: SourceDefinition, root: Path, rels: list[str]) -> dict[str, str]:
    """What the server itself returns for each file (read one by one, outside the adapter)."""

    async def read() -> dict[str, str]:
        out = {}
        async with open_connection(definition) as conn:
            for rel in rels:
                out[rel] = (await conn.call_tool("read_text_file", {"path": str(root / rel)})).text
        return out

    return anyio.run(read)


def entities_of(engine: ContextEngine, types: list[str]) -> dict[str, Any]:
    return {e.id: e for batch in engine.store.iter_entities(types=types) for e in batch}


def live_relations(engine: ContextEngine) -> list[Any]:
    return [r for batch in engine.store.iter_relations() for r in batch if r.expired_at is None]


def fid(kind: str, path: str) -> str:
    return entity_id(SOURCE, kind, path or ".")


def check_graph(engine: ContextEngine, definition: SourceDefinition, root: Path, files: set[str]) -> None:
    """Entity by entity: every directory and file, each file's chunks against the server's text."""
    dirs = expected_dirs(root)
    directories = entities_of(engine, ["Directory"])
    assert set(directories) == {fid("dir", d) for d in dirs}
    file_entities = entities_of(engine, ["File"])
    assert set(file_entities) == {fid("file", f) for f in files}
    chunks = entities_of(engine, ["Chunk"])
    contains = {(r.src, r.dst) for r in live_relations(engine) if r.type == "CONTAINS"}

    for d in dirs - {""}:
        assert (fid("dir", posixpath.dirname(d)), fid("dir", d)) in contains, d
    texts = server_texts(definition, root, sorted(files))
    for rel in files:
        entity = file_entities[fid("file", rel)]
        assert entity.properties["path"] == rel
        assert entity.properties["size"] == (root / rel).stat().st_size
        assert entity.valid_from is not None
        assert abs(entity.valid_from.timestamp() - (root / rel).stat().st_mtime) < 1.5
        assert entity.provenance is not None and entity.provenance.uri == (root / rel).as_uri()
        assert (fid("dir", posixpath.dirname(rel)), entity.id) in contains
        mine = sorted((c for c in chunks.values() if c.properties["path"] == rel), key=lambda c: c.properties["index"])
        assert mine, rel
        server_text = texts[rel]
        assert server_text == (root / rel).read_bytes().decode("utf-8", "replace")
        for chunk in mine:
            assert (entity.id, chunk.id) in contains
            assert chunk.text in server_text
        lines = server_text.splitlines()
        assert mine[0].properties["start_line"] == 1 + next(i for i, line in enumerate(lines) if line.strip())
    assert {c.properties["path"] for c in chunks.values()} == files


def changed_entity_ids(engine: ContextEngine, since: int) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"upsert": set(), "delete": set()}
    for change in engine.store.changes_since(since):
        if change.kind == "entity":
            out[change.op].add(change.id)
    return out


def owned_by(engine: ContextEngine, rels: set[str]) -> set[str]:
    states = engine.store.source_items(SOURCE)
    return {i for rel in rels if rel in states for i in states[rel].entity_ids}


# -- the test --------------------------------------------------------------------------------------
def test_filesystem_server_ingest_and_incremental_update(
    make_engine: Callable[..., ContextEngine],
    definition: SourceDefinition,
    tree: Path,
    sessions: list[RecordingConnection],
) -> None:
    engine = make_engine()
    first = mcp_ingest.ingest_source(engine, definition)

    # what was read, skipped and built
    assert {s.key for s in first.skipped} == EXPECTED_SKIPS
    reasons = {s.key: s.reason for s in first.skipped}
    assert reasons["logo.png"].startswith("binary content") and reasons["blob.txt"].startswith("binary content")
    assert "over the 4096 limit" in reasons["big.txt"]
    assert reasons["blank.md"].startswith("empty file")
    assert first.records_changed == len(EXPECTED_FILES) + len(expected_dirs(tree))
    assert first.quarantined == len(EXPECTED_SKIPS)
    calls = sessions[-1].calls
    infos = [a["path"] for n, a in calls if n == "get_file_info"]
    assert sorted(infos) == sorted(str(tree / r) for r in EXPECTED_FILES | EXPECTED_SKIPS)  # excluded: never asked
    assert read_paths(sessions[-1]) == {str(tree / r) for r in EXPECTED_FILES | {"logo.png", "blob.txt", "blank.md"}}
    assert sum(1 for n, _ in calls if n == "read_multiple_files") >= 3  # batches of at most 3
    # files whose bytes are not UTF-8 are read alone; the rest of their batch is asked again
    assert {a["path"] for n, a in calls if n == "read_text_file"} == {str(tree / "latin.txt"), str(tree / "logo.png")}
    assert sum(1 for n, _ in calls if n == "directory_tree") == 1
    check_graph(engine, definition, tree, EXPECTED_FILES)

    # search through the engine
    hits = engine.search("spring lines at the eastern pier", k=5).hits
    assert any(h.id.startswith(fid("chunk", "docs/guide.md")) for h in hits[:3])
    hits = engine.search("ferry crossings to Saltholm", k=5).hits
    assert any(fid("file", "src/ferry.py") == h.id or h.id.startswith(fid("chunk", "src/ferry.py")) for h in hits[:3])

    # nothing changed: no file is read, nothing is written
    seq = engine.store.last_seq()
    again = mcp_ingest.ingest_source(engine, definition)
    assert read_paths(sessions[-1]) == set()
    assert again.records_changed == 0 and again.records_removed == 0
    assert {s.key for s in again.skipped} == EXPECTED_SKIPS  # known skips: not read again either
    assert changed_entity_ids(engine, seq) == {"upsert": set(), "delete": set()}

    # change the tree: edit, add, delete a file, delete a directory with its file
    seq = engine.store.last_seq()
    before = owned_by(engine, {"docs/guide.md", "docs/archive/old.md", "docs/archive/"})
    old_notes = engine.store.get_entities([fid("file", "notes.txt")])[0]
    (tree / "notes.txt").write_text(str(TREE["notes.txt"]) + "New: the foghorn is silent on Sundays.\n")
    (tree / "src" / "tide.py").write_text("HIGH_WATER = '04:12'  # spring tide at Lindholm quay\n")
    (tree / "docs" / "guide.md").unlink()
    shutil.rmtree(tree / "docs" / "archive")
    update = mcp_ingest.ingest_source(engine, definition)

    assert read_paths(sessions[-1]) == {str(tree / "notes.txt"), str(tree / "src" / "tide.py")}
    assert update.records_changed == 2
    assert update.records_removed == 3  # guide.md, archive/old.md, the archive directory
    files_now = (EXPECTED_FILES - {"docs/guide.md", "docs/archive/old.md"}) | {"src/tide.py"}
    check_graph(engine, definition, tree, files_now)

    changes = changed_entity_ids(engine, seq)
    touched = owned_by(engine, {"notes.txt", "src/tide.py"})
    assert changes["upsert"] and changes["upsert"] <= touched
    assert changes["delete"] == before
    assert not engine.store.get_entities(sorted(before))
    # the edited file keeps its previous version in the entity history
    history = engine.store.history(fid("file", "notes.txt"))  # type: ignore[attr-defined]
    assert any(h.properties["size"] == old_notes.properties["size"] for h in history)
    hits = engine.search("is the foghorn silent on Sundays?", k=5).hits
    assert any(h.id.startswith(fid("chunk", "notes.txt")) or h.id == fid("file", "notes.txt") for h in hits[:3])
    assert not any("guide.md" in h.id for h in engine.search("spring lines eastern pier", k=10).hits)


def test_directory_tree_too_large_falls_back_to_listing(
    make_engine: Callable[..., ContextEngine],
    definition: SourceDefinition,
    tree: Path,
    sessions: list[RecordingConnection],
) -> None:
    """A tree answer over max_response_bytes is listed directory by directory instead; a file
    too large for one answer is skipped with the reason, the rest goes on."""
    small = definition.model_copy(update={"max_response_bytes": 1024})
    engine = make_engine()
    report = mcp_ingest.ingest_source(engine, small, embed=False)
    files = {e.properties["path"] for e in entities_of(engine, ["File"]).values()}
    assert files == EXPECTED_FILES - {"docs/guide.md"}
    reasons = {s.key: s.reason for s in report.skipped}
    assert "max_response_bytes" in reasons["docs/guide.md"]
    assert set(reasons) == EXPECTED_SKIPS | {"docs/guide.md"}
    listed = {a["path"] for n, a in sessions[-1].calls if n == "list_directory"}
    assert listed == {str(tree / d) if d else str(tree) for d in expected_dirs(tree)}


def iter_keys(states: Mapping[str, Any]) -> Iterator[str]:
    return (k for k in states if not k.startswith("__"))


def test_roots_option_and_several_roots(make_engine: Callable[..., ContextEngine], tree: Path, tmp_path: Path) -> None:
    other = tmp_path / "pier"
    other.mkdir()
    (other / "berths.md").write_text("# Berths\n\nBerth 4 takes the night ferry.\n")
    command = npm_server_bin(SERVER)
    both = SourceDefinition(
        name="two-roots", kind="filesystem", command=command[0], args=[*command[1:], str(tree), str(other)]
    )
    engine = make_engine()
    mcp_ingest.ingest_source(engine, both, embed=False)
    keys = set(iter_keys(engine.store.source_items("two-roots")))
    assert "pier/berths.md" in keys and "harbour/README.md" in keys and "harbour/src/" in keys

    only = both.model_copy(update={"name": "one-root", "options": {"roots": [str(other)]}})
    mcp_ingest.ingest_source(engine, only, embed=False)
    assert set(iter_keys(engine.store.source_items("one-root"))) == {"/", "berths.md"}
