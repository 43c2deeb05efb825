"""parse_code: bound the input, parse it with tree-sitter, hand the tree to the language's extractor."""

from __future__ import annotations

from .extractor import SymbolWalker
from .lang_ecmascript import EcmaScriptExtractor
from .lang_go import GoExtractor
from .lang_java import JavaExtractor
from .lang_python import PythonExtractor
from .lang_rust import RustExtractor
from .languages import LANGUAGES, parser_for
from .model import CodeSymbols

DEFAULT_MAX_BYTES = 1_000_000
DEFAULT_MAX_DEPTH = 1_000
_BINARY_PROBE = 8192

# language -> the extractor that walks its tree
EXTRACTORS: dict[str, type[SymbolWalker]] = {
    "python": PythonExtractor,
    "javascript": EcmaScriptExtractor,
    "typescript": EcmaScriptExtractor,
    "tsx": EcmaScriptExtractor,
    "go": GoExtractor,
    "java": JavaExtractor,
    "rust": RustExtractor,
}


def _extractor_class(language: str) -> type[SymbolWalker]:
    return EXTRACTORS.get(language, RustExtractor)


def parse_code(
    text: str | bytes,
    language: str,
    path: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    go_module: str | None = None,
    rust_crate: str | None = None,
) -> CodeSymbols:
    """Symbols and links of one source file.

    `path` is the file's repository-relative POSIX path: module qualified names derive from it (see naming.py).
    `go_module` (the go.mod module path) and `rust_crate` (the crate's name) make Go package and Rust crate
    names match how other modules import them. Never raises for bad input: an unsupported language, binary
    content, a file over `max_bytes` or nesting over `max_depth` yields what could be recovered (possibly
    nothing), `has_error=True` where the result is partial, and a diagnostic saying why."""
    source = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    if language not in LANGUAGES:
        return CodeSymbols(language, path, "", has_error=True, diagnostics=[f"unsupported language {language!r}"])
    if len(source) > max_bytes:
        return CodeSymbols(
            language,
            path,
            "",
            has_error=True,
            diagnostics=[f"file of {len(source)} bytes is over the {max_bytes}-byte limit: not parsed"],
        )
    if b"\x00" in source[:_BINARY_PROBE]:
        return CodeSymbols(language, path, "", has_error=True, diagnostics=["binary content (NUL byte): not parsed"])
    tree = parser_for(language).parse(source)
    extractor = _extractor_class(language)(
        source, path, max_depth, language=language, go_module=go_module, rust_crate=rust_crate
    )
    extractor.run(tree.root_node)
    return CodeSymbols(
        language=language,
        path=path,
        module=extractor.module,
        symbols=extractor.symbols,
        links=extractor.result_links(),
        aliases=extractor.aliases,
        has_error=tree.root_node.has_error or bool(extractor.diagnostics),
        diagnostics=extractor.diagnostics,
    )
