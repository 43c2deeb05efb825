"""MCP client sessions for ingest: one `SourceDefinition` in, one robust `McpConnection` out.

`open_connection(definition)` starts the server (stdio) or reaches it (streamable HTTP) with the
`mcp` SDK's `Client` and wraps every call in the same guard rails:

- a per-call timeout (`timeout_seconds`): a hung server costs at most that long, and the session
  is dropped (the server process is stopped) so the next call starts clean. Starting a session
  (spawn and handshake) may take at least CONNECT_TIMEOUT_FLOOR seconds, since launchers such as
  `npx -y` may first download the server;
- bounded retries with exponential backoff on connection failures (`retries`): a server that
  died, closed its pipes or garbled its JSON-RPC is restarted or reconnected, then the call is
  sent again;
- a size limit per response (`max_response_bytes`, counted over the content received). The stdio
  transport never assembles a message much larger than that, so a server that answers with
  gigabytes cannot exhaust memory;
- cursor pagination for `list_tools` and `list_resources`;
- one error type: every failure is a `SourceError` naming the server and the call, e.g.
  "source 'git': call_tool git_log timed out after 60s". Failures that concern one item only
  (a tool error, an oversize answer, a JSON-RPC error response) are `McpCallError`s: the session
  is still usable and adapters may record the item as skipped instead of stopping.

Credentials (a static bearer token, or OAuth2 client credentials fetched from `token_url` and
cached until they expire) are sent only to the definition's own origin, and never logged.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc
import anyio.lowlevel
import httpx2
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import Client
from mcp.client import IncomingMessage, Transport
from mcp.client.stdio import get_default_environment
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourcesListChanged, ResourceUpdated, SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from aesoperator import __version__
from aesoperator.errors import AesopError, ConfigError, SourceError
from aesoperator.ingest.adapters.base import ResourceContent, ResourceInfo, ToolInfo, ToolResult
from aesoperator.ingest.sources import SourceDefinition

log = logging.getLogger(__name__)

T = TypeVar("T")

# A JSON-RPC error code of our own (in the implementation-defined range) that the stdio transport
# answers on the server's behalf when a response was too large to be read.
RESPONSE_TOO_LARGE: Final = -32099

BACKOFF_FIRST_SECONDS: Final = 0.5
BACKOFF_MAX_SECONDS: Final = 10.0
MAX_PAGES: Final = 10_000
FAULT_GRACE_SECONDS: Final = 2.0  # how long a stray line may precede a valid answer
STOP_GRACE_SECONDS: Final = 2.0  # stdin closed -> SIGTERM -> SIGKILL, each this long
HEALTH_CHECK_SECONDS: Final = 15.0
CONNECT_TIMEOUT_FLOOR: Final = 30.0
LIST_CHANGED: Final = "*"  # the update that stands for "the list of resources changed"

_SAFE_ENV: Final = ("LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_HEAD_ID = re.compile(rb'^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,200}")')
_TAIL_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,200}")\s*\}\s*$')


# -- errors ------------------------------------------------------------------------------------
class McpCallError(SourceError):
    """One call failed but the session is still usable (an adapter may skip the item)."""


class ResponseTooLarge(McpCallError):
    """A response was over `max_response_bytes`; its content was discarded."""


class ToolCallError(McpCallError):
    """The tool ran and reported an error (`isError`)."""


class ServerRequestError(McpCallError):
    """The server answered the request with a JSON-RPC error (unknown resource, bad arguments...)."""


class CallTimeout(SourceError):
    """A call got no answer within `timeout_seconds`; the session was dropped."""


class ConnectionFailed(SourceError):
    """The server could not be reached or kept dying, retries included."""


class _Trouble(Exception):
    """Internal: the session is unusable (dead process, closed pipe, garbled stream); reconnect."""


# -- small helpers -----------------------------------------------------------------------------
def _resolve_refs(source: str, values: Mapping[str, str]) -> dict[str, str]:
    def fill(value: str) -> str:
        def sub(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in os.environ:
                raise ConfigError(f"source {source!r} needs the environment variable {var}")
            return os.environ[var]

        return _ENV_REF.sub(sub, value)

    return {k: fill(v) for k, v in values.items()}


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _origin(url: str | httpx2.URL) -> tuple[str, str, int | None]:
    parsed = httpx2.URL(str(url))
    return parsed.scheme, parsed.host, parsed.port


def transport_identity(definition: SourceDefinition) -> str:
    """What a source name stands for: its command line (stdio) or its URL without credentials."""
    if definition.url:
        return _strip_userinfo(definition.url)
    return shlex.join([definition.command or "", *definition.args])


def _unwrap(exc: BaseException) -> BaseException:
    """The first meaningful leaf of an exception group (task groups wrap what they propagate)."""
    while isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        if not leaves:
            return exc
        exc = leaves[0]
    return exc


def _text_bytes(text: str | None) -> int:
    return len(text.encode("utf-8", "surrogatepass")) if text else 0


def _b64_bytes(data: str | None) -> int:
    return (len(data) * 3) // 4 if data else 0


async def _with_cursor(
    fetch: Callable[[Client, str | None], Awaitable[Any]], cursor: str | None, client: Client
) -> Any:
    return await fetch(client, cursor)


def _clip(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- stdio transport ---------------------------------------------------------------------------
class MalformedMessage(Exception):
    """The server wrote a line to stdout that is not a JSON-RPC message."""


class OversizeMessage(Exception):
    """The server wrote a message over the size limit that could not be tied to a request."""


class _ServerProcess:
    """The stdio server process of one session: how it ended and the tail of its stderr."""

    def __init__(self) -> None:
        self.process: anyio.abc.Process | None = None
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.closed = anyio.Event()  # stdout reached end of file
        self.hung = False  # skip the polite shutdown: the server stopped answering

    def exit_description(self) -> str | None:
        code = self.process.returncode if self.process is not None else None
        if code is None:
            return None
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        return f"the server process {how}" + (f" (last stderr line: {_clip(last, 300)})" if last else "")


def _oversize_item(head: bytes, tail: bytes, size: int, limit: int) -> SessionMessage | Exception:
    """A response over the limit becomes a JSON-RPC error for its request when its id can be read
    from the first or last bytes (every common server puts it there); otherwise a stream fault."""
    match = None if b'"method"' in head else (_HEAD_ID.match(head) or _TAIL_ID.search(tail))
    if match is None:
        return OversizeMessage(f"a message of {size} bytes is over the {limit}-byte limit")
    request_id: int | str = json.loads(match.group(1))
    error = types.ErrorData(code=RESPONSE_TOO_LARGE, message="response too large", data={"bytes": size})
    return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))


def _parse_line(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError:
        return MalformedMessage(repr(_clip(line[:300].decode("utf-8", "replace"), 200)))


async def _stop_process(process: anyio.abc.Process, hung: bool) -> None:
    """Close stdin, give the server a moment to exit, then SIGTERM and SIGKILL its process group.
    A server that stopped answering gets no moment and a shorter SIGTERM grace."""
    if process.stdin is not None:
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    with anyio.move_on_after(0.1 if hung else STOP_GRACE_SECONDS):
        while process.returncode is None:
            await anyio.sleep(0.02)
    if process.returncode is None:
        if sys.platform == "win32":  # pragma: no cover
            process.kill()
        else:
            from mcp.os.posix.utilities import terminate_posix_process_tree

            await terminate_posix_process_tree(process, 0.5 if hung else STOP_GRACE_SECONDS)
        with anyio.move_on_after(STOP_GRACE_SECONDS):
            while process.returncode is None:
                await anyio.sleep(0.02)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.aclose()


@asynccontextmanager
async def _stdio_transport(
    argv: list[str], env: dict[str, str], cwd: str | None, max_message_bytes: int, state: _ServerProcess, name: str
) -> AsyncIterator[tuple[Any, Any]]:
    """Newline-delimited JSON-RPC over a child process's stdin/stdout, with bounded messages.

    A line longer than `max_message_bytes` is skipped as it streams in (never held whole) and its
    request answered with a RESPONSE_TOO_LARGE error; stderr is kept as a short tail for error
    messages. On exit the process group is stopped, even when the caller is cancelled.
    """
    process = await anyio.open_process(argv, env=env, cwd=cwd, start_new_session=True)
    state.process = process
    read_send: MemoryObjectSendStream[SessionMessage | Exception]
    read_recv: MemoryObjectReceiveStream[SessionMessage | Exception]
    read_send, read_recv = anyio.create_memory_object_stream(0)
    write_send: MemoryObjectSendStream[SessionMessage]
    write_recv: MemoryObjectReceiveStream[SessionMessage]
    write_send, write_recv = anyio.create_memory_object_stream(0)

    async def read_stdout() -> None:
        assert process.stdout is not None
        buf = bytearray()
        scanned = 0  # bytes of buf known to hold no newline
        dropping = False
        dropped = 0
        head = b""
        tail = bytearray()
        try:
            async with read_send:
                while True:
                    try:
                        chunk = await process.stdout.receive(1 << 20)
                    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                        break
                    if dropping:
                        newline = chunk.find(b"\n")
                        if newline < 0:
                            dropped += len(chunk)
                            tail = (tail + chunk)[-512:]
                            continue
                        dropped += newline
                        tail = (tail + chunk[:newline])[-512:]
                        await read_send.send(_oversize_item(head, bytes(tail), dropped, max_message_bytes))
                        dropping = False
                        chunk = chunk[newline + 1 :]
                    buf += chunk
                    start = 0
                    while (newline := buf.find(b"\n", max(start, scanned))) >= 0:
                        line = bytes(buf[start:newline]).strip()
                        start = newline + 1
                        scanned = 0
                        if len(line) > max_message_bytes:
                            await read_send.send(_oversize_item(line[:512], line[-512:], len(line), max_message_bytes))
                        elif line:
                            await read_send.send(_parse_line(line))
                    del buf[:start]
                    scanned = len(buf)
                    if len(buf) > max_message_bytes:
                        dropping, dropped, head, tail = True, len(buf), bytes(buf[:512]), bytearray(buf[-512:])
                        buf = bytearray()
                        scanned = 0
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the session is gone
        finally:
            state.closed.set()

    async def read_stderr() -> None:
        assert process.stderr is not None
        partial = b""
        with suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            while True:
                chunk = await process.stderr.receive(65536)
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()[-4096:]
                for raw in lines:
                    text = raw.decode("utf-8", "replace").rstrip()
                    state.stderr_tail.append(text[:1000])
                    log.debug("source %r stderr: %s", name, text[:1000])

    async def write_stdin() -> None:
        assert process.stdin is not None
        try:
            async with write_recv:
                async for message in write_recv:
                    payload = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(payload.encode("utf-8"))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_send.aclose()  # the server cannot hear us: let the session see the end

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_stdout)
        tg.start_soon(read_stderr)
        tg.start_soon(write_stdin)
        try:
            yield read_recv, write_send
        finally:
            with anyio.CancelScope(shield=True):
                read_recv.close()
                write_send.close()
                await _stop_process(process, state.hung)
            tg.cancel_scope.cancel()


# -- HTTP credentials --------------------------------------------------------------------------
_token_cache: dict[str, tuple[str, float]] = {}
_token_lock = threading.Lock()


class _ClientCredentials:
    """OAuth2 client-credentials grant against `options.token_url`; tokens cached until they expire."""

    def __init__(self, definition: SourceDefinition, client_id: str, client_secret: str) -> None:
        self.source = definition.name
        self.token_url = str(definition.options["token_url"])
        self.scope = definition.options.get("scope")
        self.auth_method = str(definition.options.get("token_endpoint_auth_method", "client_secret_basic"))
        self.timeout = definition.timeout_seconds
        self._client_id = client_id
        self._client_secret = client_secret
        material = "\x1f".join((self.token_url, client_id, client_secret, str(self.scope)))
        self._key = hashlib.blake2b(material.encode(), digest_size=16).hexdigest()

    async def token(self, refresh: bool = False) -> str:
        now = time.time()
        with _token_lock:
            cached = _token_cache.get(self._key)
        if cached is not None and not refresh and cached[1] > now:
            return cached[0]
        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = str(self.scope)
        auth: httpx2.Auth | None = httpx2.BasicAuth(self._client_id, self._client_secret)
        if self.auth_method == "client_secret_post":
            data.update(client_id=self._client_id, client_secret=self._client_secret)
            auth = None
        try:
            async with httpx2.AsyncClient(timeout=self.timeout) as http:
                response = await http.post(
                    self.token_url,
                    data=data,
                    auth=auth or httpx2.USE_CLIENT_DEFAULT,
                    headers={"Accept": "application/json"},
                )
        except httpx2.HTTPError as exc:
            raise SourceError(f"source {self.source!r}: token request to {self.token_url} failed: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            reason = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            raise SourceError(
                f"source {self.source!r}: token request to {self.token_url} was refused "
                f"(HTTP {response.status_code}{': ' + _clip(str(reason), 200) if reason else ''}); "
                "check the client_id and client_secret credentials"
            )
        token = str(body["access_token"])
        lifetime = float(body.get("expires_in") or 3600)
        expires = now + max(lifetime - min(30.0, lifetime / 5), 0.0)
        with _token_lock:
            _token_cache[self._key] = (token, expires)
        return token


class _BearerAuth(httpx2.Auth):
    """Adds `Authorization: Bearer …` to requests for the server's own origin, and only those.
    A 401 with a refreshable token fetches a new token and sends the request once more."""

    def __init__(self, url: str, token: Callable[[bool], Awaitable[str]], refreshable: bool) -> None:
        self._origin = _origin(url)
        self._token = token
        self._refreshable = refreshable

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if _origin(request.url) != self._origin:
            yield request
            return
        request.headers["Authorization"] = f"Bearer {await self._token(False)}"
        response = yield request
        if response.status_code == 401 and self._refreshable:
            request.headers["Authorization"] = f"Bearer {await self._token(True)}"
            yield request


# -- resource update feed ----------------------------------------------------------------------
class ResourceUpdates:
    """Resource URIs the server reported as updated, deduplicated until taken."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.uris: list[str] = []
        self._pending: dict[str, None] = {}
        self._wake = anyio.Event()
        self._error: str | None = None

    def push(self, uri: str) -> None:
        self._pending[uri] = None
        self._wake.set()

    def fail(self, reason: str) -> None:
        if self._error is None:
            self._error = reason
        self._wake.set()

    async def next_batch(self, wait_seconds: float, settle_seconds: float = 0.3) -> list[str]:
        """The URIs updated since the last batch; [] if none arrive within `wait_seconds`.
        Raises ConnectionFailed once the subscription is lost."""
        with anyio.move_on_after(wait_seconds):
            while not self._pending and self._error is None:
                await self._wake.wait()
                self._wake = anyio.Event()
        if self._error is not None and not self._pending:
            raise ConnectionFailed(f"source {self.source!r}: resource subscription lost: {self._error}")
        if not self._pending:
            return []
        await anyio.sleep(settle_seconds)  # let a burst of updates arrive as one batch
        batch = list(self._pending)
        self._pending.clear()
        return batch


