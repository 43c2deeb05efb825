"""The Python API of the product brief: MCP servers, clients, tasks, and queries by server name.

```python
from aesoperator import MCPServer, MCPClient
import aesoperator as aesop

db = MCPServer(name="analytics_db", connection_string="postgresql://...", allowed_tables=["users", "events"])
aesop.register_server(db)
aesop.mcp_query("analytics_db", "events", {"filters": {"kind": "login"}, "limit": 10})
result = aesop.execute_task(aesop.Task(name="user_analysis", mcp_context=[db], inputs={"metric": "retention"}))
```

- `MCPServer` describes one server: a built-in connector (postgres, git, filesystem, github: the
  rules are enforced by the connector itself), any third-party MCP server (`command`/`args` or
  `url`; reached read-only unless told otherwise), or the engine itself (`kind="engine"`). It can
  `serve()` a built-in connector (stdio, or streamable HTTP on 127.0.0.1 behind bearer tokens),
  give the engine a `source_definition()` to ingest from, and report its `health()`.
- `MCPClient` talks to a server over streamable HTTP with a bearer token or OAuth2 client
  credentials; its methods are synchronous (an event loop runs in a background thread), so it
  works from a notebook.
- Servers are found by name (`register_server`, or `[servers.NAME]` tables in aesop.toml; the
  name "engine" is the local context engine): `mcp_query` reads, `mcp_update` writes what the
  server allows, `mcp_subscribe` delivers change events to a handler until cancelled.
- `execute_task` syncs the task's sources incrementally, assembles context with the hybrid
  retriever, records the task and its outcome in memory, and calls the task's operator if it has
  one. Without an operator it returns the assembled context and says that no operator ran.

Secrets (connection strings with passwords, tokens, client secrets) are held in memory only: they
are masked in reprs and dumps, passed to connector processes through their environment (never
their arguments), and never written to the graph or to logs.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, asynccontextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from aesoperator.errors import AesopError, ConfigError, PermissionDenied, RateLimited, SchemaError, SourceError
from aesoperator.graph_schema.models import to_iso, utcnow
from aesoperator.ingest.sources import SourceDefinition

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from aesoperator.connectors.base import ConnectorServer, RunningHTTP
    from aesoperator.engine.context import ContextEngine
    from aesoperator.ingest.adapters.base import ResourceContent, ToolInfo, ToolResult

log = logging.getLogger(__name__)

ServerKind = Literal["engine", "postgres", "git", "filesystem", "github", "mcp"]
BUILTIN_KINDS = ("postgres", "git", "filesystem", "github")
ENGINE = "engine"
DEFAULT_RATE_LIMIT = "50/s:100"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_GITHUB_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

ENGINE_EVENTS = ("entity.updated", "entity.deleted", "relation.updated", "relation.deleted", "episode.created")
RESOURCE_EVENTS = ("resource.updated",)
ENGINE_OPERATIONS = ("remember", "upsert_entities", "delete_entities")


# -- errors ------------------------------------------------------------------------------------
class UnknownServer(ConfigError):
    """No server is registered (or declared in aesop.toml) under that name."""


class UnknownOperation(SchemaError):
    """The server has no such operation (or query tool)."""


class UnknownEventType(SchemaError):
    """The server cannot deliver that kind of event."""


# -- the background event loop -----------------------------------------------------------------
class _Loop:
    """One event loop in a daemon thread, shared by every API object: sync methods run their
    async work on it, so the API works the same from scripts and notebooks."""

    _lock = threading.Lock()
    _stack: ExitStack | None = None
    _portal: BlockingPortal | None = None

    @classmethod
    def portal(cls) -> BlockingPortal:
        with cls._lock:
            if cls._portal is None:
                from anyio.from_thread import start_blocking_portal

                stack = ExitStack()
                cls._portal = stack.enter_context(start_blocking_portal(backend="asyncio"))
                cls._stack = stack
                atexit.register(cls.close)
            return cls._portal

    @classmethod
    def close(cls) -> None:
        """Stop the loop, cancelling what still runs on it (open sessions, subscriptions)."""
        with cls._lock:
            if cls._portal is not None:
                with suppress(Exception):
                    cls._portal.call(cls._portal.stop, True)
            if cls._stack is not None:
                with suppress(Exception):
                    cls._stack.close()
            cls._stack = None
            cls._portal = None


class _Link:
    """A live MCP connection used from sync code: an MCP session held open on the shared loop."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._stack: ExitStack | None = None
        self._lock = threading.Lock()

    async def _call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        raise NotImplementedError

    async def _read_resource(self, uri: str) -> ResourceContent:
        raise NotImplementedError

    async def _list_tools(self) -> list[ToolInfo]:
        raise NotImplementedError

    def _open(self, stack: ExitStack, portal: BlockingPortal) -> None:
        raise NotImplementedError

    def listen(self, uris: Sequence[str]) -> Any:
        """An async context manager yielding an async iterator of updated URIs."""
        raise NotImplementedError

    def ensure(self) -> BlockingPortal:
        portal = _Loop.portal()
        with self._lock:
            if self._stack is None:
                stack = ExitStack()
                try:
                    self._open(stack, portal)
                except BaseException:
                    stack.close()
                    raise
                self._stack = stack
        return portal

    def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        return self.ensure().call(self._call_tool, name, dict(arguments))

    def read_resource(self, uri: str) -> ResourceContent:
        return self.ensure().call(self._read_resource, uri)

    def list_tools(self) -> list[ToolInfo]:
        return self.ensure().call(self._list_tools)

    def close(self) -> None:
        with self._lock:
            stack, self._stack = self._stack, None
        if stack is not None:
            with suppress(Exception):
                stack.close()


