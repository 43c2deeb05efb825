"""Folders as a read-only MCP server: list, read and search below allowed roots.

The tools keep the names, arguments and text layouts of the filesystem MCP server
(`@modelcontextprotocol/server-filesystem`) for what they share, so the engine's filesystem
adapter ingests from either: `list_allowed_directories`, `list_directory`, `directory_tree`,
`get_file_info`, `read_text_file`, `read_multiple_files`, `search_files`; plus `search_text`,
which finds lines holding a text.

Every path is resolved (symbolic links followed) before use and must lie inside one of the roots;
anything else, `..` tricks and links that point outside included, is refused. Nothing is written.

Only regular files are read: FIFOs, sockets and device files are listed but never opened for
reading (`read_text_file` refuses them with the reason, `search_text` reports them as skipped),
and every read gives up after `read_timeout` seconds. Walks are iterative and stop `max_depth`
directory levels below where they start; deeper directories are reported as skipped
(`directory_tree` marks them with a "skipped" reason, `search_files` and `search_text` name
them), so one pathological folder never makes the rest unsearchable.

Resource: `file-roots://tree` (sizes and times of every file below the roots, as a version) for
subscriptions: it changes when a file is added, removed or modified.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from mcp_types import ToolAnnotations
from pydantic import Field

from aesoperator.connectors.base import ConnectorPolicy, ConnectorServer
from aesoperator.errors import ConfigError, PermissionDenied, SchemaError
from aesoperator.ingest.file_access import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_READ_TIMEOUT,
    UnreadableFile,
    WalkedDir,
    WalkedFile,
    WalkSkip,
    read_regular_file,
    walk,
)
from aesoperator.security.envelope import report_count

TREE_URI = "file-roots://tree"
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
MAX_READ_BYTES = 10_000_000
MAX_ENTRIES = 100_000
MAX_MATCHES = 1_000
MAX_SKIP_NOTES = 100  # skipped items named in one answer
MAX_DEPTH_LIMIT = 256  # deeper trees would not fit the JSON encoder's recursion limit
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def js_date(seconds: float) -> str:
    """A time as JavaScript's `Date.toString()` prints it in UTC (the filesystem server's layout)."""
    t = datetime.fromtimestamp(seconds, UTC)
    return (
        f"{_DAYS[t.weekday()]} {_MONTHS[t.month - 1]} {t.day:02d} {t.year:04d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT+0000 (Coordinated Universal Time)"
    )


@dataclass
class FilesystemSource:
    roots: Sequence[str | Path]
    exclude: Sequence[str] = (".git", "node_modules", "__pycache__", ".venv")
    max_depth: int = DEFAULT_MAX_DEPTH
    read_timeout: float = DEFAULT_READ_TIMEOUT
    _roots: list[Path] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if not self.roots:
            raise ConfigError("the filesystem connector needs at least one allowed root")
        if not 1 <= self.max_depth <= MAX_DEPTH_LIMIT:
            raise ConfigError(
                f"filesystem connector: max_depth must be between 1 and {MAX_DEPTH_LIMIT}, got {self.max_depth}"
            )
        if not self.read_timeout > 0:
            raise ConfigError(f"filesystem connector: read_timeout must be positive seconds, got {self.read_timeout}")
        for root in self.roots:
            path = Path(root).expanduser().resolve()
            if not path.is_dir():
                raise ConfigError(f"filesystem connector: allowed root {root} is not a directory")
            self._roots.append(path)

    # -- the rule -------------------------------------------------------------------------------
    def resolve(self, path: str) -> Path:
        """`path` (absolute, or relative to the first root) resolved, if it lies inside a root."""
        if not path or "\x00" in path:
            raise SchemaError("a path is needed")
        raw = Path(os.path.expanduser(path))
        candidate = raw if raw.is_absolute() else self._roots[0] / raw
        real = Path(os.path.realpath(candidate))
        for root in self._roots:
            if real == root or root in real.parents:
                return real
        raise PermissionDenied(f"access denied: {path[:300]!r} is outside the allowed directories")

    def _excluded(self, name: str, rel: str, patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in (*self.exclude, *patterns))

    def _inside(self, path: Path) -> bool:
        real = Path(os.path.realpath(path))
        return any(real == r or r in real.parents for r in self._roots)

    # -- tools ----------------------------------------------------------------------------------
    def allowed(self) -> str:
        return "Allowed directories:\n" + "\n".join(str(r) for r in self._roots)

    def list_directory(self, path: str) -> str:
        where = self.resolve(path)
        if not where.is_dir():
            raise SchemaError(f"{path!r} is not a directory")
        lines = []
        for entry in sorted(where.iterdir(), key=lambda p: p.name):
            if not self._inside(entry):
                continue
            lines.append(f"[{'DIR' if entry.is_dir() else 'FILE'}] {entry.name}")
        return "\n".join(lines)

    def tree(self, path: str, exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The tree below `path`; a directory too deep to walk is an entry with a "skipped" reason."""
        where = self.resolve(path)
        if not where.is_dir():
            raise SchemaError(f"{path!r} is not a directory")
        top: list[dict[str, Any]] = []
        children: dict[str, list[dict[str, Any]]] = {"": top}
        count = 0
        for item in walk(where, max_depth=self.max_depth, keep_dir=self._keeps(exclude)):
            if isinstance(item, WalkSkip) and item.path == where:
                raise SchemaError(f"{path!r}: {item.reason}")
            parent = children.get(item.rel.rpartition("/")[0])
            if parent is None:
                continue  # below a directory left out (outside the roots)
            name = item.rel.rpartition("/")[2]
            if isinstance(item, WalkedFile):
                if self._excluded(name, item.rel, exclude) or not self._inside(item.path):
                    continue
                node: dict[str, Any] = {"name": name, "type": "file"}
            elif not self._inside(item.path):
                continue
            elif isinstance(item, WalkedDir):
                node = {"name": name, "type": "directory", "children": []}
                children[item.rel] = node["children"]
            else:
                node = {"name": name, "type": "directory", "children": [], "skipped": item.reason}
            count += 1
            if count > MAX_ENTRIES:
                raise SchemaError(f"more than {MAX_ENTRIES} entries below {path!r}; list it directory by directory")
            parent.append(node)
        for nodes in children.values():
            nodes.sort(key=lambda n: n["name"])
        return top

    def info(self, path: str) -> str:
        where = self.resolve(path)
        st = where.stat()
        return "\n".join(
            [
                f"size: {st.st_size}",
                f"created: {js_date(st.st_ctime)}",
                f"modified: {js_date(st.st_mtime)}",
                f"accessed: {js_date(st.st_atime)}",
                f"isDirectory: {str(stat.S_ISDIR(st.st_mode)).lower()}",
                f"isFile: {str(stat.S_ISREG(st.st_mode)).lower()}",
                f"permissions: {stat.S_IMODE(st.st_mode):o}",
            ]
        )

    def read(self, path: str, head: int | None = None, tail: int | None = None) -> str:
        if head is not None and tail is not None:
            raise SchemaError("give head or tail, not both")
        where = self.resolve(path)
        if where.is_dir():
            raise SchemaError(f"{path!r} is not a file")
        try:
            data = read_regular_file(where, max_bytes=MAX_READ_BYTES, timeout=self.read_timeout)
        except UnreadableFile as exc:
            raise SchemaError(f"{path!r}: {exc}") from None
        text = data.decode("utf-8", "replace")
        if head is not None:
            return "\n".join(text.split("\n")[:head])
        if tail is not None:
            return "\n".join(text.split("\n")[-tail:])
        return text

    def read_many(self, paths: Sequence[str]) -> str:
        parts = []
        for path in paths:
            try:
                parts.append(f"{path}:\n{self.read(path)}\n")
            except (PermissionDenied, SchemaError, OSError) as exc:
                parts.append(f"{path}: Error - {' '.join(str(exc).split())}")
        return "\n---\n".join(parts)

    def _keeps(self, exclude: Sequence[str]) -> Callable[[str, str], bool]:
        return lambda name, rel: not self._excluded(name, rel, exclude)

    def _walk(self, where: Path, exclude: Sequence[str], skipped: list[WalkSkip]) -> Iterator[tuple[Path, str]]:
        """(path, path relative to `where`) of every non-directory below `where` that is not
        excluded; directories that could not be walked are added to `skipped`."""
        for item in walk(where, max_depth=self.max_depth, keep_dir=self._keeps(exclude)):
            if isinstance(item, WalkSkip):
                skipped.append(item)
            elif isinstance(item, WalkedFile):
                name = item.rel.rpartition("/")[2]
                if not self._excluded(name, item.rel, exclude):
                    yield item.path, item.rel

    def search(self, path: str, pattern: str, exclude: Sequence[str] = ()) -> tuple[list[str], list[str]]:
        """(matching paths, notes on the directories that were not searched)."""
        where = self.resolve(path)
        glob = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
        found: list[str] = []
        skipped: list[WalkSkip] = []
        for full, rel in self._walk(where, exclude, skipped):
            if fnmatch.fnmatch(full.name.lower(), glob.lower()) or fnmatch.fnmatch(rel.lower(), glob.lower()):
                if self._inside(full):
                    found.append(str(full))
                if len(found) >= MAX_MATCHES:
                    break
        notes = [f"skipped {s.path}: {s.reason}" for s in skipped if self._inside(s.path)][:MAX_SKIP_NOTES]
        return found, notes

    def search_text(
        self, path: str, text: str, exclude: Sequence[str] = (), max_matches: int = 200
    ) -> list[dict[str, Any]]:
        """Matching lines ({path, line, text}), then what was not searched ({path, skipped})."""
        if not text:
            raise SchemaError("give the text to search for")
        where = self.resolve(path)
        needle = text.lower()
        found: list[dict[str, Any]] = []
        skips: list[WalkSkip] = []
        notes: list[dict[str, Any]] = []
        for full, _rel in self._walk(where, exclude, skips):
            if not self._inside(full):
                continue
            try:
                data = read_regular_file(full, max_bytes=MAX_READ_BYTES, timeout=self.read_timeout)
            except UnreadableFile as exc:
                if len(notes) < MAX_SKIP_NOTES:
                    notes.append({"path": str(full), "skipped": str(exc)})
                continue
            if b"\x00" in data[:8192]:
                continue
            for number, line in enumerate(data.decode("utf-8", "replace").split("\n"), start=1):
                if needle in line.lower():
                    found.append({"path": str(full), "line": number, "text": line[:500]})
                    if len(found) >= max_matches:
                        return found + notes
        for skip in skips:
            if len(notes) < MAX_SKIP_NOTES and self._inside(skip.path):
                notes.append({"path": str(skip.path), "skipped": skip.reason})
        return found + notes

    def tree_version(self) -> str:
        digest = hashlib.sha256()
        for root in self._roots:
            skipped: list[WalkSkip] = []
            for n, (full, rel) in enumerate(self._walk(root, (), skipped)):
                if n >= MAX_ENTRIES:
                    break
                try:
                    st = full.stat()
                except OSError:
                    continue
                digest.update(f"{root}|{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:32]


PathArg = Annotated[str, Field(max_length=4096)]
Excludes = Annotated[list[str] | None, Field(description="Glob patterns to leave out.")]

INSTRUCTIONS = """\
Folders, read-only, below the allowed directories (`list_allowed_directories`). List with
`list_directory` or `directory_tree`, read with `read_text_file` / `read_multiple_files`, find files
by name with `search_files` and lines by text with `search_text`.
"""


def build_server(source: FilesystemSource, policy: ConnectorPolicy) -> ConnectorServer:
    async def versions() -> dict[str, str]:
        return {TREE_URI: await anyio.to_thread.run_sync(source.tree_version)}

    server = ConnectorServer(policy, instructions=INSTRUCTIONS, versions=versions, title="filesystem connector")

    @server.tool(annotations=READ_ONLY)
    async def list_allowed_directories() -> str:
        """The directories this server may read."""
        report_count(len(source._roots))
        return source.allowed()

    @server.tool(annotations=READ_ONLY)
    async def list_directory(path: PathArg) -> str:
        """The entries of a directory, each marked [FILE] or [DIR]."""
        text = await anyio.to_thread.run_sync(source.list_directory, path)
        report_count(text.count("\n") + 1 if text else 0)
        return text

    @server.tool(annotations=READ_ONLY)
    async def directory_tree(path: PathArg, excludePatterns: Excludes = None) -> str:
        """Every file and directory below a directory, as a JSON tree."""
        tree = await anyio.to_thread.run_sync(source.tree, path, excludePatterns or [])
        return json.dumps(tree, indent=2)

    @server.tool(annotations=READ_ONLY)
    async def get_file_info(path: PathArg) -> str:
        """Size, times, type and permissions of a file or directory."""
        report_count(1)
        return await anyio.to_thread.run_sync(source.info, path)

    @server.tool(annotations=READ_ONLY)
    async def read_text_file(
        path: PathArg,
        head: Annotated[int | None, Field(ge=1, description="Only the first N lines")] = None,
        tail: Annotated[int | None, Field(ge=1, description="Only the last N lines")] = None,
    ) -> str:
        """A file's text (UTF-8)."""
        report_count(1)
        return await anyio.to_thread.run_sync(source.read, path, head, tail)

    @server.tool(annotations=READ_ONLY)
    async def read_multiple_files(paths: Annotated[list[str], Field(max_length=1000)]) -> str:
        """Several files at once: "<path>:\\n<text>" joined by "---" lines; a file that cannot be read
        says why instead."""
        report_count(len(paths))
        return await anyio.to_thread.run_sync(source.read_many, paths)

    @server.tool(annotations=READ_ONLY)
    async def search_files(
        path: PathArg, pattern: Annotated[str, Field(max_length=500)], excludePatterns: Excludes = None
    ) -> str:
        """Files below a directory whose name (or relative path) matches a glob or contains the text."""
        found, notes = await anyio.to_thread.run_sync(source.search, path, pattern, excludePatterns or [])
        report_count(len(found))
        return "\n".join([*(found or ["No matches found"]), *notes])

    @server.tool(annotations=READ_ONLY)
    async def search_text(
        path: PathArg,
        text: Annotated[str, Field(max_length=500)],
        max_matches: Annotated[int, Field(ge=1, le=MAX_MATCHES)] = 200,
    ) -> list[dict[str, Any]]:
        """Lines holding `text` (case-insensitive) in the text files below a directory, each as
        {path, line, text}; after them, what was not searched as {path, skipped: reason} (FIFOs,
        sockets, devices, unreadable or oversize files, directories deeper than the depth limit)."""
        found = await anyio.to_thread.run_sync(lambda: source.search_text(path, text, (), max_matches))
        report_count(len(found))
        return found

    @server.resource(
        TREE_URI,
        name="tree",
        title="Files below the roots",
        description="A version of the tree (sizes and modification times); it changes when a file does.",
        mime_type="text/plain",
    )
    async def read_tree() -> str:
        return await anyio.to_thread.run_sync(source.tree_version)

    return server
