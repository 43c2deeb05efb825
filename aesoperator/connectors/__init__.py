"""Built-in connectors: data sources served as MCP servers with their access rules enforced at
the source (postgres with allowed tables, a git repository, folders below allowed roots, a GitHub
repository limited to its data sources).

`build(kind, name, options, policy)` makes the server; `python -m aesoperator.connectors KIND ...`
runs one over stdio or streamable HTTP (that is how the engine's ingest starts one).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from aesoperator.connectors import filesystem, git, github, postgres, postgres_server
from aesoperator.connectors.base import ConnectorPolicy, ConnectorServer
from aesoperator.errors import ConfigError

ConnectorKind = Literal["postgres", "git", "filesystem", "github"]
KINDS: tuple[str, ...] = ("postgres", "git", "filesystem", "github")


def build(kind: str, name: str, options: Mapping[str, Any], policy: ConnectorPolicy | None = None) -> ConnectorServer:
    """The connector server of `kind` for `options` (see each module for the keys)."""
    policy = policy or ConnectorPolicy(name)
    if kind == "postgres":
        pg = postgres.PostgresSource(
            dsn=str(options.get("connection_string") or ""),
            allowed_tables=list(options.get("allowed_tables") or []),
            schema=str(options.get("schema") or "public"),
            read_only=bool(options.get("read_only", True)),
            row_limit=int(options.get("row_limit") or postgres.DEFAULT_ROW_LIMIT),
        )
        return postgres_server.build_server(pg, policy)
    if kind == "git":
        if not options.get("repo"):
            raise ConfigError(f"connector {name!r}: the git connector needs repo (a local repository path)")
        return git.build_server(git.GitSource(options["repo"]), policy)
    if kind == "filesystem":
        limits: dict[str, Any] = {k: options[k] for k in ("max_depth", "read_timeout") if options.get(k) is not None}
        return filesystem.build_server(filesystem.FilesystemSource(list(options.get("roots") or []), **limits), policy)
    if kind == "github":
        recorded = options.get("recorded")
        transport: Any
        if options.get("transport") is not None:
            transport = options["transport"]
        elif recorded and (Path(recorded) / "index.json").exists():
            transport = github.RecordedTransport(recorded)
        elif recorded:
            transport = github.McpRecordingTransport(recorded, str(options.get("recorded_set") or "v1"))
        else:
            transport = github.HttpTransport(str(options.get("api_url") or github.API_URL))
        token = options.get("token")
        if token is None:
            token = github.read_token(str(options.get("token_env") or "GITHUB_TOKEN"), options.get("secrets_file"))
        source = github.GitHubSource(
            repo=str(options.get("repo") or ""),
            data_sources=list(options.get("data_sources") or github.DATA_SOURCES),
            token=token,
            transport=transport,
        )
        return github.build_server(source, policy)
    raise ConfigError(f"unknown connector kind {kind!r}; use one of {list(KINDS)}")


__all__ = ["KINDS", "ConnectorKind", "ConnectorPolicy", "ConnectorServer", "build"]
