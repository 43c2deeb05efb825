"""Folders served by the filesystem MCP server (`@modelcontextprotocol/server-filesystem`).

What it reads, with the server's read-only tools only:

- `list_allowed_directories`: the roots (all of them, or those `options.roots` names);
- `directory_tree` per root: every directory and file, pruned server-side by the exclude
  patterns (a tree too large for one answer is listed directory by directory with
  `list_directory` instead);
- `get_file_info` per file (several in flight at once): size and modification time, the file's
  version. A file whose version is unchanged since the last run is not read at all;
- `read_multiple_files` for changed files, in batches bounded by count and bytes. The answer is
  split by the sizes `get_file_info` gave; where that fails (a file that changed meanwhile, or
  is not UTF-8), that file is read alone with `read_text_file` and the rest asked for again.

Each file becomes a record for the existing `FilesMapper` (payload {path, text, size, mtime}:
File and Chunk entities, CONTAINS from its directories); each directory becomes a record of its
own, so a directory that disappears is removed with its files. Paths are relative to the root
(with several roots, prefixed by the root's folder name).

Options:
    roots:             allowed directories to ingest (default: every one the server allows)
    max_file_bytes:    larger files are skipped with the reason (default 2,000,000)
    read_batch_files:  files per read_multiple_files call (default 32)
    read_batch_bytes:  bytes per read_multiple_files call (default 1,000,000)
    concurrency:       get_file_info calls in flight (default 8)
    all_files:         without `include`, read every file, not only known text/code suffixes
    default_excludes:  also exclude .git, node_modules, __pycache__, virtualenvs... (default true)
    max_depth:         directory levels read below a root; deeper directories are skipped with
                       the reason (default 128)
    chunk_chars, overlap_chars: chunking of file text (default 1200 / 150)
    max_document_bytes, document_*: document files (PDF, Word, ...), see `filesystem_documents`

Document files (PDF, Word, PowerPoint, Excel, CSV, HTML, EPUB) are read as bytes with
`read_media_file` and chunked by page, slide, sheet or chapter (`filesystem_documents`).
Other binary files (a NUL byte, or mostly undecodable text), empty and oversize files, and anything
that is not a regular file (FIFOs, sockets, devices: never asked for) are skipped with the reason, and are not read again while their version stays the same. The server reports
modification times to the second: a file rewritten within the same second with the same size
and creation time looks unchanged until its next change.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import anyio

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.errors import ConfigError, SourceError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.graph_schema.models import Entity, Relation
from aesoperator.ingest.adapters.base import McpConnection, unchanged
from aesoperator.ingest.adapters.filesystem_documents import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    document_limits,
    document_record,
    read_document_bytes,
    settled_probe,
)
from aesoperator.ingest.client import McpCallError
from aesoperator.ingest.file_access import DEFAULT_MAX_DEPTH, too_deep_reason
from aesoperator.ingest.loaders.sniff import DOCUMENT_SUFFIXES
from aesoperator.ingest.local_files import DEFAULT_EXCLUDES, TEXT_NAMES, TEXT_SUFFIXES
from aesoperator.ingest.mappers.files import FilesMapper
from aesoperator.ingest.pipeline import QUARANTINE_PREFIX, settled_quarantine
from aesoperator.ingest.records import MappedItem, SkippedRecord, SourceRecord
from aesoperator.ingest.sources import SourceDefinition

VERSION = "fs1"
WINDOW_FILES = 256  # files whose info is gathered before their records are yielded
_DATE = re.compile(r"\w{3} (\w{3}) (\d{1,2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT([+-]\d{4})")
_MONTHS = {
    m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)
}
_LISTING = re.compile(r"\[(FILE|DIR)\] (.+)")


def directory_key(path: str) -> str:
    """Directory records end with '/', so they never collide with a file's key."""
    return f"{path}/"


