"""Rust: the crate-relative module, inline `mod` blocks, functions, structs/unions, enums, traits (their
supertraits as INHERITS "extends", their methods), impl blocks (methods filed under the implementing type,
`impl Trait for Type` as INHERITS "implements"), type aliases, consts/statics, `macro_rules!`; `use` trees
(nested lists, `self`, aliases, globs; `crate::`/`self::`/`super::` resolved); calls, method calls on
`self`/`Self`, macro invocations (CALLS, detail "macro"); types named in signatures."""

from __future__ import annotations

from typing import ClassVar

from tree_sitter import Node

from .extractor import SKIP, TYPE_KINDS, Scope, SymbolWalker
from .model import LinkKind, SymbolKind
from .naming import rust_module

_PATH_HEADS = frozenset({"crate", "self", "super"})
_PATH_MARK = "\x00"  # prefixes a `crate`/`self`/`super` path head in names, never in source text
_ITEMS = {
    "struct_item": SymbolKind.STRUCT,
    "union_item": SymbolKind.STRUCT,
    "enum_item": SymbolKind.ENUM,
    "type_item": SymbolKind.TYPE,
    "const_item": SymbolKind.CONSTANT,
    "static_item": SymbolKind.CONSTANT,
    "macro_definition": SymbolKind.MACRO,
}


