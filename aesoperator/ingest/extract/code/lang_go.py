"""Go: the package (a directory), functions, methods under their receiver type, structs, interfaces (their
methods and embedded interfaces), other named types, package-level const/var; imports with aliases;
calls; struct and interface embedding as INHERITS (detail "embeds"); types named in signatures."""

from __future__ import annotations

from typing import ClassVar

from tree_sitter import Node

from .extractor import SKIP, Scope, SymbolWalker
from .model import LinkKind, SymbolKind
from .naming import go_import_name, go_package

_BUILTIN_FUNCS = frozenset(
    [
        "append",
        "cap",
        "clear",
        "close",
        "complex",
        "copy",
        "delete",
        "imag",
        "len",
        "make",
        "max",
        "min",
        "new",
        "panic",
        "print",
        "println",
        "real",
        "recover",
    ]
)
_BUILTIN_TYPES = frozenset(
    [
        "any",
        "bool",
        "byte",
        "comparable",
        "complex64",
        "complex128",
        "error",
        "float32",
        "float64",
        "int",
        "int8",
        "int16",
        "int32",
        "int64",
        "rune",
        "string",
        "uint",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "uintptr",
    ]
)
_SPEC_PARENTS = frozenset({"type_declaration", "const_declaration", "var_declaration"})


