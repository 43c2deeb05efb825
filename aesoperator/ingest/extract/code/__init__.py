"""Code knowledge: symbols (modules, types, functions, methods) of Python, JavaScript, TypeScript/TSX, Go, Java
and Rust files and the links between them (DEFINES, IMPORTS, CALLS, INHERITS, REFERENCES), from tree-sitter
parse trees. Pure functions: no I/O besides the input text, no store access.

Qualified names are derived from the repository-relative path (rules in naming.py) so that the caller can
join links across the files of a repository by name."""

from .languages import LANGUAGES, language_for_path
from .model import CodeLink, CodeSymbol, CodeSymbols, LinkKind, RangeMode, SymbolKind, symbols_in_range
from .naming import MEMBER_SEPARATOR
from .parse import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, parse_code

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "LANGUAGES",
    "MEMBER_SEPARATOR",
    "CodeLink",
    "CodeSymbol",
    "CodeSymbols",
    "LinkKind",
    "RangeMode",
    "SymbolKind",
    "language_for_path",
    "parse_code",
    "symbols_in_range",
]
