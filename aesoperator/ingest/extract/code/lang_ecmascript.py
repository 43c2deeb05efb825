"""JavaScript, TypeScript and TSX (one extractor: the TypeScript grammars extend the JavaScript one).

Symbols: functions (declarations and arrow/function expressions bound to a name), classes, methods,
interfaces, enums, type aliases, namespaces, module-level variables. Links: ES imports (default, named,
namespace, side-effect, `import type`), re-exports, `require()` and dynamic `import()`, calls, `new`,
JSX components (<Card/>, <Card.Body/> as CALLS, detail "jsx"), extends/implements, decorators, and the
types named in TypeScript signatures."""

from __future__ import annotations

import posixpath
from typing import ClassVar

from tree_sitter import Node

from .extractor import SKIP, TYPE_KINDS, Scope, SymbolWalker, strip_comment
from .model import LinkKind, SymbolKind
from .naming import js_module, js_specifier

_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function"})
_CLASS_VALUES = frozenset({"class"})


class EcmaScriptExtractor(SymbolWalker):
    self_words = frozenset({"this"})
    super_words = frozenset({"super"})
    name_types = frozenset({"identifier", "this", "super", "type_identifier", "property_identifier"})
    member_types: ClassVar[dict[str, tuple[str, str, str]]] = {
        "member_expression": ("object", "property", "."),
        "nested_type_identifier": ("module", "name", "."),
        "nested_identifier": ("object", "property", "."),
    }
    call_types: ClassVar[dict[str, str]] = {"call_expression": "function", "new_expression": "constructor"}
    wrapper_types: ClassVar[dict[str, str | None]] = {
        "parenthesized_expression": None,
        "non_null_expression": None,
        "generic_type": "name",
        "instantiation_expression": "function",
    }
    type_name_types = frozenset({"type_identifier", "nested_type_identifier"})
    type_ref_stop = frozenset({"literal_type", "template_literal_type"})

    def register(self) -> None:
        self.handlers = {
            "function_declaration": self.on_function,
            "generator_function_declaration": self.on_function,
            "method_definition": self.on_method,
            "method_signature": self.on_method,
            "abstract_method_signature": self.on_method,
            "class_declaration": self.on_class,
            "abstract_class_declaration": self.on_class,
            "interface_declaration": self.on_interface,
            "enum_declaration": self.on_simple_type,
            "type_alias_declaration": self.on_simple_type,
            "internal_module": self.on_namespace,
            "variable_declarator": self.on_variable,
            "class_heritage": self.on_heritage,
            "extends_type_clause": self.on_interface_extends,
            "import_statement": self.on_import,
            "export_statement": self.on_export,
            "call_expression": self.on_call,
            "new_expression": self.on_new,
            "jsx_opening_element": self.on_jsx,
            "jsx_self_closing_element": self.on_jsx,
            "decorator": self.on_decorator,
        }
        self.directory = posixpath.dirname(self.path.replace("\\", "/"))

    def module_name(self, root: Node) -> str:
        return js_module(self.path) or "index"

    def doc_text(self, comment: Node) -> str | None:
        return strip_comment(self.text(comment))

    def _span(self, node: Node) -> Node:
        parent = node.parent
        return parent if parent is not None and parent.type == "export_statement" else node

    def _doc(self, node: Node) -> str | None:
        return self.leading_doc(self._span(node))

    def _type_params(self, node: Node) -> frozenset[str]:
        params = node.child_by_field_name("type_parameters")
        if params is None:
            return frozenset()
        names = (p.child_by_field_name("name") for p in params.named_children)
        return frozenset(self.text(n) for n in names if n is not None)

    def _signature_refs(self, node: Node, scope: Scope) -> None:
        params = node.child_by_field_name("parameters")
        annotations = [] if params is None else [p.child_by_field_name("type") for p in params.named_children]
        self.type_refs(scope, *annotations, node.child_by_field_name("return_type"))

    def on_function(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        inner = self.define(
            node, name, SymbolKind.FUNCTION, scope, span=self._span(node), body=node.child_by_field_name("body"),
            doc=self._doc(node), type_params=self._type_params(node),
        )  # fmt: skip
        self._signature_refs(node, inner)
        return inner

    def on_method(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        kind = SymbolKind.CONSTRUCTOR if name == "constructor" else SymbolKind.METHOD
        if scope.kind not in TYPE_KINDS:
            kind = SymbolKind.FUNCTION  # a method of an object literal
        inner = self.define(
            node, name, kind, scope, body=node.child_by_field_name("body"), doc=self.leading_doc(node),
            type_params=self._type_params(node),
        )  # fmt: skip
        self._signature_refs(node, inner)
        return inner

    def on_class(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        return self.define(
            node, name, SymbolKind.CLASS, scope, span=self._span(node), body=node.child_by_field_name("body"),
            doc=self._doc(node), type_params=self._type_params(node),
        )  # fmt: skip

    def on_interface(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        return self.define(
            node, name, SymbolKind.INTERFACE, scope, span=self._span(node), body=node.child_by_field_name("body"),
            doc=self._doc(node), type_params=self._type_params(node),
        )  # fmt: skip

    def on_simple_type(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        kind = SymbolKind.ENUM if node.type == "enum_declaration" else SymbolKind.TYPE
        self.define(
            node, name, kind, scope, span=self._span(node), body=node.child_by_field_name("body"), doc=self._doc(node)
        )
        return SKIP if kind is SymbolKind.ENUM else None

    def on_namespace(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        return self.define(
            node, name, SymbolKind.MODULE, scope, span=self._span(node), body=node.child_by_field_name("body"),
            doc=self._doc(node),
        )  # fmt: skip

    def on_variable(self, node: Node, scope: Scope) -> object:
        name_node = node.child_by_field_name("name")
        value = node.child_by_field_name("value")
        declaration = node.parent if node.parent is not None else node
        if value is not None and _is_require(self, value):
            self._bind_require(node, name_node, value, scope)
            return None
        if name_node is None or name_node.type != "identifier":
            return None
        name = self.text(name_node)
        span = self._span(declaration) if declaration.named_child_count == 1 else node
        if value is not None and value.type in _FUNCTION_VALUES:
            inner = self.define(
                declaration if span is not node else node, name, SymbolKind.FUNCTION, scope, span=span,
                body=value.child_by_field_name("body"), doc=self.leading_doc(span),
                type_params=self._type_params(value),
            )  # fmt: skip
            self._signature_refs(value, inner)
            return inner
        if value is not None and value.type in _CLASS_VALUES:
            return self.define(
                node, name, SymbolKind.CLASS, scope, span=span, body=value.child_by_field_name("body"),
                doc=self.leading_doc(span),
            )  # fmt: skip
        if scope.parent is None:
            kind = SymbolKind.CONSTANT if name.isupper() else SymbolKind.VARIABLE
            self.define(node, name, kind, scope, span=span, doc=self.leading_doc(span))
            self.type_refs(scope, node.child_by_field_name("type"))
        return None

    def on_heritage(self, node: Node, scope: Scope) -> object:
        for child in node.named_children:
            if child.type == "extends_clause":
                for value in child.children_by_field_name("value"):
                    self.refer(LinkKind.INHERITS, scope, value, "extends")
            elif child.type == "implements_clause":
                for value in child.named_children:
                    self.refer(LinkKind.INHERITS, scope, value, "implements")
            elif child.type != "comment":  # JavaScript: `extends <expression>` directly
                self.refer(LinkKind.INHERITS, scope, child, "extends")
        return SKIP

    def on_interface_extends(self, node: Node, scope: Scope) -> object:
        for value in node.children_by_field_name("type") or node.named_children:
            self.refer(LinkKind.INHERITS, scope, value, "extends")
        return SKIP

    # -- imports and exports -----------------------------------------------------------------------
    def _bind(self, scope: Scope, local: str, target: str) -> None:
        scope.bindings[local] = target
        if scope.parent is None:
            self.aliases[f"{self.module}.{local}"] = target

    def on_import(self, node: Node, scope: Scope) -> object:
        source = node.child_by_field_name("source")
        line = node.start_point.row + 1
        clause = next((c for c in node.named_children if c.type in ("import_clause", "import_require_clause")), None)
        if source is None and clause is not None and clause.type == "import_require_clause":
            source = clause.child_by_field_name("source")
        if source is None:
            return SKIP
        spec = _string_value(self, source)
        module = js_specifier(self.directory, spec)
        if clause is None:
            self.add_link(LinkKind.IMPORTS, scope.qname, spec, module, line, "side-effect")
            return SKIP
        detail = "type" if any(c.type == "type" for c in node.children) else ""
        for part in clause.named_children:
            if part.type == "identifier":  # default import, or `import x = require(...)`
                target = module if clause.type == "import_require_clause" else f"{module}.default"
                self._bind(scope, self.text(part), target)
                self.add_link(LinkKind.IMPORTS, scope.qname, spec, target, line, detail)
            elif part.type == "namespace_import":
                local_node = part.named_child(0)
                if local_node is not None:
                    self._bind(scope, self.text(local_node), module)
                self.add_link(LinkKind.IMPORTS, scope.qname, spec, module, line, detail)
            elif part.type == "named_imports":
                for spec_node in part.named_children:
                    if spec_node.type != "import_specifier":
                        continue
                    name = self.field_text(spec_node, "name") or ""
                    local = self.field_text(spec_node, "alias") or name
                    target = f"{module}.{name}"
                    self._bind(scope, local, target)
                    is_type = detail or ("type" if any(c.type == "type" for c in spec_node.children) else "")
                    self.add_link(LinkKind.IMPORTS, scope.qname, spec, target, line, is_type)
        return SKIP

    def on_export(self, node: Node, scope: Scope) -> object:
        source = node.child_by_field_name("source")
        line = node.start_point.row + 1
        if source is not None:  # re-export: `export { a as b } from './x'`, `export * from './x'`
            spec = _string_value(self, source)
            module = js_specifier(self.directory, spec)
            clause = next((c for c in node.named_children if c.type == "export_clause"), None)
            if clause is None:
                self.add_link(LinkKind.IMPORTS, scope.qname, spec, module, line, "reexport")
                return SKIP
            for item in clause.named_children:
                name = self.field_text(item, "name") or ""
                alias = self.field_text(item, "alias") or name
                target = f"{module}.{name}"
                self.aliases[f"{self.module}.{alias}"] = target
                self.add_link(LinkKind.IMPORTS, scope.qname, spec, target, line, "reexport")
            return SKIP
        if any(c.type == "default" for c in node.children):
            declaration = node.child_by_field_name("declaration")
            value = node.child_by_field_name("value")
            named = declaration.child_by_field_name("name") if declaration is not None else None
            if named is not None:
                self.aliases[f"{self.module}.default"] = f"{self.module}.{self.text(named)}"
            elif value is not None and value.type == "identifier":
                self.aliases[f"{self.module}.default"] = f"{self.module}.{self.text(value)}"
        return None

    def _bind_require(self, node: Node, name_node: Node | None, call: Node, scope: Scope) -> None:
        spec = _string_value(self, _first_argument(call))
        module = js_specifier(self.directory, spec)
        if name_node is None:
            return
        if name_node.type == "identifier":
            self._bind(scope, self.text(name_node), module)
        elif name_node.type == "object_pattern":
            for prop in name_node.named_children:
                if prop.type == "shorthand_property_identifier_pattern":
                    self._bind(scope, self.text(prop), f"{module}.{self.text(prop)}")
                elif prop.type == "pair_pattern":
                    key, value = prop.child_by_field_name("key"), prop.child_by_field_name("value")
                    if key is not None and value is not None and value.type == "identifier":
                        self._bind(scope, self.text(value), f"{module}.{self.text(key)}")

    # -- calls ---------------------------------------------------------------------------------------
    def on_call(self, node: Node, scope: Scope) -> object:
        function = node.child_by_field_name("function")
        if function is None:
            return None
        if function.type == "import" or _is_require(self, node):  # dynamic import() / require()
            argument = _first_argument(node)
            if argument is not None and argument.type == "string":
                spec = _string_value(self, argument)
                self.add_link(
                    LinkKind.IMPORTS, scope.qname, spec, js_specifier(self.directory, spec), node.start_point.row + 1,
                    "dynamic" if function.type == "import" else "require",
                )  # fmt: skip
            return None
        self.refer(LinkKind.CALLS, scope, function)
        return None

    def on_new(self, node: Node, scope: Scope) -> object:
        constructor = node.child_by_field_name("constructor")
        if constructor is not None:
            self.refer(LinkKind.CALLS, scope, constructor, "new")
        return None

    def on_jsx(self, node: Node, scope: Scope) -> object:
        name = node.child_by_field_name("name")
        if name is not None and (name.type != "identifier" or self.text(name)[:1].isupper()):
            self.refer(LinkKind.CALLS, scope, name, "jsx")  # lower-case names are HTML elements
        return None

    def on_decorator(self, node: Node, scope: Scope) -> object:
        expr = node.named_child(0)
        if expr is None:
            return None
        # the grammar hangs a class's decorators on `export` and a method's on the class body, before it
        decorated: Node | None = None
        if node.parent is not None and node.parent.type == "export_statement":
            decorated = node.parent.child_by_field_name("declaration")
        elif node.parent is not None and node.parent.type == "class_body":
            decorated = node.next_named_sibling
            while decorated is not None and decorated.type == "decorator":
                decorated = decorated.next_named_sibling
            if decorated is not None and decorated.type != "method_definition":
                decorated = None
        name = None if decorated is None else decorated.child_by_field_name("name")
        src = None if name is None else f"{scope.qname}.{self.text(name)}"
        target = expr.child_by_field_name("function") if expr.type == "call_expression" else expr
        self.refer(LinkKind.REFERENCES, scope, target or expr, "decorator", src=src)
        return None


def _first_argument(call: Node) -> Node | None:
    arguments = call.child_by_field_name("arguments")
    return None if arguments is None or arguments.named_child_count == 0 else arguments.named_child(0)


def _is_require(extractor: SymbolWalker, node: Node) -> bool:
    if node.type != "call_expression":
        return False
    function = node.child_by_field_name("function")
    argument = _first_argument(node)
    return (
        function is not None
        and function.type == "identifier"
        and extractor.text(function) == "require"
        and argument is not None
        and argument.type == "string"
    )


def _string_value(extractor: SymbolWalker, node: Node | None) -> str:
    if node is None:
        return ""
    return extractor.text(node).strip("'\"`")
