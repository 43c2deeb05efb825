"""Which grammar parses which file, and one tree-sitter parser per language and thread.

The grammars ship compiled inside their PyPI packages, so nothing is fetched at run time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import PurePosixPath

import tree_sitter
import tree_sitter_go
import tree_sitter_java
import tree_sitter_javascript
import tree_sitter_python
import tree_sitter_rust
import tree_sitter_typescript

_GRAMMARS: dict[str, Callable[[], object]] = {
    "python": tree_sitter_python.language,
    "javascript": tree_sitter_javascript.language,  # its grammar includes JSX
    "typescript": tree_sitter_typescript.language_typescript,
    "tsx": tree_sitter_typescript.language_tsx,
    "go": tree_sitter_go.language,
    "java": tree_sitter_java.language,
    "rust": tree_sitter_rust.language,
}

LANGUAGES: tuple[str, ...] = tuple(_GRAMMARS)

_EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".java": "java",
    ".rs": "rust",
}

_languages: dict[str, tree_sitter.Language] = {}
_lock = threading.Lock()
_local = threading.local()  # a tree_sitter.Parser is not safe to share between threads


def language_for_path(path: str) -> str | None:
    """The language of a source file by its extension, or None when no grammar covers it."""
    return _EXTENSIONS.get(PurePosixPath(path.replace("\\", "/")).suffix.lower())


def parser_for(language: str) -> tree_sitter.Parser:
    """This thread's parser for `language` (one of LANGUAGES)."""
    parsers: dict[str, tree_sitter.Parser] = _local.__dict__.setdefault("parsers", {})
    parser = parsers.get(language)
    if parser is None:
        with _lock:
            lang = _languages.get(language)
            if lang is None:
                lang = _languages[language] = tree_sitter.Language(_GRAMMARS[language]())
        parser = parsers[language] = tree_sitter.Parser(lang)
    return parser
