"""The language-independent half of symbol extraction: an iterative walk over a tree-sitter tree with a
stack of scopes, symbol and link bookkeeping, and name resolution within the file.

Each language subclass registers handlers for the node types it cares about; a handler may return a new
Scope (its subtree is walked inside it), SKIP (its subtree is not walked) or None (walk on unchanged).
Links are resolved only after the walk, so a call may name a function defined further down the file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from tree_sitter import Node

from .model import CodeLink, CodeSymbol, LinkKind, SymbolKind

SKIP = object()  # handler result: do not walk this node's children
Handler = Callable[[Node, "Scope"], object]

MAX_SIGNATURE = 240
MAX_DST = 200
MAX_ERROR_LINES = 10
TYPE_KINDS = frozenset(
    {SymbolKind.CLASS, SymbolKind.STRUCT, SymbolKind.INTERFACE, SymbolKind.TRAIT, SymbolKind.ENUM, SymbolKind.TYPE}
)
_CALLABLE_KINDS = frozenset({SymbolKind.FUNCTION, SymbolKind.METHOD, SymbolKind.CONSTRUCTOR})


@dataclass(slots=True, eq=False)
class Scope:
    qname: str
    kind: SymbolKind
    parent: Scope | None
    owner: str | None = None  # the type that `self`-like names refer to inside this scope
    self_names: frozenset[str] = frozenset()
    type_params: frozenset[str] = frozenset()  # generic parameters visible here: not references to real types
    bindings: dict[str, str] = field(default_factory=dict)  # import bindings made in this scope
    members_only: bool = False  # a Rust impl block: names defined here are reached through the type only


@dataclass(slots=True)
class _PendingLink:
    kind: LinkKind
    scope: Scope  # where the names are looked up
    src: str
    names: tuple[str, ...]
    dst: str
    line: int
    detail: str


class SymbolWalker:
    """Base class; one instance extracts one file."""

    sep: ClassVar[str] = "."
    self_words: ClassVar[frozenset[str]] = frozenset()
    super_words: ClassVar[frozenset[str]] = frozenset()
    class_members_visible: ClassVar[bool] = False  # Java: a method may call a sibling without `this.`
    guess_owner_members: ClassVar[bool] = False  # Go: a receiver's method may live in another file
    builtin_types: ClassVar[frozenset[str]] = frozenset()
    comment_types: ClassVar[frozenset[str]] = frozenset({"comment"})
    skip_before_doc: ClassVar[frozenset[str]] = frozenset()
    # expression shapes understood by `parts`: leaf names, member accesses (object field, name field, separator),
    # calls (function field) and transparent wrappers (field or None for the first named child)
    name_types: ClassVar[frozenset[str]] = frozenset({"identifier"})
    member_types: ClassVar[dict[str, tuple[str, str, str]]] = {}
    call_types: ClassVar[dict[str, str]] = {}
    invocation_types: ClassVar[dict[str, tuple[str, str, str]]] = {}  # a call and member access in one (Java)
    wrapper_types: ClassVar[dict[str, str | None]] = {}

    def __init__(
        self,
        source: bytes,
        path: str,
        max_depth: int,
        *,
        language: str,
        go_module: str | None = None,
        rust_crate: str | None = None,
    ) -> None:
        self.language = language
        self.go_module = go_module
        self.rust_crate = rust_crate
        self.source = source
        self.path = path
        self.max_depth = max_depth
        self.module = ""
        self.symbols: list[CodeSymbol] = []
        self.links: list[CodeLink] = []
        self.aliases: dict[str, str] = {}
        self.diagnostics: list[str] = []
        self.defined: dict[str, SymbolKind] = {}
        self._pending: list[_PendingLink] = []
        self._bases: dict[str, list[str]] = {}
        self._stack: list[tuple[Node, Scope, int]] = []
        self._depth = 0
        self.handlers: dict[str, Handler] = {}
        self.register()

    # -- to be provided by each language ---------------------------------------------------------
    def register(self) -> None:
        """Fill self.handlers."""
        raise NotImplementedError

    def module_name(self, root: Node) -> str:
        raise NotImplementedError

    def module_kind(self) -> SymbolKind:
        return SymbolKind.MODULE

    def module_doc(self, root: Node) -> str | None:
        return None

    def fallback(self, name: str, scope: Scope) -> str | None:
        """Qualified guess for an unqualified name found neither in the file nor in its imports."""
        return None

    def doc_text(self, comment: Node) -> str | None:
        """The text of a documentation comment, or None when this comment is not one."""
        return strip_comment(self.text(comment))

    # -- the walk --------------------------------------------------------------------------------
    def run(self, root: Node) -> None:
        self.module = self.module_name(root)
        name = self.module.rsplit(self.sep, 1)[-1].rsplit("/", 1)[-1] or self.module
        end_line = _end_line(root)
        self.symbols.append(
            CodeSymbol(
                self.module,
                name,
                self.module_kind(),
                1,
                max(end_line, 1),
                0,
                len(self.source),
                "",
                self.module_doc(root),
                None,
            )
        )
        self.defined[self.module] = self.module_kind()
        module_scope = Scope(self.module, self.module_kind(), None)
        self._stack = [(root, module_scope, 0)]
        too_deep = False
        while self._stack:
            node, scope, depth = self._stack.pop()
            if depth > self.max_depth:
                if not too_deep:
                    too_deep = True
                    self.diagnostics.append(
                        f"nesting deeper than {self.max_depth} levels at line {node.start_point.row + 1}: "
                        "the deeper parts were skipped"
                    )
                continue
            handler = self.handlers.get(node.type)
            inner = scope
            if handler is not None:
                self._depth = depth
                result = handler(node, scope)
                if result is SKIP:
                    continue
                if isinstance(result, Scope):
                    inner = result
            self.push_children(node, inner, depth)
        if root.has_error:
            lines = ", ".join(str(n) for n in _error_lines(root))
            self.diagnostics.append(f"syntax errors near line(s) {lines}; symbols there may be missing")
        self._resolve()

    def push_children(self, node: Node, scope: Scope, depth: int | None = None) -> None:
        depth = self._depth if depth is None else depth
        stack = self._stack
        for child in reversed(node.named_children):  # anonymous nodes are punctuation and keywords
            stack.append((child, scope, depth + 1))

    def push(self, node: Node | None, scope: Scope) -> None:
        """Walk `node` (a descendant of the node being handled) in `scope`."""
        if node is not None:
            self._stack.append((node, scope, self._depth + 1))

    # -- helpers for handlers --------------------------------------------------------------------
    def text(self, node: Node) -> str:
        return self.source[node.start_byte : node.end_byte].decode("utf-8", "replace")

    def short_text(self, node: Node, limit: int = MAX_DST) -> str:
        """The start of a node's text with whitespace collapsed (bounded: the node may be huge)."""
        end = min(node.end_byte, node.start_byte + 2 * limit)
        return " ".join(self.source[node.start_byte : end].decode("utf-8", "replace").split())[:limit]

    def field_text(self, node: Node, name: str) -> str | None:
        child = node.child_by_field_name(name)
        return None if child is None else self.text(child)

    def define(
        self,
        node: Node,
        name: str,
        kind: SymbolKind,
        scope: Scope,
        *,
        span: Node | None = None,
        body: Node | None = None,
        doc: str | None = None,
        parent: str | None = None,
        owner: str | None = None,
        self_names: frozenset[str] | None = None,
        type_params: frozenset[str] = frozenset(),
    ) -> Scope:
        """Record a symbol for `node` named `name` inside `scope` (or inside `parent`, a qualified name)
        and return the scope its body is walked in."""
        parent_qname = parent or scope.qname
        qname = f"{parent_qname}{self.sep}{name}"
        span = span or node
        self.symbols.append(
            CodeSymbol(
                qname,
                name,
                kind,
                span.start_point.row + 1,
                _end_line(span),
                span.start_byte,
                span.end_byte,
                self.signature(node, body),
                doc,
                parent_qname,
            )
        )
        self.defined.setdefault(qname, kind)
        self.add_link(LinkKind.DEFINES, parent_qname, qname, qname, span.start_point.row + 1)
        if kind in TYPE_KINDS:
            owner, names = qname, self.self_words
        else:
            owner = owner if owner is not None else scope.owner
            names = self_names if self_names is not None else scope.self_names
        return Scope(qname, kind, scope, owner, names, scope.type_params | type_params)

    def signature(self, node: Node, body: Node | None) -> str:
        end = body.start_byte if body is not None else node.end_byte
        end = min(end, node.start_byte + 4 * MAX_SIGNATURE)  # a minified file is one long line
        raw = self.source[node.start_byte : end].decode("utf-8", "replace")
        if body is None:
            raw = raw.split("\n", 1)[0]
        return " ".join(raw.split()).rstrip("{:; ")[:MAX_SIGNATURE]

    def add_link(
        self, kind: LinkKind, src: str, dst: str, dst_qualified: str | None, line: int, detail: str = ""
    ) -> None:
        self.links.append(CodeLink(kind, src, dst[:MAX_DST], dst_qualified, line, detail))

    def refer(self, kind: LinkKind, scope: Scope, target: Node, detail: str = "", *, src: str | None = None) -> None:
        """A link from `src` (default: `scope`) to the expression `target`, resolved after the walk in `scope`."""
        parts = self.parts(target)
        names: tuple[str, ...] = ()
        if parts is None:
            dst = self.short_text(target)
        else:
            dst, names = "".join(parts), tuple(p.lstrip(".:") for p in parts)
        self._pending.append(
            _PendingLink(kind, scope, src or scope.qname, names, dst, target.start_point.row + 1, detail)
        )

    def refer_names(
        self, kind: LinkKind, scope: Scope, names: tuple[str, ...], dst: str, line: int, detail: str = ""
    ) -> None:
        self._pending.append(_PendingLink(kind, scope, scope.qname, names, dst, line, detail))

    def parts(self, node: Node) -> list[str] | None:
        """`a.b().c` -> ["a", ".b()", ".c"]: the path of names an expression spells, or None for any other shape."""
        suffix: list[str] = []
        call = False
        for _ in range(64):
            kind = node.type
            if kind in self.name_types:
                head = self.text(node) + ("()" if call else "")
                suffix.append(head)
                suffix.reverse()
                return suffix
            member = self.member_types.get(kind)
            if member is not None:
                obj = node.child_by_field_name(member[0])
                prop = node.child_by_field_name(member[1])
                if prop is None:
                    return None
                suffix.append(member[2] + self.text(prop) + ("()" if call else ""))
                call = False
                if obj is None:  # `::name` (Rust global path) or a bare member
                    suffix.reverse()
                    suffix[0] = suffix[0].lstrip(".:")
                    return suffix
                node = obj
                continue
            invocation = self.invocation_types.get(kind)
            if invocation is not None:
                obj = node.child_by_field_name(invocation[0])
                name = node.child_by_field_name(invocation[1])
                if name is None:
                    return None
                suffix.append((invocation[2] if obj is not None else "") + self.text(name) + "()")
                call = False
                if obj is None:
                    suffix.reverse()
                    return suffix
                node = obj
                continue
            fn_field = self.call_types.get(kind)
            if fn_field is not None:
                fn = node.child_by_field_name(fn_field)
                if fn is None:
                    return None
                node, call = fn, True
                continue
            if kind in self.wrapper_types:
                wrapped_field = self.wrapper_types[kind]
                inner = node.child_by_field_name(wrapped_field) if wrapped_field else node.named_child(0)
                if inner is None:
                    return None
                node = inner
                continue
            return None
        return None

    def leading_doc(self, node: Node) -> str | None:
        """Documentation comments right above `node` (no blank line between), joined."""
        texts: list[str] = []
        row = node.start_point.row
        prev = node.prev_sibling
        while prev is not None:
            if prev.type in self.skip_before_doc:
                row = prev.start_point.row
            elif prev.type in self.comment_types and prev.end_point.row >= row - 1:
                text = self.doc_text(prev)
                if text is None:
                    break
                texts.append(text)
                row = prev.start_point.row
            else:
                break
            prev = prev.prev_sibling
        doc = "\n".join(reversed(texts)).strip()
        return doc or None

    def type_refs(self, scope: Scope, *nodes: Node | None, detail: str = "type") -> None:
        """REFERENCES from `scope` to the named types inside signature parts (parameters, return type)."""
        stack = [n for n in reversed(nodes) if n is not None]
        seen: set[str] = set()
        while stack:
            node = stack.pop()
            kind = node.type
            if kind in self.type_name_types:
                parts = self.parts(node) if kind not in self.name_types else [self.text(node)]
                if parts is not None:
                    head = parts[0]
                    dst = "".join(parts)
                    if head not in scope.type_params and head not in self.builtin_types and dst not in seen:
                        seen.add(dst)
                        names = tuple(p.lstrip(".:") for p in parts)
                        self.refer_names(LinkKind.REFERENCES, scope, names, dst, node.start_point.row + 1, detail)
                    continue
            if kind in self.type_ref_stop:
                continue
            stack.extend(reversed(node.named_children))

    type_name_types: ClassVar[frozenset[str]] = frozenset({"type_identifier"})
    type_ref_stop: ClassVar[frozenset[str]] = frozenset()  # do not look for type names inside these

    # -- resolution ------------------------------------------------------------------------------
    def _resolve(self) -> None:
        for pending in self._pending:  # bases first: `super` and inherited members depend on them
            if pending.kind is LinkKind.INHERITS:
                target = self.resolve(pending.names, pending.scope) if pending.names else None
                if target is not None:
                    self._bases.setdefault(pending.src, []).append(target)
        for pending in self._pending:
            target = self.resolve(pending.names, pending.scope) if pending.names else None
            self.add_link(pending.kind, pending.src, pending.dst, target, pending.line, pending.detail)

    def resolve(self, names: tuple[str, ...], scope: Scope) -> str | None:
        head, rest = names[0], names[1:]
        if head in scope.self_names and scope.owner is not None:
            return self._member(scope.owner, rest) if rest else scope.owner
        if head in self.super_words and scope.owner is not None:
            bases = self._bases.get(scope.owner, [])
            if not rest:
                return bases[0] if bases else None
            for candidate in bases:
                found = self._member(candidate, rest, guess=candidate not in self.defined)
                if found is not None:
                    return found
            return None
        base: str | None = None
        current: Scope | None = scope
        while current is not None:
            if current.kind in TYPE_KINDS and not self.class_members_visible and current is not scope:
                current = current.parent
                continue
            if not current.members_only:
                candidate = f"{current.qname}{self.sep}{head}"
                if candidate in self.defined:
                    base = candidate
                    break
            if head in current.bindings:
                base = current.bindings[head]
                break
            current = current.parent
        if base is None:
            base = self.fallback(head, scope)
        if base is None:
            return None
        return base + "".join(self.sep + r for r in rest)

    def _member(self, owner: str, rest: tuple[str, ...], guess: bool = False) -> str | None:
        """`owner.rest`, looking through the owner's bases defined in this file."""
        seen: set[str] = set()
        todo = [owner]
        while todo:
            current = todo.pop(0)
            if current in seen:
                continue
            seen.add(current)
            candidate = f"{current}{self.sep}{rest[0]}"
            if candidate in self.defined:
                return candidate + "".join(self.sep + r for r in rest[1:])
            todo.extend(self._bases.get(current, []))
        if (guess or self.guess_owner_members) and len(rest) == 1:
            return f"{owner}{self.sep}{rest[0]}"
        return None

    def result_links(self) -> list[CodeLink]:
        """Links without duplicates, in line order (stable: definitions before what happens on their line)."""
        return sorted(dict.fromkeys(self.links), key=lambda link: link.line)


