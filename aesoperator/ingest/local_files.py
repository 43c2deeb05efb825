"""A local folder as a source: text, Markdown and code files, and documents (PDF, Word,
PowerPoint, Excel, CSV, saved web pages, EPUB), read straight from disk.

A document's format is told by its first bytes, not only its name (`loaders.sniff`); its record
carries the bytes, which the mapper loads only when the file's content hash changed.

Only regular files inside the folder are read: FIFOs, sockets, device files and symbolic links
that lead outside the folder are skipped with the reason, every read has a timeout, and
directories more than `max_depth` levels down are skipped (see `file_access`).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from aesoperator.errors import SourceError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.ingest.file_access import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_READ_TIMEOUT,
    UnreadableFile,
    WalkedFile,
    WalkSkip,
    read_regular,
    walk,
)
from aesoperator.ingest.loaders.model import LoaderLimits
from aesoperator.ingest.loaders.registry import document_format
from aesoperator.ingest.loaders.sniff import DOCUMENT_SUFFIXES
from aesoperator.ingest.mappers.document_files import document_content_hash
from aesoperator.ingest.pipeline import LIMITS_KEY
from aesoperator.ingest.records import SkippedRecord, SourceRecord

DEFAULT_MAX_DOCUMENT_BYTES = 50_000_000

DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".aesop",
    "*.egg-info",
    "dist",
    "build",
    ".ipynb_checkpoints",
    ".cache",
    "target",
)

TEXT_SUFFIXES: frozenset[str] = frozenset(
    {
        ".md",
        ".markdown",
        ".rst",
        ".txt",
        ".text",
        ".adoc",
        ".org",
        ".py",
        ".pyi",
        ".js",
        ".jsx",
        ".ts",
        ".tsx",
        ".mjs",
        ".cjs",
        ".java",
        ".kt",
        ".scala",
        ".go",
        ".rs",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".hpp",
        ".cs",
        ".rb",
        ".php",
        ".swift",
        ".sh",
        ".bash",
        ".zsh",
        ".sql",
        ".toml",
        ".yaml",
        ".yml",
        ".json",
        ".ini",
        ".cfg",
        ".conf",
        ".xml",
        ".css",
        ".scss",
        ".r",
        ".jl",
        ".lua",
        ".pl",
        ".hs",
        ".ml",
        ".ex",
        ".exs",
        ".erl",
        ".clj",
        ".tex",
        ".bib",
        ".proto",
        ".graphql",
        ".tf",
        ".dockerfile",
        ".gradle",
    }
)
TEXT_NAMES: frozenset[str] = frozenset(
    {"README", "LICENSE", "Makefile", "Dockerfile", "CHANGELOG", "NOTICE", "AUTHORS", "CONTRIBUTING"}
)


def _matches(rel: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in patterns)


class LocalFolderExtractor:
    """Walks a folder in a stable order and yields one record per readable text file.

    A record's hash covers its content, so unchanged files are skipped on re-ingest without
    being mapped or embedded again. Unreadable, binary, oversize and special files (FIFOs,
    sockets, devices), links leading outside the folder and directories deeper than `max_depth`
    are reported in `skipped` with the reason; they never stop the ingest.
    """

    def __init__(
        self,
        root: Path,
        source_name: str,
        include: Sequence[str] = (),
        exclude: Sequence[str] = DEFAULT_EXCLUDES,
        max_file_bytes: int = 2_000_000,
        max_depth: int = DEFAULT_MAX_DEPTH,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        document_limits: LoaderLimits | None = None,
    ) -> None:
        self.root = root.resolve()
        if not self.root.exists():
            raise SourceError(f"folder {root} does not exist")
        if not self.root.is_dir():
            raise SourceError(f"{root} is not a folder; give the folder that holds the files")
        self.source_name = source_name
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.max_file_bytes = max_file_bytes
        self.max_depth = max_depth
        self.read_timeout = read_timeout
        self.max_document_bytes = max_document_bytes
        self.document_limits = document_limits or LoaderLimits()
        self.skipped: list[SkippedRecord] = []

    def _wanted(self, rel: str, name: str) -> bool:
        if _matches(rel, name, self.exclude):
            return False
        if self.include:
            return _matches(rel, name, self.include)
        suffix = os.path.splitext(name)[1].lower()
        return (
            suffix in TEXT_SUFFIXES
            or suffix in DOCUMENT_SUFFIXES
            or name in TEXT_NAMES
            or name.split(".")[0] in TEXT_NAMES
        )

    def paths(self) -> Iterator[Path]:
        def keep(name: str, rel: str) -> bool:
            return not _matches(rel, name, self.exclude)

        for item in walk(self.root, max_depth=self.max_depth, keep_dir=keep):
            if isinstance(item, WalkSkip):
                self.skipped.append(SkippedRecord(f"{item.rel}/", item.reason))
            elif isinstance(item, WalkedFile) and self._wanted(item.rel, item.path.name):
                yield item.path

    def _inside(self, path: Path) -> bool:
        real = Path(os.path.realpath(path))
        return real == self.root or self.root in real.parents

    def read(self, path: Path) -> SourceRecord | None:
        rel = path.relative_to(self.root).as_posix()
        if not self._inside(path):
            self.skipped.append(SkippedRecord(rel, "a symbolic link to outside the folder: not read"))
            return None
        document = os.path.splitext(path.name)[1].lower() in DOCUMENT_SUFFIXES
        limit = self.max_document_bytes if document else self.max_file_bytes
        try:
            content = read_regular(path, max_bytes=limit, timeout=self.read_timeout)
        except UnreadableFile as exc:
            setting = "max_document_bytes" if document else "max_file_bytes"
            reason = str(exc)
            self.skipped.append(
                SkippedRecord(rel, f"{reason} (AESOP_{setting.upper()})" if "limit" in reason else reason)
            )
            return None
        raw = content.data
        fmt = document_format(path.name, raw)
        if fmt is not None:
            return SourceRecord(
                key=rel,
                kind="file",
                content_hash=document_content_hash(raw, fmt),
                payload={
                    "path": rel,
                    "data": raw,
                    "format": fmt,
                    "size": len(raw),
                    "mtime": content.mtime,
                    LIMITS_KEY: self.document_limits.signature(),
                },
                uri=path.as_uri(),
            )
        if b"\x00" in raw[:8192]:
            self.skipped.append(SkippedRecord(rel, "binary content"))
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        if not text.strip():
            self.skipped.append(SkippedRecord(rel, "empty file"))
            return None
        return SourceRecord(
            key=rel,
            kind="file",
            content_hash=content_hash(text),
            payload={"path": rel, "text": text, "size": len(raw), "mtime": content.mtime},
            uri=path.as_uri(),
        )

    def records(self) -> Iterator[SourceRecord]:
        for path in self.paths():
            record = self.read(path)
            if record is not None:
                yield record
