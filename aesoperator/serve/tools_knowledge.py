"""Knowledge tools: the entities the graph knows, one entity's profile, items about an entity,
merge decisions (and undoing one), and code questions (where is it defined, what calls it).

Scoped like every engine tool: reads pass the caller's namespaces into the store's queries, so a
mention, relation, merge or symbol in another namespace is never produced; `unmerge_entities`
needs write access to the namespace the decision lives in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from mcp_types import CallToolResult
from pydantic import BaseModel, Field

from aesoperator.engine.code_queries import SymbolReport
from aesoperator.engine.entities import EntityProfile, EntitySummary, MergeInfo
from aesoperator.errors import SchemaError
from aesoperator.serve.packed_text import (
    fit_lines,
    hits_text,
    merge_line,
    profile_lines,
    summary_line,
    symbol_lines,
    tool_answer,
)
from aesoperator.serve.schemas import (
    MAX_FILTERS,
    EntityId,
    Hit,
    Label,
    Namespaces,
    Query,
    TokenBudget,
    TypeName,
    entity_uri,
)
from aesoperator.serve.tools_engine import READ_ONLY, WRITES, MentionFilter, Runtime, tool

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

_NARROWER_NAMES = "ask with a larger token_budget, a query or types"
Name = Annotated[str, Field(min_length=1, max_length=1000, description="An entity's name (case-insensitive) or id.")]


class EntitiesOutput(BaseModel):
    entities: list[EntitySummary]


class MergesOutput(BaseModel):
    merges: list[MergeInfo]


class AboutOutput(BaseModel):
    entity: EntitySummary
    hits: list[Hit]


class CodeSymbolOutput(BaseModel):
    symbols: list[SymbolReport]


def register_knowledge_tools(server: MCPServer[Any], rt: Runtime) -> None:
    """Add entities, entity, search_about, entity_merges, unmerge_entities and code_symbol."""

    @tool(server, "entities", title="List the entities the graph knows", annotations=READ_ONLY)
    def entities(
        query: Annotated[str | None, Field(max_length=200, description="Only names containing this.")] = None,
        types: Annotated[
            list[TypeName] | None,
            Field(max_length=MAX_FILTERS, description="Only these types (default: knowledge types)."),
        ] = None,
        namespaces: Namespaces = None,
        limit: Annotated[int, Field(ge=1, le=500, description="How many.")] = 50,
        token_budget: TokenBudget = None,
    ) -> Annotated[CallToolResult, EntitiesOutput]:
        """People, organisations, places, systems, projects, concepts, events and dates found in the
        ingested text and sources, merged across sources, most mentioned first."""
        ns = rt.principal().read_namespaces(namespaces)
        found = rt.engine.entities(query, types=types, namespaces=ns, limit=limit)
        rt.count(len(found))
        text = fit_lines(
            [summary_line(e) for e in found], rt.budget(token_budget), rt.count_tokens, "entity", _NARROWER_NAMES
        )
        return tool_answer(EntitiesOutput(entities=found), text)

    @tool(server, "entity", title="One entity: mentions, relations, sources, merges", annotations=READ_ONLY)
    def entity(
        name: Name, namespaces: Namespaces = None, token_budget: TokenBudget = None
    ) -> Annotated[CallToolResult, EntityProfile]:
        """An entity with every item that mentions it (with the spans and the extractor), its
        relations with their evidence, the sources it comes from and the merge decisions that made
        it one. The text gives its relations first, then the mentions, within the token budget."""
        ns = rt.principal().read_namespaces(namespaces)
        profile = rt.engine.entity(name, namespaces=ns)
        rt.count(1)
        text = fit_lines(
            profile_lines(profile), rt.budget(token_budget), rt.count_tokens, "line", "ask with a larger token_budget"
        )
        return tool_answer(profile, text)

    @tool(server, "search_about", title="Items about an entity", annotations=READ_ONLY)
    def search_about(
        name: Name,
        query: Annotated[Query | None, Field(description="Rank the items by this (default: by mentions).")] = None,
        k: Annotated[int, Field(ge=1, le=100, description="How many items.")] = 10,
        namespaces: Namespaces = None,
        token_budget: TokenBudget = None,
    ) -> Annotated[CallToolResult, AboutOutput]:
        """The chunks, documents, issues, episodes... that mention an entity (or any entity merged
        with it), ranked by a query when one is given."""
        ns = rt.principal().read_namespaces(namespaces)
        result = rt.engine.search_about(name, query, k=k, namespaces=ns)
        profile, _ = rt.engine.catalog.about_hits(name, ns, k=1)
        seen = MentionFilter.for_entities(rt, result.hits)  # an episode's mentions, as this reader may see them
        hits = [
            Hit(**{**dict(h), "properties": seen.properties(h.type, h.properties)}, uri=entity_uri(h.id))
            for h in result.hits
        ]
        rt.count(len(hits))
        text, _ = hits_text(result.hits, [], rt.budget(token_budget), rt.count_tokens)
        return tool_answer(AboutOutput(entity=profile, hits=hits), text)

    @tool(server, "entity_merges", title="Entity merge decisions", annotations=READ_ONLY)
    def entity_merges(
        namespaces: Namespaces = None,
        include_undone: Annotated[bool, Field(description="Also list undone merges and refusals.")] = False,
        token_budget: TokenBudget = None,
    ) -> Annotated[CallToolResult, MergesOutput]:
        """Every merge entity resolution recorded: the two entities, the rule (exact-key, name-type,
        acronym, alias, fuzzy, embedding), its score and evidence."""
        ns = rt.principal().read_namespaces(namespaces)
        found = rt.engine.merges(ns, include_undone=include_undone)
        rt.count(len(found))
        text = fit_lines(
            [merge_line(m) for m in found],
            rt.budget(token_budget),
            rt.count_tokens,
            "merge",
            "ask with a larger token_budget",
        )
        return tool_answer(MergesOutput(merges=found), text)

    @tool(server, "unmerge_entities", title="Undo an entity merge", annotations=WRITES)
    def unmerge_entities(
        decision_id: Annotated[EntityId, Field(description="A merge decision id from entity_merges.")],
    ) -> Annotated[CallToolResult, MergeInfo]:
        """Undo one merge decision; resolution will not merge the two entities again."""
        principal = rt.principal()
        readable = principal.read_namespaces()
        found = rt.engine.store.get_relations([decision_id])
        if not found or (readable is not None and found[0].namespace not in readable):
            raise SchemaError(f"no merge decision {decision_id!r}; entity_merges lists them")
        principal.require_write(found[0].namespace)
        info = rt.engine.unmerge(decision_id, readable)
        rt.count(1)
        return tool_answer(info, f"Undone: {merge_line(info)[2:]}")

    @tool(server, "code_symbol", title="Where is it defined, what calls it", annotations=READ_ONLY)
    def code_symbol(
        name: Annotated[Label, Field(description="A symbol: qualified (pkg.mod.func) or its last part.")],
        namespaces: Namespaces = None,
        token_budget: TokenBudget = None,
    ) -> Annotated[CallToolResult, CodeSymbolOutput]:
        """Each code symbol of that name: its file and lines, the files and chunks that define it,
        and what calls, imports, inherits or references it (and what it calls)."""
        ns = rt.principal().read_namespaces(namespaces)
        reports = rt.engine.code_symbol(name, namespaces=ns)
        rt.count(len(reports))
        lines = [line for report in reports for line in symbol_lines(report)]
        text = fit_lines(lines, rt.budget(token_budget), rt.count_tokens, "line", "ask with a larger token_budget")
        return tool_answer(CodeSymbolOutput(symbols=reports), text)


__all__ = ["register_knowledge_tools"]
