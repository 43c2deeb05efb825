"""Code symbols in the graph: a source file's modules, classes, functions and methods (parsed by
`aesoperator.ingest.extract.code`) become entities owned by the file, with DEFINES (file → module,
scope → symbol, chunk → the symbols whose definition starts in it), IMPORTS, CALLS, INHERITS and
REFERENCES between them.

Symbols are identified by source and qualified name, so a call in one file meets the function
another file defines. A target that no file of the source defines (a library, a file not yet
ingested) gets a placeholder entity (`properties.defined = False`) that the real definition
replaces when its file arrives; a placeholder never overwrites a stored symbol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aesoperator.engine.stores.base import GraphStore
from aesoperator.graph_schema.ids import entity_id, relation_id
from aesoperator.graph_schema.models import Entity, Provenance, Relation
from aesoperator.ingest.extract.code import CodeSymbol, CodeSymbols, SymbolKind, language_for_path, parse_code
from aesoperator.ingest.records import MappedItem, SourceRecord

SYMBOL_TYPES: dict[SymbolKind, str] = {
    SymbolKind.MODULE: "Module",
    SymbolKind.PACKAGE: "Module",
    SymbolKind.CLASS: "Class",
    SymbolKind.STRUCT: "Class",
    SymbolKind.INTERFACE: "Class",
    SymbolKind.TRAIT: "Class",
    SymbolKind.ENUM: "Class",
    SymbolKind.TYPE: "Class",
    SymbolKind.FUNCTION: "Function",
    SymbolKind.METHOD: "Method",
    SymbolKind.CONSTRUCTOR: "Method",
}
MAX_LINKS_PER_FILE = 5_000
# A symbol's text (what is keyword-indexed; symbols get no vector, see `vector_policy`) is its
# signature and the first paragraph of its docstring: the whole docstring and body are in the chunk
# that DEFINES it, and that chunk is embedded.
MAX_SUMMARY_CHARS = 300
MAX_SIGNATURE_CHARS = 500


def docstring_summary(docstring: str | None) -> str:
    """The first paragraph of a docstring, whitespace collapsed, at most MAX_SUMMARY_CHARS."""
    if not docstring:
        return ""
    first = docstring.strip().split("\n\n", 1)[0]
    summary = " ".join(first.split())
    if len(summary) > MAX_SUMMARY_CHARS:
        summary = summary[:MAX_SUMMARY_CHARS].rsplit(" ", 1)[0] + " …"
    return summary


def symbol_id(source: str, qualified_name: str) -> str:
    return entity_id(source, "symbol", qualified_name)


@dataclass
class CodeSymbolStage:
    """Adds a file record's symbols to its mapped item; `diagnostics` collects parse problems."""

    store: GraphStore
    diagnostics: list[str] = field(default_factory=list)

    def add_symbols(self, record: SourceRecord, item: MappedItem) -> list[str]:
        """Adds the symbols and links of `record`'s file to `item`; returns the ids it added."""
        path = record.payload.get("path")
        text = record.payload.get("text")
        if not isinstance(path, str) or not isinstance(text, str):
            return []
        language = language_for_path(path)
        if language is None:
            return []
        parsed = parse_code(text, language, path)
        if parsed.has_error and parsed.diagnostics:
            self.diagnostics.append(f"{path}: {'; '.join(parsed.diagnostics[:3])}")
        file_entity = next((e for e in item.entities if e.type == "File"), None)
        if file_entity is None or not parsed.symbols:
            return []
        return self._add(parsed, record, item, file_entity)

    def _add(self, parsed: CodeSymbols, record: SourceRecord, item: MappedItem, file_entity: Entity) -> list[str]:
        source, namespace = file_entity.source, file_entity.namespace
        kept = [s for s in parsed.symbols if s.kind in SYMBOL_TYPES]
        defined = {s.qualified_name: symbol_id(source, s.qualified_name) for s in kept}
        for s in kept:
            item.entities.append(self._symbol(s, parsed, source, namespace, record))

        def rel(type_: str, src: str, dst: str, props: dict[str, object], key: str = "") -> Relation:
            return Relation(
                id=relation_id(type_, src, dst, key),
                type=type_,
                src=src,
                dst=dst,
                properties=props,
                source=source,
                namespace=namespace,
            )

        relations: dict[str, Relation] = {}
        module_id = defined.get(parsed.module)
        if module_id is not None:
            r = rel("DEFINES", file_entity.id, module_id, {"line": 1})
            relations[r.id] = r
        for chunk in (e for e in item.entities if e.type == "Chunk"):
            start, end = chunk.properties.get("start_line"), chunk.properties.get("end_line")
            if not isinstance(start, int) or not isinstance(end, int):
                continue
            for s in kept:
                if start <= s.start_line <= end and s.kind not in (SymbolKind.MODULE, SymbolKind.PACKAGE):
                    r = rel("DEFINES", chunk.id, defined[s.qualified_name], {"line": s.start_line})
                    relations[r.id] = r
        placeholders: dict[str, str] = {}
        left_out = {s.qualified_name for s in parsed.symbols} - set(defined)  # variables, constants
        for link in parsed.links[:MAX_LINKS_PER_FILE]:
            src = defined.get(link.src)
            target = link.dst_qualified or link.dst
            if src is None or not target:
                continue
            target = parsed.aliases.get(target, target)
            if target in left_out:
                continue
            dst = defined.get(target) or symbol_id(source, target)
            if dst not in defined.values():
                placeholders.setdefault(dst, target)
            props: dict[str, object] = {"line": link.line, "written": link.dst[:200]}
            if link.detail:
                props["detail"] = link.detail
            if link.dst_qualified is None:
                props["resolved"] = False
            r = rel(str(link.kind), src, dst, props)
            relations.setdefault(r.id, r)
        stored = {e.id for e in self.store.get_entities(sorted(placeholders))} if placeholders else set()
        added = list(defined.values())
        for dst, target in placeholders.items():
            if dst not in stored:
                added.append(dst)
                item.shared_entities.append(
                    Entity(
                        id=dst,
                        type="Module" if "/" in target or target.count(".") == 0 else "Function",
                        name=target[:200],
                        text=f"{target[:200]} (code symbol referenced from {parsed.path})",
                        properties={"qualified_name": target, "defined": False},
                        source=source,
                        namespace=namespace,
                    )
                )
        item.relations.extend(relations.values())
        return added

    @staticmethod
    def _symbol(s: CodeSymbol, parsed: CodeSymbols, source: str, namespace: str, record: SourceRecord) -> Entity:
        summary = docstring_summary(s.docstring)
        doc = f"\n{summary}" if summary else ""
        return Entity(
            id=symbol_id(source, s.qualified_name),
            type=SYMBOL_TYPES[s.kind],
            name=s.qualified_name[:1000],
            text=f"{s.kind.value} {s.qualified_name} in {parsed.path}\n{s.signature[:MAX_SIGNATURE_CHARS]}{doc}",
            properties={
                "qualified_name": s.qualified_name,
                "kind": s.kind.value,
                "language": parsed.language,
                "path": parsed.path,
                "start_line": s.start_line,
                "end_line": s.end_line,
                "signature": s.signature,
                "parent": s.parent,
                "defined": True,
            },
            source=source,
            provenance=Provenance(uri=f"{record.uri}#L{s.start_line}-L{s.end_line}", version=record.content_hash),
            namespace=namespace,
        )
