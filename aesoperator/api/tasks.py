"""`execute_task`: sync a task's sources, assemble its context, remember it, run its operator."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from aesoperator.api.client import MCPClient
from aesoperator.api.engine_server import EngineServer
from aesoperator.api.registry import Registered, get_server, resolve_server
from aesoperator.api.server import ENGINE, MCPServer
from aesoperator.api.task_context import analysis_live, hit_item, render_context, review_context, task_query
from aesoperator.api.task_models import ContextItem, SourceSync, Task, TaskContext, TaskResult
from aesoperator.context import ContextEngine
from aesoperator.engine.memory import episode_from_entity
from aesoperator.errors import AesopError
from aesoperator.graph_schema.models import to_iso, utcnow


def _servers_of(task: Task) -> list[Registered]:
    out: list[Registered] = []
    for item in task.mcp_context:
        entry = resolve_server(item)
        out.append(entry)
    return out


def execute_task(task: Task, engine: ContextEngine | None = None) -> TaskResult:
    """Run a task: sync its sources (incrementally), assemble context for its name and inputs with
    the hybrid retriever (and task-specific context: a pull request's files, their history, related
    issues and people; a database's allowed tables and relevant rows), remember the task and its
    outcome as episodes, and call the operator if there is one.

    Without an operator the result holds the assembled context with provenance and says that no
    operator ran: nothing here reasons about the task.

    Args:
        task: The task, with the servers whose context it needs.
        engine: The engine to use (default: the one registered as "engine").

    Returns:
        The outcome: status, the operator's output, the context with provenance, what was synced
        and the episodes remembered. A failing sync or operator is reported there, not raised.

    Raises:
        UnknownServer: A server of the task has no registration.
    """
    started = utcnow()
    task_id = f"{task.name}-{started.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    servers = _servers_of(task)
    own_engine = engine is None
    if engine is None:
        engine_entry = next((s for s in servers if isinstance(s, EngineServer)), None)
        if engine_entry is not None:
            engine = engine_entry.engine
            own_engine = False
        else:
            entry = get_server(ENGINE)
            assert isinstance(entry, EngineServer)
            engine = entry.engine
            own_engine = False
    try:
        return _execute(task, task_id, servers, engine, started)
    finally:
        if own_engine:
            engine.close()


def _execute(
    task: Task, task_id: str, servers: list[Registered], engine: ContextEngine, started: datetime
) -> TaskResult:
    sources = [s for s in servers if isinstance(s, MCPServer)]
    names = {s.source_namespace: s.name for s in sources}
    synced: list[SourceSync] = []
    if task.sync:
        for server in sources:
            t0 = time.perf_counter()
            try:
                report = engine.ingest_source(server.source_definition())
                synced.append(
                    SourceSync(
                        server=server.name,
                        status="ok",
                        records_changed=report.records_changed,
                        records_seen=report.records_seen,
                        seconds=round(time.perf_counter() - t0, 3),
                    )
                )
            except AesopError as exc:
                synced.append(
                    SourceSync(
                        server=server.name, status="failed", error=str(exc), seconds=round(time.perf_counter() - t0, 3)
                    )
                )
        for entry in servers:
            if isinstance(entry, MCPClient):
                synced.append(
                    SourceSync(server=entry.name, status="skipped", error="a client is queried, not ingested")
                )
    inputs_text = json.dumps(task.inputs, default=str, sort_keys=True)
    started_episode = engine.remember(
        f"Task {task.name} ({task_id}) started with inputs {inputs_text}; context from {[s.name for s in servers]}.",
        task.agent_id,
        session_id=task_id,
        task_id=task_id,
        namespace=task.namespace,
        metadata={"task": task.name, "phase": "started"},
        detect_mentions=False,
    )
    # retrieval: only the namespaces of the task's servers (an engine server adds its own)
    namespaces: list[str] | None = sorted({s.source_namespace for s in sources})
    for entry in servers:
        if isinstance(entry, EngineServer):
            namespaces = None if entry.namespaces is None else sorted({*(namespaces or []), *entry.namespaces})
    query = task_query(task)
    items: list[ContextItem] = []
    facts: list[str] = []
    tokens = 0
    if namespaces is None or namespaces:
        result = engine.search(query, k=task.k, hops=1, namespaces=namespaces, token_budget=task.token_budget)
        items = [hit_item(h, names, "matched the task") for h in result.hits]
        facts = [f"{t.src_name} {t.type} {t.dst_name}" for t in result.triples]
        tokens = result.tokens_used
    review_items, review_facts = review_context(engine, task, sources, names)
    for extra in review_items:
        if all(extra.id != i.id for i in items):
            items.append(extra)
        else:
            for i in items:
                if i.id == extra.id:
                    i.reasons = list(dict.fromkeys([*extra.reasons, *i.reasons]))
                    i.score = max(i.score, extra.score)
    facts = list(dict.fromkeys([*review_facts, *facts]))
    live: dict[str, Any] = {}
    try:
        live = analysis_live(sources)
    except AesopError as exc:
        live = {"error": str(exc)}
    items.sort(key=lambda i: -i.score)
    context_text = render_context(items, facts, live)
    context = TaskContext(
        task=task.name, task_id=task_id, inputs=task.inputs, items=items, facts=facts, live=live, text=context_text
    )
    operator_name = getattr(task.operator, "__name__", type(task.operator).__name__) if task.operator else None
    output: Any = None
    error: str | None = None
    if task.operator is not None:
        try:
            output = task.operator(context)
            status: Literal["completed", "context_only", "failed"] = "completed"
            message = f"operator {operator_name} ran on {len(items)} context items"
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            message = f"operator {operator_name} failed: {error}"
    else:
        status = "context_only"
        message = (
            f"no operator ran: this is the assembled context ({len(items)} items from "
            f"{[s.name for s in servers]}); give the task an operator to act on it"
        )
    failed = [s.server for s in synced if s.status == "failed"]
    outcome = f"Task {task.name} ({task_id}) {status}: {message}."
    if failed:
        outcome += f" Sync failed for {failed}; context came from what was stored before."
    if output is not None:
        outcome += f" Output: {json.dumps(output, default=str)[:1500]}"
    mentions = [i.id for i in items[:10]]
    finished_episode = engine.remember(
        outcome,
        task.agent_id,
        session_id=task_id,
        task_id=task_id,
        namespace=task.namespace,
        metadata={"task": task.name, "phase": "finished", "status": status},
        mentions=mentions,
        detect_mentions=False,
    )
    return TaskResult(
        task=task.name,
        task_id=task_id,
        status=status,
        operator_ran=task.operator is not None and status == "completed",
        operator=operator_name,
        output=output,
        message=message,
        error=error,
        context=items,
        facts=facts,
        live=live,
        context_text=context_text,
        tokens_used=tokens,
        sources=synced,
        episodes=[started_episode.id, finished_episode.id],
        started_at=started,
        finished_at=utcnow(),
    )


def iter_episodes(engine: ContextEngine, task_id: str) -> Iterator[Any]:
    """The episodes a task left in memory (started, finished), oldest first.

    Args:
        engine: The engine the task ran on.
        task_id: The task's id (`TaskResult.task_id`).

    Returns:
        An iterator over the task's episodes.
    """
    found = []
    for batch in engine.store.iter_entities(batch_size=1000):
        for entity in batch:
            if entity.type == "Episode" and entity.properties.get("task_id") == task_id:
                found.append(episode_from_entity(entity))
    yield from sorted(found, key=lambda e: to_iso(e.created_at) or "")
