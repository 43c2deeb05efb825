"""Bearer-token authentication in front of an MCP server's streamable HTTP app.

`build_http_app` puts a token verifier (static tokens, JWTs: `security/tokens.py`,
`security/jwt_verifier.py`) in front of an `MCPServer`'s streamable HTTP app: it serves the
Protected Resource Metadata document (RFC 9728) at the well-known URIs the MCP authorization spec
names, answers a missing or bad token with 401 and a `WWW-Authenticate: Bearer ...,
resource_metadata="..."` challenge, and a token that lacks a scope the request needs with 403
`insufficient_scope` naming just that scope. The `Authorization` header is removed before the
request reaches the MCP server, and an `AccessToken` only ever holds a fingerprint of the token,
so a token can neither be logged nor handed on to a data source by anything downstream.

Requests refused here are counted for the audit log, never written one by one: failed
authentications and 403s on a tool the token may not call go to the guard's refusal counter
(`security/refusals.py`), which writes them in aggregate off the request path, so a flood of bad
or forbidden requests can neither fill the disk nor slow other callers.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import TokenVerifier
from mcp.server.mcpserver import MCPServer
from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_NAME_HEADER, decode_header_value
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aesoperator.errors import ConfigError, RateLimited
from aesoperator.security.guard import RATE_LIMITED_ERROR_CODE, CallGuard
from aesoperator.security.http.resource_metadata import ProtectedResourceMetadata
from aesoperator.security.http.responses import jsonrpc_error, send_json
from aesoperator.security.jwt_verifier import is_loopback_url
from aesoperator.security.principal import Principal, validate_scopes
from aesoperator.security.ratelimit import RateLimiter
from aesoperator.security.request_principal import (
    bind_access_token,
    bind_message_token,
    principal_from_token,
    unbind_access_token,
)
from aesoperator.security.verifiers import token_leeway

log = logging.getLogger("aesoperator.security.http.gate")

_B64TOKEN_RE = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token
_MAX_TOKEN_CHARS = 8192
_TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-/]{1,128}$")
HTTP_REQUEST_CALL = "http_request"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# JSON-RPC error codes (implementation-defined server error range) for requests refused before they
# reach the MCP server; the error body lets MCP clients show the reason instead of a bare status.
AUTH_ERROR_CODE = -32001
FORBIDDEN_ERROR_CODE = -32003
_STATUS_TEXT = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden"}


@dataclass
class HTTPChallenge:
    """What a refused request is answered with (status and `WWW-Authenticate` parameters)."""

    status: int
    error: str | None
    description: str
    scope: str | None = None


class AuthenticatedHTTPApp:
    """ASGI app: bearer-token authentication in front of an MCP streamable HTTP app.

    - `GET /.well-known/oauth-protected-resource<path>` (and the root variant) serve the
      Protected Resource Metadata document, without authentication.
    - Requests to the MCP endpoint need `Authorization: Bearer <token>`. Missing → 401 with a
      challenge naming `resource_metadata` (and `scope` when scopes are required); invalid, expired
      or revoked → 401 `invalid_token`; lacking a required scope → 403 `insufficient_scope`.
    - A `tools/call` whose `Mcp-Name` header names a tool the token's scopes do not allow → 403
      `insufficient_scope` with `scope="tool:<name>"` (the one scope that operation needs), so a
      client can step up. The tool itself still checks (the guard), so this is a courtesy, not the
      enforcement.
    - Refused credentials (invalid, expired, revoked, malformed, not Bearer) are reported to
      `guard`, which counts them and writes them to the audit log in aggregate; a request without
      any credentials is the start of discovery and is not counted.
    - Expiry is re-checked here (for third-party verifiers) with the verifier's own `leeway`, so
      the gate and the verifier agree on when a token expires.
    - Everything else (other paths, ASGI lifespan) passes through unchanged; at lifespan shutdown
      the guard's counted refusals are written.

    The verifiers check a JWT's audience themselves. `check_token_resource` additionally refuses
    any token whose `AccessToken.resource` is not `resource_url` (for third-party verifiers that
    report the RFC 8707 resource but do not check it).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        resource_url: str,
        authorization_servers: Sequence[str] = (),
        required_scopes: Sequence[str] = (),
        scopes_supported: Sequence[str] | None = None,
        resource_name: str | None = "aesoperator",
        resource_documentation: str | None = None,
        scope_challenge: bool = True,
        guard: CallGuard | None = None,
        request_limiter: RateLimiter | None = None,
        check_token_resource: bool = False,
    ) -> None:
        parts = urlsplit(resource_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"resource URL {resource_url!r} must be an absolute http(s) URL without query/fragment")
        if parts.scheme == "http" and not is_loopback_url(resource_url):
            raise ConfigError(f"resource URL {resource_url!r}: plain http is only allowed on loopback; use https")
        self.app = app
        self.verifier = verifier
        self.resource_url = resource_url
        self.mcp_path = parts.path.rstrip("/") or "/"
        self.required_scopes = validate_scopes(list(required_scopes)) if required_scopes else []
        self.scope_challenge = scope_challenge
        self.check_token_resource = check_token_resource
        self.guard = guard
        self.request_limiter = request_limiter
        self.leeway = token_leeway(verifier)
        self.resource_metadata = ProtectedResourceMetadata(
            resource_url,
            authorization_servers=authorization_servers,
            scopes_supported=list(scopes_supported) if scopes_supported is not None else list(self.required_scopes),
            resource_name=resource_name,
            resource_documentation=resource_documentation,
        )
        self.metadata_url = self.resource_metadata.url
        self.metadata_paths = self.resource_metadata.paths
        self.metadata = self.resource_metadata.document

    # -- ASGI ------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self.guard is not None:
            await self.app(scope, self._flushing_at_shutdown(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in self.metadata_paths:
            await self.resource_metadata.serve(scope, send)
            return
        if (path.rstrip("/") or "/") != self.mcp_path:
            await self.app(scope, receive, send)
            return
        await self._authenticate(scope, receive, send)

    async def _authenticate(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        authorization = [v for k, v in headers if k == b"authorization"]
        if not authorization:  # no credentials: the usual first step of discovery, not a failed attempt
            await self._refuse(send, HTTPChallenge(401, None, "Authentication required", self._required_scope_param()))
            return
        if len(authorization) > 1:
            self._authentication_failed(None, "several_headers")
            await self._refuse(send, HTTPChallenge(400, "invalid_request", "More than one Authorization header"))
            return
        scheme, _, token = authorization[0].decode("latin-1").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            self._authentication_failed(None, "not_bearer")
            await self._refuse(send, HTTPChallenge(401, None, "Bearer token required", self._required_scope_param()))
            return
        if not token or len(token) > _MAX_TOKEN_CHARS or not _B64TOKEN_RE.match(token):
            self._authentication_failed(token if len(token) <= _MAX_TOKEN_CHARS else None, "malformed_token")
            await self._refuse(send, HTTPChallenge(401, "invalid_token", "The access token is malformed"))
            return
        try:
            access = await self.verifier.verify_token(token)
        except Exception as exc:  # a verifier bug must not turn into a 500 that echoes anything
            log.error("token verifier failed: %s", type(exc).__name__)
            access = None
        reason = "invalid_token"
        # Third-party verifiers may not check expiry: re-check it with the leeway the verifier allows.
        if access is not None and access.expires_at is not None and access.expires_at + self.leeway < time.time():
            access = None
        if (
            self.check_token_resource
            and access is not None
            and not _same_resource(access.resource or "", self.resource_url)
        ):
            log.info("token refused: issued for another resource")
            access, reason = None, "wrong_resource"
        if access is None:
            self._authentication_failed(token, reason)
            del token
            await self._refuse(
                send, HTTPChallenge(401, "invalid_token", "The access token is invalid, expired or revoked")
            )
            return
        del token
        missing = [s for s in self.required_scopes if s not in access.scopes]
        if missing:
            await self._refuse(
                send, HTTPChallenge(403, "insufficient_scope", "Additional scope required", " ".join(missing))
            )
            return
        principal = principal_from_token(access)
        tool = self._called_tool(headers)
        if tool is not None and self.scope_challenge and not principal.can_call(tool):
            self._forbidden(principal, tool)
            await self._refuse(
                send,
                HTTPChallenge(403, "insufficient_scope", f"Calling {tool} needs scope tool:{tool}", f"tool:{tool}"),
            )
            return
        if self.request_limiter is not None:
            try:
                self.request_limiter.acquire(principal.id, scopes=principal.scopes)
            except RateLimited as exc:
                if self.guard is not None:
                    self.guard.refused(principal, HTTP_REQUEST_CALL)
                data = {"error": "rate_limited", "retry_after": round(exc.retry_after, 3)}
                message = f"{exc}: retry after {exc.retry_after:.2f} s"
                await send_json(
                    send,
                    429,
                    jsonrpc_error(RATE_LIMITED_ERROR_CODE, message, data),
                    [(b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode())],
                )
                return
        inner = dict(scope)
        inner["headers"] = [(k, v) for k, v in headers if k != b"authorization"]  # never passed on
        user = AuthenticatedUser(access)
        inner["user"] = user
        inner["auth"] = AuthCredentials(access.scopes)
        reset_sdk = auth_context_var.set(user)
        reset_ours = bind_access_token(access)
        try:
            await self.app(inner, receive, send)
        finally:
            unbind_access_token(reset_ours)
            auth_context_var.reset(reset_sdk)

    def _authentication_failed(self, token: str | None, reason: str) -> None:
        """Count a refused credential for the audit log (in aggregate; the token only as a keyed
        fingerprint). An audit problem must not turn a 401 into a 500."""
        if self.guard is None:
            return
        try:
            self.guard.authentication_failed(token, reason)
        except Exception as exc:
            log.error("could not count a failed authentication: %s", type(exc).__name__)

    def _forbidden(self, principal: Principal, tool: str) -> None:
        """Count a call refused here for its scope (403): written in aggregate with the other
        refusals, so a flood of forbidden calls costs no I/O per request. An audit problem must
        not turn a 403 into a 500."""
        if self.guard is None:
            return
        try:
            self.guard.refused(principal, tool, "deny")
        except Exception as exc:
            log.error("could not count a forbidden call: %s", type(exc).__name__)

    def _flushing_at_shutdown(self, receive: Receive) -> Receive:
        """`receive` for the lifespan scope that writes counted refusals when the server stops."""
        guard = self.guard

        async def receive_and_flush() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.shutdown" and guard is not None:
                await anyio.to_thread.run_sync(guard.flush)
            return message

        return receive_and_flush

    @staticmethod
    def _called_tool(headers: list[tuple[bytes, bytes]]) -> str | None:
        values = {k: v for k, v in headers if k in (MCP_METHOD_HEADER.encode(), MCP_NAME_HEADER.encode())}
        if values.get(MCP_METHOD_HEADER.encode()) != b"tools/call":
            return None
        raw = values.get(MCP_NAME_HEADER.encode())
        name = decode_header_value(raw.decode("latin-1")) if raw is not None else None
        return name if name is not None and _TOOL_NAME_RE.match(name) else None

    def _required_scope_param(self) -> str | None:
        return " ".join(self.required_scopes) or None

    async def _refuse(self, send: Send, challenge: HTTPChallenge) -> None:
        params: list[str] = []
        if challenge.error:
            params.append(f"error={_quote(challenge.error)}")
            params.append(f"error_description={_quote(challenge.description)}")
        if challenge.scope:
            params.append(f"scope={_quote(challenge.scope)}")
        params.append(f"resource_metadata={_quote(self.metadata_url)}")
        data: dict[str, Any] = {"error": challenge.error or "unauthorized", "error_description": challenge.description}
        if challenge.scope:
            data["scope"] = challenge.scope
        data["resource_metadata"] = self.metadata_url
        header = ("Bearer " + ", ".join(params)).encode("latin-1")
        code = AUTH_ERROR_CODE if challenge.status in (400, 401) else FORBIDDEN_ERROR_CODE
        message = f"{_STATUS_TEXT.get(challenge.status, 'Refused')}: {challenge.description}"
        await send_json(send, challenge.status, jsonrpc_error(code, message, data), [(b"www-authenticate", header)])


def _same_resource(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def build_http_app(
    server: MCPServer[Any],
    verifier: TokenVerifier,
    resource_url: str,
    authorization_servers: Sequence[str] = (),
    *,
    required_scopes: Sequence[str] = (),
    scopes_supported: Sequence[str] | None = None,
    resource_name: str | None = "aesoperator",
    scope_challenge: bool = True,
    guard: CallGuard | None = None,
    request_limiter: RateLimiter | None = None,
    check_token_resource: bool = False,
    json_response: bool = True,
    stateless_http: bool = False,
    host: str = "127.0.0.1",
) -> AuthenticatedHTTPApp:
    """The ASGI app that serves `server` over streamable HTTP at `resource_url`'s path, behind
    bearer-token authentication. Run it with `serve_http` (or any ASGI server).

    `resource_url` is this server's canonical URL as clients reach it (e.g.
    `http://127.0.0.1:8765/mcp`); it is the audience JWTs must carry and the `resource` of the
    metadata document. `authorization_servers` are the issuers clients should get tokens from
    (none for static tokens only). `guard`, when given, audits calls refused here (403 on a tool
    the token may not call) and failed authentications (counted, written in aggregate, the token
    only as a keyed fingerprint). `request_limiter` limits HTTP requests per principal (429 with
    Retry-After) in addition to the guard's per-call limit.
    """
    if server.settings.auth is not None:
        raise ConfigError("build_http_app adds authentication itself: build the MCPServer without auth settings")
    if bind_message_token not in server.middleware:
        server.middleware.insert(0, bind_message_token)
    path = urlsplit(resource_url).path.rstrip("/") or "/"
    inner = server.streamable_http_app(
        streamable_http_path=path,
        json_response=json_response,
        stateless_http=stateless_http,
        host=host,
    )
    return AuthenticatedHTTPApp(
        inner,
        verifier=verifier,
        resource_url=resource_url,
        authorization_servers=authorization_servers,
        required_scopes=required_scopes,
        scopes_supported=scopes_supported,
        resource_name=resource_name,
        scope_challenge=scope_challenge,
        guard=guard,
        request_limiter=request_limiter,
        check_token_resource=check_token_resource,
    )
