"""A local folder as a source: text, Markdown and code files, read straight from disk."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from aesoperator.errors import SourceError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.ingest.records import SkippedRecord, SourceRecord

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
        ".html",
        ".htm",
        ".css",
        ".scss",
        ".csv",
        ".tsv",
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
    being mapped or embedded again. Unreadable, binary or oversize files are reported in
    `skipped` with the reason; they never stop the ingest.
    """

    def __init__(
        self,
        root: Path,
        source_name: str,
        include: Sequence[str] = (),
        exclude: Sequence[str] = DEFAULT_EXCLUDES,
        max_file_bytes: int = 2_000_000,
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
        self.skipped: list[SkippedRecord] = []

    def _wanted(self, rel: str, name: str) -> bool:
        if _matches(rel, name, self.exclude):
            return False
        if self.include:
            return _matches(rel, name, self.include)
        suffix = os.path.splitext(name)[1].lower()
        return suffix in TEXT_SUFFIXES or name in TEXT_NAMES or name.split(".")[0] in TEXT_NAMES

    def paths(self) -> Iterator[Path]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            dirnames[:] = sorted(
                d for d in dirnames if not _matches(os.path.normpath(os.path.join(rel_dir, d)), d, self.exclude)
            )
            for name in sorted(filenames):
                rel = os.path.normpath(os.path.join(rel_dir, name))
                if self._wanted(rel, name):
                    yield Path(dirpath) / name

    def read(self, path: Path) -> SourceRecord | None:
        rel = path.relative_to(self.root).as_posix()
        try:
            size = path.stat().st_size
            if size > self.max_file_bytes:
                self.skipped.append(SkippedRecord(rel, f"{size} bytes is over the {self.max_file_bytes} limit"))
                return None
            raw = path.read_bytes()
        except OSError as exc:
            self.skipped.append(SkippedRecord(rel, f"unreadable: {exc.strerror or exc}"))
            return None
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
            payload={"path": rel, "text": text, "size": len(raw), "mtime": path.stat().st_mtime},
            uri=path.as_uri(),
        )

    def records(self) -> Iterator[SourceRecord]:
        for path in self.paths():
            record = self.read(path)
            if record is not None:
                yield record
