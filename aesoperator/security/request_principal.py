"""Who the request being handled comes from.

Over authenticated HTTP the caller is the principal of the request's verified access token; over
stdio, where there is no token, a configured principal stands in. An `AccessToken` only ever
holds a fingerprint of the bearer token (`token_fingerprint`), never the token itself.

The token of the MCP message being handled is kept in a context variable that a server
middleware (`bind_message_token`) sets per message from the HTTP request the message came with:
the SDK's own context variable is set per HTTP request, which on a long-lived (pre-2026) session
is the request that opened the session, not the current one.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from aesoperator.errors import AuthError
from aesoperator.security.principal import Principal, validate_scopes


class AesopAccessToken(AccessToken):
    """An `AccessToken` that also says which principal it stands for.

    `token` holds a fingerprint (`sha256:<16 hex>`), never the bearer token itself."""

    principal_id: str
    principal_kind: Literal["static", "jwt"]


def token_fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, safe to keep in memory structures and logs."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def principal_from_token(token: AccessToken) -> Principal:
    """The principal an access token stands for, with the rights its scopes grant."""
    if isinstance(token, AesopAccessToken):
        return Principal.from_scopes(token.principal_id, token.scopes, token.principal_kind)
    return Principal.from_scopes(token.subject or token.client_id, token.scopes, "jwt")


_message_token: contextvars.ContextVar[AccessToken | None] = contextvars.ContextVar("aesop_message_token", default=None)


def current_access_token() -> AccessToken | None:
    """The access token of the request being handled, or None (stdio, or no authentication)."""
    return _message_token.get() or get_access_token()


def bind_access_token(token: AccessToken | None) -> contextvars.Token[AccessToken | None]:
    """Make `token` the current request's access token (undo with `unbind_access_token`)."""
    return _message_token.set(token)


def unbind_access_token(reset: contextvars.Token[AccessToken | None]) -> None:
    _message_token.reset(reset)


async def bind_message_token(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Server middleware: make the token of the HTTP request this message came with current
    while the message is handled (see the module docstring)."""
    request = getattr(ctx, "request", None)
    user = getattr(request, "scope", {}).get("user") if request is not None else None
    if not isinstance(user, AuthenticatedUser):
        return await call_next(ctx)
    reset = _message_token.set(user.access_token)
    try:
        return await call_next(ctx)
    finally:
        _message_token.reset(reset)


def current_principal(fallback: Principal | None = None) -> Principal:
    """The principal of the request being handled.

    Over authenticated HTTP it comes from the request's access token. Without a token (stdio) it
    is `fallback`; with neither, AuthError is raised, so a server that was started without
    authentication by mistake refuses calls instead of granting everything."""
    token = current_access_token()
    if token is not None:
        return principal_from_token(token)
    if fallback is not None:
        return fallback
    raise AuthError("no authenticated principal for this request (HTTP needs a bearer token)")


def stdio_principal(scopes: Sequence[str] | None = None, principal_id: str = "local") -> Principal:
    """The principal of a stdio session: full access unless `scopes` narrows it.

    Over stdio the client is whoever started the process, so full access is the default; give
    scopes (e.g. `["read:default", "tool:search"]`) to run a narrower server."""
    if scopes is None:
        return Principal.full_access(principal_id, "stdio")
    return Principal.from_scopes(principal_id, validate_scopes(scopes), "stdio")


@dataclass(frozen=True)
class PrincipalResolver:
    """`principal_resolver()` for `build_server`: the current request's principal.

    `fallback` is used when the request carries no token (stdio); leave it None for HTTP."""

    fallback: Principal | None = None

    def __call__(self) -> Principal:
        return current_principal(self.fallback)


def http_principal_resolver() -> PrincipalResolver:
    """Resolver for HTTP: every call must come with a verified token."""
    return PrincipalResolver(None)


def stdio_principal_resolver(scopes: Sequence[str] | None = None, principal_id: str = "local") -> PrincipalResolver:
    """Resolver for stdio: the configured principal (full access unless scopes are given)."""
    return PrincipalResolver(stdio_principal(scopes, principal_id))
