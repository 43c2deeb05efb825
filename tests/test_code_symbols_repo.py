"""End to end on this repository's own package: every file parses, the symbols agree with an independent
regex count of `def`/`class` lines, and the callers of a known function are found across files."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from aesoperator.ingest.extract.code import CodeSymbols, LinkKind, SymbolKind, language_for_path, parse_code

ROOT = Path(__file__).resolve().parent.parent
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+\w+", re.M)
_CLASS = re.compile(r"^\s*class\s+\w+", re.M)


@pytest.fixture(scope="module")
def parsed() -> dict[str, tuple[str, CodeSymbols]]:
    results: dict[str, tuple[str, CodeSymbols]] = {}
    for path in sorted((ROOT / "aesoperator").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        language = language_for_path(rel)
        assert language == "python"
        results[rel] = (text, parse_code(text, language, rel))
    return results


def test_every_file_parses(parsed: dict[str, tuple[str, CodeSymbols]]) -> None:
    assert len(parsed) > 50
    broken = {rel: result.diagnostics for rel, (_, result) in parsed.items() if result.has_error}
    assert broken == {}


def test_module_names_follow_the_path(parsed: dict[str, tuple[str, CodeSymbols]]) -> None:
    assert parsed["aesoperator/ingest/chunking.py"][1].module == "aesoperator.ingest.chunking"
    assert parsed["aesoperator/__init__.py"][1].module == "aesoperator"
    for rel, (_, result) in parsed.items():
        assert result.symbols[0].kind is SymbolKind.MODULE
        assert all(s.qualified_name.startswith(result.module + ".") for s in result.symbols[1:]), rel


def test_definitions_match_a_regex_count(parsed: dict[str, tuple[str, CodeSymbols]]) -> None:
    """Functions and classes per file equal the `def`/`class` lines (none of them sits in a string)."""
    callables = {SymbolKind.FUNCTION, SymbolKind.METHOD}
    for rel, (text, result) in parsed.items():
        assert sum(s.kind in callables for s in result.symbols) == len(_DEF.findall(text)), rel
        assert sum(s.kind is SymbolKind.CLASS for s in result.symbols) == len(_CLASS.findall(text)), rel


def test_counts_are_plausible(parsed: dict[str, tuple[str, CodeSymbols]]) -> None:
    kinds: dict[str, int] = defaultdict(int)
    for _, result in parsed.values():
        for symbol in result.symbols:
            kinds[symbol.kind] += 1
        for link in result.links:
            kinds[link.kind] += 1
    files = len(parsed)
    assert kinds[SymbolKind.MODULE] == files
    assert kinds[SymbolKind.CLASS] > files // 2
    assert kinds[SymbolKind.METHOD] + kinds[SymbolKind.FUNCTION] > 5 * files
    # Every module imports and defines several things, and calls more than it defines.
    assert kinds[LinkKind.CALLS] > kinds[LinkKind.DEFINES] > 5 * files
    assert kinds[LinkKind.IMPORTS] > 5 * files


def test_callers_of_a_known_function_are_found(parsed: dict[str, tuple[str, CodeSymbols]]) -> None:
    target = "aesoperator.ingest.chunking.chunk_text"
    text, chunking = parsed["aesoperator/ingest/chunking.py"]
    [definition] = [s for s in chunking.symbols if s.qualified_name == target]
    def_line = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("def chunk_text("))
    assert definition.kind is SymbolKind.FUNCTION and definition.start_line == def_line

    links = [(rel, link) for rel, (_, r) in parsed.items() for link in r.links if link.dst_qualified == target]
    calls = [(rel, link) for rel, link in links if link.kind is LinkKind.CALLS]
    importers = {rel for rel, link in links if link.kind is LinkKind.IMPORTS}
    caller_files = {rel for rel, _ in calls}
    assert calls and importers == caller_files
    expected = {rel for rel, (text, _) in parsed.items() if re.search(r"(?<![\w.])chunk_text\(", text)} - {
        "aesoperator/ingest/chunking.py"
    }
    assert caller_files == expected
    # each caller is the function or method whose lines hold the call
    for rel, link in calls:
        result = parsed[rel][1]
        [src] = [s for s in result.symbols if s.qualified_name == link.src]
        assert src.kind in (SymbolKind.FUNCTION, SymbolKind.METHOD)
        assert src.start_line <= link.line <= src.end_line
