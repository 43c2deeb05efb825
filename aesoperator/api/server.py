"""`MCPServer`: one MCP server of the brief (a built-in connector, a third-party server, or the engine).

Secrets (connection strings with passwords, tokens, client secrets) are held in memory only: they
are masked in reprs and dumps, passed to connector processes through their environment (never
their arguments), and never written to the graph or to logs.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from aesoperator.api.held_secrets import HeldSecretsDefinition
from aesoperator.api.links import ClientLink, Link, LocalLink
from aesoperator.config import load_settings, resolve_env_refs
from aesoperator.connectors import base, build
from aesoperator.connectors.base import ConnectorPolicy, ConnectorServer, RunningHTTP
from aesoperator.connectors.postgres import safe_dsn
from aesoperator.errors import AesopError, ConfigError
from aesoperator.ingest.sources import SourceDefinition

ServerKind = Literal["engine", "postgres", "git", "filesystem", "github", "mcp"]
BUILTIN_KINDS = ("postgres", "git", "filesystem", "github")
ENGINE = "engine"
DEFAULT_RATE_LIMIT = "50/s:100"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_GITHUB_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


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
        return resolve_env_refs(self.connection_string or "", f"server {self.name!r}")

    def _data_dir(self) -> Path:
        if self.data_dir is not None:
            return Path(self.data_dir)
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
        if self.kind not in BUILTIN_KINDS:
            raise ConfigError(f"server {self.name!r} ({self.kind}) is not a built-in connector")
        with self._lock:
            if self._server is None:
                policy = ConnectorPolicy.build(self.name, data_dir=self._data_dir(), rate_limit=self.rate_limit)
                self._server = build(str(self.kind), self.name, self._options(), policy)
            return self._server

    def link(self) -> Link:
        """A live connection to this server (in-process for built-in connectors)."""
        if self.kind == ENGINE:
            raise ConfigError("the engine is reached directly, not through a link")
        with self._lock:
            link = self._link
        if link is None:
            link = LocalLink(self.connector()) if self.kind in BUILTIN_KINDS else ClientLink(self.source_definition())
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
            definition = HeldSecretsDefinition(
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
        return HeldSecretsDefinition(
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
