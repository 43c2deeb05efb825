"""What every built-in connector shares: an MCP server (the SDK's `MCPServer`) that checks who is
calling, admits the call through the call guard (tool scope, rate limit), audits it, turns errors
into one-line tool errors, and tells subscribers when a resource changed.

A connector exposes one data source with its rules enforced here, at the source: whatever client
connects (the engine's ingest, `aesoperator.api.MCPClient`, any MCP client) gets only what the
rules allow.

Who may call:

- over stdio (or in-process), the caller started the server: the configured principal (full
  access to this connector by default);
- over streamable HTTP, a bearer token (static tokens from a token file that is re-read when it
  changes, or OAuth2 JWTs) whose scopes must include `source:<connector name>` (or `source:*`);
  `tool:<name>` scopes narrow which tools it may call.

Subscriptions: a connector names the resources whose changes it can tell (`versions()`: URI ->
version text). While a client listens to one of them, a poller compares versions every
`poll_seconds` and publishes `notifications/resources/updated` when one changes.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from aesoperator.errors import AesopError, ConfigError, PermissionDenied
from aesoperator.security.envelope import ANONYMOUS, GuardedCalls, report_count
from aesoperator.security.failures import classify
from aesoperator.security.guard import CallGuard
from aesoperator.security.http.gate import build_http_app
from aesoperator.security.http.listener import HTTPServerThread, bind_socket, is_loopback_host, resource_url_for
from aesoperator.security.http.listener import serve_http as serve_app
from aesoperator.security.principal import Principal
from aesoperator.security.ratelimit import Limit, RateLimiter
from aesoperator.security.request_principal import current_principal as principal_of_request
from aesoperator.security.tokens import StaticTokenVerifier
from aesoperator.security.verifiers import build_verifier
from aesoperator.version import __version__

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context
    from starlette.types import ASGIApp

log = logging.getLogger(__name__)

LISTEN_CALL = "subscribe"
DEFAULT_POLL_SECONDS = 1.0


@dataclass
class ConnectorPolicy:
    """Who may call a connector and how often, and where calls are audited."""

    name: str
    stdio_principal: Principal = field(default_factory=lambda: Principal.full_access("local", "stdio"))
    guard: CallGuard | None = None
    poll_seconds: float = DEFAULT_POLL_SECONDS

    @classmethod
    def build(
        cls,
        name: str,
        *,
        data_dir: Path | str | None = None,
        rate_limit: str | None = None,
        audit: bool = True,
        principal_id: str = "local",
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> ConnectorPolicy:
        """The usual policy: calls audited in `data_dir/audit.log` (when a data dir is given), at
        most `rate_limit` calls per principal (e.g. "20/s:40")."""
        guard = None
        if data_dir is not None or rate_limit is not None:
            if data_dir is None:
                guard = CallGuard(None, RateLimiter(Limit.parse(rate_limit or "")))
            else:
                guard = CallGuard.for_data_dir(Path(data_dir), rate_limit, audit=audit)
        return cls(name, Principal.full_access(principal_id, "stdio"), guard, poll_seconds)


def current_principal(policy: ConnectorPolicy) -> Principal:
    """The caller: from the HTTP request's verified token, else the stdio principal."""
    return principal_of_request(policy.stdio_principal)


def check_source(principal: Principal, name: str) -> None:
    if not principal.can_see_source(name):
        raise PermissionDenied(f"principal {principal.id!r} may not use source {name!r} (needs scope source:{name})")


