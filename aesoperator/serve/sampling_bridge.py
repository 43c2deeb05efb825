"""Extraction through the calling client's model: MCP sampling for the engine's server.

With `extractor = "llm"` and `llm_transport = "sampling"`, every tool call opens a `SamplingScope`
(`ingest/extract/llm_sampling.py`) for the client that made it. Tool functions run on worker
threads (the engine is synchronous) while the client session lives on the server's event loop, so
`SessionSampler` submits `create_message` to that loop (`asyncio.run_coroutine_threadsafe`) and
waits for the answer in the worker thread: the loop is never blocked, and a client that does not
answer costs `llm_timeout_s`, never a hang.

Sampling needs a client that declared the capability and a connection that carries
server-to-client requests: protocol versions up to 2025-11-25 do; 2026-07-28 deprecates sampling
and has no such requests. Without either, the scope says why and extraction falls back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError, NoBackChannelError
from mcp_types import (
    ClientCapabilities,
    CreateMessageResult,
    ModelHint,
    ModelPreferences,
    SamplingCapability,
    SamplingMessage,
    TextContent,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from aesoperator.errors import SourceError
from aesoperator.ingest.extract.llm_client import ChatAnswer
from aesoperator.ingest.extract.llm_sampling import SamplingScope, sampling_scope

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext
    from mcp.server.mcpserver import Context
    from mcp.server.session import ServerSession

    from aesoperator.config import Settings

SAMPLING = ClientCapabilities(sampling=SamplingCapability())
GRACE_S = 5.0  # beyond the timeout the loop enforces, before the worker stops waiting on its own
REFUSAL = "refusal"  # the stop reason hosts give when their model declines


def uses_sampling(settings: Settings) -> bool:
    return settings.extractor == "llm" and settings.llm_transport == "sampling"


class SessionSampler:
    """`SampleFn` over one client session: called from a worker thread, runs on the session's loop."""

    def __init__(
        self,
        session: ServerSession,
        request_id: Any,
        loop: asyncio.AbstractEventLoop,
        timeout_s: float,
        model_hint: str = "",
    ) -> None:
        self.session = session
        self.request_id = request_id
        self.loop = loop
        self.timeout_s = timeout_s
        self.model_hint = model_hint

    def __call__(self, system: str, user: str, max_tokens: int) -> ChatAnswer:
        try:
            future = asyncio.run_coroutine_threadsafe(self._ask(system, user, max_tokens), self.loop)
        except RuntimeError:  # the loop is closed: the server and its sessions are gone
            raise SourceError("MCP sampling: the client session is gone (the server stopped)") from None
        try:
            result = future.result(timeout=self.timeout_s + GRACE_S)
        except (TimeoutError, concurrent.futures.TimeoutError):
            future.cancel()
            raise SourceError(f"MCP sampling: no answer from the client's model within {self.timeout_s}s") from None
        except concurrent.futures.CancelledError:
            raise SourceError("MCP sampling: the request was cancelled (the client session closed)") from None
        return self._answer(result)

    async def _ask(self, system: str, user: str, max_tokens: int) -> CreateMessageResult:
        preferences = ModelPreferences(hints=[ModelHint(name=self.model_hint)]) if self.model_hint else None
        with warnings.catch_warnings():
            # Deprecated by protocol 2026-07-28, whose connections never get here (see `scope_for`).
            # The warning is given when the coroutine is made, so the filter is needed only for that.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            pending = self.session.create_message(
                [SamplingMessage(role="user", content=TextContent(type="text", text=user))],
                max_tokens=max_tokens,
                system_prompt=system,
                include_context="none",
                temperature=0.0,
                model_preferences=preferences,
                related_request_id=self.request_id,
            )
        try:
            with anyio.fail_after(self.timeout_s):
                return await pending
        except TimeoutError:
            raise SourceError(
                f"MCP sampling: no answer from the client's model within {self.timeout_s}s (llm_timeout_s)"
            ) from None
        except NoBackChannelError:
            raise SourceError("MCP sampling: the client's connection cannot carry a sampling request") from None
        except MCPError as exc:
            raise SourceError(f"MCP sampling: the client declined the request: {exc.message[:300]}") from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            raise SourceError("MCP sampling: the client session is gone") from None

    @staticmethod
    def _answer(result: CreateMessageResult) -> ChatAnswer:
        content = result.content
        if not isinstance(content, TextContent):
            raise SourceError(
                f"MCP sampling: the client's model {result.model!r} answered with {content.type}, not text"
            )
        if result.stop_reason == REFUSAL:
            return ChatAnswer("", 0, refusal=content.text or "no reason given", model=result.model)
        return ChatAnswer(content.text, 0, model=result.model)


def _request_of(context: Context[Any, Any] | None) -> ServerRequestContext[Any, Any] | None:
    if context is None:
        return None
    try:
        return context.request_context
    except ValueError:  # a call made in-process, outside any client request
        return None


def scope_for(context: Context[Any, Any] | None, settings: Settings) -> SamplingScope:
    """The sampling scope for one tool call: the client's model, or why it cannot be asked."""
    request = _request_of(context)
    if request is None:
        return SamplingScope(None, "the call did not come from an MCP client session")
    session = request.session
    client = session.client_params.client_info.name if session.client_params is not None else "unnamed"
    if not session.check_client_capability(SAMPLING):
        return SamplingScope(None, f"the MCP client {client!r} does not offer sampling")
    if request.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return SamplingScope(
            None,
            f"the MCP client {client!r} connected with protocol {request.protocol_version}, which has no"
            " server-to-client requests (sampling needs protocol 2025-11-25 or earlier)",
        )
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return SamplingScope(None, "the server does not run on an asyncio event loop")
    sampler = SessionSampler(session, request.request_id, loop, settings.llm_timeout_s, settings.llm_model)
    return SamplingScope(sampler, label=f"MCP sampling (client {client!r})")


@contextmanager
def host_sampling(context: Context[Any, Any] | None, settings: Settings) -> Iterator[SamplingScope | None]:
    """Around one tool call (on the event loop): its sampling scope, when the settings ask for sampling."""
    if not uses_sampling(settings):
        yield None
        return
    with sampling_scope(scope_for(context, settings)) as scope:
        yield scope


__all__ = ["SessionSampler", "host_sampling", "scope_for", "uses_sampling"]