def _error_lines(root: Node) -> list[int]:
    """Lines of the first few ERROR/MISSING nodes, descending only into subtrees that contain one."""
    lines: list[int] = []
    stack = [root]
    while stack and len(lines) < MAX_ERROR_LINES:
        node = stack.pop()
        if node.is_error or node.is_missing:
            line = node.start_point.row + 1
            if line not in lines:
                lines.append(line)
            if node.is_missing:
                continue
        stack.extend(child for child in reversed(node.children) if child.has_error or child.is_missing)
    return lines


def _end_line(node: Node) -> int:
    row, column = node.end_point
    start = node.start_point.row + 1
    return max(row + 1 if column > 0 else row, start)


def strip_comment(text: str) -> str:
    """Comment text without its markers: `//`, `///`, `//!`, `#`, and `/* */` / `/** */` with leading `*`s."""
    text = text.strip()
    if text.startswith("/*"):
        text = text[2:].removesuffix("*/").lstrip("*!")
        lines = [line.strip() for line in text.splitlines()]
        lines = [line[1:].lstrip() if line.startswith("*") else line for line in lines]
        return "\n".join(lines).strip()
    for marker in ("///", "//!", "//", "#"):
        if text.startswith(marker):
            return text[len(marker) :].strip()
    return text


def is_callable(kind: SymbolKind) -> bool:
    return kind in _CALLABLE_KINDS
