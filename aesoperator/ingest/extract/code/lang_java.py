"""Java: the package, classes, interfaces, enums, records and annotation types (nested ones too),
methods and constructors; imports (single-type, static, on-demand); method calls and `new`; extends and
implements; annotations and the types named in method signatures."""

from __future__ import annotations

from typing import ClassVar

from tree_sitter import Node

from .extractor import SKIP, Scope, SymbolWalker
from .model import LinkKind, SymbolKind
from .naming import java_package

_TYPES = {
    "class_declaration": SymbolKind.CLASS,
    "record_declaration": SymbolKind.CLASS,
    "interface_declaration": SymbolKind.INTERFACE,
    "annotation_type_declaration": SymbolKind.INTERFACE,
    "enum_declaration": SymbolKind.ENUM,
}
_JAVA_LANG = frozenset(
    [
        "Object",
        "String",
        "Integer",
        "Long",
        "Short",
        "Byte",
        "Double",
        "Float",
        "Boolean",
        "Character",
        "Void",
        "Number",
        "Math",
        "System",
        "Thread",
        "Runnable",
        "Iterable",
        "Comparable",
        "CharSequence",
        "Exception",
        "RuntimeException",
        "Error",
        "Throwable",
        "Override",
        "Deprecated",
        "FunctionalInterface",
        "SuppressWarnings",
        "SafeVarargs",
        "StringBuilder",
        "Class",
        "Enum",
        "Record",
        "AutoCloseable",
    ]
)


class JavaExtractor(SymbolWalker):
    self_words = frozenset({"this"})
    super_words = frozenset({"super"})
    class_members_visible = True
    comment_types = frozenset({"block_comment", "line_comment"})
    name_types = frozenset({"identifier", "this", "super", "type_identifier"})
    member_types: ClassVar[dict[str, tuple[str, str, str]]] = {
        "field_access": ("object", "field", "."),
        "scoped_identifier": ("scope", "name", "."),
        "scoped_type_identifier": ("", "", "."),  # handled in parts()
    }
    invocation_types: ClassVar[dict[str, tuple[str, str, str]]] = {"method_invocation": ("object", "name", ".")}
    wrapper_types: ClassVar[dict[str, str | None]] = {"parenthesized_expression": None, "generic_type": None}
    type_name_types = frozenset({"type_identifier", "scoped_type_identifier"})

    def register(self) -> None:
        self.handlers = {
            **dict.fromkeys(_TYPES, self.on_type),
            "method_declaration": self.on_method,
            "constructor_declaration": self.on_method,
            "compact_constructor_declaration": self.on_method,
            "import_declaration": self.on_import,
            "package_declaration": lambda node, scope: SKIP,
            "method_invocation": self.on_call,
            "object_creation_expression": self.on_new,
            "marker_annotation": self.on_annotation,
            "annotation": self.on_annotation,
        }

    def module_kind(self) -> SymbolKind:
        return SymbolKind.PACKAGE

    def module_name(self, root: Node) -> str:
        self.on_demand_imports = False
        declaration = next((c for c in root.named_children if c.type == "package_declaration"), None)
        name = None
        if declaration is not None:
            target = next((c for c in declaration.named_children if "identifier" in c.type), None)
            name = None if target is None else "".join(self.text(target).split())
        return java_package(self.path, name)

    def parts(self, node: Node) -> list[str] | None:
        if node.type == "scoped_type_identifier":  # `Map.Entry`: children are type identifiers without fields
            names = [self.text(c) for c in node.named_children if c.type in ("type_identifier", "identifier")]
            if not names:
                return None
            return [names[0], *("." + n for n in names[1:])]
        return super().parts(node)

    def _type_params(self, node: Node) -> frozenset[str]:
        params = node.child_by_field_name("type_parameters")
        if params is None:
            return frozenset()
        names = (
            next((c for c in p.named_children if c.type == "type_identifier"), None) for p in params.named_children
        )
        return frozenset(self.text(n) for n in names if n is not None)

    def on_type(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        inner = self.define(
            node, name, _TYPES[node.type], scope, body=node.child_by_field_name("body"), doc=self.leading_doc(node),
            type_params=self._type_params(node),
        )  # fmt: skip
        for child in node.named_children:
            if child.type == "superclass":
                for base in child.named_children:
                    self.refer(LinkKind.INHERITS, inner, base, "extends")
            elif child.type in ("super_interfaces", "extends_interfaces"):
                detail = "implements" if child.type == "super_interfaces" else "extends"
                for type_list in child.named_children:
                    for base in type_list.named_children:
                        self.refer(LinkKind.INHERITS, inner, base, detail)
        if node.type == "record_declaration":
            self.type_refs(inner, node.child_by_field_name("parameters"))
        for child in node.named_children:
            if child.type not in ("superclass", "super_interfaces", "extends_interfaces"):
                self.push(child, inner)
        return SKIP

    def on_method(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        kind = SymbolKind.METHOD if node.type == "method_declaration" else SymbolKind.CONSTRUCTOR
        inner = self.define(
            node, name, kind, scope, body=node.child_by_field_name("body"), doc=self.leading_doc(node),
            type_params=self._type_params(node),
        )  # fmt: skip
        self.type_refs(inner, node.child_by_field_name("parameters"), node.child_by_field_name("type"))
        return inner

    def on_import(self, node: Node, scope: Scope) -> object:
        target = next((c for c in node.named_children if c.type in ("scoped_identifier", "identifier")), None)
        if target is None:
            return SKIP
        name = "".join(self.text(target).split())
        line = node.start_point.row + 1
        is_static = any(c.type == "static" for c in node.children)
        if any(c.type == "asterisk" for c in node.named_children):
            self.on_demand_imports = True
            detail = "static wildcard" if is_static else "wildcard"
            self.add_link(LinkKind.IMPORTS, scope.qname, f"{name}.*", name, line, detail)
            return SKIP
        scope.bindings[name.rsplit(".", 1)[-1]] = name
        self.add_link(LinkKind.IMPORTS, scope.qname, name, name, line, "static" if is_static else "")
        return SKIP

    def fallback(self, name: str, scope: Scope) -> str | None:
        if name in _JAVA_LANG:
            return f"java.lang.{name}"
        # a type named without an import lives in the same package, unless an on-demand import may supply it
        if name[:1].isupper() and not self.on_demand_imports:
            return f"{self.module}.{name}"
        return None

    def on_call(self, node: Node, scope: Scope) -> object:
        name = node.child_by_field_name("name")
        if name is None:
            return None
        obj = node.child_by_field_name("object")
        head = [] if obj is None else self.parts(obj)
        line = name.start_point.row + 1
        if head is None:
            assert obj is not None
            dst = self.short_text(obj) + "." + self.text(name)
            self.refer_names(LinkKind.CALLS, scope, (), dst, line)
            return None
        parts = [*head, ("." if head else "") + self.text(name)]
        self.refer_names(LinkKind.CALLS, scope, tuple(p.lstrip(".") for p in parts), "".join(parts), line)
        return None

    def on_new(self, node: Node, scope: Scope) -> object:
        constructor = node.child_by_field_name("type")
        if constructor is not None:
            self.refer(LinkKind.CALLS, scope, constructor, "new")
        return None

    def on_annotation(self, node: Node, scope: Scope) -> object:
        name = node.child_by_field_name("name")
        if name is not None:
            self.refer(LinkKind.REFERENCES, scope, name, "annotation")
        return None
