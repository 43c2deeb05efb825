"""What the code parser returns: symbols, links between them, and how complete the parse was.

Plain frozen dataclasses: a large file yields thousands of these, and the caller maps them to graph
entities and relations itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class SymbolKind(StrEnum):
    MODULE = "module"  # a file-level module (Python, JS/TS, Rust) or an inline Rust `mod` / TS namespace
    PACKAGE = "package"  # Go and Java: the package a file belongs to (shared by every file of the package)
    CLASS = "class"
    STRUCT = "struct"
    INTERFACE = "interface"
    TRAIT = "trait"
    ENUM = "enum"
    TYPE = "type"  # type alias or named non-struct type
    FUNCTION = "function"
    METHOD = "method"
    CONSTRUCTOR = "constructor"
    VARIABLE = "variable"  # module-level only
    CONSTANT = "constant"  # module-level UPPER_CASE names, Go `const`, Rust `const`/`static`
    MACRO = "macro"


class LinkKind(StrEnum):
    DEFINES = "DEFINES"  # scope -> symbol defined directly in it
    IMPORTS = "IMPORTS"  # scope -> module or name it imports
    CALLS = "CALLS"  # scope -> callee (includes `new X`, JSX `<X/>` and Rust macro calls)
    INHERITS = "INHERITS"  # type -> base (detail: extends / implements / embeds)
    REFERENCES = "REFERENCES"  # scope -> type in its signature, decorator or annotation


@dataclass(frozen=True, slots=True)
class CodeSymbol:
    qualified_name: str
    name: str
    kind: SymbolKind
    start_line: int  # 1-based, inclusive; includes decorators and `export`
    end_line: int  # 1-based, inclusive
    start_byte: int  # offsets into the UTF-8 encoding of the text
    end_byte: int
    signature: str  # one line, whitespace collapsed, at most 240 characters
    docstring: str | None = None
    parent: str | None = None  # qualified name of the enclosing scope (None for the module)


@dataclass(frozen=True, slots=True)
class CodeLink:
    kind: LinkKind
    src: str  # qualified name of the scope the link comes from
    dst: str  # the target as written (callee path, import path, base type)
    dst_qualified: str | None  # resolved within the file or through its imports; None when unknown
    line: int  # 1-based
    detail: str = ""  # e.g. extends/implements/embeds, new, jsx, macro, decorator, type, wildcard


@dataclass(frozen=True, slots=True)
class CodeSymbols:
    language: str
    path: str
    module: str  # qualified name of the file's module (or package for Go/Java)
    symbols: list[CodeSymbol] = field(default_factory=list)
    links: list[CodeLink] = field(default_factory=list)
    # alias qualified name -> qualified name it stands for: module-level import bindings
    # (`pkg.Foo` -> `pkg.impl.Foo`) and JS/TS default exports (`mod.default` -> `mod.Widget`), so the
    # caller can resolve a cross-file `dst_qualified` that names a re-export.
    aliases: dict[str, str] = field(default_factory=dict)
    has_error: bool = False  # the result is partial: syntax errors, or the input was not (fully) parsed
    diagnostics: list[str] = field(default_factory=list)


RangeMode = Literal["starts", "overlaps", "within"]


def symbols_in_range(
    symbols: list[CodeSymbol], start_line: int, end_line: int, how: RangeMode = "starts"
) -> list[CodeSymbol]:
    """Symbols a chunk covering lines `start_line..end_line` (1-based, inclusive) links to.

    "starts": the symbol's definition starts in the range (the chunk defines it; the default);
    "within": the whole symbol lies in the range; "overlaps": any line is shared (the chunk is part of it)."""
    if how == "starts":
        return [s for s in symbols if start_line <= s.start_line <= end_line]
    if how == "within":
        return [s for s in symbols if start_line <= s.start_line and s.end_line <= end_line]
    return [s for s in symbols if s.start_line <= end_line and s.end_line >= start_line]