class _ClientLink(_Link):
    """Through the engine's MCP client (`aesoperator.ingest.client`): stdio or streamable HTTP,
    with per-call timeouts, retries with backoff on connection errors, size limits and
    credentials (bearer token or OAuth2 client credentials)."""

    def __init__(self, definition: SourceDefinition) -> None:
        super().__init__(definition.name)
        self.definition = definition
        self._conn: Any = None

    def _open(self, stack: ExitStack, portal: BlockingPortal) -> None:
        from aesoperator.ingest.client import open_connection

        self._conn = stack.enter_context(portal.wrap_async_context_manager(open_connection(self.definition)))

    async def _watched(self, op: Callable[[], Any]) -> Any:
        """Run a call, failing it at once when the server refuses the credentials mid-session
        (HTTP 401/403 on a later request: a revoked or rotated token) rather than at its timeout."""
        import anyio

        box: dict[str, Any] = {}
        done = anyio.Event()

        async def run() -> None:
            try:
                box["result"] = await op()
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            while not done.is_set():
                with anyio.move_on_after(0.05):
                    await done.wait()
                refusal = getattr(self._conn, "_http_refusal", None)
                if refusal and not done.is_set():
                    box["refused"] = refusal
                    tg.cancel_scope.cancel()
                    break
        refusal = box.get("refused") or (getattr(self._conn, "_http_refusal", None) if "error" in box else None)
        if refusal:
            raise SourceError(f"server {self.label!r}: the server refused the credentials ({refusal})")
        if "error" in box:
            raise box["error"]
        return box["result"]

    async def _call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        result: ToolResult = await self._watched(lambda: self._conn.call_tool(name, arguments))
        return result

    async def _read_resource(self, uri: str) -> ResourceContent:
        content: ResourceContent = await self._watched(lambda: self._conn.read_resource(uri))
        return content

    async def _list_tools(self) -> list[ToolInfo]:
        tools: list[ToolInfo] = await self._watched(self._conn.list_tools)
        return tools

    @asynccontextmanager
    async def listen(self, uris: Sequence[str]) -> AsyncIterator[AsyncIterator[str]]:
        from aesoperator.ingest.client import LIST_CHANGED, open_connection

        # a subscription holds its own session: a connection follows one feed at a time
        async with open_connection(self.definition) as conn, conn.resource_updates(list(uris)) as feed:

            async def updates() -> AsyncIterator[str]:
                while True:
                    for uri in await feed.next_batch(1.0, settle_seconds=0.05):
                        if uri != LIST_CHANGED:
                            yield uri

            yield updates()


class _LocalLink(_Link):
    """A built-in connector in this process, reached through the MCP SDK's in-process transport:
    every call passes the connector's own checks, rate limit and audit, as over the wire."""

    def __init__(self, server: ConnectorServer) -> None:
        super().__init__(server.name)
        self.server = server
        self._client: Any = None

    def _open(self, stack: ExitStack, portal: BlockingPortal) -> None:
        from mcp import Client

        self._client = stack.enter_context(portal.wrap_async_context_manager(Client(self.server)))

    async def _call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        import mcp_types as types

        from aesoperator.ingest.adapters.base import ToolResult
        from aesoperator.ingest.client import ToolCallError

        result = await self._client.call_tool(name, dict(arguments))
        text = "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))
        if result.is_error:
            info = (result.meta or {}).get("aesoperator/error") or {}
            message = f"server {self.label!r}: {name}: {text or 'the tool reported an error'}"
            if info.get("type") == "permission_denied":
                raise PermissionDenied(message)
            if info.get("type") == "rate_limited":
                raise RateLimited(message, float(info.get("retry_after") or 1.0))
            if info.get("type") in ("invalid_arguments", "schema"):
                raise SchemaError(message)
            raise ToolCallError(message)
        return ToolResult(text=text, structured=result.structured_content, is_error=False, size=len(text))

    async def _read_resource(self, uri: str) -> ResourceContent:
        import mcp_types as types
        from mcp.shared.exceptions import MCPError

        from aesoperator.ingest.adapters.base import ResourceContent

        try:
            result = await self._client.read_resource(uri)
        except MCPError as exc:
            raise SourceError(f"server {self.label!r}: read_resource {uri}: {exc.error.message}") from None
        texts = [p.text for p in result.contents if isinstance(p, types.TextResourceContents)]
        mime = result.contents[0].mime_type if result.contents else None
        return ResourceContent(uri=uri, text="\n".join(texts) if texts else None, blob=None, mime_type=mime)

    async def _list_tools(self) -> list[ToolInfo]:
        from aesoperator.ingest.adapters.base import ToolInfo

        result = await self._client.list_tools()
        return [
            ToolInfo(name=t.name, description=t.description, input_schema=dict(t.input_schema)) for t in result.tools
        ]

    @asynccontextmanager
    async def listen(self, uris: Sequence[str]) -> AsyncIterator[AsyncIterator[str]]:
        from mcp import Client
        from mcp.client.subscriptions import ResourceUpdated

        async with Client(self.server) as client, client.listen(resource_subscriptions=list(uris)) as subscription:

            async def updates() -> AsyncIterator[str]:
                async for event in subscription:
                    if isinstance(event, ResourceUpdated):
                        yield event.uri

            yield updates()


# -- credentials held in memory ------------------------------------------------------------------
class _HeldSecretsDefinition(SourceDefinition):
    """A source definition whose credentials are values held in memory (from the API caller),
    not environment variables; and whose kind may name any adapter module."""

    kind: str  # type: ignore[assignment]
    _held: dict[str, str] = PrivateAttr(default_factory=dict)

    def secret(self, purpose: str) -> str | None:
        if purpose in self._held:
            return self._held[purpose]
        return super().secret(purpose)

    def holding(self, secrets: Mapping[str, str]) -> _HeldSecretsDefinition:
        self._held = {k: v for k, v in secrets.items() if v}
        return self


def _resolve_refs(value: str, what: str) -> str:
    def sub(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in os.environ:
            raise ConfigError(f"{what} needs the environment variable {var}")
        return os.environ[var]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, value)


