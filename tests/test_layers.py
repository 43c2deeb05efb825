"""The package's shape: top-level subpackages form layers, and a module imports only from its own
layer or below (DESIGN.md, "Layers").

Every module's imports are read with `ast`, wherever they stand: at the top, inside functions,
under `if TYPE_CHECKING:` (a type-only import still ties the layers together). Each import of
`aesoperator.*` is mapped to the top-level subpackage or module it names. The tests fail on

(a) a cycle between top-level subpackages,
(b) a lower layer importing a higher one,
(c) an import placed inside a function whose target is in the same or a lower layer: such an
    import is not needed to break a cycle, so it belongs at the top of the module. Imports
    deferred for start-up cost are listed in `DEFERRED_FOR_START_UP`, each with its reason.

Third-party imports are not checked.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

PACKAGE = "aesoperator"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
INIT = "__init__"  # the package's own __init__: the public surface, lazy re-exports

# Bottom first. A module may import from its own layer and the layers before it.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "config", "version", "telemetry"),  # telemetry: every layer reports spans, logs, metrics
    ("graph_schema",),
    ("engine",),  # stores, indexes, search, memory, export
    ("ingest",),  # MCP client, pipeline, mappers, extraction
    ("context",),  # the facade: ContextEngine = engine + ingest
    ("security",),  # principals, guard, audit, limits: shared by both servers
    ("serve", "connectors"),
    ("explore",),  # the browser explorer: reads through serve's source views, mounted by the CLI
    ("api", "cli", "notebook", "doctor"),
    (INIT,),
]
LAYER_OF: dict[str, int] = {unit: i for i, units in enumerate(LAYERS) for unit in units}

# (importing module, imported module) -> why the import waits until a function runs.
DEFERRED_FOR_START_UP: dict[tuple[str, str], str] = {
    (PACKAGE, f"{PACKAGE}.api"): "PEP 562 lazy re-export: `import aesoperator.errors` must stay light",
    (PACKAGE, f"{PACKAGE}.context"): "PEP 562 lazy re-export of ContextEngine (numpy, FAISS)",
    (PACKAGE, f"{PACKAGE}.engine.search"): "PEP 562 lazy re-export of SearchSettings",
    (PACKAGE, f"{PACKAGE}.config"): "PEP 562 lazy re-export of Settings (pydantic-settings)",
    (PACKAGE, f"{PACKAGE}.graph_schema.models"): "PEP 562 lazy re-export of Entity, Relation, Episode (pydantic)",
    (f"{PACKAGE}.engine.stores", f"{PACKAGE}.engine.stores.neo4j"): "the Neo4j driver, needed only for a URI",
    (f"{PACKAGE}.context", f"{PACKAGE}.ingest.mcp_ingest"): "the MCP SDK (0.5 s), only to ingest an MCP source",
    (f"{PACKAGE}.context", f"{PACKAGE}.ingest.registry"): "imports every adapter and the MCP SDK: not for a search",
    (f"{PACKAGE}.ingest.extract.factory", f"{PACKAGE}.ingest.extract.llm"): "httpx, only for the llm extractor",
    (
        f"{PACKAGE}.ingest.extract.factory",
        f"{PACKAGE}.ingest.extract.llm_sampling",
    ): "the MCP SDK, only for the llm extractor over sampling",
    (
        f"{PACKAGE}.telemetry.tracing",
        f"{PACKAGE}.telemetry.span_switch",
    ): "the OpenTelemetry SDK, only once tracing is on",
}
# Modules whose commands each import what they run, so `aesop --help` starts without numpy,
# FAISS, the MCP SDK or the JWT libraries.
DEFERRED_MODULES: dict[str, str] = {
    f"{PACKAGE}.cli.app": "each command imports what it runs: `aesop --help` stays fast",
    f"{PACKAGE}.cli.ingest_search": "each command imports what it runs: `aesop --help` stays fast",
    f"{PACKAGE}.cli.sources": "each command imports what it runs: `aesop --help` stays fast",
    f"{PACKAGE}.cli.serve": "each command imports what it runs: `aesop --help` stays fast",
    f"{PACKAGE}.cli.forget": "each command imports what it runs: `aesop --help` stays fast",
    f"{PACKAGE}.cli.admin": "each command imports what it runs: `aesop --help` stays fast",
    f"{PACKAGE}.cli.explore": "each command imports what it runs: `aesop --help` stays fast",
}


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (or the package, for a name imported from it)
    line: int
    in_function: bool

    @property
    def source_unit(self) -> str:
        return unit_of(self.module)

    @property
    def target_unit(self) -> str:
        return unit_of(self.target)

    def where(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def unit_of(module: str) -> str:
    """The top-level subpackage or module of a dotted module name (INIT for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else INIT


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    path = ROOT.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(path: Path) -> list[Import]:
    return imports_in(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")


def imports_in(source: str, module: str, is_package: bool) -> list[Import]:
    tree = ast.parse(source)
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                        found.append(Import(module, alias.name, child.lineno, in_function))
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(child, module, is_package)
                if base != PACKAGE and not base.startswith(PACKAGE + "."):
                    continue
                for alias in child.names:
                    # `from aesoperator.x import y`: y may be a submodule (then that is the target).
                    sub = f"{base}.{alias.name}"
                    found.append(Import(module, sub if is_module(sub) else base, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


def all_imports() -> list[Import]:
    return [imp for path in sorted(ROOT.rglob("*.py")) for imp in imports_of(path)]


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


def test_every_top_level_unit_has_a_layer() -> None:
    units = {unit_of(module_name(p)) for p in ROOT.rglob("*.py")}
    assert sorted(units - set(LAYER_OF)) == [], "add the new subpackage or module to LAYERS"
    assert sorted(set(LAYER_OF) - units) == [], "LAYERS names a subpackage or module that is gone"


def test_no_cycle_between_top_level_subpackages(imports: list[Import]) -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        if imp.source_unit != imp.target_unit:
            edges[imp.source_unit].add(imp.target_unit)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def walk(unit: str) -> None:
        state[unit] = 1
        stack.append(unit)
        for nxt in sorted(edges[unit]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[unit] = 2

    for unit in sorted(edges):
        if unit not in state:
            walk(unit)
    detail = []
    for cycle in cycles:
        for a, b in pairwise(cycle):
            detail += [imp.where() for imp in imports if imp.source_unit == a and imp.target_unit == b]
    assert cycles == [], "cycles between subpackages:\n" + "\n".join(detail)


def test_no_layer_imports_a_higher_one(imports: list[Import]) -> None:
    upward = [
        f"{imp.where()} ({imp.source_unit} is below {imp.target_unit})"
        for imp in imports
        if LAYER_OF[imp.target_unit] > LAYER_OF[imp.source_unit]
    ]
    assert upward == [], "imports of a higher layer:\n" + "\n".join(upward)


def test_no_deferred_import_that_is_not_needed(imports: list[Import]) -> None:
    deferred = [
        imp.where()
        for imp in imports
        if imp.in_function
        and LAYER_OF[imp.target_unit] <= LAYER_OF[imp.source_unit]
        and (imp.module, imp.target) not in DEFERRED_FOR_START_UP
        and imp.module not in DEFERRED_MODULES
    ]
    assert deferred == [], "imports inside functions that belong at the top of the module:\n" + "\n".join(deferred)


def test_the_allowlists_name_real_deferred_imports(imports: list[Import]) -> None:
    present = {(imp.module, imp.target) for imp in imports if imp.in_function}
    assert sorted(set(DEFERRED_FOR_START_UP) - present) == []
    assert sorted(set(DEFERRED_MODULES) - {imp.module for imp in imports if imp.in_function}) == []


def test_the_walker_sees_deferred_and_type_only_imports() -> None:
    """The reader itself: function bodies and TYPE_CHECKING blocks count, relative imports resolve."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"
        "from . import retrieval\n"
        "if TYPE_CHECKING:\n"
        "    from aesoperator.ingest.pipeline import IngestReport\n"
        "def f():\n"
        "    from aesoperator.errors import SchemaError\n"
        "    g = lambda: __import__('x')\n"
    )
    found = imports_in(source, f"{PACKAGE}.engine.search", is_package=False)
    assert [(imp.target, imp.line, imp.in_function) for imp in found] == [
        (f"{PACKAGE}.engine.retrieval", 3, False),
        (f"{PACKAGE}.ingest.pipeline", 5, False),
        (f"{PACKAGE}.errors", 7, True),
    ]
    assert [imp.target_unit for imp in found] == ["engine", "ingest", "errors"]
