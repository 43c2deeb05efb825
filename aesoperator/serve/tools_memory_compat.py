"""The official memory server's tools, on the engine's graph.

`create_entities`, `create_relations`, `add_observations`, `delete_entities`,
`delete_observations`, `delete_relations`, `read_graph`, `search_nodes` and `open_nodes` take and
return exactly what `@modelcontextprotocol/server-memory` takes and returns, so an agent set up for
that server can use this one instead. How the graph is kept is described in `memory_graph.py`.

`read_graph`, `search_nodes` and `open_nodes` also take optional `offset`, `limit` and
`token_budget` arguments, for graphs too large to read whole: a page of the entities (with the
relations touching them) as JSON, or, with a budget, as packed context that fits it and says where
the next page starts. Without them the answers are byte for byte the memory server's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import pydantic_core
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from aesoperator.engine.context_layout import left_out_note
from aesoperator.engine.packing import fit_context
from aesoperator.serve.memory_graph import MemoryGraph
from aesoperator.serve.packed_text import memory_hits, tool_answer
from aesoperator.serve.schemas import (
    MAX_MEMORY_ITEMS,
    MAX_QUERY_CHARS,
    AddObservationsOutput,
    CreateEntitiesOutput,
    CreateRelationsOutput,
    MemoryEntity,
    MemoryGraphOutput,
    MemoryLookupName,
    MemoryRelation,
    ObservationAddition,
    ObservationDeletion,
    SuccessOutput,
    TokenBudget,
)
from aesoperator.serve.tools_engine import tool

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from aesoperator.serve.tools_engine import Runtime


# -- tools ------------------------------------------------------------------------------------------
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
_DELETE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def _result(structured: BaseModel, shown: Any = None) -> CallToolResult:
    """A result shaped like the memory server's: the JSON as text (`shown`, default the structured
    content itself), and the structured content."""
    dumped = structured.model_dump(mode="json", by_alias=True)
    shown = dumped if shown is None else shown
    # pydantic-core writes what json.dumps(indent=2, ensure_ascii=False) writes, much faster.
    text = shown if isinstance(shown, str) else pydantic_core.to_json(shown, indent=2).decode("utf-8")
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=dumped)


def _dump(items: Sequence[BaseModel]) -> list[Any]:
    return [i.model_dump(mode="json", by_alias=True) for i in items]


PAGE_META_KEY = "aesoperator/page"
Offset = Annotated[
    int | None, Field(ge=0, description="Skip this many entities first (optional; not in the original memory server).")
]
Limit = Annotated[
    int | None,
    Field(ge=1, le=MAX_MEMORY_ITEMS, description="At most this many entities (optional; default: all of them)."),
]


def _touching(relations: Sequence[MemoryRelation], names: set[str]) -> list[MemoryRelation]:
    return [r for r in relations if r.from_ in names or r.to in names]


def _paged(
    result: MemoryGraphOutput,
    offset: int | None,
    limit: int | None,
    token_budget: int | None,
    count_tokens: Callable[[str], int],
) -> CallToolResult:
    """The memory server's answer when no paging argument is given; else one page of it.

    A page is the entities from `offset` (at most `limit`) and the relations touching them. With
    `token_budget`, its text is packed context (each entity's observations and relations under
    it) cut to the budget, and the page holds the entities the text shows; without, the text is
    the page as JSON, as the memory server writes it. `_meta["aesoperator/page"]` says where the
    page starts, how many entities it holds, how many there are and where the next page starts.
    """
    if offset is None and limit is None and token_budget is None:
        return _result(result)
    start = offset or 0
    page = result.entities[start : start + limit if limit is not None else None]
    after = len(result.entities) - start - len(page)  # beyond the page
    if token_budget is None:
        shown = page
        structured = MemoryGraphOutput(entities=shown, relations=_touching(result.relations, {e.name for e in shown}))
        text = pydantic_core.to_json(structured.model_dump(mode="json", by_alias=True), indent=2).decode("utf-8")
    else:
        hits = memory_hits(page, _touching(result.relations, {e.name for e in page}))

        def note(dropped: int) -> str:
            return left_out_note(
                dropped + after, "entity", f"ask with offset={start + len(page) - dropped} or a larger token_budget"
            )

        budget = token_budget - (count_tokens("\n\n" + note(0)) if after else 0)
        pack = fit_context(hits, [], max(0, budget), count_tokens=count_tokens, note=note)
        if not pack.dropped and after:
            pack.note = note(0)
        by_name = {e.name: e for e in page}
        shown = [by_name[h.id] for h in pack.hits]
        structured = MemoryGraphOutput(entities=shown, relations=_touching(result.relations, {e.name for e in shown}))
        text = pack.to_text()
    following = start + len(shown)
    meta = {
        PAGE_META_KEY: {
            "offset": start,
            "returned": len(shown),
            "total": len(result.entities),
            "next_offset": following if following < len(result.entities) else None,
        }
    }
    return tool_answer(structured, text, meta)


def register_memory_tools(server: MCPServer[Any], rt: Runtime, graph: MemoryGraph) -> None:
    """Add the memory server's nine tools to `server`."""
    ns = graph.namespace

    def can_read() -> None:
        rt.principal().read_namespaces([ns])

    def can_write() -> None:
        rt.principal().require_write(ns)

    @tool(server, "create_entities", title="Create Entities", annotations=_WRITE)
    def create_entities(
        entities: Annotated[list[MemoryEntity], Field(max_length=MAX_MEMORY_ITEMS)],
    ) -> Annotated[CallToolResult, CreateEntitiesOutput]:
        """Create multiple new entities in the knowledge graph"""
        can_write()
        created = graph.create_entities(entities)
        rt.count(len(created))
        return _result(CreateEntitiesOutput(entities=created), _dump(created))

    @tool(server, "create_relations", title="Create Relations", annotations=_WRITE)
    def create_relations(
        relations: Annotated[list[MemoryRelation], Field(max_length=MAX_MEMORY_ITEMS)],
    ) -> Annotated[CallToolResult, CreateRelationsOutput]:
        """Create multiple new relations between entities in the knowledge graph. Relations should be in active voice"""
        can_write()
        created = graph.create_relations(relations)
        rt.count(len(created))
        return _result(CreateRelationsOutput(relations=created), _dump(created))

    @tool(server, "add_observations", title="Add Observations", annotations=_WRITE)
    def add_observations(
        observations: Annotated[list[ObservationAddition], Field(max_length=MAX_MEMORY_ITEMS)],
    ) -> Annotated[CallToolResult, AddObservationsOutput]:
        """Add new observations to existing entities in the knowledge graph"""
        can_write()
        results = graph.add_observations(observations)
        rt.count(len(results))
        return _result(AddObservationsOutput(results=results), _dump(results))

    @tool(server, "delete_entities", title="Delete Entities", annotations=_DELETE)
    def delete_entities(
        entityNames: Annotated[
            list[MemoryLookupName],
            Field(max_length=MAX_MEMORY_ITEMS, description="An array of entity names to delete"),
        ],
    ) -> Annotated[CallToolResult, SuccessOutput]:
        """Delete multiple entities and their associated relations from the knowledge graph"""
        can_write()
        graph.delete_entities(entityNames)
        message = "Entities deleted successfully"
        return _result(SuccessOutput(success=True, message=message), message)

    @tool(server, "delete_observations", title="Delete Observations", annotations=_DELETE)
    def delete_observations(
        deletions: Annotated[list[ObservationDeletion], Field(max_length=MAX_MEMORY_ITEMS)],
    ) -> Annotated[CallToolResult, SuccessOutput]:
        """Delete specific observations from entities in the knowledge graph"""
        can_write()
        graph.delete_observations(deletions)
        message = "Observations deleted successfully"
        return _result(SuccessOutput(success=True, message=message), message)

    @tool(server, "delete_relations", title="Delete Relations", annotations=_DELETE)
    def delete_relations(
        relations: Annotated[
            list[MemoryRelation], Field(max_length=MAX_MEMORY_ITEMS, description="An array of relations to delete")
        ],
    ) -> Annotated[CallToolResult, SuccessOutput]:
        """Delete multiple relations from the knowledge graph"""
        can_write()
        graph.delete_relations(relations)
        message = "Relations deleted successfully"
        return _result(SuccessOutput(success=True, message=message), message)

    @tool(server, "read_graph", title="Read Graph", annotations=_READ)
    def read_graph(
        offset: Offset = None, limit: Limit = None, token_budget: TokenBudget = None
    ) -> Annotated[CallToolResult, MemoryGraphOutput]:
        """Read the entire knowledge graph"""
        can_read()
        result = graph.read_graph()
        rt.count(len(result.entities))
        return _paged(result, offset, limit, token_budget, rt.count_tokens)

    @tool(server, "search_nodes", title="Search Nodes", annotations=_READ)
    def search_nodes(
        query: Annotated[
            str,
            Field(
                max_length=MAX_QUERY_CHARS,
                description="The search query to match against entity names, types, and observation content",
            ),
        ],
        offset: Offset = None,
        limit: Limit = None,
        token_budget: TokenBudget = None,
    ) -> Annotated[CallToolResult, MemoryGraphOutput]:
        """Search for nodes in the knowledge graph based on a query"""
        can_read()
        result = graph.search_nodes(query)
        rt.count(len(result.entities))
        return _paged(result, offset, limit, token_budget, rt.count_tokens)

    @tool(server, "open_nodes", title="Open Nodes", annotations=_READ)
    def open_nodes(
        names: Annotated[
            list[MemoryLookupName],
            Field(max_length=MAX_MEMORY_ITEMS, description="An array of entity names to retrieve"),
        ],
        offset: Offset = None,
        limit: Limit = None,
        token_budget: TokenBudget = None,
    ) -> Annotated[CallToolResult, MemoryGraphOutput]:
        """Open specific nodes in the knowledge graph by their names"""
        can_read()
        result = graph.open_nodes(names)
        rt.count(len(result.entities))
        return _paged(result, offset, limit, token_budget, rt.count_tokens)


__all__ = ["register_memory_tools"]
