"""Questions about code answered from the graph: where is a symbol defined, what calls it (and
what it calls, imports, inherits from)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from aesoperator.engine.stores.base import GraphStore
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.models import Entity
from aesoperator.graph_schema.vocabulary import CODE_SYMBOL_TYPES

CODE_LINKS = ("CALLS", "IMPORTS", "INHERITS", "REFERENCES", "DEFINES")


class SymbolInfo(BaseModel):
    id: str
    qualified_name: str
    type: str
    kind: str = ""
    path: str | None = None
    start_line: int | None = None
    end_line: int | None = None
    signature: str = ""
    defined: bool = True
    namespace: str
    source: str


class CodeLinkInfo(BaseModel):
    type: str
    symbol: SymbolInfo = Field(description="The symbol at the other end.")
    line: int | None = None
    detail: str = ""


class SymbolReport(BaseModel):
    symbol: SymbolInfo
    defined_in: list[str] = Field(default_factory=list, description="Files and chunks that define it.")
    incoming: list[CodeLinkInfo] = Field(default_factory=list, description="Who calls, imports, inherits it.")
    outgoing: list[CodeLinkInfo] = Field(default_factory=list)


def _info(e: Entity) -> SymbolInfo:
    p = e.properties
    return SymbolInfo(
        id=e.id,
        qualified_name=str(p.get("qualified_name", e.name)),
        type=e.type,
        kind=str(p.get("kind", "")),
        path=p.get("path"),
        start_line=p.get("start_line"),
        end_line=p.get("end_line"),
        signature=str(p.get("signature", "")),
        defined=bool(p.get("defined", True)),
        namespace=e.namespace,
        source=e.source,
    )


def find_symbols(store: GraphStore, name: str, namespaces: Sequence[str] | None = None) -> list[Entity]:
    """Symbols whose qualified name is `name`, or whose last part is (`search` finds `pkg.mod.search`)."""
    ns = list(namespaces) if namespaces is not None else None
    exact = store.name_lookup([name], namespaces=ns, types=sorted(CODE_SYMBOL_TYPES))
    ids = {i for found in exact.values() for i in found}
    if not ids:
        tail = name.rsplit(".", 1)[-1].rsplit("::", 1)[-1]
        for batch in store.iter_entities(namespaces=ns, types=sorted(CODE_SYMBOL_TYPES)):
            for e in batch:
                short = e.name.replace("::", ".").rsplit(".", 1)[-1]
                if short == tail and (e.name.endswith(name) or name == tail):
                    ids.add(e.id)
    found = store.get_entities(sorted(ids), ns)
    return sorted(found, key=lambda e: (not e.properties.get("defined", True), e.name, e.id))


def symbol_reports(
    store: GraphStore, name: str, namespaces: Sequence[str] | None = None, limit: int = 500
) -> list[SymbolReport]:
    """Each symbol named `name`: where it is defined, what links to it and what it links to."""
    symbols = find_symbols(store, name, namespaces)
    if not symbols:
        raise SchemaError(f"no code symbol named {name!r} in the namespaces you can read")
    ns = list(namespaces) if namespaces is not None else None
    reports: list[SymbolReport] = []
    for sym in symbols[:20]:
        sub = store.neighbors([sym.id], depth=1, relation_types=list(CODE_LINKS), namespaces=ns, limit=limit)
        report = SymbolReport(symbol=_info(sym))
        for rel in sub.relations:
            other_id = rel.src if rel.dst == sym.id else rel.dst
            other = sub.entities.get(other_id)
            if other is None:
                continue
            if rel.type == "DEFINES" and rel.dst == sym.id:
                if other.type in ("File", "Chunk"):
                    report.defined_in.append(other.id)
                continue
            if other.type not in CODE_SYMBOL_TYPES:
                continue
            link = CodeLinkInfo(
                type=rel.type,
                symbol=_info(other),
                line=rel.properties.get("line"),
                detail=str(rel.properties.get("detail", "")),
            )
            (report.incoming if rel.dst == sym.id else report.outgoing).append(link)
        report.incoming.sort(key=lambda x: (x.type, x.symbol.qualified_name))
        report.outgoing.sort(key=lambda x: (x.type, x.symbol.qualified_name))
        report.defined_in.sort()
        reports.append(report)
    return reports
