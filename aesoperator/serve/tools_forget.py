"""The `forget` tool: retire an agent's memories, or erase them (purge).

Retiring is a change: it needs `write:<namespace>`. Erasing needs `purge:<namespace>` besides,
so a token that may write cannot destroy history unless it is given that scope too. Besides the
call's own audit record, a purge adds a `forget.purge` record (who, when, how many items in its
`result_count`, no content); the arguments of both are digested under the audit key
(`MEMORY_CONTENT_TOOLS`), so the log keeps nothing a guess of the erased text could be checked
against. What is selected and what a purge erases is described in `aesoperator.engine.forget`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

from mcp_types import ToolAnnotations
from pydantic import Field

from aesoperator.engine.forget import ForgetReport
from aesoperator.engine.memory import agent_namespace
from aesoperator.serve.schemas import MAX_IDS, MAX_QUERY_CHARS, EntityId, Label, Storable
from aesoperator.serve.tools_engine import tool

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from aesoperator.serve.tools_engine import Runtime

PURGE_RECORD = "forget.purge"
FORGETS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)


def register_forget_tool(server: MCPServer[Any], rt: Runtime) -> None:
    """Add `forget` to `server`."""

    @tool(server, "forget", title="Forget memories", annotations=FORGETS)
    def forget(
        agent_id: Annotated[Label, Field(description="The agent whose memories to forget.")],
        ids: Annotated[
            list[EntityId] | None,
            Field(max_length=MAX_IDS, description="Forget these episodes (ids from remember or recall)."),
        ] = None,
        query: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=MAX_QUERY_CHARS,
                description="Forget the episodes whose content contains this text (case-insensitive).",
            ),
        ] = None,
        entity: Annotated[
            Storable | None,
            Field(
                min_length=1,
                max_length=1000,
                description="Forget what is about this entity (a name or an id): the episodes that mention it, "
                "the facts about it, and the entity itself when it lives in the memory namespace.",
            ),
        ] = None,
        namespace: Annotated[
            Label | None, Field(description="The memory namespace (default: the agent's, agent:<id>).")
        ] = None,
        purge: Annotated[
            bool,
            Field(
                description="Erase instead of retiring: nothing of the memories stays in the store, the indexes, "
                "the caches or the files (needs the purge:<namespace> scope)."
            ),
        ] = False,
        dry_run: Annotated[bool, Field(description="Only say what would be forgotten.")] = False,
    ) -> ForgetReport:
        """Forget memories, given by id, by a text they contain, or by an entity they are about.
        By default they are retired: recall and search no longer return them, but `as_of` an
        earlier moment still finds them and their history is kept. With `purge` they are erased."""
        started = time.perf_counter()
        principal = rt.principal()
        ns = namespace or agent_namespace(agent_id)
        if purge:
            principal.require_purge(ns)
        else:
            principal.require_write(ns)
        report = rt.engine.forget(
            agent_id,
            ids=list(ids or []),
            query=query,
            entity=entity,
            namespace=ns,
            purge=purge,
            dry_run=dry_run,
            entity_namespaces=principal.read_namespaces(),
        )
        if purge and not dry_run and rt.guard is not None:
            erased = {"namespace": ns, "episodes": len(report.episodes), "entities": len(report.entities)}
            rt.guard.record(
                principal, PURGE_RECORD, erased, "allow", report.count, (time.perf_counter() - started) * 1000
            )
        rt.count(report.count)
        return report
