"""Exact symbols and links for one realistic fixture file per language (tests/fixtures/code/).

Each table was checked by hand against the fixture: what a reader of the file would call its symbols,
what each scope calls, imports and inherits, and which targets can be resolved within the file or
through its imports (None where they cannot, e.g. a method of a local variable or a builtin)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aesoperator.ingest.extract.code import CodeSymbols, LinkKind, language_for_path, parse_code

FIXTURES = Path(__file__).parent / "fixtures" / "code"

Symbol = tuple[str, str, int, int]
Link = tuple[str, str, str, str | None, int, str]


@dataclass(frozen=True)
class Case:
    fixture: str
    path: str  # the repository-relative path the file is parsed as
    symbols: list[Symbol]
    links: list[Link]  # all links but DEFINES, in order
    options: dict[str, str] = field(default_factory=dict)

    def parse(self) -> CodeSymbols:
        text = (FIXTURES / self.fixture).read_text(encoding="utf-8")
        language = language_for_path(self.fixture)
        assert language is not None
        return parse_code(text, language, self.path, **self.options)  # type: ignore[arg-type]


PYTHON = Case(
    fixture="python/shop/orders.py",
    path="shop/orders.py",
    symbols=[
        ("module", "shop.orders", 1, 53),
        ("constant", "shop.orders.MAX_ITEMS", 12, 12),
        ("class", "shop.orders.Priced", 15, 16),
        ("method", "shop.orders.Priced.total", 16, 16),
        ("class", "shop.orders.Order", 19, 30),
        ("method", "shop.orders.Order.total", 25, 26),
        ("method", "shop.orders.Order.discounted", 28, 30),
        ("class", "shop.orders.RushOrder", 33, 39),
        ("method", "shop.orders.RushOrder.total", 34, 36),
        ("method", "shop.orders.RushOrder.fee", 38, 39),
        ("function", "shop.orders.place", 42, 49),
        ("function", "shop.orders.place.audit", 43, 44),
        ("function", "shop.orders.helper", 52, 53),
    ],
    links=[
        ("IMPORTS", "shop.orders", "json", "json", 3, ""),
        ("IMPORTS", "shop.orders", "os.path", "os.path", 4, ""),
        ("IMPORTS", "shop.orders", "dataclasses.dataclass", "dataclasses.dataclass", 5, ""),
        ("IMPORTS", "shop.orders", "dataclasses.field", "dataclasses.field", 5, ""),
        ("IMPORTS", "shop.orders", "typing.Protocol", "typing.Protocol", 6, ""),
        ("IMPORTS", "shop.orders", "..common.db.Session", "common.db.Session", 8, ""),
        ("IMPORTS", "shop.orders", ".pricing", "shop.pricing", 9, ""),
        ("IMPORTS", "shop.orders", ".pricing.discount", "shop.pricing.discount", 10, ""),
        ("INHERITS", "shop.orders.Priced", "Protocol", "typing.Protocol", 15, "extends"),
        ("CALLS", "shop.orders", "dataclass", "dataclasses.dataclass", 19, ""),
        ("REFERENCES", "shop.orders.Order", "dataclass", "dataclasses.dataclass", 19, "decorator"),
        ("INHERITS", "shop.orders.Order", "Priced", "shop.orders.Priced", 20, "extends"),
        ("CALLS", "shop.orders.Order", "field", "dataclasses.field", 23, ""),
        ("CALLS", "shop.orders.Order.total", "pricing.sum_prices", "shop.pricing.sum_prices", 26, ""),
        ("CALLS", "shop.orders.Order.discounted", "disc", "shop.pricing.discount", 30, ""),
        ("CALLS", "shop.orders.Order.discounted", "self.total", "shop.orders.Order.total", 30, ""),
        ("INHERITS", "shop.orders.RushOrder", "Order", "shop.orders.Order", 33, "extends"),
        ("INHERITS", "shop.orders.RushOrder", "js.JSONEncoder", "json.JSONEncoder", 33, "extends"),
        ("CALLS", "shop.orders.RushOrder.total", "super().total", "shop.orders.Order.total", 35, ""),
        ("CALLS", "shop.orders.RushOrder.total", "super", None, 35, ""),
        ("CALLS", "shop.orders.RushOrder.total", "self.fee", "shop.orders.RushOrder.fee", 36, ""),
        ("REFERENCES", "shop.orders.place", "Order", "shop.orders.Order", 42, "type"),
        ("REFERENCES", "shop.orders.place", "Session", "common.db.Session", 42, "type"),
        ("CALLS", "shop.orders.place.audit", "print", None, 44, ""),
        ("CALLS", "shop.orders.place", "audit", "shop.orders.place.audit", 46, ""),
        ("CALLS", "shop.orders.place", "os.path.join", "os.path.join", 47, ""),
        ("CALLS", "shop.orders.place", "js.dumps", "json.dumps", 47, ""),
        ("CALLS", "shop.orders.place", "session.save", None, 48, ""),
        ("CALLS", "shop.orders.place", "helper", "shop.orders.helper", 49, ""),
        ("REFERENCES", "shop.orders.helper", "Order", "shop.orders.Order", 52, "type"),
        ("CALLS", "shop.orders.helper", "str", None, 53, ""),
        ("CALLS", "shop.orders.helper", "order.total", None, 53, ""),
    ],
)

JAVASCRIPT = Case(
    fixture="javascript/widgets.jsx",
    path="web/widgets.jsx",
    symbols=[
        ("module", "web/widgets", 1, 39),
        ("class", "web/widgets.Widget", 8, 16),
        ("method", "web/widgets.Widget.render", 9, 11),
        ("method", "web/widgets.Widget.label", 13, 15),
        ("function", "web/widgets.Panel", 18, 28),
        ("function", "web/widgets.Panel.toggle", 20, 20),
        ("function", "web/widgets.loadItems", 30, 33),
        ("class", "web/widgets.Item", 35, 35),
        ("function", "web/widgets.ids", 37, 39),
    ],
    links=[
        ("IMPORTS", "web/widgets", "react", "react.default", 1, ""),
        ("IMPORTS", "web/widgets", "react", "react.useState", 1, ""),
        ("IMPORTS", "web/widgets", "./api.js", "web/api", 2, ""),
        ("IMPORTS", "web/widgets", "./components/Button", "web/components/Button.default", 3, ""),
        ("IMPORTS", "web/widgets", "./styles.css", "web/styles.css", 4, "side-effect"),
        ("IMPORTS", "web/widgets", "../lib/format", "lib/format", 5, "require"),
        ("INHERITS", "web/widgets.Widget", "React.Component", "react.default.Component", 8, "extends"),
        ("CALLS", "web/widgets.Widget.render", "this.label", "web/widgets.Widget.label", 10, ""),
        ("CALLS", "web/widgets.Widget.label", "format", "lib/format.format", 14, ""),
        ("CALLS", "web/widgets.Panel", "useState", "react.useState", 19, ""),
        ("CALLS", "web/widgets.Panel.toggle", "setOpen", None, 20, ""),
        ("CALLS", "web/widgets.Panel", "api.track", "web/api.track", 21, ""),
        ("CALLS", "web/widgets.Panel", "Button", "web/components/Button.default", 24, "jsx"),
        ("CALLS", "web/widgets.Panel", "Widget", "web/widgets.Widget", 25, "jsx"),
        ("CALLS", "web/widgets.loadItems", "api.fetchItems", "web/api.fetchItems", 31, ""),
        ("CALLS", "web/widgets.loadItems", "res.map", None, 32, ""),
        ("CALLS", "web/widgets.loadItems", "Item", "web/widgets.Item", 32, "new"),
    ],
)

TYPESCRIPT = Case(
    fixture="typescript/service.ts",
    path="app/users/service.ts",
    symbols=[
        ("module", "app/users/service", 1, 55),
        ("interface", "app/users/service.Repository", 6, 9),
        ("method", "app/users/service.Repository.get", 7, 7),
        ("method", "app/users/service.Repository.put", 8, 8),
        ("type", "app/users/service.Id", 11, 11),
        ("enum", "app/users/service.Status", 13, 16),
        ("class", "app/users/service.BaseService", 19, 25),
        ("method", "app/users/service.BaseService.name", 20, 20),
        ("method", "app/users/service.BaseService.log", 22, 24),
        ("class", "app/users/service.UserService", 27, 47),
        ("constructor", "app/users/service.UserService.constructor", 30, 32),
        ("method", "app/users/service.UserService.name", 34, 36),
        ("method", "app/users/service.UserService.get", 38, 41),
        ("method", "app/users/service.UserService.put", 43, 46),
        ("function", "app/users/service.notify", 49, 51),
        ("interface", "app/users/service.User", 53, 55),
    ],
    links=[
        ("IMPORTS", "app/users/service", "./config", "app/users/config.Config", 1, "type"),
        ("IMPORTS", "app/users/service", "../util/log", "app/util/log.Logger", 2, ""),
        ("IMPORTS", "app/users/service", "../util/log", "app/util/log.Level", 2, "type"),
        ("IMPORTS", "app/users/service", "path", "path", 3, ""),
        ("IMPORTS", "app/users/service", "events", "events.default", 4, ""),
        ("INHERITS", "app/users/service.Repository", "Iterable", None, 6, "extends"),
        ("INHERITS", "app/users/service.Repository", "Disposable", None, 6, "extends"),
        ("REFERENCES", "app/users/service.Repository.get", "Promise", None, 7, "type"),
        ("INHERITS", "app/users/service.BaseService", "EventEmitter", "events.default", 19, "extends"),
        ("INHERITS", "app/users/service.BaseService", "Repository", "app/users/service.Repository", 19, "implements"),
        ("CALLS", "app/users/service.BaseService.log", "Logger.info", "app/util/log.Logger.info", 23, ""),
        ("CALLS", "app/users/service.BaseService.log", "this.name", "app/users/service.BaseService.name", 23, ""),
        ("INHERITS", "app/users/service.UserService", "BaseService", "app/users/service.BaseService", 27, "extends"),
        ("CALLS", "app/users/service.UserService", "Map", None, 28, "new"),
        ("REFERENCES", "app/users/service.UserService.constructor", "Config", "app/users/config.Config", 30, "type"),
        ("CALLS", "app/users/service.UserService.constructor", "super", "app/users/service.BaseService", 31, ""),
        ("CALLS", "app/users/service.UserService.name", "path.basename", "path.basename", 35, ""),
        ("REFERENCES", "app/users/service.UserService.get", "Promise", None, 38, "type"),
        ("CALLS", "app/users/service.UserService.get", "this.log", "app/users/service.BaseService.log", 39, ""),
        ("CALLS", "app/users/service.UserService.get", "this.items.get", None, 40, ""),
        ("CALLS", "app/users/service.UserService.put", "this.items.set", None, 44, ""),
        ("CALLS", "app/users/service.UserService.put", "notify", "app/users/service.notify", 45, ""),
        ("REFERENCES", "app/users/service.notify", "User", "app/users/service.User", 49, "type"),
        ("CALLS", "app/users/service.notify", "console.log", None, 50, ""),
    ],
)

TSX = Case(
    fixture="typescript/App.tsx",
    path="app/users/App.tsx",
    symbols=[
        ("module", "app/users/App", 1, 18),
        ("type", "app/users/App.Props", 5, 5),
        ("function", "app/users/App.App", 7, 16),
    ],
    links=[
        ("IMPORTS", "app/users/App", "react", "react.useEffect", 1, ""),
        ("IMPORTS", "app/users/App", "./service", "app/users/service.UserService", 2, ""),
        ("IMPORTS", "app/users/App", "./Card", "app/users/Card.default", 3, ""),
        ("REFERENCES", "app/users/App.App", "Props", "app/users/App.Props", 7, "type"),
        ("REFERENCES", "app/users/App.App", "JSX.Element", None, 7, "type"),
        ("CALLS", "app/users/App.App", "useEffect", "react.useEffect", 8, ""),
        ("CALLS", "app/users/App.App", "UserService().log", None, 9, ""),
        ("CALLS", "app/users/App.App", "UserService", "app/users/service.UserService", 9, "new"),
        ("CALLS", "app/users/App.App", "Card", "app/users/Card.default", 12, "jsx"),
        ("CALLS", "app/users/App.App", "Card.Body", "app/users/Card.default.Body", 13, "jsx"),
    ],
)

GO = Case(
    fixture="go/store/store.go",
    path="internal/store/store.go",
    symbols=[
        ("package", "example.com/shop/internal/store", 1, 65),
        ("variable", "example.com/shop/internal/store.ErrNotFound", 13, 13),
        ("constant", "example.com/shop/internal/store.defaultLimit", 15, 15),
        ("interface", "example.com/shop/internal/store.Reader", 18, 20),
        ("method", "example.com/shop/internal/store.Reader.Get", 19, 19),
        ("interface", "example.com/shop/internal/store.ReadWriter", 23, 27),
        ("method", "example.com/shop/internal/store.ReadWriter.Put", 26, 26),
        ("struct", "example.com/shop/internal/store.DB", 30, 34),
        ("struct", "example.com/shop/internal/store.Pair", 36, 39),
        ("function", "example.com/shop/internal/store.Open", 42, 48),
        ("method", "example.com/shop/internal/store.DB.Get", 51, 57),
        ("method", "example.com/shop/internal/store.DB.lookup", 59, 61),
        ("function", "example.com/shop/internal/store.Map", 63, 65),
    ],
    links=[
        ("IMPORTS", "example.com/shop/internal/store", "errors", "errors", 5, ""),
        ("IMPORTS", "example.com/shop/internal/store", "fmt", "fmt", 6, ""),
        ("IMPORTS", "example.com/shop/internal/store", "database/sql", "database/sql", 7, ""),
        (
            "IMPORTS",
            "example.com/shop/internal/store",
            "example.com/shop/internal/log",
            "example.com/shop/internal/log",
            9,
            "",
        ),
        ("CALLS", "example.com/shop/internal/store", "errors.New", "errors.New", 13, ""),
        (
            "INHERITS",
            "example.com/shop/internal/store.ReadWriter",
            "Reader",
            "example.com/shop/internal/store.Reader",
            24,
            "embeds",
        ),
        ("INHERITS", "example.com/shop/internal/store.ReadWriter", "fmt.Stringer", "fmt.Stringer", 25, "embeds"),
        ("INHERITS", "example.com/shop/internal/store.DB", "sq.DB", "database/sql.DB", 31, "embeds"),
        (
            "INHERITS",
            "example.com/shop/internal/store.DB",
            "log.Logger",
            "example.com/shop/internal/log.Logger",
            32,
            "embeds",
        ),
        ("REFERENCES", "example.com/shop/internal/store.Open", "DB", "example.com/shop/internal/store.DB", 42, "type"),
        ("CALLS", "example.com/shop/internal/store.Open", "sq.Open", "database/sql.Open", 43, ""),
        ("CALLS", "example.com/shop/internal/store.Open", "fmt.Errorf", "fmt.Errorf", 45, ""),
        ("CALLS", "example.com/shop/internal/store.DB.Get", "d.Logger.Debug", None, 52, ""),
        (
            "CALLS",
            "example.com/shop/internal/store.DB.Get",
            "d.lookup",
            "example.com/shop/internal/store.DB.lookup",
            53,
            "",
        ),
        ("CALLS", "example.com/shop/internal/store.DB.lookup", "len", None, 60, ""),
        (
            "REFERENCES",
            "example.com/shop/internal/store.Map",
            "Pair",
            "example.com/shop/internal/store.Pair",
            63,
            "type",
        ),
    ],
    options={"go_module": "example.com/shop"},
)

JAVA = Case(
    fixture="java/OrderService.java",
    path="src/main/java/com/example/shop/OrderService.java",
    symbols=[
        ("package", "com.example.shop", 1, 44),
        ("class", "com.example.shop.OrderService", 12, 44),
        ("constructor", "com.example.shop.OrderService.OrderService", 16, 18),
        ("method", "com.example.shop.OrderService.run", 20, 26),
        ("method", "com.example.shop.OrderService.validate", 28, 30),
        ("method", "com.example.shop.OrderService.helper", 32, 32),
        ("method", "com.example.shop.OrderService.close", 34, 35),
        ("interface", "com.example.shop.OrderService.Listener", 37, 39),
        ("method", "com.example.shop.OrderService.Listener.onOrder", 38, 38),
        ("enum", "com.example.shop.OrderService.State", 41, 41),
        ("method", "com.example.shop.OrderService.State.label", 41, 41),
        ("class", "com.example.shop.OrderService.Line", 43, 43),
    ],
    links=[
        ("IMPORTS", "com.example.shop", "java.util.List", "java.util.List", 3, ""),
        ("IMPORTS", "com.example.shop", "java.util.ArrayList", "java.util.ArrayList", 4, ""),
        ("IMPORTS", "com.example.shop", "java.util.function.*", "java.util.function", 5, "wildcard"),
        (
            "IMPORTS",
            "com.example.shop",
            "java.util.Objects.requireNonNull",
            "java.util.Objects.requireNonNull",
            6,
            "static",
        ),
        ("IMPORTS", "com.example.shop", "com.example.shop.db.Repository", "com.example.shop.db.Repository", 7, ""),
        ("REFERENCES", "com.example.shop.OrderService", "Service", None, 12, "annotation"),
        ("INHERITS", "com.example.shop.OrderService", "BaseService", None, 13, "extends"),
        ("INHERITS", "com.example.shop.OrderService", "Runnable", "java.lang.Runnable", 13, "implements"),
        ("INHERITS", "com.example.shop.OrderService", "AutoCloseable", "java.lang.AutoCloseable", 13, "implements"),
        (
            "REFERENCES",
            "com.example.shop.OrderService.OrderService",
            "Repository",
            "com.example.shop.db.Repository",
            16,
            "type",
        ),
        ("REFERENCES", "com.example.shop.OrderService.OrderService", "Order", None, 16, "type"),
        (
            "CALLS",
            "com.example.shop.OrderService.OrderService",
            "requireNonNull",
            "java.util.Objects.requireNonNull",
            17,
            "",
        ),
        ("REFERENCES", "com.example.shop.OrderService.run", "Override", "java.lang.Override", 20, "annotation"),
        ("CALLS", "com.example.shop.OrderService.run", "ArrayList", "java.util.ArrayList", 22, "new"),
        ("CALLS", "com.example.shop.OrderService.run", "orders.add", None, 23, ""),
        ("CALLS", "com.example.shop.OrderService.run", "Order", None, 23, "new"),
        ("CALLS", "com.example.shop.OrderService.run", "repo.saveAll", None, 24, ""),
        ("CALLS", "com.example.shop.OrderService.run", "validate", "com.example.shop.OrderService.validate", 25, ""),
        ("REFERENCES", "com.example.shop.OrderService.validate", "List", "java.util.List", 28, "type"),
        ("REFERENCES", "com.example.shop.OrderService.validate", "Order", None, 28, "type"),
        ("CALLS", "com.example.shop.OrderService.validate", "helper", "com.example.shop.OrderService.helper", 29, ""),
        ("REFERENCES", "com.example.shop.OrderService.close", "Override", "java.lang.Override", 34, "annotation"),
        ("INHERITS", "com.example.shop.OrderService.Listener", "EventListener", None, 37, "extends"),
        ("REFERENCES", "com.example.shop.OrderService.Listener.onOrder", "Order", None, 38, "type"),
        ("INHERITS", "com.example.shop.OrderService.State", "Labeled", None, 41, "implements"),
        ("REFERENCES", "com.example.shop.OrderService.State.label", "String", "java.lang.String", 41, "type"),
        ("CALLS", "com.example.shop.OrderService.State.label", "name", None, 41, ""),
        ("REFERENCES", "com.example.shop.OrderService.Line", "String", "java.lang.String", 43, "type"),
    ],
)

RUST = Case(
    fixture="rust/src/store/mod.rs",
    path="src/store/mod.rs",
    symbols=[
        ("module", "crate::store", 1, 65),
        ("module", "crate::store::cache", 8, 10),
        ("function", "crate::store::cache::warm", 9, 9),
        ("struct", "crate::store::Store", 14, 16),
        ("enum", "crate::store::Mode", 18, 18),
        ("trait", "crate::store::Persist", 21, 26),
        ("method", "crate::store::Persist::save", 22, 22),
        ("method", "crate::store::Persist::name", 23, 25),
        ("method", "crate::store::Store::new", 30, 32),
        ("method", "crate::store::Store::insert", 34, 41),
        ("method", "crate::store::Store::touch", 43, 45),
        ("method", "crate::store::Store::fmt", 49, 51),
        ("constant", "crate::store::LIMIT", 54, 54),
        ("type", "crate::store::Shared", 56, 56),
        ("macro", "crate::store::make_store", 58, 60),
        ("function", "crate::store::open", 62, 65),
    ],
    links=[
        ("IMPORTS", "crate::store", "std::collections::HashMap", "std::collections::HashMap", 3, ""),
        ("IMPORTS", "crate::store", "std::collections::hash_map::Entry", "std::collections::hash_map::Entry", 3, ""),
        ("IMPORTS", "crate::store", "std::fmt", "std::fmt", 4, ""),
        ("IMPORTS", "crate::store", "std::fmt::Display", "std::fmt::Display", 4, ""),
        ("IMPORTS", "crate::store", "crate::error::Error", "crate::error::Error", 5, "alias"),
        ("IMPORTS", "crate::store", "super::config::*", "crate::config", 6, "wildcard"),
        ("INHERITS", "crate::store::Persist", "Display", "std::fmt::Display", 21, "extends"),
        ("INHERITS", "crate::store::Persist", "Clone", None, 21, "extends"),
        ("REFERENCES", "crate::store::Persist::save", "Result", None, 22, "type"),
        ("REFERENCES", "crate::store::Persist::save", "StoreError", "crate::error::Error", 22, "type"),
        ("REFERENCES", "crate::store::Persist::name", "String", None, 23, "type"),
        ("CALLS", "crate::store::Persist::name", "String::from", None, 24, ""),
        ("CALLS", "crate::store::Store::new", "HashMap::new", "std::collections::HashMap::new", 31, ""),
        ("REFERENCES", "crate::store::Store::insert", "String", None, 34, "type"),
        ("REFERENCES", "crate::store::Store::insert", "Option", None, 34, "type"),
        ("CALLS", "crate::store::Store::insert", "cache::warm", "crate::store::cache::warm", 35, ""),
        ("CALLS", "crate::store::Store::insert", "self.touch", "crate::store::Store::touch", 36, ""),
        ("CALLS", "crate::store::Store::insert", "self.items.entry", None, 37, ""),
        ("CALLS", "crate::store::Store::insert", "v.insert", None, 39, ""),
        ("CALLS", "crate::store::Store::touch", "println!", None, 44, "macro"),
        ("INHERITS", "crate::store::Store", "fmt::Display", "std::fmt::Display", 48, "implements"),
        ("REFERENCES", "crate::store::Store::fmt", "fmt::Formatter", "std::fmt::Formatter", 49, "type"),
        ("REFERENCES", "crate::store::Store::fmt", "fmt::Result", "std::fmt::Result", 49, "type"),
        ("CALLS", "crate::store::Store::fmt", "write!", None, 50, "macro"),
        ("REFERENCES", "crate::store::open", "Store", "crate::store::Store", 62, "type"),
        ("REFERENCES", "crate::store::open", "String", None, 62, "type"),
        ("CALLS", "crate::store::open", "Store::new", "crate::store::Store::new", 63, ""),
    ],
)

CASES = {
    "python": PYTHON,
    "javascript": JAVASCRIPT,
    "typescript": TYPESCRIPT,
    "tsx": TSX,
    "go": GO,
    "java": JAVA,
    "rust": RUST,
}


@pytest.mark.parametrize("name", CASES)
def test_fixture_parses_without_errors(name: str) -> None:
    result = CASES[name].parse()
    assert not result.has_error
    assert result.diagnostics == []


@pytest.mark.parametrize("name", CASES)
def test_symbols_are_exact(name: str) -> None:
    result = CASES[name].parse()
    assert [(s.kind.value, s.qualified_name, s.start_line, s.end_line) for s in result.symbols] == CASES[name].symbols


@pytest.mark.parametrize("name", CASES)
def test_links_are_exact(name: str) -> None:
    result = CASES[name].parse()
    links = [
        (link.kind.value, link.src, link.dst, link.dst_qualified, link.line, link.detail)
        for link in result.links
        if link.kind is not LinkKind.DEFINES
    ]
    assert links == CASES[name].links


@pytest.mark.parametrize("name", CASES)
def test_every_symbol_is_defined_by_its_parent(name: str) -> None:
    result = CASES[name].parse()
    defines = {(link.src, link.dst_qualified) for link in result.links if link.kind is LinkKind.DEFINES}
    expected = {(s.parent, s.qualified_name) for s in result.symbols if s.parent is not None}
    assert defines == expected
    assert result.symbols[0].qualified_name == result.module and result.symbols[0].parent is None
