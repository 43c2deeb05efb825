"""The brief's verbs on servers found by name: `mcp_query`, `mcp_update`, `mcp_subscribe`, `health`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aesoperator.api.client import MCPClient, remote_query, result_dict
from aesoperator.api.engine_server import EngineServer
from aesoperator.api.errors import UnknownOperation
from aesoperator.api.registry import Registered, resolve_server
from aesoperator.api.server import BUILTIN_KINDS, MCPServer
from aesoperator.api.subscriptions import Event, Subscription, subscribe_link
from aesoperator.errors import PermissionDenied, SchemaError

_SHORTHANDS: dict[str, dict[str, str]] = {
    "git": {
        "log": "git_log",
        "history": "git_log",
        "show": "git_show",
        "commit": "git_show",
        "branches": "git_branch",
        "file": "git_read_file",
        "files": "git_list_files",
    },
    "filesystem": {
        "list": "list_directory",
        "tree": "directory_tree",
        "read": "read_text_file",
        "info": "get_file_info",
        "search": "search_files",
        "grep": "search_text",
        "roots": "list_allowed_directories",
    },
    "github": {
        "repository": "get_repository",
        "issues": "list_issues",
        "issue": "get_issue",
        "comments": "list_issue_comments",
        "pulls": "list_pull_requests",
        "pull_requests": "list_pull_requests",
        "pull": "get_pull_request",
        "pull_request": "get_pull_request",
        "files": "list_pull_request_files",
        "reviews": "list_pull_request_reviews",
    },
    "postgres": {"describe": "describe_tables", "tables": "describe_tables", "schema": "describe_tables"},
}


def _connector_query(server: MCPServer, query: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The tool and arguments a query on a built-in connector stands for."""
    link = server.link()
    tools = {t.name for t in link.list_tools()}
    kind = str(server.kind)
    tool = _SHORTHANDS.get(kind, {}).get(query, query)
    if kind == "postgres" and tool not in tools:
        if (
            query.strip()
            .lower()
            .startswith(("select", "with", "insert", "update", "delete", "drop", "create", "alter"))
        ):
            raise PermissionDenied(
                f"server {server.name!r} takes no SQL: name a table among {server.allowed_tables} and give "
                "filters/columns/order_by/limit (or metrics/group_by for aggregates) in params"
            )
        tool = "aggregate" if "metrics" in params else "query"
        params = {"table": query, **params}
    if tool not in tools:
        raise UnknownOperation(
            f"server {server.name!r} has no query {query!r}; use one of {sorted(tools | set(_SHORTHANDS.get(kind, {})))}"
        )
    if kind == "git":
        params.setdefault("repo_path", str(Path(str(server.repo)).expanduser().resolve()))
        if tool in ("git_read_file", "git_list_files", "git_show"):
            params.setdefault("revision", "HEAD")
    return tool, params


def _wrapped_tool_allowed(server: MCPServer, tool: Any, write: bool) -> None:
    """The rules for a third-party server, enforced on this side: `allowed_tools` when given; while
    read-only, writes are refused and only tools named as reads (get_, list_, read_, search_,
    describe_, query..., or allowed_tools) may be called."""
    if server.allowed_tools is not None and tool.name not in server.allowed_tools:
        raise PermissionDenied(f"server {server.name!r} allows only the tools {server.allowed_tools}")
    if server.read_only and write:
        raise PermissionDenied(f"server {server.name!r} is read-only; it accepts no {tool.name!r}")
    if (
        server.read_only
        and server.allowed_tools is None
        and tool.name not in _READ_TOOL_NAMES
        and not tool.name.startswith(_READ_PREFIXES)
    ):
        raise PermissionDenied(
            f"server {server.name!r} is read-only and {tool.name!r} is not named as a read; "
            "list it in allowed_tools to allow it"
        )


_READ_TOOL_NAMES = frozenset(
    {"search", "recall", "read_graph", "search_nodes", "open_nodes", "get_entities", "neighbors"}
)
_READ_PREFIXES = ("get_", "list_", "read_", "search_", "describe_", "query")