class RustExtractor(SymbolWalker):
    sep = "::"
    self_words = frozenset({"self", "Self"})
    comment_types = frozenset({"line_comment", "block_comment"})
    skip_before_doc = frozenset({"attribute_item"})
    builtin_types = frozenset({"Self"})
    name_types = frozenset({"identifier", "self", "super", "crate", "type_identifier", "metavariable"})
    member_types: ClassVar[dict[str, tuple[str, str, str]]] = {
        "field_expression": ("value", "field", "."),
        "scoped_identifier": ("path", "name", "::"),
        "scoped_type_identifier": ("path", "name", "::"),
    }
    call_types: ClassVar[dict[str, str]] = {"call_expression": "function"}
    wrapper_types: ClassVar[dict[str, str | None]] = {
        "generic_function": "function",
        "generic_type": "type",
        "reference_type": "type",
        "parenthesized_expression": None,
    }
    type_name_types = frozenset({"type_identifier", "scoped_type_identifier"})

    def register(self) -> None:
        self.handlers = {
            **dict.fromkeys(_ITEMS, self.on_item),
            "mod_item": self.on_mod,
            "function_item": self.on_function,
            "function_signature_item": self.on_function,
            "trait_item": self.on_trait,
            "impl_item": self.on_impl,
            "use_declaration": self.on_use,
            "call_expression": self.on_call,
            "macro_invocation": self.on_macro,
        }

    def module_name(self, root: Node) -> str:
        return rust_module(self.path, self.rust_crate)

    def module_doc(self, root: Node) -> str | None:
        texts: list[str] = []
        for child in root.children:
            if child.type not in self.comment_types:
                break
            if child.child_by_field_name("inner") is not None:
                doc = child.child_by_field_name("doc")
                texts.append(self.text(doc).strip() if doc is not None else "")
        return "\n".join(texts).strip() or None

    def doc_text(self, comment: Node) -> str | None:
        if comment.child_by_field_name("outer") is None:
            return None  # a plain comment, or an inner `//!` doc belonging to the enclosing module
        doc = comment.child_by_field_name("doc")
        if doc is None:
            return ""
        text = self.text(doc)
        if comment.type == "block_comment":
            lines = [line.strip().removeprefix("*").strip() for line in text.splitlines()]
            return "\n".join(lines).strip()
        return text.strip()

    # -- names -----------------------------------------------------------------------------------
    def refer(self, kind: LinkKind, scope: Scope, target: Node, detail: str = "", *, src: str | None = None) -> None:
        parts = self.parts(target)
        if parts is None:
            super().refer(kind, scope, target, detail, src=src)
            return
        self._pending_names(kind, scope, parts, target.start_point.row + 1, detail, src)

    def _pending_names(
        self, kind: LinkKind, scope: Scope, parts: list[str], line: int, detail: str, src: str | None = None
    ) -> None:
        names = [p.lstrip(".:") for p in parts]
        # `self::x`/`super::x`/`crate::x` are module paths; `self.x` is a value
        if names[0] in _PATH_HEADS and (len(parts) == 1 or parts[1].startswith("::")):
            names[0] = _PATH_MARK + names[0]
        self.refer_names(kind, scope, tuple(names), "".join(parts), line, detail)
        if src is not None:
            self._pending[-1].src = src

    def _module_of(self, scope: Scope) -> Scope:
        current: Scope | None = scope
        while current is not None:
            if current.kind is SymbolKind.MODULE:
                return current
            current = current.parent
        return scope

    def absolute(self, names: list[str], scope: Scope) -> str:
        """`crate::a::b` / `self::b` / `super::super::c` -> a crate-rooted path; other paths stay as written."""
        heads = [n.lstrip(_PATH_MARK) for n in names]
        if not heads or heads[0] not in _PATH_HEADS:
            return "::".join(heads)
        if heads[0] == "crate":
            base = self.module.split("::", 1)[0]
            return "::".join([base, *heads[1:]])
        module = self._module_of(scope).qname.split("::")
        i = 0
        if heads[0] == "self":
            i = 1
        while i < len(heads) and heads[i] == "super":
            if len(module) > 1:
                module = module[:-1]
            i += 1
        return "::".join([*module, *heads[i:]])

    def resolve(self, names: tuple[str, ...], scope: Scope) -> str | None:
        if names and names[0].startswith(_PATH_MARK):
            return self.absolute(list(names), scope)
        return super().resolve(names, scope)

    # -- items -----------------------------------------------------------------------------------
    def on_mod(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        body = node.child_by_field_name("body")
        if not name or body is None:
            return SKIP  # `mod x;` names a file of its own
        return self.define(node, name, SymbolKind.MODULE, scope, body=body, doc=self.leading_doc(node))

    def _type_params(self, node: Node) -> frozenset[str]:
        params = node.child_by_field_name("type_parameters")
        if params is None:
            return frozenset()
        names = (p.child_by_field_name("name") or p.named_child(0) for p in params.named_children)
        return frozenset(self.text(n) for n in names if n is not None)

    def on_item(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        kind = _ITEMS[node.type]
        if kind is SymbolKind.CONSTANT and scope.kind not in (SymbolKind.MODULE, *TYPE_KINDS):
            return None  # a local const inside a function body
        self.define(
            node, name, kind, scope, body=node.child_by_field_name("body"), doc=self.leading_doc(node),
            type_params=self._type_params(node),
        )  # fmt: skip
        return SKIP if kind is SymbolKind.MACRO else None

    def on_function(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        kind = SymbolKind.METHOD if scope.kind in TYPE_KINDS else SymbolKind.FUNCTION
        inner = self.define(
            node, name, kind, scope, body=node.child_by_field_name("body"), doc=self.leading_doc(node),
            type_params=self._type_params(node),
        )  # fmt: skip
        self.type_refs(inner, node.child_by_field_name("parameters"), node.child_by_field_name("return_type"))
        return inner

    def on_trait(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        inner = self.define(
            node, name, SymbolKind.TRAIT, scope, body=node.child_by_field_name("body"), doc=self.leading_doc(node),
            type_params=self._type_params(node),
        )  # fmt: skip
        bounds = node.child_by_field_name("bounds")
        if bounds is not None:
            for bound in bounds.named_children:
                if bound.type in ("type_identifier", "scoped_type_identifier", "generic_type"):
                    self.refer(LinkKind.INHERITS, scope, bound, "extends", src=inner.qname)
        self.push(node.child_by_field_name("body"), inner)
        return SKIP

    def on_impl(self, node: Node, scope: Scope) -> object:
        type_node = node.child_by_field_name("type")
        parts = None if type_node is None else self.parts(type_node)
        if parts is None:
            return None
        names = tuple(p.lstrip(":") for p in parts)
        owner = self.resolve(names, scope) or f"{scope.qname}::{'::'.join(names)}"
        inner = Scope(
            owner, SymbolKind.STRUCT, scope, owner, self.self_words, scope.type_params | self._type_params(node),
            members_only=True,
        )  # fmt: skip
        trait = node.child_by_field_name("trait")
        if trait is not None:
            self.refer(LinkKind.INHERITS, scope, trait, "implements", src=owner)
        self.push(node.child_by_field_name("body"), inner)
        return SKIP

    # -- use trees ---------------------------------------------------------------------------------
    def on_use(self, node: Node, scope: Scope) -> object:
        argument = node.child_by_field_name("argument")
        if argument is None:
            return SKIP
        line = node.start_point.row + 1
        todo: list[tuple[Node, list[str]]] = [(argument, [])]
        while todo:
            item, prefix = todo.pop()
            kind = item.type
            if kind == "use_as_clause":
                path = item.child_by_field_name("path")
                alias = self.field_text(item, "alias")
                if path is not None:
                    self._use(scope, [*prefix, *self._path(path)], alias, line)
            elif kind == "scoped_use_list":
                path = item.child_by_field_name("path")
                inner = item.child_by_field_name("list")
                base = [*prefix, *([] if path is None else self._path(path))]
                if inner is not None:
                    todo.extend((child, base) for child in reversed(inner.named_children))
            elif kind == "use_list":
                todo.extend((child, prefix) for child in reversed(item.named_children))
            elif kind == "use_wildcard":
                path = item.named_child(0)
                full = [*prefix, *([] if path is None else self._path(path))]
                written = "::".join(full)
                self.add_link(
                    LinkKind.IMPORTS, scope.qname, f"{written}::*", self.absolute(full, scope), line, "wildcard"
                )
            elif kind == "self" and prefix:  # `use a::b::{self}` binds `b`
                self._use(scope, prefix, None, line)
            elif kind in ("identifier", "scoped_identifier", "crate", "super", "self", "metavariable"):
                self._use(scope, [*prefix, *self._path(item)], None, line)
        return SKIP

    def _path(self, node: Node) -> list[str]:
        parts = self.parts(node)
        return [] if parts is None else [p.lstrip(":") for p in parts]

    def _use(self, scope: Scope, path: list[str], alias: str | None, line: int) -> None:
        if not path:
            return
        target = self.absolute(path, scope)
        local = alias or path[-1]
        if local not in _PATH_HEADS and local != "_":
            scope.bindings[local] = target
            if scope.parent is None:
                self.aliases[f"{self.module}::{local}"] = target
        self.add_link(LinkKind.IMPORTS, scope.qname, "::".join(path), target, line, "alias" if alias else "")

    # -- calls ---------------------------------------------------------------------------------------
    def on_call(self, node: Node, scope: Scope) -> object:
        function = node.child_by_field_name("function")
        if function is not None:
            self.refer(LinkKind.CALLS, scope, function)
        return None

    def on_macro(self, node: Node, scope: Scope) -> object:
        macro = node.child_by_field_name("macro")
        parts = None if macro is None else self.parts(macro)
        if parts is not None:
            parts[-1] += "!"
            self._pending_names(LinkKind.CALLS, scope, parts, node.start_point.row + 1, "macro")
            self._pending[-1].names = tuple(n.removesuffix("!") for n in self._pending[-1].names)
        return None