class GoExtractor(SymbolWalker):
    guess_owner_members = True
    builtin_types = _BUILTIN_TYPES
    comment_types = frozenset({"comment"})
    name_types = frozenset({"identifier", "type_identifier", "package_identifier", "field_identifier"})
    member_types: ClassVar[dict[str, tuple[str, str, str]]] = {
        "selector_expression": ("operand", "field", "."),
        "qualified_type": ("package", "name", "."),
    }
    call_types: ClassVar[dict[str, str]] = {"call_expression": "function"}
    wrapper_types: ClassVar[dict[str, str | None]] = {
        "parenthesized_expression": None,
        "generic_type": "type",
        "pointer_type": None,
        "index_expression": "operand",
    }
    type_name_types = frozenset({"type_identifier", "qualified_type"})

    def register(self) -> None:
        self.handlers = {
            "import_spec": self.on_import,
            "function_declaration": self.on_function,
            "method_declaration": self.on_method,
            "type_spec": self.on_type,
            "type_alias": self.on_type,
            "method_elem": self.on_interface_method,
            "type_elem": self.on_embedded_interface,
            "field_declaration": self.on_field,
            "const_spec": self.on_value,
            "var_spec": self.on_value,
            "call_expression": self.on_call,
        }

    def module_kind(self) -> SymbolKind:
        return SymbolKind.PACKAGE

    def module_name(self, root: Node) -> str:
        self.package_name = ""
        for child in root.named_children:
            if child.type == "package_clause" and child.named_child_count:
                name = child.named_child(0)
                self.package_name = self.text(name) if name is not None else ""
                break
        return go_package(self.path, self.package_name, self.go_module)

    def module_doc(self, root: Node) -> str | None:
        clause = next((c for c in root.named_children if c.type == "package_clause"), None)
        return None if clause is None else self.leading_doc(clause)

    def fallback(self, name: str, scope: Scope) -> str | None:
        # an unqualified name that is neither local nor imported is package-level (maybe in another file)
        if name in _BUILTIN_FUNCS or name in _BUILTIN_TYPES or name in ("nil", "true", "false", "iota"):
            return None
        return f"{self.module}.{name}"

    def _span(self, node: Node) -> Node:
        parent = node.parent
        if parent is not None and parent.type in _SPEC_PARENTS and parent.named_child_count == 1:
            return parent
        return node

    def _type_params(self, node: Node) -> frozenset[str]:
        params = node.child_by_field_name("type_parameters")
        if params is None:
            return frozenset()
        return frozenset(self.text(n) for p in params.named_children for n in p.children_by_field_name("name"))

    def on_import(self, node: Node, scope: Scope) -> object:
        path_node = node.child_by_field_name("path")
        if path_node is None:
            return SKIP
        path = self.text(path_node).strip('"`')
        alias = self.field_text(node, "name")
        line = node.start_point.row + 1
        detail = {"_": "blank", ".": "dot"}.get(alias or "", "")
        if not detail:
            scope.bindings[alias or go_import_name(path)] = path
        self.add_link(LinkKind.IMPORTS, scope.qname, path, path, line, detail)
        return SKIP

    def on_function(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        inner = self.define(
            node, name, SymbolKind.FUNCTION, scope, body=node.child_by_field_name("body"),
            doc=self.leading_doc(node), type_params=self._type_params(node),
        )  # fmt: skip
        self.type_refs(inner, node.child_by_field_name("parameters"), node.child_by_field_name("result"))
        return inner

    def on_method(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        receiver = node.child_by_field_name("receiver")
        if not name or receiver is None:
            return None
        param = next((p for p in receiver.named_children if p.type == "parameter_declaration"), None)
        type_node = None if param is None else param.child_by_field_name("type")
        receiver_type, type_params = self._receiver_type(type_node)
        receiver_name = None if param is None else self.field_text(param, "name")
        owner = f"{self.module}.{receiver_type}" if receiver_type else self.module
        inner = self.define(
            node, name, SymbolKind.METHOD, scope, parent=owner, body=node.child_by_field_name("body"),
            doc=self.leading_doc(node), owner=owner,
            self_names=frozenset({receiver_name}) if receiver_name else frozenset(), type_params=type_params,
        )  # fmt: skip
        self.type_refs(inner, node.child_by_field_name("parameters"), node.child_by_field_name("result"))
        return inner

    def _receiver_type(self, node: Node | None) -> tuple[str | None, frozenset[str]]:
        """`*Store[K]` -> ("Store", {"K"})."""
        while node is not None and node.type in ("pointer_type", "parenthesized_type"):
            node = node.named_child(0)
        if node is None:
            return None, frozenset()
        if node.type == "generic_type":
            base = node.child_by_field_name("type")
            args = node.child_by_field_name("type_arguments")
            params = frozenset() if args is None else frozenset(self.text(a) for a in args.named_children)
            return (None if base is None else self.text(base)), params
        return self.text(node), frozenset()

    def on_type(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        body = node.child_by_field_name("type")
        kind = {"struct_type": SymbolKind.STRUCT, "interface_type": SymbolKind.INTERFACE}.get(
            "" if body is None else body.type, SymbolKind.TYPE
        )
        span = self._span(node)
        return self.define(
            span, name, kind, scope, span=span, doc=self.leading_doc(span), type_params=self._type_params(node)
        )

    def on_interface_method(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        inner = self.define(node, name, SymbolKind.METHOD, scope, doc=self.leading_doc(node))
        self.type_refs(inner, node.child_by_field_name("parameters"), node.child_by_field_name("result"))
        return SKIP

    def on_embedded_interface(self, node: Node, scope: Scope) -> object:
        # `type_elem` also spells constraint unions (`~int | ~string`): only a single named type embeds
        if scope.kind is SymbolKind.INTERFACE and node.named_child_count == 1:
            target = node.named_child(0)
            if target is not None and target.type in ("type_identifier", "qualified_type", "generic_type"):
                self.refer(LinkKind.INHERITS, scope, target, "embeds")
        return SKIP

    def on_field(self, node: Node, scope: Scope) -> object:
        if scope.kind is SymbolKind.STRUCT and node.child_by_field_name("name") is None:
            target = node.child_by_field_name("type")
            if target is not None:
                self.refer(LinkKind.INHERITS, scope, target, "embeds")
        return None

    def on_value(self, node: Node, scope: Scope) -> object:
        if scope.parent is not None:
            return None
        kind = SymbolKind.CONSTANT if node.type == "const_spec" else SymbolKind.VARIABLE
        span = self._span(node)
        for name_node in node.children_by_field_name("name"):
            name = self.text(name_node)
            if name != "_":
                self.define(span, name, kind, scope, span=span, doc=self.leading_doc(span))
        self.type_refs(scope, node.child_by_field_name("type"))
        return None

    def on_call(self, node: Node, scope: Scope) -> object:
        function = node.child_by_field_name("function")
        if function is not None:
            self.refer(LinkKind.CALLS, scope, function)
        return None
