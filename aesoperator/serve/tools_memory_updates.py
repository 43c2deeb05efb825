"""Tools that keep memory true: `update_memory` (correct an episode with a new version) and
`memory_history` (every version of a memory, a fact or what is known about an entity).

`update_memory` needs `write:<namespace>` on the episode's namespace; the episode is looked up in
the caller's readable namespaces only, so an id elsewhere is "not found", never "not allowed".
`memory_history` reads within the caller's namespaces: versions, facts and evidence in other
namespaces are left out, and so are the names of entities the caller cannot read. Both are
audited by the call guard like every tool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from aesoperator.engine.memory_revisions import HistoryEntry, MemoryHistory
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.models import Episode
from aesoperator.serve.schemas import MAX_CONTENT_CHARS, EntityId, Namespaces, entity_uri
from aesoperator.serve.tools_engine import READ_ONLY, WRITES, Runtime, tool

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

Target = Annotated[
    str, Field(min_length=1, max_length=1000, description="An episode id, a fact id, or an entity's name or id.")
]


class UpdateMemoryOutput(BaseModel):
    episode: Episode = Field(description="The new version.")
    uri: str
    replaced: str = Field(description="The id of the version it supersedes (kept in history).")
    retracted_facts: list[str] = Field(default_factory=list, description="Facts only the old version stated.")


class MemoryHistoryOutput(BaseModel):
    target: str
    kind: str = Field(description="episode, fact or entity")
    entries: list[HistoryEntry]


def register_memory_update_tools(server: MCPServer[Any], rt: Runtime) -> None:
    """Add update_memory and memory_history to `server`."""

    @tool(server, "update_memory", title="Correct a remembered episode", annotations=WRITES)
    def update_memory(
        id: Annotated[EntityId, Field(description="The episode to correct.")],
        new_content: Annotated[
            str, Field(min_length=1, max_length=MAX_CONTENT_CHARS, description="What the episode should say.")
        ],
    ) -> UpdateMemoryOutput:
        """Correct an episode: its new content is stored as a new version that supersedes it from now
        on (the facts it states replace the old values); the old version stays in history and answers
        questions asked `as_of` an earlier time."""
        principal = rt.principal()
        readable = principal.read_namespaces()
        found = [e for e in rt.engine.get_entities([id], readable) if e.type == "Episode"]
        if not found:
            raise SchemaError(f"no episode {id[:200]!r} to update (unknown, or outside your namespaces)")
        principal.require_write(found[0].namespace)
        result = rt.engine.update_memory(id, new_content, namespaces=readable)
        rt.count(1)
        return UpdateMemoryOutput(
            episode=result.episode,
            uri=entity_uri(result.episode.id),
            replaced=result.replaced,
            retracted_facts=result.retracted_facts,
        )

    @tool(server, "memory_history", title="Every version of a memory or fact", annotations=READ_ONLY)
    def memory_history(target: Target, namespaces: Namespaces = None) -> MemoryHistoryOutput:
        """Every version of an episode (its corrections), of a fact (the subject's values of that
        predicate over time) or of everything remembered about an entity, oldest first: when each held,
        what superseded it, and the episodes that are its evidence."""
        ns = rt.principal().read_namespaces(namespaces)
        history: MemoryHistory = rt.engine.memory_history(target, namespaces=ns)
        rt.count(len(history.entries))
        return MemoryHistoryOutput(target=history.target, kind=history.kind, entries=history.entries)


__all__ = ["MemoryHistoryOutput", "UpdateMemoryOutput", "register_memory_update_tools"]
