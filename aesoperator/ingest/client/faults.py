"""How a connection's failures are told apart: a stream fault, a timeout, a refusal, a dead server."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
import httpx2
import mcp_types as types
from mcp.client import IncomingMessage
from mcp.client.subscriptions import SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from aesoperator.errors import AesopError, SourceError
from aesoperator.ingest.client.errors import (
    CallTimeout,
    ResponseTooLarge,
    ServerRequestError,
    SessionTrouble,
    clip,
    unwrap,
)
from aesoperator.ingest.client.feed import LIST_CHANGED
from aesoperator.ingest.client.stdio import RESPONSE_TOO_LARGE, MalformedMessage, OversizeMessage
from aesoperator.ingest.client.transports import ConnectionTransports

log = logging.getLogger(__name__)

T = TypeVar("T")

FAULT_GRACE_SECONDS: Final = 2.0  # how long a stray line may precede a valid answer


class ConnectionFaults(ConnectionTransports):
    """Guarded calls and the classification of their failures."""

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
            text = f"the transport failed: {clip(str(message) or type(message).__name__, 300)}"
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
        raise SessionTrouble(fault or "the call was interrupted")

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
        """Turn a raw failure into a SourceError to raise, or a SessionTrouble to retry."""
        exc = unwrap(exc)
        if isinstance(exc, AesopError | SessionTrouble):
            return exc
        limit = self._connect_timeout if what == "connect" else self._timeout
        if isinstance(exc, TimeoutError):
            return CallTimeout(self._label(f"{what} timed out after {limit:g}s"))
        if isinstance(exc, MCPError):
            if exc.code == types.CONNECTION_CLOSED:
                if self._http_refusal is not None:
                    return self._auth_error(what)
                return SessionTrouble(await self._describe_closed())
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
            return ServerRequestError(self._label(f"{what} failed: server error {exc.code}: {clip(exc.error.message)}"))
        if isinstance(exc, SubscriptionLost):
            return SessionTrouble(await self._exit_reason() or clip(str(exc), 300))
        if isinstance(exc, ValidationError):
            return ServerRequestError(self._label(f"{what}: the server's answer is malformed: {clip(str(exc), 300)}"))
        if isinstance(exc, FileNotFoundError | PermissionError | NotADirectoryError):
            return SourceError(self._label(f"cannot start the server: {exc}"))
        if isinstance(
            exc,
            OSError | anyio.BrokenResourceError | anyio.ClosedResourceError | anyio.EndOfStream | httpx2.TransportError,
        ):
            detail = clip(str(exc) or type(exc).__name__, 300)
            if isinstance(exc, httpx2.TransportError):
                return SessionTrouble(f"cannot reach {self.identity}: {detail}")
            return SessionTrouble(f"{detail}{self._exit_note()}")
        if isinstance(exc, httpx2.HTTPStatusError):
            return SourceError(self._label(f"{what}: HTTP {exc.response.status_code}"))
        return SourceError(self._label(f"{what} failed: {type(exc).__name__}: {clip(str(exc), 300)}"))

    def _auth_error(self, what: str) -> SourceError:
        hint = (
            "check the client_id/client_secret credentials and options.token_url"
            if self._credentials is not None
            else f"check the bearer token in ${self.definition.credentials['bearer_token']}"
            if self._bearer is not None
            else "the server needs credentials: add --credential bearer_token=ENV_VAR"
        )
        return SourceError(self._label(f"{what}: the server refused the credentials ({self._http_refusal}); {hint}"))
