"""`MCPClient`: a client of an MCP server over streamable HTTP, with synchronous methods."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from aesoperator.api.errors import UnknownOperation
from aesoperator.api.held_secrets import HeldSecretsDefinition
from aesoperator.api.links import ClientLink
from aesoperator.api.subscriptions import Event, Subscription, subscribe_link
from aesoperator.errors import AesopError, ConfigError, PermissionDenied
from aesoperator.ingest.adapters.base import ToolInfo, ToolResult


class MCPClient:
    """A client of an MCP server over streamable HTTP, with synchronous methods.

    `credentials`: {"access_token": ...} (or {"access_token_env": "VAR"}) for a bearer token;
    {"client_id", "client_secret", "token_url"} (optionally "scope") for OAuth2 client
    credentials (tokens fetched, cached until they expire, refreshed on 401). Secrets are sent
    only to the server's own origin, and plain http only to loopback addresses."""

    def __init__(
        self,
        server_url: str,
        credentials: Mapping[str, str] | None = None,
        *,
        name: str | None = None,
        timeout_seconds: float = 60.0,
        retries: int = 3,
        read_only: bool = False,
    ) -> None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"server_url must be an http(s) URL, got {server_url!r}")
        if not parts.path or parts.path == "/":
            server_url = server_url.rstrip("/") + "/mcp"
        self.server_url = server_url
        self.name = name or re.sub(r"[^A-Za-z0-9_.-]", "-", parts.netloc)[:64] or "remote"
        self.read_only = read_only
        creds = dict(credentials or {})
        held: dict[str, str] = {}
        named: dict[str, str] = {}
        options: dict[str, Any] = {}
        if "access_token_env" in creds:
            named["bearer_token"] = creds.pop("access_token_env")
        if "access_token" in creds:
            held["bearer_token"] = creds.pop("access_token")
        if "client_id" in creds or "client_secret" in creds:
            if not {"client_id", "client_secret", "token_url"} <= set(creds):
                raise ConfigError("OAuth2 client credentials need client_id, client_secret and token_url")
            held["client_id"] = creds.pop("client_id")
            held["client_secret"] = creds.pop("client_secret")
            options["token_url"] = creds.pop("token_url")
            if "scope" in creds:
                options["scope"] = creds.pop("scope")
        if creds:
            raise ConfigError(
                f"unknown credential keys {sorted(creds)}; use access_token or client_id/client_secret/token_url"
            )
        definition = HeldSecretsDefinition(
            name=self.name,
            kind="everything",
            url=server_url,
            credentials={**named, **{k: f"held:{k}" for k in held}},
            options=options,
            timeout_seconds=timeout_seconds,
            retries=retries,
        )
        self._definition = definition.holding(held)
        self._link = ClientLink(self._definition)
        self._tools: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"MCPClient(server_url={self.server_url!r}, name={self.name!r})"

    # -- raw calls --------------------------------------------------------------------------------
    def list_tools(self) -> list[dict[str, Any]]:
        return [
            {"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in self._tool_infos()
        ]

    def _tool_infos(self) -> list[ToolInfo]:
        tools = self._link.list_tools()
        self._tools = {t.name: t for t in tools}
        return tools

    def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Call a tool; returns its structured result (or {"text": ...}). A tool error raises."""
        return result_dict(self._link.call_tool(name, dict(arguments or {})))

    def read_resource(self, uri: str) -> dict[str, Any]:
        content = self._link.read_resource(uri)
        return {"uri": content.uri, "mime_type": content.mime_type, "text": content.text}

    # -- the brief's verbs ------------------------------------------------------------------------
    def query(self, query: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A read: the tool `query` names, or the server's search (or query) tool given `query`."""
        tools = self._tools if self._tools is not None else {t.name: t for t in self._tool_infos()}
        tool, arguments = remote_query(self.name, tools, query, dict(params or {}))
        return {"server": self.name, "tool": tool, **self.call_tool(tool, arguments)}

    def update(self, operation: str, data: Mapping[str, Any]) -> None:
        """A write: the tool `operation` names, with `data` as its arguments (the server decides)."""
        if self.read_only:
            raise PermissionDenied(f"client {self.name!r} is read-only")
        tools = self._tools if self._tools is not None else {t.name: t for t in self._tool_infos()}
        if operation not in tools:
            raise UnknownOperation(
                f"server {self.name!r} has no operation {operation!r}; its tools are {sorted(tools)}"
            )
        self.call_tool(operation, data)

    def subscribe(
        self, event_type: str, handler: Callable[[Event], Any], uris: Sequence[str] | None = None
    ) -> Subscription:
        """Deliver `resource.updated` events for `uris` (default: every listed resource) to `handler`."""
        return subscribe_link(self.name, self._link, event_type, handler, uris)

    def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        out: dict[str, Any] = {"server": self.name, "url": self.server_url, "ok": False, "error": None}
        try:
            out["tools"] = sorted(t.name for t in self._tool_infos())
            out["ok"] = True
        except AesopError as exc:
            out["error"] = str(exc)
        out["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return out

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> MCPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def result_dict(result: ToolResult) -> dict[str, Any]:
    data = result.structured
    if data is None:
        try:
            data = json.loads(result.text)
        except ValueError:
            data = None
    if isinstance(data, dict) and set(data) == {"result"}:
        data = data["result"]
    if isinstance(data, dict):
        return data
    if isinstance(data, str):
        return {"text": data}
    if data is not None:
        return {"result": data}
    return {"text": result.text}


def remote_query(name: str, tools: Mapping[str, Any], query: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if query in tools:
        return query, params
    for tool, argument in (("search", "query"), ("search_nodes", "query")):
        if tool in tools:
            return tool, {argument: query, **params}
    raise UnknownOperation(f"server {name!r} has no tool {query!r} and no search tool; its tools are {sorted(tools)}")
