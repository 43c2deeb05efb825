"""Python: modules, classes, functions/methods (nested too), module-level assignments, imports of every
form (relative ones resolved against the package), calls, base classes, decorators and annotations."""

from __future__ import annotations

import ast
import builtins
import inspect
from typing import ClassVar

from tree_sitter import Node

from .extractor import SKIP, TYPE_KINDS, Scope, SymbolWalker
from .model import LinkKind, SymbolKind
from .naming import python_module, python_relative

_BUILTINS = frozenset(dir(builtins))


class PythonExtractor(SymbolWalker):
    self_words = frozenset({"self", "cls"})
    super_words = frozenset({"super()"})
    builtin_types = _BUILTINS
    name_types = frozenset({"identifier"})
    member_types: ClassVar[dict[str, tuple[str, str, str]]] = {"attribute": ("object", "attribute", ".")}
    call_types: ClassVar[dict[str, str]] = {"call": "function"}
    wrapper_types: ClassVar[dict[str, str | None]] = {"subscript": "value", "generic_type": None}
    type_name_types = frozenset({"identifier", "attribute"})
    type_ref_stop = frozenset({"string"})

    def register(self) -> None:
        self.handlers = {
            "class_definition": self.on_class,
            "function_definition": self.on_function,
            "import_statement": self.on_import,
            "import_from_statement": self.on_import_from,
            "call": self.on_call,
            "expression_statement": self.on_expression_statement,
            "type_alias_statement": self.on_type_alias,
        }

    def module_name(self, root: Node) -> str:
        return python_module(self.path) or "__main__"

    def module_doc(self, root: Node) -> str | None:
        return self._docstring(root)

    def _docstring(self, block: Node | None) -> str | None:
        if block is None:
            return None
        for child in block.named_children:
            if child.type == "comment":
                continue
            if child.type == "expression_statement" and child.named_child_count == 1:
                string = child.named_child(0)
                if string is not None and string.type == "string":
                    raw = self.text(string)
                    try:
                        value = ast.literal_eval(raw)
                    except (ValueError, SyntaxError, MemoryError, RecursionError):
                        value = raw.strip("\"'rbuRBU")
                    if isinstance(value, bytes):
                        return None
                    return inspect.cleandoc(str(value)) or None
            return None
        return None

    def _span(self, node: Node) -> Node:
        parent = node.parent
        return parent if parent is not None and parent.type == "decorated_definition" else node

    def _decorators(self, node: Node, outer: Scope, src: str) -> None:
        span = self._span(node)
        if span is node:
            return
        for child in span.named_children:
            if child.type == "decorator" and child.named_child_count:
                expr = child.named_child(0)
                if expr is not None:
                    target = expr.child_by_field_name("function") if expr.type == "call" else expr
                    self.refer(LinkKind.REFERENCES, outer, target or expr, "decorator", src=src)

    def on_class(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        body = node.child_by_field_name("body")
        inner = self.define(
            node, name, SymbolKind.CLASS, scope, span=self._span(node), body=body, doc=self._docstring(body)
        )
        self._decorators(node, scope, inner.qname)
        bases = node.child_by_field_name("superclasses")
        if bases is not None:
            for base in bases.named_children:
                if base.type in ("keyword_argument", "comment", "list_splat", "dictionary_splat"):
                    continue
                self.refer(LinkKind.INHERITS, scope, base, "extends", src=inner.qname)
                self.push(base, scope)  # calls in base expressions run in the enclosing scope
        self.push(body, inner)
        return SKIP

    def on_function(self, node: Node, scope: Scope) -> object:
        name = self.field_text(node, "name")
        if not name:
            return None
        body = node.child_by_field_name("body")
        kind = SymbolKind.METHOD if scope.kind in TYPE_KINDS else SymbolKind.FUNCTION
        type_params = self._type_params(node)
        inner = self.define(
            node,
            name,
            kind,
            scope,
            span=self._span(node),
            body=body,
            doc=self._docstring(body),
            type_params=type_params,
        )
        self._decorators(node, scope, inner.qname)
        params = node.child_by_field_name("parameters")
        self.type_refs(inner, *_annotations(params), node.child_by_field_name("return_type"))
        self.push(params, inner)
        self.push(body, inner)
        return SKIP

    def _type_params(self, node: Node) -> frozenset[str]:
        params = node.child_by_field_name("type_parameters")
        if params is None:
            return frozenset()
        return frozenset(self.text(c) for c in params.named_children if c.type == "identifier") | frozenset(
            self.text(i) for p in params.named_children for i in p.named_children if i.type == "identifier"
        )

    def on_import(self, node: Node, scope: Scope) -> object:
        line = node.start_point.row + 1
        for item in node.children_by_field_name("name"):
            if item.type == "aliased_import":
                dotted = self.field_text(item, "name") or ""
                alias = self.field_text(item, "alias")
                self._bind(scope, alias or dotted, dotted)
            else:
                dotted = self.text(item)
                head = dotted.split(".", 1)[0]
                self._bind(scope, head, head)  # `import a.b` binds `a`
            self.add_link(LinkKind.IMPORTS, scope.qname, dotted, dotted, line)
        return SKIP

    def on_import_from(self, node: Node, scope: Scope) -> object:
        line = node.start_point.row + 1
        module_node = node.child_by_field_name("module_name")
        if module_node is None:
            return SKIP
        written = self.text(module_node)
        if module_node.type == "relative_import":
            dots = len(written) - len(written.lstrip("."))
            is_package = self.path.replace("\\", "/").rsplit("/", 1)[-1] in ("__init__.py", "__init__.pyi")
            absolute = python_relative(self.module, is_package, dots, written[dots:])
        else:
            absolute = written
        joiner = "" if written.endswith(".") else "."
        if any(c.type == "wildcard_import" for c in node.named_children):
            self.add_link(LinkKind.IMPORTS, scope.qname, f"{written}{joiner}*", absolute, line, "wildcard")
            return SKIP
        for item in node.children_by_field_name("name"):
            if item.type == "aliased_import":
                name = self.field_text(item, "name") or ""
                local = self.field_text(item, "alias") or name
            else:
                name = local = self.text(item)
            target = None if absolute is None else (f"{absolute}.{name}" if absolute else name)
            if target is not None:
                self._bind(scope, local, target)
            self.add_link(LinkKind.IMPORTS, scope.qname, f"{written}{joiner}{name}", target, line)
        return SKIP

    def _bind(self, scope: Scope, local: str, target: str) -> None:
        scope.bindings[local] = target
        if scope.parent is None:
            self.aliases[f"{self.module}.{local}"] = target

    def on_call(self, node: Node, scope: Scope) -> object:
        function = node.child_by_field_name("function")
        if function is not None:
            self.refer(LinkKind.CALLS, scope, function)
        return None

    def on_expression_statement(self, node: Node, scope: Scope) -> object:
        if scope.parent is not None or node.named_child_count != 1:
            return None
        assignment = node.named_child(0)
        if assignment is None or assignment.type != "assignment":
            return None
        left = assignment.child_by_field_name("left")
        if left is None or left.type != "identifier":
            return None
        name = self.text(left)
        kind = SymbolKind.CONSTANT if name.isupper() else SymbolKind.VARIABLE
        self.define(node, name, kind, scope)
        self.type_refs(scope, assignment.child_by_field_name("type"))
        return None

    def on_type_alias(self, node: Node, scope: Scope) -> object:
        left = node.child_by_field_name("left")
        name = None if left is None else self.text(left).split("[", 1)[0]
        if name:
            self.define(node, name, SymbolKind.TYPE, scope)
        return None


def _annotations(params: Node | None) -> list[Node]:
    if params is None:
        return []
    found: list[Node] = []
    for param in params.named_children:
        annotation = param.child_by_field_name("type")
        if annotation is not None:
            found.append(annotation)
    return found
