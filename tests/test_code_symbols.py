"""The code-symbol API: languages by extension, module naming rules, docstrings and signatures, name
resolution, chunk linking, and bounded behaviour on broken, binary, huge and deeply nested input."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aesoperator.ingest.extract.code import (
    CodeLink,
    CodeSymbols,
    LinkKind,
    SymbolKind,
    language_for_path,
    parse_code,
    symbols_in_range,
)

FIXTURES = Path(__file__).parent / "fixtures" / "code"


def _symbol(result: CodeSymbols, qualified_name: str):  # type: ignore[no-untyped-def]
    [found] = [s for s in result.symbols if s.qualified_name == qualified_name]
    return found


def _links(result: CodeSymbols, kind: LinkKind) -> list[CodeLink]:
    return [link for link in result.links if link.kind is kind]


def _calls(result: CodeSymbols) -> set[tuple[str, str, str | None]]:
    return {(link.src, link.dst, link.dst_qualified) for link in _links(result, LinkKind.CALLS)}


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("a/b.py", "python"),
        ("stubs/x.pyi", "python"),
        ("web/App.JSX", "javascript"),
        ("lib/x.mjs", "javascript"),
        ("src/a.ts", "typescript"),
        ("src/a.d.ts", "typescript"),
        ("src/A.tsx", "tsx"),
        ("cmd/main.go", "go"),
        ("src/main/java/A.java", "java"),
        ("src/lib.rs", "rust"),
        ("README.md", None),
        ("Makefile", None),
        ("windows\\path\\x.py", "python"),
    ],
)
def test_language_for_path(path: str, language: str | None) -> None:
    assert language_for_path(path) == language


@pytest.mark.parametrize(
    ("language", "path", "options", "module"),
    [
        ("python", "a/b/c.py", {}, "a.b.c"),
        ("python", "a/b/__init__.py", {}, "a.b"),
        ("python", "src/pkg/mod.py", {}, "pkg.mod"),
        ("python", "setup.py", {}, "setup"),
        ("javascript", "web/ui/Button.jsx", {}, "web/ui/Button"),
        ("typescript", "web/ui/index.ts", {}, "web/ui"),
        ("typescript", "types/api.d.ts", {}, "types/api"),
        ("go", "pkg/store/db.go", {}, "pkg/store"),
        ("go", "pkg/store/db.go", {"go_module": "example.com/shop"}, "example.com/shop/pkg/store"),
        ("go", "main.go", {"go_module": "example.com/shop"}, "example.com/shop"),
        ("rust", "src/lib.rs", {}, "crate"),
        ("rust", "src/main.rs", {}, "crate"),
        ("rust", "src/net/mod.rs", {}, "crate::net"),
        ("rust", "src/net/tcp.rs", {}, "crate::net::tcp"),
        ("rust", "crates/wire/src/frame.rs", {"rust_crate": "wire"}, "wire::frame"),
        ("rust", "tests/it.rs", {}, "crate::tests::it"),
    ],
)
def test_module_names(language: str, path: str, options: dict[str, str], module: str) -> None:
    source = "package store\n" if language == "go" else ""
    result = parse_code(source, language, path, **options)  # type: ignore[arg-type]
    assert result.module == module
    assert result.symbols[0].qualified_name == module


def test_java_module_is_the_package_declaration() -> None:
    result = parse_code("package com.x.shop;\nclass A {}\n", "java", "src/main/java/com/x/shop/A.java")
    assert result.module == "com.x.shop"
    assert result.symbols[0].kind is SymbolKind.PACKAGE
    assert _symbol(result, "com.x.shop.A").kind is SymbolKind.CLASS


def test_docstrings_and_signatures() -> None:
    py = parse_code((FIXTURES / "python/shop/orders.py").read_text(), "python", "shop/orders.py")
    assert py.symbols[0].docstring == "Orders: placing and pricing."
    order = _symbol(py, "shop.orders.Order")
    assert (order.signature, order.docstring) == ("class Order(Priced)", "An order of items.")
    assert _symbol(py, "shop.orders.Order.discounted").signature == "def discounted(self, rate: float) -> float"

    go = parse_code((FIXTURES / "go/store/store.go").read_text(), "go", "store/store.go")
    assert go.symbols[0].docstring == "Package store keeps records."
    get = _symbol(go, "store.DB.Get")
    assert (get.signature, get.docstring) == (
        "func (d *DB) Get(key string) (string, error)",
        "Get returns the value for key.",
    )

    rust = parse_code((FIXTURES / "rust/src/store/mod.rs").read_text(), "rust", "src/store/mod.rs")
    assert rust.symbols[0].docstring == "Storage of records."
    assert _symbol(rust, "crate::store::Store").docstring == "A key-value store."  # across #[derive(...)]
    assert _symbol(rust, "crate::store::Mode").docstring is None

    java = parse_code((FIXTURES / "java/OrderService.java").read_text(), "java", "OrderService.java")
    assert _symbol(java, "com.example.shop.OrderService").docstring == "Places orders."

    ts = parse_code((FIXTURES / "typescript/service.ts").read_text(), "typescript", "service.ts")
    base = _symbol(ts, "service.BaseService")
    assert base.docstring == "Keeps users in memory."
    assert base.start_line == 19  # the span includes `export`


def test_byte_offsets_slice_the_definition() -> None:
    source = '"""Ünïcödé 🙂."""\n\n\n@decorate\ndef f(x):\n    return x\n'
    result = parse_code(source, "python", "m.py")
    f = _symbol(result, "m.f")
    assert source.encode()[f.start_byte : f.end_byte].decode() == "@decorate\ndef f(x):\n    return x"
    assert (f.start_line, f.end_line) == (4, 6)


def test_crlf_and_bytes_input() -> None:
    result = parse_code(b"class A:\r\n    def m(self):\r\n        return 1\r\n", "python", "m.py")
    assert [(s.qualified_name, s.start_line, s.end_line) for s in result.symbols[1:]] == [
        ("m.A", 1, 3),
        ("m.A.m", 2, 3),
    ]


def test_python_relative_imports_in_a_package_init() -> None:
    result = parse_code("from . import a\nfrom .b import c as d\nfrom ..e import *\n", "python", "pkg/sub/__init__.py")
    imports = [(link.dst, link.dst_qualified, link.detail) for link in _links(result, LinkKind.IMPORTS)]
    assert imports == [(".a", "pkg.sub.a", ""), (".b.c", "pkg.sub.b.c", ""), ("..e.*", "pkg.e", "wildcard")]
    assert result.aliases == {"pkg.sub.a": "pkg.sub.a", "pkg.sub.d": "pkg.sub.b.c"}


def test_python_local_import_binds_in_its_function_only() -> None:
    source = "def f():\n    import json as j\n    j.dumps(1)\n\n\ndef g():\n    j.dumps(2)\n"
    result = parse_code(source, "python", "m.py")
    assert _calls(result) == {("m.f", "j.dumps", "json.dumps"), ("m.g", "j.dumps", None)}
    assert result.aliases == {}


def test_calls_resolve_through_inherited_methods_and_later_definitions() -> None:
    source = (
        "class Base:\n    def save(self):\n        pass\n\n\n"
        "class Child(Base):\n    def run(self):\n        self.save()\n        later()\n        Child.make()\n\n"
        "    @classmethod\n    def make(cls):\n        return cls.save\n\n\n"
        "def later():\n    pass\n"
    )
    result = parse_code(source, "python", "m.py")
    assert _calls(result) == {
        ("m.Child.run", "self.save", "m.Base.save"),
        ("m.Child.run", "later", "m.later"),
        ("m.Child.run", "Child.make", "m.Child.make"),
    }
    assert {(link.src, link.dst_qualified) for link in _links(result, LinkKind.REFERENCES)} == {
        ("m.Child.make", None)  # `classmethod` is a builtin: referenced, not resolvable
    }


def test_go_receiver_calls_guess_methods_in_other_files_of_the_package() -> None:
    source = "package store\n\nfunc (s *Server) Run() {\n\ts.listen()\n\thelper()\n\tlen(s.x)\n}\n"
    result = parse_code(source, "go", "srv/server.go")
    assert _calls(result) == {
        ("srv.Server.Run", "s.listen", "srv.Server.listen"),
        ("srv.Server.Run", "helper", "srv.helper"),
        ("srv.Server.Run", "len", None),
    }
    assert _symbol(result, "srv.Server.Run").parent == "srv.Server"


def test_java_unimported_types_are_guessed_in_the_same_package() -> None:
    source = (
        "package a.b;\nimport java.util.List;\nclass C extends Base implements List {\n  void f() { new D(); }\n}\n"
    )
    result = parse_code(source, "java", "a/b/C.java")
    inherits = {(link.dst, link.dst_qualified, link.detail) for link in _links(result, LinkKind.INHERITS)}
    assert inherits == {("Base", "a.b.Base", "extends"), ("List", "java.util.List", "implements")}
    assert _calls(result) == {("a.b.C.f", "D", "a.b.D")}


def test_rust_paths_resolve_against_the_module_tree() -> None:
    source = (
        "use super::model::User;\nuse self::inner::helper as h;\n"
        "mod inner { pub fn helper() {} }\n"
        "fn run() { crate::util::log(); super::sibling(); h(); User::new(); }\n"
    )
    result = parse_code(source, "rust", "src/api/handlers.rs", rust_crate="shop")
    assert result.module == "shop::api::handlers"
    assert _calls(result) == {
        ("shop::api::handlers::run", "crate::util::log", "shop::util::log"),
        ("shop::api::handlers::run", "super::sibling", "shop::api::sibling"),
        ("shop::api::handlers::run", "h", "shop::api::handlers::inner::helper"),
        ("shop::api::handlers::run", "User::new", "shop::api::model::User::new"),
    }


def test_javascript_default_export_aliases_and_reexports() -> None:
    source = "export { a as b } from './x';\nexport * from './y';\nfunction Main() {}\nexport default Main;\n"
    result = parse_code(source, "javascript", "lib/index.js")
    assert result.module == "lib"
    assert result.aliases == {"lib.b": "lib/x.a", "lib.default": "lib.Main"}
    imports = [(link.dst, link.dst_qualified, link.detail) for link in _links(result, LinkKind.IMPORTS)]
    assert imports == [("./x", "lib/x.a", "reexport"), ("./y", "lib/y", "reexport")]


def test_symbols_in_range_for_chunks() -> None:
    result = parse_code((FIXTURES / "python/shop/orders.py").read_text(), "python", "shop/orders.py")
    starts = [s.qualified_name for s in symbols_in_range(result.symbols, 19, 27)]
    assert starts == ["shop.orders.Order", "shop.orders.Order.total"]
    within = [s.qualified_name for s in symbols_in_range(result.symbols, 19, 27, how="within")]
    assert within == ["shop.orders.Order.total"]
    overlaps = [s.qualified_name for s in symbols_in_range(result.symbols, 29, 29, how="overlaps")]
    assert overlaps == ["shop.orders", "shop.orders.Order", "shop.orders.Order.discounted"]


BROKEN = {
    "python": (
        "def ok():\n    return 1\n\ndef bad(:\n    pass\n\nclass Fine:\n    def m(self):\n        ok()\n",
        "m.py",
    ),
    "javascript": ("function ok() { return 1 }\nfunction bad( { \nclass Fine { m() { ok() } }\n", "m.js"),
    "typescript": ("interface I { a: string }\nconst x: = ;\nclass Fine implements I { m(): void { go() } }\n", "m.ts"),
    "go": ("package p\n\nfunc ok() {}\n\nfunc bad( {\n\nfunc Fine() { ok() }\n", "p/m.go"),
    "java": ("package p;\nclass A {\n  void ok() {}\n  void bad( {\n  void fine() { ok(); }\n}\n", "p/A.java"),
    "rust": ("fn ok() {}\nfn bad( {\nstruct Fine;\nimpl Fine { fn m(&self) { ok(); } }\n", "src/lib.rs"),
}


@pytest.mark.parametrize("language", BROKEN)
def test_broken_code_yields_partial_results(language: str) -> None:
    source, path = BROKEN[language]
    result = parse_code(source, language, path)
    assert result.has_error
    assert result.diagnostics and "syntax errors near line" in result.diagnostics[0]
    names = {s.name for s in result.symbols}
    assert "ok" in names or "I" in names  # what precedes the error survives
    assert len(result.symbols) >= 2


def test_binary_input_is_not_parsed() -> None:
    result = parse_code(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)), "python", "lib/x.py")
    assert result.has_error and result.symbols == [] and result.links == []
    assert result.diagnostics == ["binary content (NUL byte): not parsed"]


def test_huge_input_is_not_parsed() -> None:
    source = "x = 1\n" * 2000
    assert parse_code(source, "python", "m.py").has_error is False
    result = parse_code(source, "python", "m.py", max_bytes=10_000)
    assert result.has_error and result.symbols == []
    assert result.diagnostics == ["file of 12000 bytes is over the 10000-byte limit: not parsed"]


@pytest.mark.parametrize(
    ("language", "source"),
    [
        ("python", "x = " + "(" * 30_000 + "f()" + ")" * 30_000 + "\n"),
        ("python", "y = " + " + ".join(["a"] * 30_000) + "\n"),
        ("javascript", "f(" * 30_000 + ")" * 30_000),
        ("java", "class A { void f() { a" + ".b()" * 30_000 + "; } }"),
        ("go", "package p\nfunc f() { a" + ".b()" * 30_000 + " }"),
        ("rust", "fn f() {" + "{" * 30_000 + "}" * 30_000 + "}"),
        ("typescript", "let x = a" + ".b()" * 30_000 + ";"),
    ],
)
def test_deep_nesting_yields_a_diagnostic_in_bounded_time(language: str, source: str) -> None:
    start = time.perf_counter()
    result = parse_code(source, language, "x", max_depth=500)
    assert time.perf_counter() - start < 10
    assert result.has_error
    assert any("nesting deeper than 500 levels" in d for d in result.diagnostics)
    assert len(result.symbols) >= 1 and all(len(link.dst) <= 200 for link in result.links)


def test_unsupported_language_and_empty_file() -> None:
    result = parse_code("x", "cobol", "a.cob")
    assert result.has_error and result.diagnostics == ["unsupported language 'cobol'"]
    empty = parse_code("", "python", "pkg/empty.py")
    assert not empty.has_error
    assert [(s.kind, s.qualified_name, s.start_line, s.end_line) for s in empty.symbols] == [
        (SymbolKind.MODULE, "pkg.empty", 1, 1)
    ]


def test_parsing_in_threads_gives_the_same_results() -> None:
    files = [(p, language_for_path(p.name)) for p in sorted(FIXTURES.rglob("*.*"))]
    expected = [parse_code(p.read_text(), lang, p.name) for p, lang in files if lang]
    with ThreadPoolExecutor(4) as pool:
        got = list(
            pool.map(lambda item: parse_code(item[0].read_text(), item[1], item[0].name), [f for f in files if f[1]])
        )
    assert got == expected


def test_typescript_decorators_reference_from_what_they_decorate() -> None:
    source = "@Component({})\nexport class A {\n  @HostListener('x')\n  onX() {}\n}\n@Injectable()\nclass B {}\n"
    result = parse_code(source, "typescript", "app/d.ts")
    decorators = {(link.src, link.dst) for link in _links(result, LinkKind.REFERENCES)}
    assert decorators == {("app/d.A", "Component"), ("app/d.A.onX", "HostListener"), ("app/d.B", "Injectable")}
