"""The guarded call: what happens around every tool call and resource read of both MCP servers
(the engine's `serve/` and the data-source `connectors/`).

    principal ← resolve()                     who is calling (token of the request, or stdio)
    check(principal)                          the server's own precondition (a connector's source scope)
    principal.require_tool(name)              the tool scope (tool calls only)
    guard.admit(principal, name)              scope and rate limit (PermissionDenied, RateLimited)
    ... the call, with its `CallState` current (tools read the principal and report a count) ...
    guard.record(...)                         one durable audit record, written in a worker thread
    classify(exc) → error result              a one-line message, never a traceback

Calls refused for their rate are not written one by one: they are counted (`guard.refused`) and
written in aggregate off the request path, and answered when the caller may call again
(`guard.hold`), so a flood costs neither disk nor other callers' time. A call that cannot be
audited is reported as failed rather than silently unaudited.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from aesoperator.errors import RateLimited
from aesoperator.security.failures import classify, error_result, resource_error
from aesoperator.security.guard import CallGuard
from aesoperator.security.principal import Principal
from aesoperator.telemetry.metrics import IN_FLIGHT, observe_call
from aesoperator.telemetry.requests import RequestScope, request_scope

log = logging.getLogger("aesoperator.security.envelope")

RESOURCE_CALL = "read_resource"
ANONYMOUS = Principal(id="anonymous", kind="anonymous", tools=frozenset())


# -- the call in progress ---------------------------------------------------------------------------
@dataclass
class CallState:
    """What the server knows about the call in progress; tools read the principal from it and
    report how many items they returned."""

    principal: Principal
    result_count: int = 0


_CALL: contextvars.ContextVar[CallState | None] = contextvars.ContextVar("aesop_call", default=None)


def current_call() -> CallState | None:
    """The call being handled in this context, or None outside a guarded call."""
    return _CALL.get()


def report_count(n: int) -> None:
    """Tools call this with how many items they returned (rows, files, hits), for the audit log."""
    state = _CALL.get()
    if state is not None:
        state.result_count = n


# -- what is reported of a call: span, log line, metrics ---------------------------------------------
call_log = logging.getLogger("aesoperator.calls")


@dataclass
class CallOutcome:
    """How a call ended, filled in as it runs, for its span, log line and metrics."""

    decision: str = "error"
    count: int = 0
    principal_kind: str = ANONYMOUS.kind
    started: float = field(default_factory=time.perf_counter)


@contextmanager
def _in_flight() -> Iterator[None]:
    IN_FLIGHT.inc()
    try:
        yield
    finally:
        IN_FLIGHT.dec()


def _json_size(value: Any) -> int:
    try:
        return len(json.dumps(value, default=str, ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError):
        return -1


def report_call(scope: RequestScope, tool: str, outcome: CallOutcome) -> None:
    """One finished call: its metrics, its span's attributes and one log line (names, counts and
    timings only; the audit record is written by the envelope itself)."""
    seconds = time.perf_counter() - outcome.started
    observe_call(tool, outcome.decision, seconds)
    scope.finish(
        outcome.decision, {"aesop.result_count": outcome.count, "aesop.principal.kind": outcome.principal_kind}
    )
    level = logging.INFO if outcome.decision == "allow" else logging.WARNING
    if call_log.isEnabledFor(level):
        fields = {
            "tool": tool,
            "decision": outcome.decision,
            "result_count": outcome.count,
            "duration_ms": round(seconds * 1000, 3),
            "principal_kind": outcome.principal_kind,
        }
        call_log.log(level, "%s %s", tool, outcome.decision, extra={"fields": fields})


# -- the envelope -----------------------------------------------------------------------------------
class GuardedCalls:
    """Admits, runs, audits and explains the calls of one MCP server (see the module docstring).

    `guard` may be None (nothing limited or recorded); `check`, when given, runs first for every
    call (a connector refuses principals without its `source:` scope there)."""

    def __init__(
        self,
        guard: CallGuard | None,
        resolve: Callable[[], Principal],
        *,
        check: Callable[[Principal], None] | None = None,
    ) -> None:
        self.guard = guard
        self.resolve = resolve
        self.check = check

    def admit(self, what: str, *, tool: bool, principal: Principal | None = None) -> Principal:
        """Resolve the caller (unless given) and admit `what`; raises PermissionDenied, AuthError
        or RateLimited to refuse it. Returns the principal."""
        principal = principal or self.resolve()
        if self.check is not None:
            self.check(principal)
        if tool:
            principal.require_tool(what)
        if self.guard is not None:
            self.guard.admit(principal, what)
        return principal

    def record(
        self, principal: Principal, what: str, arguments: Any, decision: str, count: int, started: float
    ) -> None:
        """Tell the guard how a call ended. A refusal for the rate is only counted (no I/O: it is
        written in aggregate); anything else is one durable record (raises if it cannot be written)."""
        guard = self.guard
        if guard is None:
            return
        refused = getattr(guard, "refused", None)  # a guard with only admit/record is told by record
        if decision == "rate_limited" and refused is not None:
            refused(principal, what, decision)
            return
        guard.record(principal, what, arguments, decision, count, (time.perf_counter() - started) * 1000)

    def record_quietly(
        self, principal: Principal, what: str, arguments: Any, decision: str, count: int, started: float
    ) -> None:
        """`record`, logging instead of raising when the record cannot be written."""
        try:
            self.record(principal, what, arguments, decision, count, started)
        except Exception:
            log.exception("could not record a %s call", what)

    async def _held(self, exc: RateLimited) -> RateLimited:
        """The refusal, answered when the caller may call again (see `CallGuard.hold`)."""
        hold = getattr(self.guard, "hold", None)
        return RateLimited(str(exc), await hold(exc.retry_after)) if hold is not None else exc

    async def call_tool(self, name: str, arguments: Mapping[str, Any], run: Callable[[], Awaitable[Any]]) -> Any:
        """Run the tool call `run()` inside the envelope; returns its result or an error result.
        MCP protocol errors raised by the call are re-raised (and recorded as errors).

        The call is one request (`aesoperator.telemetry`): its span, log line, metrics and audit
        record carry the same request id."""
        outcome = CallOutcome()
        attributes = {"mcp.method.name": "tools/call", "gen_ai.tool.name": name}
        with request_scope(f"aesop.call {name[:128]}", attributes) as scope, _in_flight():
            if scope.span is not None:
                scope.span.set_attribute("aesop.arguments.bytes", _json_size(arguments))
            try:
                return await self._call_tool(name, arguments, run, outcome)
            finally:
                report_call(scope, name, outcome)

    async def _call_tool(
        self, name: str, arguments: Mapping[str, Any], run: Callable[[], Awaitable[Any]], outcome: CallOutcome
    ) -> Any:
        started = time.perf_counter()
        principal = ANONYMOUS
        state: CallState | None = None
        try:
            principal = self.resolve()  # resolved first, so a refused call is recorded under its caller
            self.admit(name, tool=True, principal=principal)
            state = CallState(principal)
            token = _CALL.set(state)
            try:
                result = await run()
            finally:
                _CALL.reset(token)
            decision = "error" if isinstance(result, CallToolResult) and result.is_error else "allow"
        except MCPError:
            outcome.principal_kind = principal.kind
            self.record_quietly(principal, name, arguments, "error", 0, started)
            raise
        except RateLimited as exc:  # answered when the caller may call again, so a flood runs at its rate
            decision, result = "rate_limited", error_result(classify(await self._held(exc), f"tool {name!r}").info)
        except Exception as exc:
            failure = classify(exc, f"tool {name!r}")
            decision, result = failure.decision, error_result(failure.info)
        count = state.result_count if state else 0
        outcome.principal_kind, outcome.decision, outcome.count = principal.kind, decision, count
        try:
            if decision == "rate_limited":  # only counted: no I/O
                self.record(principal, name, arguments, decision, count, started)
            else:  # the record's write and fsync run in a worker thread, not in the event loop
                await anyio.to_thread.run_sync(self.record, principal, name, arguments, decision, count, started)
        except Exception as exc:  # a call that cannot be audited is reported as failed
            outcome.decision = "error"
            return error_result(classify(exc, f"tool {name!r}").info)
        return result

    async def read_resource(self, uri: str, run: Callable[[], Awaitable[Any]]) -> Any:
        """Run the resource read `run()` inside the envelope. A refusal or failure is raised as the
        resource error the client gets (a permission refusal looks like an unknown resource); a
        `ResourceError` raised on purpose (not found) and MCP errors pass through. Like a tool
        call, one request (its URI, which may name content, stays out of span and log)."""
        outcome = CallOutcome()
        with request_scope("aesop.read_resource", {"mcp.method.name": "resources/read"}) as scope, _in_flight():
            try:
                return await self._read_resource(uri, run, outcome)
            finally:
                report_call(scope, RESOURCE_CALL, outcome)

    async def _read_resource(self, uri: str, run: Callable[[], Awaitable[Any]], outcome: CallOutcome) -> Any:
        started = time.perf_counter()
        principal = ANONYMOUS
        state: CallState | None = None
        decision = "error"
        what = f"resource {uri[:200]!r}"
        try:
            principal = self.resolve()
            self.admit(RESOURCE_CALL, tool=False, principal=principal)
            state = CallState(principal)
            token = _CALL.set(state)
            try:
                result = await run()
            finally:
                _CALL.reset(token)
            decision = "allow"
            return result
        except MCPError:
            raise
        except ResourceError as exc:
            if exc.__cause__ is None:  # raised on purpose (not found): its message is the answer
                raise
            failure = classify(exc, what)
            decision = failure.decision
            raise resource_error(failure) from None
        except Exception as exc:
            failure = classify(exc, what)
            decision = failure.decision
            raise resource_error(failure) from None
        finally:
            count = state.result_count if state else 0
            outcome.principal_kind, outcome.decision, outcome.count = principal.kind, decision, count
            self.record_quietly(principal, RESOURCE_CALL, {"uri": uri}, decision, count, started)