# -- the connection ----------------------------------------------------------------------------
class _Session:
    """One live SDK client and the task that owns it."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.client: Client | None = None
        self.error: Exception | None = None
        self.scope = anyio.CancelScope()
        self.ready = anyio.Event()
        self.stop = anyio.Event()
        self.finished = anyio.Event()


class McpClientConnection:
    """An `McpConnection` over the `mcp` SDK's `Client`, reconnecting when the transport dies."""

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        self.server_name = definition.name
        self.identity = transport_identity(definition)
        self._timeout = definition.timeout_seconds
        self._connect_timeout = max(self._timeout, CONNECT_TIMEOUT_FLOOR)
        # Room for JSON escaping and for content sent twice (text plus structured content).
        self._max_message_bytes = 2 * definition.max_response_bytes + (1 << 20)
        self._tg: anyio.abc.TaskGroup | None = None
        self._current: _Session | None = None
        self._process: _ServerProcess | None = None
        self._generation = 0
        self._lock = anyio.Lock()
        self._inflight: set[anyio.CancelScope] = set()
        self._faults: dict[anyio.CancelScope, str] = {}
        self._http_refusal: str | None = None
        self._feed: ResourceUpdates | None = None
        self._credentials: _ClientCredentials | None = None
        self._bearer: str | None = None
        self._check_credentials()

    # -- public extras ------------------------------------------------------------------------
    @property
    def _client(self) -> Client | None:
        return self._current.client if self._current is not None else None

    @property
    def generation(self) -> int:
        """Counts sessions: it changes whenever the connection had to be re-established."""
        return self._generation

    @property
    def protocol_version(self) -> str | None:
        return self._client.protocol_version if self._client is not None else None

    @property
    def server_info(self) -> types.Implementation | None:
        return self._client.server_info if self._client is not None else None

    @property
    def supports_subscriptions(self) -> bool:
        if self._client is None:
            return False
        resources = self._client.server_capabilities.resources
        return bool(resources is not None and resources.subscribe)

    def _label(self, what: str) -> str:
        return f"source {self.server_name!r}: {what}"

    # -- credentials and transports -------------------------------------------------------------
    def _check_credentials(self) -> None:
        d = self.definition
        bearer = d.secret("bearer_token")
        client_id, client_secret = d.secret("client_id"), d.secret("client_secret")
        if (client_id is None) != (client_secret is None):
            raise ConfigError(self._label("OAuth client credentials need both client_id and client_secret"))
        if client_id is not None and client_secret is not None:
            if "token_url" not in d.options:
                raise ConfigError(self._label("OAuth client credentials need options.token_url"))
            self._require_secure(str(d.options["token_url"]))
            self._credentials = _ClientCredentials(d, client_id, client_secret)
        self._bearer = bearer
        if (bearer or self._credentials) and d.url is None:
            raise ConfigError(
                self._label(
                    "bearer tokens and OAuth apply to url sources; pass secrets to a "
                    "stdio server through env with ${VAR} references"
                )
            )
        if (bearer or self._credentials) and d.url:
            self._require_secure(d.url)

    def _require_secure(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.hostname or "") in _LOOPBACK:
            return
        if self.definition.options.get("allow_insecure_http") is True:
            return
        raise ConfigError(
            self._label(
                f"refusing to send credentials over plain http to {parts.hostname}; use https "
                "(or set options.allow_insecure_http = true on a trusted network)"
            )
        )

    def _stdio_argv_env(self) -> tuple[list[str], dict[str, str]]:
        d = self.definition
        env = get_default_environment()
        env.update({k: os.environ[k] for k in _SAFE_ENV if k in os.environ})
        env.update(d.resolved_env())
        command = d.command or ""
        resolved = command if os.sep in command else shutil.which(command, path=env.get("PATH"))
        if resolved is None or not os.path.exists(resolved):
            raise SourceError(self._label(f"cannot start the server: command {command!r} was not found"))
        return [resolved, *d.args], env

    async def _observe_response(self, response: httpx2.Response) -> None:
        if response.status_code < 400:
            self._http_refusal = None
        elif response.status_code in (401, 403):
            challenge = response.headers.get("www-authenticate", "")
            detail = re.search(r'error="([^"]{1,100})"', challenge)
            self._http_refusal = f"HTTP {response.status_code} {response.reason_phrase}" + (
                f" ({detail.group(1)})" if detail else ""
            )

    async def _http_transport(self, stack: AsyncExitStack) -> Transport:
        d = self.definition
        headers = _resolve_refs(d.name, d.headers)
        auth: httpx2.Auth | None = None
        if self._credentials is not None:
            auth = _BearerAuth(d.url or "", self._credentials.token, refreshable=True)
        elif self._bearer is not None:
            secret = self._bearer

            async def static(_refresh: bool) -> str:
                return secret

            auth = _BearerAuth(d.url or "", static, refreshable=False)
        http = httpx2.AsyncClient(
            headers=headers,
            timeout=httpx2.Timeout(self._timeout, read=max(300.0, self._timeout)),
            auth=auth,
            event_hooks={"response": [self._observe_response]},
        )
        await stack.enter_async_context(http)
        return streamable_http_client(d.url or "", http_client=http, max_sse_event_size=self._max_message_bytes)

    # -- session lifecycle ----------------------------------------------------------------------
    # Each session is owned by one task that enters the SDK `Client` and holds it open until told
    # to stop: task groups opened by the client never straddle a caller's timeout scope, and a
    # session can be abandoned from any task.
    def _make_transport_factory(self) -> Callable[[AsyncExitStack], Awaitable[Transport]]:
        if self.definition.url:
            self._process = None
            return self._http_transport
        argv, env = self._stdio_argv_env()
        process = self._process = _ServerProcess()

        async def stdio(_stack: AsyncExitStack) -> Transport:
            return cast(
                Transport,
                _stdio_transport(argv, env, self.definition.cwd, self._max_message_bytes, process, self.server_name),
            )

        return stdio

    async def _own(self, session: _Session, make_transport: Callable[[AsyncExitStack], Awaitable[Transport]]) -> None:
        with session.scope:
            try:
                async with AsyncExitStack() as stack:
                    client = Client(
                        await make_transport(stack),
                        read_timeout_seconds=self._connect_timeout,  # calls get the shorter self._timeout
                        cache=None,
                        message_handler=self._on_message,
                        client_info=types.Implementation(name="aesoperator", version=__version__),
                    )
                    async with client:
                        session.client = client
                        session.ready.set()
                        await session.stop.wait()
            except Exception as exc:
                session.error = exc
        session.ready.set()
        session.finished.set()

    async def _start_session(self) -> _Session:
        assert self._tg is not None, "use open_connection()"
        self._http_refusal = None
        make_transport = self._make_transport_factory()
        session = _Session(self._generation + 1)
        self._tg.start_soon(self._own, session, make_transport)
        try:
            await self._guarded(session.ready.wait, self._connect_timeout)
        except BaseException:
            await self._stop(session)
            raise
        if session.error is not None or session.client is None:
            await self._stop(session)
            raise session.error or _Trouble("the session ended during the handshake")
        self._generation = session.generation
        if self._feed is not None:
            self._feed.fail("the connection was re-established, so its subscriptions are gone")
        return session

    async def _stop(self, session: _Session) -> None:
        with anyio.CancelScope(shield=True):
            session.stop.set()
            with anyio.move_on_after(3 * STOP_GRACE_SECONDS + 1):
                await session.finished.wait()
            if not session.finished.is_set():
                session.scope.cancel()
                with anyio.move_on_after(3 * STOP_GRACE_SECONDS + 1):
                    await session.finished.wait()

    async def _drop_session(self, generation: int | None = None) -> None:
        async with self._lock:
            session = self._current
            if session is None or (generation is not None and session.generation != generation):
                return  # already replaced
            self._current = None
        await self._stop(session)

    async def _session(self) -> tuple[Client, int]:
        async with self._lock:
            if self._current is None:
                self._current = await self._start_session()
            assert self._current.client is not None
            return self._current.client, self._current.generation

    async def aclose(self) -> None:
        await self._drop_session()

    # -- guarded calls --------------------------------------------------------------------------
    async def _on_message(self, message: IncomingMessage) -> None:
        # Change notifications feed a legacy subscription; `subscriptions/listen` has its own stream.
        legacy = self.protocol_version not in MODERN_PROTOCOL_VERSIONS
        if isinstance(message, types.ResourceUpdatedNotification):
            if self._feed is not None and legacy:
                self._feed.push(message.params.uri)
            return
        if isinstance(message, types.ResourceListChangedNotification):
            if self._feed is not None and legacy:
                self._feed.push(LIST_CHANGED)
            return
        if not isinstance(message, Exception):
            return
        if isinstance(message, MalformedMessage):
            text = f"the server wrote malformed JSON-RPC to stdout: {message}"
        elif isinstance(message, OversizeMessage):
            text = f"the server sent an oversize message: {message}"
        else:
            text = f"the transport failed: {_clip(str(message) or type(message).__name__, 300)}"
        log.warning("source %r: %s", self.server_name, text)
        victims = set(self._inflight)
        if not victims:
            return
        # A stray line may still be followed by the real answer: give it a moment, then fail
        # whatever is still waiting, so a garbled stream costs seconds, not the full timeout.
        await anyio.sleep(min(FAULT_GRACE_SECONDS, self._timeout / 4))
        for scope in victims & self._inflight:
            self._faults[scope] = text
            scope.cancel()

    async def _guarded(self, op: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run `op` under the per-call timeout, failing fast on a stream fault."""
        scope = anyio.CancelScope()
        self._inflight.add(scope)
        try:
            with scope, anyio.fail_after(timeout or self._timeout):
                return await op()
        finally:
            self._inflight.discard(scope)
            fault = self._faults.pop(scope, None)
        raise _Trouble(fault or "the call was interrupted")

    def _exit_note(self) -> str:
        if self._process is None:
            return ""
        note = self._process.exit_description()
        return f" ({note})" if note else ""

    async def _exit_reason(self) -> str | None:
        """How the stdio server process ended, if it did (waiting briefly for its exit code)."""
        if self._process is None or self._process.process is None:
            return None
        with anyio.move_on_after(0.5):
            while self._process.process.returncode is None:
                await anyio.sleep(0.02)
        return self._process.exit_description()

    async def _describe_closed(self) -> str:
        if self._process is not None:
            return await self._exit_reason() or "the server process closed its stdout"
        return "the server closed the connection"

    async def _classify(self, what: str, exc: BaseException) -> Exception:
        """Turn a raw failure into a SourceError to raise, or a _Trouble to retry."""
        exc = _unwrap(exc)
        if isinstance(exc, AesopError | _Trouble):
            return exc
        limit = self._connect_timeout if what == "connect" else self._timeout
        if isinstance(exc, TimeoutError):
            return CallTimeout(self._label(f"{what} timed out after {limit:g}s"))
        if isinstance(exc, MCPError):
            if exc.code == types.CONNECTION_CLOSED:
                if self._http_refusal is not None:
                    return self._auth_error(what)
                return _Trouble(await self._describe_closed())
            if exc.code == types.REQUEST_TIMEOUT:
                return CallTimeout(self._label(f"{what} timed out after {limit:g}s"))
            if exc.code == RESPONSE_TOO_LARGE:
                wire = exc.error.data.get("bytes") if isinstance(exc.error.data, dict) else None
                return ResponseTooLarge(
                    self._label(
                        f"{what}: the response is over max_response_bytes {self.definition.max_response_bytes} "
                        f"({wire or 'more than ' + str(self._max_message_bytes)} bytes sent); it was discarded"
                    )
                )
            if self._http_refusal is not None:
                return self._auth_error(what)
            return ServerRequestError(
                self._label(f"{what} failed: server error {exc.code}: {_clip(exc.error.message)}")
            )
        if isinstance(exc, SubscriptionLost):
            return _Trouble(await self._exit_reason() or _clip(str(exc), 300))
        if isinstance(exc, ValidationError):
            return ServerRequestError(self._label(f"{what}: the server's answer is malformed: {_clip(str(exc), 300)}"))
        if isinstance(exc, FileNotFoundError | PermissionError | NotADirectoryError):
            return SourceError(self._label(f"cannot start the server: {exc}"))
        if isinstance(
            exc,
            OSError | anyio.BrokenResourceError | anyio.ClosedResourceError | anyio.EndOfStream | httpx2.TransportError,
        ):
            detail = _clip(str(exc) or type(exc).__name__, 300)
            if isinstance(exc, httpx2.TransportError):
                return _Trouble(f"cannot reach {self.identity}: {detail}")
            return _Trouble(f"{detail}{self._exit_note()}")
        if isinstance(exc, httpx2.HTTPStatusError):
            return SourceError(self._label(f"{what}: HTTP {exc.response.status_code}"))
        return SourceError(self._label(f"{what} failed: {type(exc).__name__}: {_clip(str(exc), 300)}"))

    def _auth_error(self, what: str) -> SourceError:
        hint = (
            "check the client_id/client_secret credentials and options.token_url"
            if self._credentials is not None
            else f"check the bearer token in ${self.definition.credentials['bearer_token']}"
            if self._bearer is not None
            else "the server needs credentials: add --credential bearer_token=ENV_VAR"
        )
        return SourceError(self._label(f"{what}: the server refused the credentials ({self._http_refusal}); {hint}"))

    async def _call(self, what: str, op: Callable[[Client], Awaitable[T]]) -> T:
        """One request with reconnects and retries; raises only SourceError."""
        delay = BACKOFF_FIRST_SECONDS
        attempt = 0
        while True:
            generation: int | None = None
            try:
                client, generation = await self._session()
                return await self._guarded(functools.partial(op, client))
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as raw:
                if not isinstance(raw, Exception | BaseExceptionGroup):
                    raise
                failure = await self._classify("connect" if generation is None else what, raw)
            if isinstance(failure, CallTimeout):
                if self._process is not None:
                    self._process.hung = True
                await self._drop_session(generation)  # a hung server is not trusted with the next call
                raise failure
            if not isinstance(failure, _Trouble):
                raise failure
            await self._drop_session(generation)
            if attempt >= self.definition.retries:
                tries = f" (gave up after {attempt + 1} attempts)" if attempt else ""
                raise ConnectionFailed(self._label(f"{what}: {failure}{tries}"))
            attempt += 1
            log.info("source %r: %s: %s; retrying in %.1fs", self.server_name, what, failure, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    async def connect(self) -> None:
        """Open the session now (retries included) so configuration errors surface early."""
        await self._call("connect", lambda client: anyio.lowlevel.checkpoint())

    # -- McpConnection --------------------------------------------------------------------------
    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolResult:
        what = f"call_tool {name}"
        args = dict(arguments) if arguments is not None else None
        result = await self._call(what, lambda c: c.call_tool(name, args))
        texts: list[str] = []
        size = 0
        for block in result.content:
            if isinstance(block, types.TextContent):
                texts.append(block.text)
                size += _text_bytes(block.text)
            elif isinstance(block, types.ImageContent | types.AudioContent):
                size += _b64_bytes(block.data)
            elif isinstance(block, types.EmbeddedResource):
                inner = block.resource
                if isinstance(inner, types.TextResourceContents):
                    texts.append(inner.text)
                    size += _text_bytes(inner.text)
                else:
                    size += _b64_bytes(inner.blob)
        structured = result.structured_content
        if structured is not None:
            size += len(json.dumps(structured, ensure_ascii=False, default=str).encode("utf-8"))
        if size > self.definition.max_response_bytes:
            raise ResponseTooLarge(
                self._label(
                    f"{what}: the response holds {size} bytes, over max_response_bytes "
                    f"{self.definition.max_response_bytes}; it was discarded"
                )
            )
        text = "\n".join(texts)
        if result.is_error:
            raise ToolCallError(self._label(f"{what} failed: {_clip(text) or 'the tool reported an error'}"))
        return ToolResult(text=text, structured=structured, is_error=False, size=size)

    async def _paged(self, what: str, fetch: Callable[[Client, str | None], Awaitable[Any]]) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        seen: set[str] = set()
        for page in range(MAX_PAGES):
            label = what if page == 0 else f"{what} (page {page + 1})"
            result = await self._call(label, functools.partial(_with_cursor, fetch, cursor))
            items.extend(result.tools if hasattr(result, "tools") else result.resources)
            cursor = result.next_cursor
            if not cursor:
                return items
            if cursor in seen:
                raise SourceError(self._label(f"{what}: the server repeated the page cursor {cursor!r}"))
            seen.add(cursor)
        raise SourceError(self._label(f"{what}: more than {MAX_PAGES} pages"))

    async def list_tools(self) -> list[ToolInfo]:
        tools = await self._paged("list_tools", lambda c, cur: c.list_tools(cursor=cur, cache_mode="bypass"))
        return [ToolInfo(name=t.name, description=t.description, input_schema=dict(t.input_schema)) for t in tools]

    async def list_resources(self) -> list[ResourceInfo]:
        resources = await self._paged(
            "list_resources", lambda c, cur: c.list_resources(cursor=cur, cache_mode="bypass")
        )
        return [
            ResourceInfo(uri=str(r.uri), name=r.name, mime_type=r.mime_type, description=r.description, size=r.size)
            for r in resources
        ]

    async def read_resource(self, uri: str) -> ResourceContent:
        what = f"read_resource {uri}"
        result = await self._call(what, lambda c: c.read_resource(uri, cache_mode="bypass"))
        size = 0
        texts: list[str] = []
        blob: bytes | None = None
        mime: str | None = None
        for part in result.contents:
            mime = mime or part.mime_type
            if isinstance(part, types.TextResourceContents):
                size += _text_bytes(part.text)
                texts.append(part.text)
            else:
                size += _b64_bytes(part.blob)
        if size > self.definition.max_response_bytes:
            raise ResponseTooLarge(
                self._label(
                    f"{what}: the resource holds {size} bytes, over max_response_bytes "
                    f"{self.definition.max_response_bytes}; it was discarded"
                )
            )
        if not texts:
            first_blob = next((p for p in result.contents if isinstance(p, types.BlobResourceContents)), None)
            if first_blob is not None:
                try:
                    blob = base64.b64decode(first_blob.blob, validate=True)
                except ValueError:
                    raise ServerRequestError(self._label(f"{what}: the blob is not valid base64")) from None
        return ResourceContent(uri=uri, text="\n".join(texts) if texts else None, blob=blob, mime_type=mime)

    # -- subscriptions ------------------------------------------------------------------------
    @asynccontextmanager
    async def resource_updates(self, uris: Sequence[str]) -> AsyncIterator[ResourceUpdates]:
        """Subscribe to `uris` (and to changes of the resource list where offered) for as long as
        the context is open. 2026-era servers are followed with `subscriptions/listen`, earlier
        ones with `resources/subscribe`. The feed fails (ConnectionFailed) when the session ends."""
        assert self._tg is not None, "use open_connection()"
        client, generation = await self._session()
        if not self.supports_subscriptions:
            raise SourceError(
                self._label(
                    "the server does not offer resource subscriptions, so it cannot be watched; "
                    f"run `aesop ingest {self.server_name}` on a schedule instead"
                )
            )
        feed = ResourceUpdates(self.server_name)
        feed.uris = list(uris)
        self._feed = feed
        scope = anyio.CancelScope()  # the helper task runs in the connection's task group
        try:
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                await self._tg.start(self._pump_listen, client, list(uris), feed, scope)
            else:
                for uri in uris:
                    await self._subscribe_legacy(client, generation, uri)
                self._tg.start_soon(self._watch_health, client, feed, scope)
            yield feed
        finally:
            scope.cancel()
            self._feed = None

    async def _subscribe_legacy(self, client: Client, generation: int, uri: str) -> None:
        what = f"subscribe {uri}"

        async def op() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await client.session.subscribe_resource(uri)

        try:
            await self._guarded(op)
        except Exception as raw:
            failure = await self._classify(what, raw)
            if isinstance(failure, _Trouble):
                await self._drop_session(generation)
                raise ConnectionFailed(self._label(f"{what}: {failure}")) from None
            raise failure from None

    async def _pump_listen(
        self,
        client: Client,
        uris: list[str],
        feed: ResourceUpdates,
        scope: anyio.CancelScope,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        with scope:
            try:
                async with client.listen(resource_subscriptions=uris, resources_list_changed=True) as subscription:
                    started = True
                    task_status.started()
                    async for event in subscription:
                        if isinstance(event, ResourceUpdated):
                            feed.push(event.uri)
                        elif isinstance(event, ResourcesListChanged):
                            feed.push(LIST_CHANGED)
                feed.fail("the server closed the subscription")
            except Exception as raw:
                failure = await self._classify("subscribe", raw)
                if not started:
                    if isinstance(failure, _Trouble):
                        raise ConnectionFailed(self._label(f"subscribe: {failure}")) from None
                    raise failure from None
                feed.fail(str(failure))

    async def _watch_health(self, client: Client, feed: ResourceUpdates, scope: anyio.CancelScope) -> None:
        """Notice a dead session while idle: the stdio process ending, or an HTTP ping failing."""
        with scope:
            while True:
                if self._process is not None:
                    with anyio.move_on_after(HEALTH_CHECK_SECONDS):
                        await self._process.closed.wait()
                    if self._process.closed.is_set():
                        feed.fail(await self._describe_closed())
                        return
                    continue
                await anyio.sleep(HEALTH_CHECK_SECONDS)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        await self._guarded(client.send_ping)
                except Exception as raw:
                    feed.fail(str(await self._classify("ping", raw)))
                    return


@asynccontextmanager
async def open_connection(definition: SourceDefinition) -> AsyncIterator[McpClientConnection]:
    """An open, guarded MCP session for `definition`; the server is stopped when the context ends,
    also when the caller is cancelled."""
    connection = McpClientConnection(definition)
    try:
        async with anyio.create_task_group() as tg:
            connection._tg = tg
            try:
                await connection.connect()
                yield connection
            finally:
                with anyio.CancelScope(shield=True):
                    await connection.aclose()
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaf = _unwrap(group)
        if leaf is group:
            raise
        raise leaf from None