def parse_node_date(text: str) -> float | None:
    """Seconds since the epoch from a JavaScript `Date` string as the server prints it
    ("Wed Nov 25 2026 19:32:06 GMT+0000 (Coordinated Universal Time)"); None if it is not one."""
    match = _DATE.match(text.strip())
    if match is None or match.group(1) not in _MONTHS:
        return None
    month = _MONTHS[match.group(1)]
    day, year, hour, minute, second = (int(match.group(i)) for i in (2, 3, 4, 5, 6))
    moment = datetime.strptime(
        f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d} {match.group(7)}",
        "%Y-%m-%d %H:%M:%S %z",
    )
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class FileInfo:
    size: int
    modified: str
    created: str
    is_file: bool
    is_directory: bool

    @property
    def version(self) -> str:
        """Everything the server tells that changes when the file does."""
        return f"{self.size}|{self.modified}|{self.created}"

    @property
    def label(self) -> str:
        """Size and time, readable: ends the reason a file was skipped for its content."""
        seconds = parse_node_date(self.modified)
        when = (
            datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if seconds is not None
            else self.modified
        )
        return f"{self.size} bytes, modified {when}"


def parse_file_info(text: str) -> FileInfo:
    """`get_file_info`'s "key: value" lines."""
    fields: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition(": ")
        if sep:
            fields[key.strip()] = value.strip()
    try:
        size = int(fields["size"])
    except (KeyError, ValueError):
        raise ValueError(f"get_file_info gave no size: {text[:200]!r}") from None
    if size < 0 or "modified" not in fields:
        raise ValueError(f"get_file_info gave no usable size or modified time: {text[:200]!r}")
    return FileInfo(
        size=size,
        modified=fields["modified"],
        created=fields.get("created", ""),
        is_file=fields.get("isFile") == "true",
        is_directory=fields.get("isDirectory") == "true",
    )


def split_multiple_files(text: str, paths: Sequence[str], sizes: Sequence[int]) -> dict[str, str | Exception]:
    """Split a `read_multiple_files` answer into each file's text (or a ValueError with the
    server's message for a file it could not read).

    The answer joins "<path>:\n<text>\n" (or "<path>: Error - <message>") with "\n---\n". The
    expected sizes (from `get_file_info`) say where each text ends, so a file that itself holds
    "---" lines or another file's header cannot shift the split. The split stops at the first
    file whose size does not fit (it changed in between) or whose header is not where it should
    be: that file and the rest are left out, to be read one by one, never guessed."""
    data = text.encode("utf-8")
    out: dict[str, str | Exception] = {}
    pos = 0
    for i, path in enumerate(paths):
        head = path.encode("utf-8") + b":"
        if not data.startswith(head, pos):
            break
        pos += len(head)
        nxt = b"\n---\n" + paths[i + 1].encode("utf-8") + b":" if i + 1 < len(paths) else None
        if data.startswith(b" Error - ", pos):
            # Error messages are one line: the next header follows right after it.
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end
            if nxt is not None and not data.startswith(nxt, end):
                break
            if nxt is None and end != len(data):
                break
            out[path] = ValueError(data[pos + len(b" Error - ") : end].decode("utf-8", "replace").strip())
            pos = end + 5
            continue
        if not data.startswith(b"\n", pos):
            break
        pos += 1
        end = pos + sizes[i]
        fits = data.startswith(b"\n" + nxt, end) if nxt is not None else end + 1 == len(data) and data.endswith(b"\n")
        if not fits:
            break
        out[path] = data[pos:end].decode("utf-8", "replace")
        pos = end + 6
    return out


def is_binary(text: str) -> bool:
    """NUL bytes, or many characters the server could not decode as UTF-8."""
    if "\x00" in text[:8192]:
        return True
    bad = text.count("\ufffd")
    return bad > 16 and bad > len(text) // 20


class FilesystemMapper:
    """Files through `FilesMapper`; directory records as Directory entities (CONTAINS from their
    parent) owned by the directory, so they go when the directory goes.

    Every relation has one owner: `FilesMapper` gives each file its whole directory chain
    (root → … → parent), which the directory records own here, so a file keeps only its own
    edges (parent → file → chunks). Otherwise removing one file would retire the chain that its
    siblings still hang from (the pipeline expires what a vanished item owned)."""

    kind = "filesystem"

    def __init__(self, files: FilesMapper) -> None:
        self.files = files

    def directory(self, path: str) -> Entity:
        # the same entity `FilesMapper` emits for a file's directory chain
        return self.files._dir_entity(path)

    def map(self, record: SourceRecord) -> MappedItem:
        if record.kind == "file":
            item = self.files.map(record)
            directories = {e.id for e in item.shared_entities if e.type == "Directory"}
            item.relations = [r for r in item.relations if not (r.src in directories and r.dst in directories)]
            return item
        if record.kind != "directory":
            raise ValueError(f"unknown filesystem record kind {record.kind!r}")
        path = str(record.payload["path"])
        entity = self.directory(path)
        item = MappedItem(entities=[entity])
        if path:
            parent = self.directory(posixpath.dirname(path))
            item.shared_entities.append(parent)
            item.relations.append(
                Relation(
                    type="CONTAINS",
                    src=parent.id,
                    dst=entity.id,
                    source=self.files.source,
                    namespace=self.files.namespace,
                )
            )
        return item