# -- MCPServer -----------------------------------------------------------------------------------
class MCPServer(BaseModel):
    """One MCP server: a built-in connector, a third-party server, or the engine.

    The kind is inferred: `connection_string` → postgres; `roots` → filesystem; `repo` naming a
    local directory → git; `repo` as "owner/name" (or `data_sources`) → github; `command` or
    `url` → a third-party server ("mcp"). Minimal permissions by default: read-only, and a
    postgres server needs `allowed_tables`."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_assignment=False)

    name: str
    kind: ServerKind | None = None
    data_sources: list[str] | None = None
    auth_config: dict[str, Any] = Field(default_factory=dict)
    connection_string: str | None = Field(default=None, repr=False, description="May reference ${VAR}.")
    connection_string_env: str | None = Field(
        default=None, description="Read the connection string from this variable."
    )
    allowed_tables: list[str] | None = None
    db_schema: str = "public"
    repo: str | None = None
    roots: list[str] | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    url: str | None = None
    credentials: dict[str, str] = Field(default_factory=dict, repr=False)
    adapter: str | None = Field(default=None, description="Ingest adapter for a third-party server (its kind).")
    allowed_tools: list[str] | None = Field(default=None, description="Tools a third-party server may be asked.")
    namespace: str | None = None
    read_only: bool = True
    row_limit: int = Field(default=1000, ge=1, le=1_000_000)
    rate_limit: str | None = DEFAULT_RATE_LIMIT
    data_dir: Path | None = None
    token_env: str = "GITHUB_TOKEN"
    secrets_file: Path | None = None
    recorded: Path | None = Field(default=None, description="GitHub: answer from recorded API responses here.")
    recorded_set: str = "v1"
    api_url: str | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="Ingest adapter options.")
    transport: Any = Field(default=None, exclude=True, repr=False, description="GitHub: an injected HTTP transport.")

    _server: Any = PrivateAttr(default=None)
    _link: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _infer(self) -> MCPServer:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"server name {self.name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
        if self.kind is None:
            if self.connection_string or self.connection_string_env:
                self.kind = "postgres"
            elif self.roots:
                self.kind = "filesystem"
            elif self.command or self.url:
                self.kind = "mcp"
            elif self.data_sources is not None or (
                self.repo and _GITHUB_REPO.fullmatch(self.repo) and not Path(self.repo).expanduser().is_dir()
            ):
                self.kind = "github"
            elif self.repo:
                self.kind = "git"
            else:
                raise ValueError(
                    f"server {self.name!r}: say what it serves: connection_string (postgres), repo (a local git "
                    "repository, or owner/name on GitHub), roots (folders), command or url (another MCP server)"
                )
        if self.kind == "postgres" and not self.allowed_tables:
            raise ValueError(
                f"server {self.name!r}: a postgres server needs allowed_tables (nothing is readable without)"
            )
        if self.kind == "github":
            unknown = sorted(set(self.data_sources or []) - {"repos", "issues", "pull_requests"})
            if unknown:
                raise ValueError(
                    f"server {self.name!r}: unknown data_sources {unknown}; use repos, issues, pull_requests"
                )
        if self.kind == "mcp" and bool(self.command) == bool(self.url):
            raise ValueError(f"server {self.name!r}: give exactly one of command (stdio) or url (streamable HTTP)")
        return self

    # -- identity -----------------------------------------------------------------------------
    @property
    def source_namespace(self) -> str:
        """Where what is ingested from this server lands (and what task context reads)."""
        return self.namespace or self.name

    def public_view(self) -> dict[str, Any]:
        """The configuration without secrets."""
        data = self.model_dump(exclude={"transport"})
        if data.get("connection_string"):
            from aesoperator.connectors.postgres import safe_dsn

            data["connection_string"] = safe_dsn(self.dsn())
        data["env"] = {k: "***" for k in self.env}
        data["credentials"] = {k: "***" for k in self.credentials}
        return data

    def dsn(self) -> str:
        if self.connection_string_env:
            value = os.environ.get(self.connection_string_env)
            if not value:
                raise ConfigError(f"server {self.name!r}: environment variable {self.connection_string_env} is not set")
            return value
        return _resolve_refs(self.connection_string or "", f"server {self.name!r}")

    def _data_dir(self) -> Path:
        if self.data_dir is not None:
            return Path(self.data_dir)
        from aesoperator.config import load_settings

        return load_settings().data_dir

    def _options(self) -> dict[str, Any]:
        if self.kind == "postgres":
            return {
                "connection_string": self.dsn(),
                "allowed_tables": self.allowed_tables,
                "schema": self.db_schema,
                "read_only": self.read_only,
                "row_limit": self.row_limit,
            }
        if self.kind == "git":
            return {"repo": self.repo}
        if self.kind == "filesystem":
            return {"roots": self.roots}
        if self.kind == "github":
            return {
                "repo": self.repo,
                "data_sources": self.data_sources,
                "token_env": self.token_env,
                "secrets_file": self.secrets_file,
                "recorded": self.recorded,
                "recorded_set": self.recorded_set,
                "api_url": self.api_url,
                "transport": self.transport,
            }
        raise ConfigError(f"server {self.name!r} ({self.kind}) is not a built-in connector")

    # -- the connector ------------------------------------------------------------------------
    def connector(self) -> ConnectorServer:
        """The built-in connector's MCP server (built once)."""
        from aesoperator.connectors import build
        from aesoperator.connectors.base import ConnectorPolicy

        if self.kind not in BUILTIN_KINDS:
            raise ConfigError(f"server {self.name!r} ({self.kind}) is not a built-in connector")
        with self._lock:
            if self._server is None:
                policy = ConnectorPolicy.build(self.name, data_dir=self._data_dir(), rate_limit=self.rate_limit)
                self._server = build(str(self.kind), self.name, self._options(), policy)
            return self._server

    def link(self) -> _Link:
        """A live connection to this server (in-process for built-in connectors)."""
        if self.kind == ENGINE:
            raise ConfigError("the engine is reached directly, not through a link")
        with self._lock:
            link = self._link
        if link is None:
            link = _LocalLink(self.connector()) if self.kind in BUILTIN_KINDS else _ClientLink(self.source_definition())
            with self._lock:
                if self._link is None:
                    self._link = link
                link = self._link
        return link

    def serve(
        self,
        transport: Literal["stdio", "http"] = "stdio",
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        background: bool = False,
        path: str = "/mcp",
    ) -> RunningHTTP | None:
        """Serve this connector: over stdio until the client disconnects, or streamable HTTP on
        `host:port` (loopback by default) behind `auth_config` (static bearer tokens from
        `<data_dir>/tokens.json` unless told otherwise, re-read on change). With `background`,
        HTTP runs in a thread and a handle with `.url` and `.stop()` is returned (port 0 picks a
        free port)."""
        from aesoperator.connectors import base

        server = self.connector()
        if transport == "stdio":
            if background:
                raise ConfigError("stdio serving runs in the foreground (it owns stdin/stdout)")
            base.run_stdio(server)
            return None
        if transport != "http":
            raise ConfigError(f"transport must be 'stdio' or 'http', got {transport!r}")
        if background:
            return self.start_http(host, port, path)
        base.serve_http(
            server, host=host, port=port, auth_config=self.auth_config, data_dir=self._data_dir(), path=path
        )
        return None

    def start_http(self, host: str = "127.0.0.1", port: int = 0, path: str = "/mcp") -> RunningHTTP:
        """Serve this connector over streamable HTTP in a background thread (port 0: a free port);
        the handle has `.url` and `.stop()` and is a context manager."""
        from aesoperator.connectors import base

        return base.start_http(
            self.connector(), host=host, port=port, auth_config=self.auth_config, data_dir=self._data_dir(), path=path
        )

    # -- ingest ---------------------------------------------------------------------------------
    def source_definition(self) -> SourceDefinition:
        """How the engine reaches this server to ingest from it (`engine.ingest_source(...)`).

        Built-in connectors run as `python -m aesoperator.connectors ...` over stdio with their
        rules; secrets reach that process through its environment only."""
        if self.kind == ENGINE:
            raise ConfigError("the engine is not ingested from: it is where sources are ingested to")
        ns = self.source_namespace
        if self.kind == "mcp":
            secrets: dict[str, str] = {}
            creds: dict[str, str] = {}
            for purpose, value in self.credentials.items():
                if purpose.endswith("_env"):
                    creds[purpose.removesuffix("_env")] = value
                else:
                    key = "bearer_token" if purpose in ("access_token", "token") else purpose
                    creds[key] = f"held:{key}"
                    secrets[key] = value
            remote_options = dict(self.options)
            if "token_url" in self.credentials:
                remote_options["token_url"] = self.credentials["token_url"]
                creds.pop("token_url", None)
                secrets.pop("token_url", None)
            definition = _HeldSecretsDefinition(
                name=self.name,
                kind=self.adapter or "everything",
                command=self.command,
                args=list(self.args),
                env=dict(self.env),
                url=self.url,
                credentials=creds,
                namespace=ns,
                options=remote_options,
            )
            return definition.holding(secrets)
        argv = ["-m", "aesoperator.connectors", str(self.kind), "--name", self.name]
        argv += ["--data-dir", str(self._data_dir().resolve())]
        if self.rate_limit:
            argv += ["--rate-limit", self.rate_limit]
        env: dict[str, str] = {}
        options: dict[str, Any] = dict(self.options)
        kind: str
        if self.kind == "postgres":
            kind = "aesop_postgres"
            argv += ["--schema", self.db_schema, "--row-limit", str(self.row_limit)]
            for table in self.allowed_tables or []:
                argv += ["--allowed-table", table]
            if not self.read_only:
                argv.append("--read-write")
            env["AESOP_CONNECTOR_DSN"] = (
                f"${{{self.connection_string_env}}}" if self.connection_string_env else self.connection_string or ""
            )
            options.setdefault("allowed_tables", list(self.allowed_tables or []))
            options.setdefault("row_limit", 10_000)
        elif self.kind == "git":
            kind = "git"
            repo = str(Path(str(self.repo)).expanduser().resolve())
            argv += ["--repo", repo]
            options.setdefault("repo_path", repo)
        elif self.kind == "filesystem":
            kind = "filesystem"
            for root in self.roots or []:
                argv += ["--root", str(Path(root).expanduser().resolve())]
        else:
            kind = "aesop_github"
            if self.transport is not None:
                raise ConfigError(
                    f"server {self.name!r}: an injected transport lives in this process; to ingest, give "
                    "recorded= (a directory of recorded responses) or use the real API"
                )
            argv += ["--repo", str(self.repo)]
            for source in self.data_sources or []:
                argv += ["--data-source", source]
            if self.recorded is not None:
                argv += ["--recorded", str(Path(self.recorded).resolve()), "--recorded-set", self.recorded_set]
            if self.api_url:
                argv += ["--api-url", self.api_url]
            argv += ["--token-env", self.token_env]
            if self.secrets_file is not None:
                argv += ["--secrets-file", str(Path(self.secrets_file).expanduser().resolve())]
            if os.environ.get(self.token_env):
                env[self.token_env] = f"${{{self.token_env}}}"
        return _HeldSecretsDefinition(
            name=self.name,
            kind=kind,
            command=sys.executable,
            args=argv,
            env=env,
            namespace=ns,
            options=options,
            timeout_seconds=120,
        )

    # -- health ---------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Whether the server answers: {"server", "kind", "ok", "latency_ms", "tools", "error"}."""
        started = time.perf_counter()
        out: dict[str, Any] = {"server": self.name, "kind": self.kind, "ok": False, "tools": [], "error": None}
        try:
            link = self.link()
            tools = link.list_tools()
            out["tools"] = sorted(t.name for t in tools)
            probe = _HEALTH_PROBES.get(str(self.kind))
            if probe is not None and probe[0] in out["tools"]:
                args = dict(probe[1])
                if self.kind == "git":
                    args["repo_path"] = str(Path(str(self.repo)).expanduser().resolve())
                link.call_tool(probe[0], args)
            out["ok"] = True
        except AesopError as exc:
            out["error"] = str(exc)
        except Exception as exc:  # health reports, it does not raise
            out["error"] = f"{type(exc).__name__}: {exc}"
        out["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return out

    def close(self) -> None:
        """Close the live connection, if any (the server object stays usable)."""
        with self._lock:
            link, self._link = self._link, None
            server = self._server
        if link is not None:
            link.close()
        if server is not None:
            server.close_source()


_HEALTH_PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    "postgres": ("describe_tables", {}),
    "git": ("git_branch", {}),
    "filesystem": ("list_allowed_directories", {}),
    "github": ("list_issues", {"limit": 1}),
}


