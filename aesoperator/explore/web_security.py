"""How the explorer keeps a browser page safe: response headers, who is calling, which requests
may change anything.

- Every response carries a strict Content-Security-Policy (`default-src 'self'`, no inline script
  or style, no framing, no plugins, forms post only here), `X-Content-Type-Options: nosniff`,
  `Referrer-Policy: no-referrer` and `Cache-Control: no-store` on the API.
- The API is called with `Authorization: Bearer <token>`, the same tokens (`aesop tokens add`,
  JWTs) and scopes as the MCP server. The page keeps the token in `sessionStorage` and sends it
  in that header from `fetch`: no cookie is set, so a request another site makes the browser
  send carries no credentials at all, and cross-site request forgery has nothing to ride on.
- Requests that change state are POSTs with a JSON body (a plain HTML form cannot send one
  without a CORS preflight, which is never granted), from the same origin (`Origin` and
  `Sec-Fetch-Site` are checked when the browser sends them). That also protects `--no-auth`
  mode, where there is no token.
- The `Host` header must name the address the server listens on (DNS rebinding).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from mcp.server.auth.provider import TokenVerifier
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aesoperator.errors import AuthError, PermissionDenied
from aesoperator.security.guard import CallGuard
from aesoperator.security.principal import Principal
from aesoperator.security.request_principal import principal_from_token
from aesoperator.security.verifiers import token_leeway

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
MAX_TOKEN_CHARS = 8192
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response (replacing any the app set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers[name.decode()] = value.decode()
            await send(message)

        await self.app(scope, receive, send_with_headers)


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """`Host` header values a request may carry: the bound address, and the loopback names when
    it is a loopback address (with and without the port)."""
    names = {host if ":" not in host else f"[{host}]"}
    if host in ("127.0.0.1", "localhost", "::1"):
        names.update(LOOPBACK_NAMES)
    return frozenset({*names, *(f"{n}:{port}" for n in names)})


class RequestRefused(Exception):
    """A request answered with an HTTP error before it reaches an endpoint."""

    def __init__(self, status: int, error: str, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.challenge = challenge


def check_host(headers: Headers, hosts: frozenset[str] | None) -> None:
    if hosts is not None and headers.get("host", "") not in hosts:
        raise RequestRefused(421, "misdirected_request", "the Host header does not name this server")


def check_state_change(method: str, headers: Headers, own_origin: str | None) -> None:
    """A request that changes state must be a JSON POST from this origin (see the module docstring)."""
    if method != "POST":
        raise RequestRefused(405, "method_not_allowed", "this endpoint changes state: POST a JSON body")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise RequestRefused(415, "unsupported_media_type", "send the request body as application/json")
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise RequestRefused(403, "cross_site_request", "requests from other sites may not change anything")
    origin = headers.get("origin")
    if origin is not None and own_origin is not None and origin.rstrip("/") not in _origins(own_origin, headers):
        raise RequestRefused(403, "cross_site_request", f"origin {origin[:100]!r} may not change anything here")


def _origins(own_origin: str, headers: Headers) -> set[str]:
    """This server's origin, and the one the request's Host header names (localhost vs 127.0.0.1)."""
    scheme = urlsplit(own_origin).scheme or "http"
    host = headers.get("host")
    return {own_origin.rstrip("/"), *([f"{scheme}://{host}"] if host else [])}


@dataclass
class CallerAuth:
    """Who a request comes from: the principal of its bearer token (checked by `verifier`, the
    MCP server's), or `fixed` when the explorer runs without authentication (loopback only)."""

    verifier: TokenVerifier | None
    guard: CallGuard | None = None
    fixed: Principal | None = None

    async def principal(self, headers: Headers) -> Principal:
        if self.fixed is not None:
            return self.fixed
        if self.verifier is None:
            raise AuthError("the explorer has neither a token verifier nor a local principal")
        values = headers.getlist("authorization")
        if not values:
            raise RequestRefused(401, "unauthorized", "sign in with a bearer token", 'Bearer realm="aesop-explore"')
        scheme, _, token = values[0].strip().partition(" ")
        token = token.strip()
        if len(values) > 1 or scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
            self._failed(None, "malformed_token")
            raise RequestRefused(401, "invalid_token", "send one header: Authorization: Bearer <token>")
        try:
            access = await self.verifier.verify_token(token)
        except Exception:  # a verifier bug must not become a 500 that echoes anything
            access = None
        expires = access.expires_at if access is not None else None
        if expires is not None and expires + token_leeway(self.verifier) < time.time():
            access = None
        if access is None:
            self._failed(token, "invalid_token")
            raise RequestRefused(
                401, "invalid_token", "the token is invalid, expired or revoked", 'Bearer error="invalid_token"'
            )
        return principal_from_token(access)

    def _failed(self, token: str | None, reason: str) -> None:
        """Counted for the audit log in aggregate, the token only as a keyed fingerprint."""
        if self.guard is not None:
            self.guard.authentication_failed(token, reason)


def readable_namespaces(principal: Principal, requested: Sequence[str] | None = None) -> list[str] | None:
    """The namespaces a read may touch (None: all); a principal without any read scope is refused."""
    return principal.read_namespaces(list(requested) if requested else None)


def require_any_read(principal: Principal) -> None:
    if not principal.read and not principal.write:
        raise PermissionDenied(f"principal {principal.id!r} has no read scope; ask for read:<namespace>")


def header_pairs(values: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in values]