class ConnectorServer(MCPServer[Any]):
    """An `MCPServer` whose every tool call and resource read is admitted, audited and explained."""

    def __init__(
        self,
        policy: ConnectorPolicy,
        *,
        instructions: str,
        versions: Callable[[], Awaitable[Mapping[str, str]]] | None = None,
        title: str | None = None,
    ) -> None:
        self.policy = policy
        self.calls = GuardedCalls(
            policy.guard, lambda: current_principal(policy), check=lambda p: check_source(p, policy.name)
        )
        self.on_close: list[Callable[[], None]] = []
        self._versions = versions
        self._listening: Counter[str] = Counter()
        self._known: dict[str, str] = {}
        self._bus = InMemorySubscriptionBus()

        @asynccontextmanager
        async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
            async with anyio.create_task_group() as tg:
                if self._versions is not None:
                    tg.start_soon(self._poll)
                try:
                    yield {}
                finally:
                    tg.cancel_scope.cancel()

        super().__init__(
            policy.name,
            title=title,
            instructions=instructions,
            version=__version__,
            lifespan=lifespan,
            subscriptions=self._bus,
            log_level="WARNING",
        )
        self.middleware.append(self._track_listen)

    def close_source(self) -> None:
        """Release what the connector holds open (database connections)."""
        for close in self.on_close:
            with suppress(Exception):
                close()

    # -- calls --------------------------------------------------------------------------------
    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None) -> Any:
        return await self.calls.call_tool(
            name, arguments, lambda: super(ConnectorServer, self).call_tool(name, arguments, context)
        )

    async def read_resource(self, uri: Any, context: Context[Any, Any] | None = None) -> Any:
        async def read() -> Any:
            report_count(1)  # one resource, unless the reader reports otherwise
            return await super(ConnectorServer, self).read_resource(uri, context)

        return await self.calls.read_resource(str(uri), read)

    # -- subscriptions ------------------------------------------------------------------------
    async def _track_listen(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "subscriptions/listen":
            return await call_next(ctx)
        started = time.perf_counter()
        notifications = (ctx.params or {}).get("notifications")
        raw = notifications.get("resourceSubscriptions") if isinstance(notifications, Mapping) else None
        uris = [u for u in raw if isinstance(u, str)] if isinstance(raw, list) else []
        try:
            principal = self.calls.admit(LISTEN_CALL, tool=False)
        except AesopError as exc:
            failure = classify(exc, "subscribe")
            self.calls.record_quietly(ANONYMOUS, LISTEN_CALL, {"uris": uris}, failure.decision, 0, started)
            raise MCPError(INVALID_PARAMS, failure.info.message) from None
        self.calls.record_quietly(principal, LISTEN_CALL, {"uris": uris}, "allow", len(uris), started)
        if self._versions is not None and uris:
            try:  # the baseline: a change right after the subscription is acknowledged counts
                current = await self._versions()
                for uri in uris:
                    if uri in current:
                        self._known.setdefault(uri, current[uri])
            except Exception:
                log.warning("connector %r: could not read resource versions", self.policy.name, exc_info=True)
        self._listening.update(uris)
        try:
            return await call_next(ctx)
        finally:
            self._listening.subtract(uris)
            for uri in [u for u, n in self._listening.items() if n <= 0]:
                del self._listening[uri]

    def watched(self) -> set[str]:
        return {u for u, n in self._listening.items() if n > 0}

    async def _poll(self) -> None:
        assert self._versions is not None
        while True:
            await anyio.sleep(self.policy.poll_seconds)
            watched = self.watched()
            if not watched:
                self._known.clear()
                continue
            try:
                current = dict(await self._versions())
            except Exception:  # a source hiccup must not end notifications for good
                log.warning(
                    "connector %r: could not read resource versions; will retry", self.policy.name, exc_info=True
                )
                continue
            for uri in sorted(watched):
                version = current.get(uri)
                if uri in self._known and version != self._known[uri]:
                    await self._bus.publish(ResourceUpdated(uri=uri))
            self._known = {u: v for u, v in current.items() if u in watched}


# -- transports ------------------------------------------------------------------------------
def run_stdio(server: MCPServer[Any]) -> None:
    """Serve over stdin/stdout until the client disconnects."""
    anyio.run(server.run_stdio_async)


def http_verifier(auth_config: Mapping[str, Any] | None, data_dir: Path | None, resource_url: str) -> Any:
    """The token verifier an `auth_config` asks for; None for `{"type": "none"}`.

    - `{"type": "static"}` (the default): static tokens from `tokens_file`, else
      `<data_dir>/tokens.json` (issue them with `aesop tokens add NAME --scope source:NAME`). The
      file is re-read when it changes: rotation and revocation need no restart.
    - `{"type": "oauth2", "issuer": ..., "audience": ..., "jwks_url" | "jwks_file" | "secret_env": ...}`:
      JWT access tokens from an authorization server (audience defaults to the server's URL);
      static tokens are accepted too when a data dir or tokens_file is known.
    - `{"type": "none"}`: no authentication (loopback only)."""
    config = dict(auth_config or {})
    kind = str(config.get("type", "static")).lower()
    tokens_file = config.get("tokens_file")
    if kind == "none":
        return None
    if kind in ("static", "bearer", "token"):
        if tokens_file is None and data_dir is None:
            raise ConfigError("static bearer tokens need auth_config.tokens_file or a data dir holding tokens.json")
        path = Path(tokens_file) if tokens_file is not None else Path(data_dir or ".") / "tokens.json"
        return StaticTokenVerifier(path, resource=resource_url)
    if kind in ("oauth2", "oauth", "jwt"):
        secret_env = config.get("secret_env")
        secret = os.environ.get(str(secret_env)) if secret_env else None
        if secret_env and not secret:
            raise ConfigError(f"auth_config.secret_env names {secret_env}, which is not set")
        verifier_dir = Path(tokens_file).parent if tokens_file is not None else data_dir
        if not (config.get("issuer") and (config.get("jwks_url") or config.get("jwks_file") or secret)):
            if verifier_dir is None:
                raise ConfigError(
                    "oauth2 auth needs auth_config.issuer and one of jwks_url, jwks_file or secret_env "
                    "(or a data dir with static tokens)"
                )
            return StaticTokenVerifier(
                Path(tokens_file) if tokens_file is not None else verifier_dir / "tokens.json", resource=resource_url
            )
        return build_verifier(
            verifier_dir if (tokens_file is not None or data_dir is not None) else None,
            resource_url=resource_url,
            jwt_issuer=str(config["issuer"]),
            jwt_audience=config.get("audience"),
            jwks_url=config.get("jwks_url"),
            jwks_file=Path(config["jwks_file"]) if config.get("jwks_file") else None,
            jwt_secret=secret,
            jwt_algorithms=config.get("algorithms"),
        )
    raise ConfigError(f"auth_config.type {kind!r}: use 'static', 'oauth2' or 'none'")


@dataclass
class RunningHTTP:
    """A connector served over streamable HTTP in a background thread."""

    url: str
    thread: Any

    def stop(self) -> None:
        self.thread.stop()

    def __enter__(self) -> RunningHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_app(
    server: ConnectorServer,
    sock: Any,
    auth_config: Mapping[str, Any] | None,
    data_dir: Path | None,
    host: str,
    path: str = "/mcp",
) -> tuple[ASGIApp, str]:
    """The ASGI app serving `server` on a bound socket, behind the configured authentication."""
    url = resource_url_for(sock, path)
    verifier = http_verifier(auth_config, data_dir, url)
    if verifier is None:
        if not is_loopback_host(host):
            raise ConfigError("auth_config type 'none' is only allowed on a loopback address")
        return server.streamable_http_app(streamable_http_path=path, host=host), url
    return build_http_app(server, verifier, url, guard=server.policy.guard, host=host), url


def start_http(
    server: ConnectorServer,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    auth_config: Mapping[str, Any] | None = None,
    data_dir: Path | None = None,
    path: str = "/mcp",
) -> RunningHTTP:
    """Serve `server` over streamable HTTP in a background thread; returns its URL and a stop()."""
    sock = bind_socket(host, port)
    try:
        app, url = http_app(server, sock, auth_config, data_dir, host, path)
    except BaseException:
        sock.close()
        raise
    thread = HTTPServerThread(app, sock).start()
    return RunningHTTP(url, thread)


def serve_http(
    server: ConnectorServer,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    auth_config: Mapping[str, Any] | None = None,
    data_dir: Path | None = None,
    path: str = "/mcp",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `server` over streamable HTTP until interrupted (blocking)."""
    sock = bind_socket(host, port)
    try:
        app, url = http_app(server, sock, auth_config, data_dir, host, path)
    except BaseException:
        sock.close()
        raise
    if on_ready is not None:
        on_ready(url)
    serve_app(app, sock)


def json_safe(value: Any) -> Any:
    """Plain JSON values for tool output (dates, decimals, bytes... as text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return str(value)