def mcp_query(server: str | Registered, query: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A read on a named server: the engine's hybrid search, or a source's query tool within its
    rules (postgres: `query` names an allowed table; git/filesystem/github: a tool or shorthand
    such as "log", "read", "issues"; another MCP server: one of its read-only tools).

    Args:
        server: A server name, or a server object.
        query: The search text, table, tool or shorthand.
        params: Arguments of the query (filters, limit, k, namespaces, ...).

    Returns:
        The answer with "server" (and "tool" for a source) and the tool's structured result.

    Raises:
        UnknownServer: No server has that name.
        UnknownOperation: The server has no such query or tool.
        PermissionDenied: The server's rules refuse the query.
        SchemaError: The query is empty or its parameters are invalid.
        SourceError: The server failed or could not be reached.
    """
    if not isinstance(query, str) or not query.strip():
        raise SchemaError("query must be a non-empty string")
    entry = resolve_server(server)
    params = dict(params or {})
    if isinstance(entry, EngineServer):
        return entry.query(query, params)
    if isinstance(entry, MCPClient):
        return entry.query(query, params)
    if entry.kind in BUILTIN_KINDS:
        tool, arguments = _connector_query(entry, query, params)
        return {"server": entry.name, "tool": tool, **result_dict(entry.link().call_tool(tool, arguments))}
    link = entry.link()
    tools = {t.name: t for t in link.list_tools()}
    tool, arguments = remote_query(entry.name, tools, query, params)
    _wrapped_tool_allowed(entry, tools[tool], write=False)
    return {"server": entry.name, "tool": tool, **result_dict(link.call_tool(tool, arguments))}


def mcp_update(server: str | Registered, operation: str, data: dict[str, Any]) -> None:
    """A write the server allows: on the engine `remember`, `upsert_entities`, `delete_entities`;
    on a postgres connector that is not read-only `insert_rows`; on another server one of its
    tools, when the server is not read-only. Read-only servers refuse with PermissionDenied.

    Args:
        server: A server name, or a server object.
        operation: The write to perform.
        data: Its arguments.

    Raises:
        UnknownServer: No server has that name.
        UnknownOperation: The server has no such write.
        PermissionDenied: The server is read-only or its rules refuse the write.
        SourceError: The server failed or could not be reached.
    """
    entry = resolve_server(server)
    if isinstance(entry, EngineServer | MCPClient):
        entry.update(operation, data)
        return
    if entry.kind in BUILTIN_KINDS:
        names = {t.name for t in entry.link().list_tools()}
        if entry.read_only:
            raise PermissionDenied(f"server {entry.name!r} is read-only (read_only=True); it accepts no {operation!r}")
        writes = sorted(t for t in names if t.startswith("insert_"))
        if operation not in writes:
            raise UnknownOperation(f"server {entry.name!r} has no write operation {operation!r}; it has {writes}")
        entry.link().call_tool(operation, data)
        return
    link = entry.link()
    tools = {t.name: t for t in link.list_tools()}
    if operation not in tools:
        raise UnknownOperation(f"server {entry.name!r} has no operation {operation!r}; its tools are {sorted(tools)}")
    _wrapped_tool_allowed(entry, tools[operation], write=True)
    link.call_tool(operation, data)


def mcp_subscribe(
    server: str | Registered, event_type: str, handler: Callable[[Event], Any], uris: Sequence[str] | None = None
) -> Subscription:
    """Deliver change events to `handler` until the returned subscription is cancelled.

    The engine: entity.updated, entity.deleted, relation.updated, relation.deleted,
    episode.created (from the store's change log). A connector or another MCP server:
    resource.updated for `uris` (default: every resource it lists).

    Args:
        server: A server name, or a server object.
        event_type: The kind of event to deliver.
        handler: Called with each `Event` (in a worker thread; its errors are kept, not raised).
        uris: Resources to follow on a connector or another MCP server.

    Returns:
        The running subscription; `cancel()` ends it.

    Raises:
        UnknownServer: No server has that name.
        UnknownEventType: The server cannot deliver that kind of event.
        SchemaError: The handler is not callable, or there is nothing to subscribe to.
        SourceError: The server did not acknowledge the subscription.
    """
    if not callable(handler):
        raise SchemaError("handler must be callable")
    entry = resolve_server(server)
    if isinstance(entry, EngineServer):
        return entry.subscribe(event_type, handler)
    if isinstance(entry, MCPClient):
        return entry.subscribe(event_type, handler, uris)
    return subscribe_link(entry.name, entry.link(), event_type, handler, uris)


def health(server: str | Registered) -> dict[str, Any]:
    """A named server's health.

    Args:
        server: A server name, or a server object.

    Returns:
        {"server", "kind", "ok", "latency_ms", "error", ...}: the check reports, it does not raise.

    Raises:
        UnknownServer: No server has that name.
    """
    return resolve_server(server).health()
