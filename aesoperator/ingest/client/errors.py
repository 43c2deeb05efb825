"""The errors of MCP client sessions, and how their messages are made."""

from __future__ import annotations

import anyio
import anyio.abc
import anyio.lowlevel

from aesoperator.errors import SourceError


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


class SessionTrouble(Exception):
    """Internal: the session is unusable (dead process, closed pipe, garbled stream); reconnect."""


def unwrap(exc: BaseException) -> BaseException:
    """The first meaningful leaf of an exception group (task groups wrap what they propagate)."""
    while isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        if not leaves:
            return exc
        exc = leaves[0]
    return exc


def clip(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
