"""Qualified names of modules, derived from the repository-relative path so that every file of a
repository names its modules the way the others import them.

- Python: `a/b/c.py` -> `a.b.c`; `a/b/__init__.py` -> `a.b`; a leading `src/` is dropped. Members: `a.b.c.Class.method`.
- JavaScript/TypeScript: the path without its extension, `/index` dropped: `web/ui/Button.tsx` -> `web/ui/Button`,
  `web/ui/index.ts` -> `web/ui`. Members: `web/ui/Button.Button.render`. Relative imports resolve against the
  importing file's directory; bare specifiers (`react`, `lodash/fp`) stay as written.
- Go: the package is the directory: `pkg/store/db.go` -> `pkg/store`, or `<go_module>/pkg/store` when the go.mod
  module path is given (then names match import paths). Members: `pkg/store.DB.Get` (methods under their receiver type).
- Java: the `package` declaration: `com.x.shop`; members `com.x.shop.OrderService.run`, nested types `...Outer.Inner`.
- Rust: crate-relative module path from the last `src/` directory: `src/lib.rs`/`src/main.rs` -> `crate`,
  `src/a/mod.rs` -> `crate::a`, `src/a/b.rs` -> `crate::a::b` (files outside `src/`: their path, e.g. `crate::tests::it`);
  `crate` is replaced by `rust_crate` when given. Members: `crate::a::Store::new` (methods under their impl type).
"""

from __future__ import annotations

import posixpath
import re

MEMBER_SEPARATOR: dict[str, str] = {
    "python": ".",
    "javascript": ".",
    "typescript": ".",
    "tsx": ".",
    "go": ".",
    "java": ".",
    "rust": "::",
}

_JS_EXTENSIONS = (".d.ts", ".d.mts", ".d.cts", ".tsx", ".ts", ".mts", ".cts", ".jsx", ".js", ".mjs", ".cjs")
_GO_VERSION = re.compile(r"^v\d+$")


def _normalise(path: str) -> str:
    path = posixpath.normpath(path.replace("\\", "/")).lstrip("/")
    return "" if path == "." else path


def python_module(path: str) -> str:
    parts = _normalise(path).split("/")
    if len(parts) > 1 and parts[0] == "src":
        parts = parts[1:]
    last = parts[-1]
    for ext in (".pyi", ".py"):
        if last.endswith(ext):
            last = last[: -len(ext)]
            break
    parts[-1] = last
    if last == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(p for p in parts if p)


def python_relative(module: str, is_package: bool, dots: int, rest: str) -> str | None:
    """Absolute name of `from <dots><rest> import ...` inside `module`, or None above the root."""
    base = module.split(".") if module else []
    if not is_package:
        base = base[:-1]
    up = dots - 1
    if up > len(base):
        return None
    base = base[: len(base) - up]
    return ".".join([*base, *([rest] if rest else [])])


def js_module(path: str) -> str:
    path = _normalise(path)
    for ext in _JS_EXTENSIONS:
        if path.endswith(ext):
            path = path[: -len(ext)]
            break
    if path.endswith("/index"):
        path = path[: -len("/index")]
    return path


def js_specifier(directory: str, specifier: str) -> str:
    """Qualified module name of an import specifier seen in a file of `directory` (relative ones become paths)."""
    if not specifier.startswith("."):
        return specifier
    return js_module(posixpath.join(directory, specifier))


def go_package(path: str, package_name: str, go_module: str | None) -> str:
    directory = posixpath.dirname(_normalise(path))
    if go_module:
        return f"{go_module.rstrip('/')}/{directory}" if directory else go_module.rstrip("/")
    return directory or package_name


def go_import_name(import_path: str) -> str:
    """The name a Go import binds by default: its last element, skipping a major-version suffix."""
    parts = [p for p in import_path.split("/") if p]
    if len(parts) > 1 and _GO_VERSION.match(parts[-1]):
        parts = parts[:-1]
    name = parts[-1] if parts else import_path
    name = re.sub(r"\.v\d+$", "", name)  # gopkg.in/yaml.v3 -> yaml
    return name.replace("-", "_").removeprefix("go_")


def java_package(path: str, package: str | None) -> str:
    if package:
        return package
    directory = posixpath.dirname(_normalise(path))
    return directory.replace("/", ".") or posixpath.splitext(posixpath.basename(path))[0]


def rust_module(path: str, rust_crate: str | None) -> str:
    root = rust_crate or "crate"
    parts = _normalise(path).split("/")
    if "src" in parts[:-1]:
        parts = parts[len(parts) - 1 - parts[::-1].index("src") + 1 :]
    stem = parts[-1].removesuffix(".rs")
    if stem in ("mod",) or (len(parts) == 1 and stem in ("lib", "main")):
        parts = parts[:-1]
    else:
        parts[-1] = stem
    return "::".join([root, *[p for p in parts if p]])