def _matches(rel: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in patterns)


@dataclass(frozen=True, slots=True)
class _Root:
    path: str  # as the server spells it
    prefix: str  # what relative paths below it start with ("" for a single root)


@dataclass(slots=True)
class _Candidate:
    path: str  # relative, posix
    absolute: str
    info: FileInfo | None = None


def _int_option(options: Mapping[str, Any], name: str, default: int, source: str, least: int = 1) -> int:
    value = options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(f"source {source!r}: options.{name} must be an integer of at least {least}")
    return value


class FilesystemAdapter:
    kind = "filesystem"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        options = definition.options
        name = definition.name
        roots = options.get("roots")
        if isinstance(roots, str):
            roots = [roots]
        if roots is not None and not (isinstance(roots, list) and all(isinstance(r, str) and r for r in roots)):
            raise ConfigError(f"source {name!r}: options.roots must be a list of directories")
        self.roots: list[str] | None = roots
        self.max_file_bytes = _int_option(options, "max_file_bytes", 2_000_000, name)
        self.read_batch_files = _int_option(options, "read_batch_files", 32, name)
        self.read_batch_bytes = _int_option(options, "read_batch_bytes", 1_000_000, name)
        self.concurrency = _int_option(options, "concurrency", 8, name)
        self.all_files = bool(options.get("all_files", False))
        self.max_depth = _int_option(options, "max_depth", DEFAULT_MAX_DEPTH, name)
        chunk_chars = _int_option(options, "chunk_chars", 1200, name, least=100)
        overlap_chars = _int_option(options, "overlap_chars", 150, name, least=0)
        self.exclude: tuple[str, ...] = tuple(definition.exclude) + (
            DEFAULT_EXCLUDES if options.get("default_excludes", True) else ()
        )
        self.include: tuple[str, ...] = tuple(definition.include)
        self.max_document_bytes = _int_option(options, "max_document_bytes", DEFAULT_MAX_DOCUMENT_BYTES, name)
        self.document_limits = document_limits(options, name)
        self.mapper = FilesystemMapper(
            FilesMapper(
                name,
                definition.namespace,
                chunk_chars,
                overlap_chars,
                document_limits=self.document_limits,
                chunks_across_units=bool(options.get("document_chunks_across_units", False)),
            )
        )
        # Mapping settings are part of every version: changing them maps every file again.
        self._settings = f"{VERSION}|{chunk_chars}|{overlap_chars}"
        self.skipped: list[SkippedRecord] = []

    # -- selection ----------------------------------------------------------------------------
    def wanted_file(self, rel: str) -> bool:
        name = posixpath.basename(rel)
        if _matches(rel, name, self.exclude):
            return False
        if self.include:
            return _matches(rel, name, self.include)
        if self.all_files:
            return True
        suffix = posixpath.splitext(name)[1].lower()
        return (
            suffix in TEXT_SUFFIXES
            or suffix in DOCUMENT_SUFFIXES
            or name in TEXT_NAMES
            or name.split(".")[0] in TEXT_NAMES
        )

    @staticmethod
    def is_document(rel: str) -> bool:
        return posixpath.splitext(rel)[1].lower() in DOCUMENT_SUFFIXES

    def wanted_directory(self, rel: str) -> bool:
        return not _matches(rel, posixpath.basename(rel), self.exclude)

    def _version(self, info: FileInfo) -> str:
        return content_hash(f"{self._settings}|{info.version}")

    def _skip(self, key: str, reason: str) -> None:
        prefix = f"source {self.definition.name!r}: "
        self.skipped.append(SkippedRecord(key, reason[len(prefix) :] if reason.startswith(prefix) else reason))

    # -- listing ------------------------------------------------------------------------------
    async def _roots(self, conn: McpConnection) -> list[_Root]:
        text = (await conn.call_tool("list_allowed_directories", {})).text
        allowed = [line.strip() for line in text.split("\n")[1:] if line.strip()]
        if not allowed:
            raise SourceError(f"source {self.definition.name!r}: the server allows no directory")
        chosen = allowed
        if self.roots is not None:
            wanted = {os.path.normpath(r) for r in self.roots}
            chosen = [a for a in allowed if os.path.normpath(a) in wanted]
            missing = wanted - {os.path.normpath(a) for a in chosen}
            if missing:
                raise ConfigError(
                    f"source {self.definition.name!r}: options.roots {sorted(missing)} are not among the "
                    f"server's allowed directories {allowed}"
                )
        chosen = sorted(dict.fromkeys(chosen))
        if len(chosen) == 1:
            return [_Root(chosen[0], "")]
        prefixes: dict[str, int] = {}
        roots = []
        for root in chosen:
            base = PurePosixPath(root).name or "root"
            prefixes[base] = prefixes.get(base, 0) + 1
            roots.append(_Root(root, base if prefixes[base] == 1 else f"{base}~{prefixes[base]}"))
        return roots

    def _server_excludes(self) -> list[str]:
        return [p for p in self.exclude if "{" not in p]

    async def _tree(self, conn: McpConnection, root: _Root) -> tuple[list[str], list[str]]:
        """(directories, files) below `root`, relative to it, excluded ones left out."""
        try:
            text = (
                await conn.call_tool("directory_tree", {"path": root.path, "excludePatterns": self._server_excludes()})
            ).text
            tree = json.loads(text)
            if not isinstance(tree, list):
                raise ValueError("directory_tree did not answer with a list")
        except (McpCallError, RecursionError):  # too large or too deep for one answer, or unreadable
            return await self._tree_by_listing(conn, root)
        except ValueError as exc:
            raise SourceError(f"source {self.definition.name!r}: cannot read the tree of {root.path}: {exc}") from exc
        dirs: list[str] = []
        files: list[str] = []
        # Iterative, so a deep tree cannot exhaust the interpreter's stack.
        pending: list[tuple[list[Any], str, int]] = [(tree, "", 1)]
        while pending:
            entries, base, depth = pending.pop()
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise SourceError(f"source {self.definition.name!r}: malformed directory_tree entry {entry!r}")
                rel = f"{base}/{entry['name']}" if base else entry["name"]
                if entry.get("type") == "directory":
                    if not self.wanted_directory(rel):
                        continue
                    if depth > self.max_depth:
                        self._skip(directory_key(self._key(root, rel)), too_deep_reason(self.max_depth))
                        continue
                    dirs.append(rel)
                    if isinstance(entry.get("skipped"), str):  # the server did not walk it
                        self._skip(directory_key(self._key(root, rel)), f"not listed by the server: {entry['skipped']}")
                    pending.append((entry.get("children") or [], rel, depth + 1))
                elif self.wanted_file(rel):
                    files.append(rel)
        return dirs, files

    async def _tree_by_listing(self, conn: McpConnection, root: _Root) -> tuple[list[str], list[str]]:
        dirs: list[str] = []
        files: list[str] = []
        pending = [("", 0)]
        while pending:
            rel_dir, depth = pending.pop()
            where = posixpath.join(root.path, rel_dir) if rel_dir else root.path
            try:
                text = (await conn.call_tool("list_directory", {"path": where})).text
            except McpCallError as exc:
                self._skip(directory_key(self._key(root, rel_dir)), str(exc))
                continue
            for line in text.split("\n"):
                match = _LISTING.fullmatch(line)
                if match is None:
                    continue
                rel = f"{rel_dir}/{match.group(2)}" if rel_dir else match.group(2)
                if match.group(1) == "DIR":
                    if not self.wanted_directory(rel):
                        continue
                    if depth + 1 > self.max_depth:
                        self._skip(directory_key(self._key(root, rel)), too_deep_reason(self.max_depth))
                        continue
                    dirs.append(rel)
                    pending.append((rel, depth + 1))
                elif self.wanted_file(rel):
                    files.append(rel)
        return dirs, files

    @staticmethod
    def _key(root: _Root, rel: str) -> str:
        if not root.prefix:
            return rel
        return f"{root.prefix}/{rel}" if rel else root.prefix

    # -- records ------------------------------------------------------------------------------
    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        roots = await self._roots(conn)
        listing: list[tuple[_Root, list[str], list[str]]] = []
        for root in roots:
            dirs, files = await self._tree(conn, root)
            listing.append((root, sorted(dirs), sorted(files)))

        directories = sorted(
            {""} | {self._key(r, "") for r, _, _ in listing} | {self._key(r, d) for r, dirs, _ in listing for d in dirs}
        )
        for path in directories:
            key = directory_key(path)
            version = content_hash(f"{self._settings}|directory|{path}")
            before = previous.get(key)
            uri = self._uri_for(roots, path)
            if before is not None and before.content_hash == version:
                yield unchanged(before, uri)
            else:
                yield SourceRecord(key, "directory", version, {"path": path}, uri)

        candidates = [
            _Candidate(self._key(root, rel), posixpath.join(root.path, rel))
            for root, _, files in listing
            for rel in files
        ]
        for start in range(0, len(candidates), WINDOW_FILES):
            window = candidates[start : start + WINDOW_FILES]
            await self._gather_info(conn, window)
            async for record in self._window_records(conn, window, previous):
                yield record

    def _uri_for(self, roots: list[_Root], path: str) -> str:
        for root in roots:
            if not root.prefix:
                return _file_uri(posixpath.join(root.path, path) if path else root.path)
            if path == root.prefix or path.startswith(root.prefix + "/"):
                rest = path[len(root.prefix) + 1 :]
                return _file_uri(posixpath.join(root.path, rest) if rest else root.path)
        return f"mcp-fs://{self.definition.name}/{path}"

    async def _gather_info(self, conn: McpConnection, window: list[_Candidate]) -> None:
        limiter = anyio.Semaphore(self.concurrency)
        failures: list[BaseException] = []

        async def one(candidate: _Candidate) -> None:
            async with limiter:
                try:
                    text = (await conn.call_tool("get_file_info", {"path": candidate.absolute})).text
                    candidate.info = parse_file_info(text)
                except (McpCallError, ValueError) as exc:
                    self._skip(candidate.path, f"cannot get its info: {exc}")
                except Exception as exc:  # a lost connection ends the ingest, unwrapped
                    failures.append(exc)

        async with anyio.create_task_group() as tg:
            for candidate in window:
                tg.start_soon(one, candidate)
        if failures:
            raise failures[0]

    def _previous_skip_reason(self, previous: Mapping[str, SourceItemState], key: str) -> str | None:
        state = previous.get(QUARANTINE_PREFIX + key)
        if state is None or not state.cursor:
            return None
        try:
            reason = json.loads(state.cursor).get("reason")
        except (ValueError, AttributeError):
            return None
        return reason if isinstance(reason, str) else None

    async def _window_records(
        self, conn: McpConnection, window: list[_Candidate], previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        to_read: list[_Candidate] = []
        documents: list[_Candidate] = []
        decided: dict[str, SourceRecord | None] = {}
        for candidate in window:
            info = candidate.info
            if info is None:
                decided[candidate.path] = None  # skipped while asking for its info
                continue
            key = candidate.path
            before = previous.get(key)
            if before is not None and before.content_hash == self._version(info):
                decided[key] = unchanged(before, _file_uri(candidate.absolute))
                continue
            if info.is_directory:
                self._skip(key, "a link to a directory (not followed)")
            elif not info.is_file:
                self._skip(key, "not a regular file")
            elif self.is_document(key):
                version = self._version(info)
                uri = _file_uri(candidate.absolute)
                probe = settled_probe(key, version, uri, self.document_limits)
                if info.size > self.max_document_bytes:
                    self._skip(
                        key, f"{info.size} bytes is over the {self.max_document_bytes} limit (max_document_bytes)"
                    )
                elif settled_quarantine(previous.get(QUARANTINE_PREFIX + key), probe) is not None:
                    decided[key] = probe  # quarantined, and unchanged since: not read again
                    continue
                else:
                    documents.append(candidate)
                    continue
            elif info.size > self.max_file_bytes:
                self._skip(key, f"{info.size} bytes is over the {self.max_file_bytes} limit")
            elif info.size == 0:
                self._skip(key, "empty file")
            else:
                # A file skipped for its content last time is not read again while unchanged.
                reason = self._previous_skip_reason(previous, key)
                if reason is not None and reason.endswith(f"({info.label})"):
                    self._skip(key, reason)
                else:
                    to_read.append(candidate)
                    continue
            decided[key] = None
        texts = await self._read(conn, to_read)
        for candidate in documents:
            decided[candidate.path] = await self._document_record(conn, candidate)
        for candidate in window:
            if candidate.path in decided:
                record = decided[candidate.path]
            else:
                record = self._file_record(candidate, texts.get(candidate.path))
            if record is not None:
                yield record

    async def _document_record(self, conn: McpConnection, candidate: _Candidate) -> SourceRecord | None:
        info = candidate.info
        assert info is not None
        try:
            data, mime_type = await read_document_bytes(conn, candidate.absolute)
        except (McpCallError, ValueError) as exc:
            self._skip(candidate.path, f"unreadable: {exc}")
            return None
        version = self._version(info)
        if len(data) != info.size:
            version += "~"  # it changed while being read: read again next time
        uri = _file_uri(candidate.absolute)
        mtime = parse_node_date(info.modified)
        record = document_record(candidate.path, data, mime_type, version, uri, mtime, self.document_limits)
        if record is None:
            self._skip(candidate.path, f"not a document its name says it is: binary content ({info.label})")
        return record

    def _file_record(self, candidate: _Candidate, text: str | Exception | None) -> SourceRecord | None:
        info = candidate.info
        assert info is not None
        key = candidate.path
        if text is None:
            return None  # skipped while reading
        if isinstance(text, Exception):
            self._skip(key, f"unreadable: {text}")
            return None
        if is_binary(text):
            self._skip(key, f"binary content ({info.label})")
            return None
        if not text.strip():
            self._skip(key, f"empty file ({info.label})")
            return None
        version = self._version(info)
        if "\ufffd" not in text and len(text.encode("utf-8")) != info.size:
            version += "~"  # it changed while being read: read again next time
        mtime = parse_node_date(info.modified)
        payload = {"path": key, "text": text, "size": info.size, "mtime": mtime}
        return SourceRecord(key, "file", version, payload, _file_uri(candidate.absolute))

    async def _read(self, conn: McpConnection, candidates: list[_Candidate]) -> dict[str, str | Exception]:
        """Texts by relative path; batches bounded by count and bytes."""
        out: dict[str, str | Exception] = {}
        batch: list[_Candidate] = []
        size = 0
        batches: list[list[_Candidate]] = []
        for candidate in candidates:
            assert candidate.info is not None
            if batch and (len(batch) >= self.read_batch_files or size + candidate.info.size > self.read_batch_bytes):
                batches.append(batch)
                batch, size = [], 0
            batch.append(candidate)
            size += candidate.info.size
        if batch:
            batches.append(batch)
        for part in batches:
            out.update(await self._read_batch(conn, part))
        return out

    async def _read_batch(self, conn: McpConnection, batch: list[_Candidate]) -> dict[str, str | Exception]:
        """One `read_multiple_files` call; where its answer cannot be split (a file whose size
        changed, or that is not valid UTF-8), that file is read alone and the rest asked again."""
        out: dict[str, str | Exception] = {}
        rest = list(batch)
        while rest:
            if len(rest) > 1:
                paths = [c.absolute for c in rest]
                try:
                    text = (await conn.call_tool("read_multiple_files", {"paths": paths})).text
                except McpCallError:  # too large together, say: each is read alone
                    for candidate in rest:
                        await self._read_alone(conn, candidate, out)
                    return out
                split = split_multiple_files(text, paths, [c.info.size if c.info else 0 for c in rest])
                done = 0
                while done < len(rest) and rest[done].absolute in split:
                    out[rest[done].path] = split[rest[done].absolute]
                    done += 1
                rest = rest[done:]
                if not rest:
                    break
            await self._read_alone(conn, rest[0], out)
            rest = rest[1:]
        return out

    async def _read_alone(self, conn: McpConnection, candidate: _Candidate, out: dict[str, str | Exception]) -> None:
        try:
            out[candidate.path] = (await conn.call_tool("read_text_file", {"path": candidate.absolute})).text
        except McpCallError as exc:
            self._skip(candidate.path, f"unreadable: {exc}")


def _file_uri(path: str) -> str:
    try:
        return PurePosixPath(path).as_uri()
    except ValueError:
        return f"file://{path}"
