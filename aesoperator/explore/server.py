"""Building the explorer for a bound socket: the caller check (the MCP server's token verifier,
or a local principal without authentication), the Host names it answers to, and its origin."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp.server.auth.provider import TokenVerifier
from starlette.types import ASGIApp

from aesoperator.context import ContextEngine
from aesoperator.errors import ConfigError
from aesoperator.explore.app import PREFIX, ExplorerApp
from aesoperator.explore.mount import with_explorer
from aesoperator.explore.web_security import CallerAuth, allowed_hosts
from aesoperator.security.guard import CallGuard
from aesoperator.security.http.listener import is_loopback_host, resource_url_for
from aesoperator.security.principal import Principal, validate_scopes
from aesoperator.security.verifiers import build_verifier, jwt_options


def local_principal(scopes: Sequence[str] | None) -> Principal:
    """The caller of an explorer without authentication: full access unless scopes narrow it."""
    if not scopes:
        return Principal.full_access("local", "static")
    return Principal.from_scopes("local", validate_scopes(list(scopes)), "static")


def explorer_verifier(data_dir: Path, engine: ContextEngine, url: str, **jwt: Any) -> TokenVerifier:
    """Static tokens of the data dir and, when configured, JWTs (settings, overridden by `jwt`)."""
    return build_verifier(data_dir, resource_url=url, **jwt_options(engine.settings, **jwt))


def build_explorer(
    engine: ContextEngine,
    sock: socket.socket,
    *,
    guard: CallGuard | None,
    verifier: TokenVerifier | None = None,
    no_auth_scopes: Sequence[str] | None = None,
    no_auth: bool = False,
    host: str = "127.0.0.1",
) -> ExplorerApp:
    """The explorer for a server listening on `sock` (bound to `host`): with `no_auth`, every
    caller is the local principal (loopback only); otherwise callers need a token `verifier` accepts."""
    if no_auth and not is_loopback_host(host):
        raise ConfigError("the explorer without authentication serves loopback addresses only: bind 127.0.0.1")
    if not no_auth and verifier is None:
        raise ConfigError("the explorer needs a token verifier, or no_auth on loopback")
    port = int(sock.getsockname()[1])
    origin = resource_url_for(sock, "", host=host).rstrip("/")
    auth = CallerAuth(None, guard, local_principal(no_auth_scopes)) if no_auth else CallerAuth(verifier, guard)
    hosts = allowed_hosts(host, port) if is_loopback_host(host) else None
    return ExplorerApp(engine, auth, guard, allowed_hosts=hosts, origin=origin)


def explorer_url(sock: socket.socket, host: str | None = None) -> str:
    return resource_url_for(sock, PREFIX + "/", host=host)


def mount_explorer(
    app: ASGIApp,
    engine: ContextEngine,
    sock: socket.socket,
    *,
    guard: CallGuard | None,
    verifier: TokenVerifier | None,
    no_auth: bool,
    no_auth_scopes: Sequence[str] | None,
    host: str,
) -> ASGIApp:
    """`app` (the MCP server's HTTP app) with the explorer at `/explore/`, checking the same tokens."""
    explorer = build_explorer(
        engine, sock, guard=guard, verifier=verifier, no_auth=no_auth, no_auth_scopes=no_auth_scopes, host=host
    )
    return with_explorer(app, explorer)