# -- MCPClient -----------------------------------------------------------------------------------
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
        from urllib.parse import urlsplit

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
        definition = _HeldSecretsDefinition(
            name=self.name,
            kind="everything",
            url=server_url,
            credentials={**named, **{k: f"held:{k}" for k in held}},
            options=options,
            timeout_seconds=timeout_seconds,
            retries=retries,
        )
        self._definition = definition.holding(held)
        self._link = _ClientLink(self._definition)
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
        return _result_dict(self._link.call_tool(name, dict(arguments or {})))

    def read_resource(self, uri: str) -> dict[str, Any]:
        content = self._link.read_resource(uri)
        return {"uri": content.uri, "mime_type": content.mime_type, "text": content.text}

    # -- the brief's verbs ------------------------------------------------------------------------
    def query(self, query: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A read: the tool `query` names, or the server's search (or query) tool given `query`."""
        tools = self._tools if self._tools is not None else {t.name: t for t in self._tool_infos()}
        tool, arguments = _remote_query(self.name, tools, query, dict(params or {}))
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
        return _subscribe_link(self.name, self._link, event_type, handler, uris)

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


def _result_dict(result: ToolResult) -> dict[str, Any]:
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


def _remote_query(
    name: str, tools: Mapping[str, Any], query: str, params: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    if query in tools:
        return query, params
    for tool, argument in (("search", "query"), ("search_nodes", "query")):
        if tool in tools:
            return tool, {argument: query, **params}
    raise UnknownOperation(f"server {name!r} has no tool {query!r} and no search tool; its tools are {sorted(tools)}")


# -- events and subscriptions ----------------------------------------------------------------------
class Event(BaseModel):
    """A change event delivered to an `mcp_subscribe` handler."""

    type: str
    server: str
    id: str | None = None
    uri: str | None = None
    namespace: str | None = None
    seq: int | None = None
    at: datetime = Field(default_factory=utcnow)


class Subscription:
    """A running subscription: events go to the handler until `cancel()`."""

    def __init__(self, server: str, event_type: str) -> None:
        self.server = server
        self.event_type = event_type
        self.delivered = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._cancel: Callable[[], None] | None = None
        self.ready = threading.Event()

    @property
    def active(self) -> bool:
        return not self._stop.is_set()

    def _deliver(self, handler: Callable[[Event], Any], event: Event) -> None:
        try:
            handler(event)
            self.delivered += 1
        except Exception as exc:  # a failing handler must not end the subscription
            log.warning("subscription %s/%s: handler failed: %s", self.server, self.event_type, exc)
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def cancel(self) -> None:
        self._stop.set()
        if self._cancel is not None:
            with suppress(Exception):
                self._cancel()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


def _subscribe_link(
    server: str,
    link: _Link,
    event_type: str,
    handler: Callable[[Event], Any],
    uris: Sequence[str] | None,
    timeout: float = 30.0,
) -> Subscription:
    if event_type not in RESOURCE_EVENTS:
        raise UnknownEventType(f"server {server!r} delivers {list(RESOURCE_EVENTS)}, not {event_type!r}")
    portal = link.ensure()
    if uris is None:
        uris = [r.uri for r in portal.call(_list_resources, link)]
        if not uris:
            raise SchemaError(f"server {server!r} lists no resources to subscribe to")
    sub = Subscription(server, event_type)
    failure: list[BaseException] = []

    async def pump() -> None:
        import anyio.to_thread

        try:
            async with link.listen(list(uris)) as updates:
                sub.ready.set()
                async for uri in updates:
                    if sub._stop.is_set():
                        return
                    event = Event(type=event_type, server=server, uri=uri)
                    await anyio.to_thread.run_sync(sub._deliver, handler, event)
        except BaseException as exc:
            failure.append(exc)
            sub.ready.set()
            raise

    future = portal.start_task_soon(pump)

    def stop() -> None:
        future.cancel()

    sub._cancel = stop
    if not sub.ready.wait(timeout):
        future.cancel()
        raise SourceError(f"server {server!r}: the subscription was not acknowledged within {timeout:g}s")
    if failure:
        exc = failure[0]
        raise exc if isinstance(exc, AesopError) else SourceError(f"server {server!r}: cannot subscribe: {exc}")
    return sub


async def _list_resources(link: _Link) -> list[Any]:
    if isinstance(link, _ClientLink):
        resources: list[Any] = await link._conn.list_resources()
        return resources
    if isinstance(link, _LocalLink):
        result = await link._client.list_resources()
        return list(result.resources)
    return []


# -- the engine as a named server -------------------------------------------------------------------
class EngineServer:
    """The local context engine under a name: queries are hybrid searches, updates are memory and
    entity writes (in `write_namespace`), events come from the store's change log. Every call is
    audited in the engine's data dir."""

    def __init__(
        self,
        engine: ContextEngine | None = None,
        name: str = ENGINE,
        *,
        namespaces: Sequence[str] | None = None,
        write_namespace: str | None = None,
        read_only: bool = False,
        rate_limit: str | None = DEFAULT_RATE_LIMIT,
    ) -> None:
        self.name = name
        self._engine = engine
        self._owned = engine is None
        self.namespaces = list(namespaces) if namespaces is not None else None
        self.write_namespace = write_namespace
        self.read_only = read_only
        self.rate_limit = rate_limit
        self._guard: Any = None
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return ENGINE

    @property
    def engine(self) -> ContextEngine:
        with self._lock:
            if self._engine is None:
                from aesoperator.engine.context import ContextEngine

                self._engine = ContextEngine.open()
            return self._engine

    def _audited(self, operation: str, arguments: Any, work: Callable[[], Any]) -> Any:
        from aesoperator.serve.guard import CallGuard
        from aesoperator.serve.principal import Principal
        from aesoperator.serve.server import classify

        if self._guard is None:
            self._guard = CallGuard.for_data_dir(self.engine.settings.data_dir, self.rate_limit)
        principal = Principal.full_access("api", "stdio")
        started = time.perf_counter()
        try:
            self._guard.admit(principal, operation)
            result = work()
        except Exception as exc:
            decision = classify(exc, operation).decision
            self._guard.record(principal, operation, arguments, decision, 0, (time.perf_counter() - started) * 1000)
            raise
        count = len(result) if isinstance(result, list) else 1
        self._guard.record(principal, operation, arguments, "allow", count, (time.perf_counter() - started) * 1000)
        return result

    def query(self, query: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        p = dict(params or {})
        allowed = {"k", "hops", "types", "namespaces", "as_of", "token_budget"}
        unknown = sorted(set(p) - allowed)
        if unknown:
            raise SchemaError(f"engine query: unknown parameters {unknown}; use {sorted(allowed)}")
        namespaces = p.pop("namespaces", None)
        if self.namespaces is not None:
            if namespaces is not None and set(namespaces) - set(self.namespaces):
                raise PermissionDenied(f"server {self.name!r} reads only namespaces {self.namespaces}")
            namespaces = namespaces or self.namespaces
        if isinstance(p.get("as_of"), str):
            from aesoperator.graph_schema.models import from_iso

            p["as_of"] = from_iso(p["as_of"])

        def run() -> dict[str, Any]:
            result = self.engine.search(query, namespaces=namespaces, **p)
            return {
                "server": self.name,
                "query": query,
                "hits": [h.model_dump(mode="json") for h in result.hits],
                "triples": [t.model_dump(mode="json") for t in result.triples],
                "context": result.context_text(),
                "tokens_used": result.tokens_used,
            }

        found: dict[str, Any] = self._audited("search", {"query": query, **p}, run)
        return found

    def update(self, operation: str, data: Mapping[str, Any]) -> None:
        if operation not in ENGINE_OPERATIONS:
            raise UnknownOperation(
                f"server {self.name!r} has no operation {operation!r}; use {list(ENGINE_OPERATIONS)}"
            )
        if self.read_only:
            raise PermissionDenied(f"server {self.name!r} is read-only")
        d = dict(data)
        ns = d.pop("namespace", None) or self.write_namespace
        if self.write_namespace is not None and ns != self.write_namespace:
            raise PermissionDenied(f"server {self.name!r} writes only namespace {self.write_namespace!r}")
        if operation == "remember":
            content = d.pop("content", None)
            agent = d.pop("agent_id", None)
            if not content or not agent:
                raise SchemaError("remember needs content and agent_id")
            known = {"session_id", "task_id", "metadata", "mentions"}
            if set(d) - known:
                raise SchemaError(f"remember: unknown fields {sorted(set(d) - known)}")
            self._audited(
                "remember", {"agent_id": agent}, lambda: self.engine.remember(content, agent, namespace=ns, **d)
            )
        elif operation == "upsert_entities":
            entities, relations = _api_graph(d, ns or self.engine.settings.default_namespace)
            self._audited(
                "upsert_entities",
                {"entities": len(entities), "relations": len(relations)},
                lambda: self.engine.upsert(entities, relations),
            )
        else:
            ids = list(d.get("ids") or [])
            if not ids:
                raise SchemaError("delete_entities needs ids")
            found = self.engine.get_entities(ids, namespaces=[ns] if ns else None)
            if ns is not None and len(found) != len(set(ids)):
                raise PermissionDenied(f"some ids are not in namespace {ns!r}")
            self._audited("delete_entities", {"ids": ids}, lambda: self.engine.delete(ids))

    def subscribe(self, event_type: str, handler: Callable[[Event], Any], poll_seconds: float = 0.2) -> Subscription:
        if event_type not in ENGINE_EVENTS:
            raise UnknownEventType(f"server {self.name!r} delivers {list(ENGINE_EVENTS)}, not {event_type!r}")
        engine = self.engine
        sub = Subscription(self.name, event_type)
        seq = engine.store.last_seq()
        kind, _, what = event_type.partition(".")
        op = "delete" if what == "deleted" else "upsert"

        def run() -> None:
            nonlocal seq
            sub.ready.set()
            while not sub._stop.wait(poll_seconds):
                try:
                    changes = engine.store.changes_since(seq, 10_000)
                except Exception as exc:  # the store may be busy: try again
                    sub.errors.append(str(exc))
                    continue
                if not changes:
                    continue
                seq = changes[-1].seq
                picked = [
                    c
                    for c in changes
                    if c.op == op
                    and c.kind == ("entity" if kind in ("entity", "episode") else "relation")
                    and (self.namespaces is None or c.namespace in self.namespaces)
                ]
                if kind in ("entity", "episode") and picked:
                    types = {e.id: e.type for e in engine.store.get_entities([c.id for c in picked])}
                    picked = [
                        c
                        for c in picked
                        if (types.get(c.id) == "Episode") == (kind == "episode")
                        or (op == "delete" and kind == "entity")
                    ]
                for c in picked:
                    sub._deliver(
                        handler, Event(type=event_type, server=self.name, id=c.id, namespace=c.namespace, seq=c.seq)
                    )

        thread = threading.Thread(target=run, name=f"aesop-subscribe-{self.name}", daemon=True)
        thread.start()
        return sub

    def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        out: dict[str, Any] = {"server": self.name, "kind": ENGINE, "ok": False, "error": None}
        try:
            stats = self.engine.stats()
            out.update(ok=True, entities=stats.entities, relations=stats.relations, backend=stats.backend)
        except AesopError as exc:
            out["error"] = str(exc)
        out["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return out

    def close(self) -> None:
        if self._guard is not None:
            self._guard.close()
            self._guard = None
        if self._owned and self._engine is not None:
            self._engine.close()
            self._engine = None


def _api_graph(data: Mapping[str, Any], namespace: str) -> tuple[list[Any], list[Any]]:
    from aesoperator.graph_schema.ids import entity_id
    from aesoperator.graph_schema.models import Entity, Relation

    entities = []
    for raw in data.get("entities") or []:
        if not isinstance(raw, Mapping) or not raw.get("type") or not raw.get("name"):
            raise SchemaError("each entity needs type and name (and text)")
        eid = raw.get("id") or entity_id("api", str(raw["type"]).lower(), str(raw["name"]))
        entities.append(
            Entity(
                id=eid,
                type=raw["type"],
                name=raw["name"],
                text=str(raw.get("text") or raw["name"]),
                properties=dict(raw.get("properties") or {}),
                source="api",
                namespace=namespace,
            )
        )
    relations = []
    for raw in data.get("relations") or []:
        relations.append(Relation(type=raw["type"], src=raw["src"], dst=raw["dst"], source="api", namespace=namespace))
    if not entities and not relations:
        raise SchemaError("upsert_entities needs entities (and optionally relations)")
    return entities, relations


# -- the registry -------------------------------------------------------------------------------------
Registered = MCPServer | MCPClient | EngineServer
_registry: dict[str, Registered] = {}
_registry_lock = threading.Lock()


def register_server(
    server: MCPServer | MCPClient | EngineServer | None = None,
    *,
    name: str | None = None,
    engine: ContextEngine | None = None,
    replace: bool = True,
    **fields: Any,
) -> str:
    """Make a server reachable by name: an `MCPServer`, an `MCPClient`, the engine
    (`register_server(name="kb", engine=engine)`), or `MCPServer` fields
    (`register_server(name="docs", url=..., credentials=...)`). Returns the name."""
    entry: Registered
    if server is None:
        if engine is not None:
            entry = EngineServer(engine, name or ENGINE, **fields)
        else:
            if name is None:
                raise ConfigError("register_server needs a server, or name= and its fields")
            entry = MCPServer(name=name, **fields)
    else:
        if fields or engine is not None:
            raise ConfigError("give either a server object or fields, not both")
        entry = server
        if name is not None and name != server.name:
            raise ConfigError(f"the server is named {server.name!r}, not {name!r}")
    with _registry_lock:
        if entry.name in _registry and not replace:
            raise ConfigError(f"a server named {entry.name!r} is already registered")
        old = _registry.get(entry.name)
        _registry[entry.name] = entry
    if old is not None and old is not entry:
        with suppress(Exception):
            old.close()
    return entry.name


def unregister_server(name: str) -> None:
    with _registry_lock:
        entry = _registry.pop(name, None)
    if entry is None:
        raise UnknownServer(f"no server named {name!r} is registered")
    with suppress(Exception):
        entry.close()


def registered_servers() -> list[str]:
    """Names registered in this process, then those declared in aesop.toml."""
    names = set(_registry) | set(_declared())
    return sorted(names | {ENGINE})


def _declared() -> dict[str, dict[str, Any]]:
    from aesoperator.config import _toml_path

    path = _toml_path()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"could not read {path}: {exc}") from None
    servers = data.get("servers", {})
    if not isinstance(servers, dict):
        raise ConfigError(f"{path}: 'servers' must be a table of [servers.NAME] tables")
    return servers


def get_server(name: str) -> Registered:
    """The server registered (or declared in aesop.toml under [servers.NAME]) as `name`."""
    with _registry_lock:
        entry = _registry.get(name)
    if entry is not None:
        return entry
    declared = _declared()
    if name in declared:
        table = declared[name]
        if not isinstance(table, dict):
            raise ConfigError(f"aesop.toml: [servers.{name}] must be a table")
        try:
            made: Registered = (
                EngineServer(name=name, **{k: v for k, v in table.items() if k != "kind"})
                if table.get("kind") == ENGINE
                else MCPServer(name=name, **table)
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"aesop.toml: [servers.{name}]: {exc}") from None
        with _registry_lock:
            return _registry.setdefault(name, made)
    if name == ENGINE:
        with _registry_lock:
            return _registry.setdefault(ENGINE, EngineServer())
    raise UnknownServer(
        f"no server named {name!r}; register it with aesop.register_server(...) or declare [servers.{name}] "
        f"in aesop.toml (known: {registered_servers()})"
    )


def _resolve(server: str | Registered) -> Registered:
    if isinstance(server, str):
        return get_server(server)
    return server


# -- the brief's verbs ----------------------------------------------------------------------------------
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
    such as "log", "read", "issues"; another MCP server: one of its read-only tools)."""
    if not isinstance(query, str) or not query.strip():
        raise SchemaError("query must be a non-empty string")
    entry = _resolve(server)
    params = dict(params or {})
    if isinstance(entry, EngineServer):
        return entry.query(query, params)
    if isinstance(entry, MCPClient):
        return entry.query(query, params)
    if entry.kind in BUILTIN_KINDS:
        tool, arguments = _connector_query(entry, query, params)
        return {"server": entry.name, "tool": tool, **_result_dict(entry.link().call_tool(tool, arguments))}
    link = entry.link()
    tools = {t.name: t for t in link.list_tools()}
    tool, arguments = _remote_query(entry.name, tools, query, params)
    _wrapped_tool_allowed(entry, tools[tool], write=False)
    return {"server": entry.name, "tool": tool, **_result_dict(link.call_tool(tool, arguments))}


def mcp_update(server: str | Registered, operation: str, data: dict[str, Any]) -> None:
    """A write the server allows: on the engine `remember`, `upsert_entities`, `delete_entities`;
    on a postgres connector that is not read-only `insert_rows`; on another server one of its
    tools, when the server is not read-only. Read-only servers refuse with PermissionDenied."""
    entry = _resolve(server)
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
    resource.updated for `uris` (default: every resource it lists)."""
    if not callable(handler):
        raise SchemaError("handler must be callable")
    entry = _resolve(server)
    if isinstance(entry, EngineServer):
        return entry.subscribe(event_type, handler)
    if isinstance(entry, MCPClient):
        return entry.subscribe(event_type, handler, uris)
    return _subscribe_link(entry.name, entry.link(), event_type, handler, uris)


def health(server: str | Registered) -> dict[str, Any]:
    """A named server's health."""
    return _resolve(server).health()


# -- tasks --------------------------------------------------------------------------------------------
class ContextItem(BaseModel):
    """One piece of assembled context, with where it came from and why it was chosen."""

    id: str
    type: str
    name: str
    text: str
    score: float = 0.0
    reasons: list[str] = Field(default_factory=list)
    source: str
    namespace: str
    uri: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class SourceSync(BaseModel):
    server: str
    status: Literal["ok", "failed", "skipped"]
    records_changed: int = 0
    records_seen: int = 0
    seconds: float = 0.0
    error: str | None = None


class TaskContext(BaseModel):
    """What an operator is given."""

    task: str
    task_id: str
    inputs: dict[str, Any]
    items: list[ContextItem]
    facts: list[str] = Field(default_factory=list)
    live: dict[str, Any] = Field(default_factory=dict, description="Read live from the servers (e.g. table schemas).")
    text: str = ""


class TaskResult(BaseModel):
    """The outcome of `execute_task`: the assembled context with provenance, what the operator
    returned (if one ran), and what was synced and remembered."""

    task: str
    task_id: str
    status: Literal["completed", "context_only", "failed"]
    operator_ran: bool
    operator: str | None = None
    output: Any = None
    message: str
    error: str | None = None
    context: list[ContextItem]
    facts: list[str] = Field(default_factory=list)
    live: dict[str, Any] = Field(default_factory=dict)
    context_text: str
    tokens_used: int = 0
    sources: list[SourceSync] = Field(default_factory=list)
    episodes: list[str] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime


class Task(BaseModel):
    """A unit of work with the servers whose context it needs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    mcp_context: list[MCPServer | str] = Field(default_factory=list)
    inputs: dict[str, Any] = Field(default_factory=dict)
    operator: Callable[[TaskContext], Any] | None = Field(default=None, exclude=True)
    namespace: str = Field(default="tasks", description="Where the task's episodes are remembered.")
    agent_id: str = "aesoperator"
    token_budget: int | None = None
    k: int = Field(default=12, ge=1, le=200)
    sync: bool = True


def _servers_of(task: Task) -> list[Registered]:
    out: list[Registered] = []
    for item in task.mcp_context:
        entry = _resolve(item)
        out.append(entry)
    return out


def _task_query(task: Task) -> str:
    parts = [task.name.replace("_", " ")]
    for key, value in task.inputs.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        parts.append(f"{key.replace('_', ' ')}: {text}")
    return "; ".join(parts)[:2000]


def _item(hit: Any, server_names: Mapping[str, str], extra_reason: str | None = None) -> ContextItem:
    reasons = list(hit.reasons)
    if extra_reason:
        reasons.append(extra_reason)
    provenance = hit.provenance
    return ContextItem(
        id=hit.id,
        type=hit.type,
        name=hit.name,
        text=hit.text,
        score=float(getattr(hit, "score", 0.0)),
        reasons=reasons,
        source=hit.source,
        namespace=hit.namespace,
        uri=provenance.uri if provenance is not None else None,
        properties={"server": server_names.get(hit.namespace), **dict(hit.properties)},
    )


def _entity_item(entity: Any, reason: str, server_names: Mapping[str, str], score: float = 0.0) -> ContextItem:
    return ContextItem(
        id=entity.id,
        type=entity.type,
        name=entity.name,
        text=entity.text[:2000],
        score=score,
        reasons=[reason],
        source=entity.source,
        namespace=entity.namespace,
        uri=entity.provenance.uri if entity.provenance is not None else None,
        properties={"server": server_names.get(entity.namespace), **dict(entity.properties)},
    )


def _pull_number(inputs: Mapping[str, Any]) -> int | None:
    for key in ("pull_request", "pr", "pr_number", "pull", "number"):
        value = inputs.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            match = re.search(r"(\d+)\s*$", value)
            if match:
                return int(match.group(1))
    return None


def _review_context(
    engine: ContextEngine, task: Task, servers: Sequence[MCPServer], names: Mapping[str, str]
) -> tuple[list[ContextItem], list[str]]:
    """For a pull request: the PR, its files and their history, related issues and people."""
    from aesoperator.graph_schema.ids import entity_id

    number = _pull_number(task.inputs)
    github = [s for s in servers if s.kind == "github"]
    if number is None or not github:
        return [], []
    items: list[ContextItem] = []
    facts: list[str] = []
    gh = github[0]
    pr_id = entity_id(gh.name, "pull", f"{gh.repo}#{number}")
    found = engine.get_entities([pr_id], namespaces=[gh.source_namespace])
    if not found:
        return [], [f"pull request #{number} is not in the graph of {gh.name!r} (synced?)"]
    pr = found[0]
    items.append(_entity_item(pr, f"the pull request under review (#{number})", names, 1.0))
    around = engine.neighbors([pr_id], depth=1, namespaces=[gh.source_namespace], limit=500)
    paths: list[str] = []
    for rel in around.relations:
        other_id = rel.dst if rel.src == pr_id else rel.src
        other = around.entities.get(other_id)
        if other is None or other_id == pr_id:
            continue
        if rel.type == "MODIFIES" and other.type == "File":
            paths.append(other.name)
            items.append(_entity_item(other, f"file changed by #{number} ({rel.properties.get('status')})", names, 0.9))
        elif rel.type == "REFERENCES":
            items.append(_entity_item(other, f"{other.type} referenced by #{number}", names, 0.85))
        elif rel.type in ("AUTHORED", "REVIEWED", "ASSIGNED_TO", "COMMENTED_ON") and other.type == "Person":
            role = {"AUTHORED": "author", "REVIEWED": "reviewer", "ASSIGNED_TO": "assignee or requested reviewer"}.get(
                rel.type, "commenter"
            )
            items.append(_entity_item(other, f"{role} of #{number}", names, 0.8))
        facts.append(f"{engine_name(around, rel.src)} {rel.type} {engine_name(around, rel.dst)}")
    for git in [s for s in servers if s.kind == "git"]:
        files = engine.store.name_lookup(paths, namespaces=[git.source_namespace], types=["File"]) if paths else {}
        file_ids = [i for ids in files.values() for i in ids]
        if not file_ids:
            continue
        changes = engine.neighbors(
            file_ids, depth=1, relation_types=["MODIFIES"], namespaces=[git.source_namespace], limit=400
        )
        commits = sorted(
            (e for e in changes.entities.values() if e.type == "Commit"),
            key=lambda e: str(e.properties.get("authored_at") or e.valid_from or ""),
            reverse=True,
        )[:15]
        touched: dict[str, list[str]] = {}
        for rel in changes.relations:
            target = changes.entities.get(rel.dst)
            if rel.type == "MODIFIES" and target is not None and rel.dst in file_ids:
                touched.setdefault(rel.src, []).append(target.name)
                facts.append(f"{engine_name(changes, rel.src)} MODIFIES {target.name}")
        for commit in commits:
            what = ", ".join(sorted(touched.get(commit.id, []))) or "a changed file"
            items.append(_entity_item(commit, f"history: commit that changed {what}", names, 0.7))
        if commits:
            authors = engine.neighbors(
                [c.id for c in commits],
                depth=1,
                relation_types=["AUTHORED"],
                namespaces=[git.source_namespace],
                limit=200,
            )
            for person in (e for e in authors.entities.values() if e.type == "Person"):
                items.append(_entity_item(person, "history: author of commits that changed these files", names, 0.6))
            for rel in authors.relations:
                if rel.type == "AUTHORED":
                    facts.append(f"{engine_name(authors, rel.src)} AUTHORED {engine_name(authors, rel.dst)}")
    return items, facts


def engine_name(subgraph: Any, eid: str) -> str:
    entity = subgraph.entities.get(eid)
    return entity.name if entity is not None else eid


def _analysis_live(servers: Sequence[MCPServer]) -> dict[str, Any]:
    """For a database: the allowed tables' schema, read live through the connector's rules."""
    live: dict[str, Any] = {}
    for server in servers:
        if server.kind != "postgres":
            continue
        described = mcp_query(server, "describe_tables")
        live[server.name] = {
            "database": described.get("database"),
            "tables": described.get("tables"),
            "row_limit": described.get("row_limit"),
        }
    return live


def execute_task(task: Task, engine: ContextEngine | None = None) -> TaskResult:
    """Run a task: sync its sources (incrementally), assemble context for its name and inputs with
    the hybrid retriever (and task-specific context: a pull request's files, their history, related
    issues and people; a database's allowed tables and relevant rows), remember the task and its
    outcome as episodes, and call the operator if there is one.

    Without an operator the result holds the assembled context with provenance and says that no
    operator ran: nothing here reasons about the task."""
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
    query = _task_query(task)
    items: list[ContextItem] = []
    facts: list[str] = []
    tokens = 0
    if namespaces is None or namespaces:
        result = engine.search(query, k=task.k, hops=1, namespaces=namespaces, token_budget=task.token_budget)
        items = [_item(h, names, "matched the task") for h in result.hits]
        facts = [f"{t.src_name} {t.type} {t.dst_name}" for t in result.triples]
        tokens = result.tokens_used
    review_items, review_facts = _review_context(engine, task, sources, names)
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
        live = _analysis_live(sources)
    except AesopError as exc:
        live = {"error": str(exc)}
    items.sort(key=lambda i: -i.score)
    context_text = _render(items, facts, live)
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


def _render(items: Sequence[ContextItem], facts: Sequence[str], live: Mapping[str, Any]) -> str:
    lines: list[str] = []
    for n, item in enumerate(items, 1):
        where = item.uri or item.source
        lines.append(f"[{n}] {item.type} {item.name} ({where}) — {'; '.join(item.reasons)}")
        lines.append(item.text[:1500])
        lines.append("")
    for server, info in live.items():
        if not isinstance(info, Mapping):
            continue
        lines.append(f"Tables of {server} (live, allowed tables only):")
        for table in info.get("tables") or []:
            cols = ", ".join(f"{c['name']} {c['data_type']}" for c in table.get("columns") or [])
            lines.append(f"- {table['name']}({cols})")
        lines.append("")
    if facts:
        lines.append("Facts:")
        lines.extend(f"- {f}" for f in facts[:200])
    return "\n".join(lines).strip()


def iter_episodes(engine: ContextEngine, task_id: str) -> Iterator[Any]:
    """The episodes a task left in memory (started, finished), oldest first."""
    from aesoperator.engine.memory import episode_from_entity

    found = []
    for batch in engine.store.iter_entities(batch_size=1000):
        for entity in batch:
            if entity.type == "Episode" and entity.properties.get("task_id") == task_id:
                found.append(episode_from_entity(entity))
    yield from sorted(found, key=lambda e: to_iso(e.created_at) or "")


__all__ = [
    "ContextItem",
    "EngineServer",
    "Event",
    "MCPClient",
    "MCPServer",
    "SourceSync",
    "Subscription",
    "Task",
    "TaskContext",
    "TaskResult",
    "UnknownEventType",
    "UnknownOperation",
    "UnknownServer",
    "execute_task",
    "get_server",
    "health",
    "mcp_query",
    "mcp_subscribe",
    "mcp_update",
    "register_server",
    "registered_servers",
    "unregister_server",
]
