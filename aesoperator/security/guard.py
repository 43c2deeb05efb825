"""The checks around every tool call: may this principal call it, is it within its rate, and the
audit record afterwards.

The MCP server calls, for each tool call:

    guard.admit(principal, tool)            # raises PermissionDenied or RateLimited
    ... run the tool ...
    guard.record(principal, tool, arguments, decision, result_count, latency_ms)

with `decision` one of "allow", "deny", "error", "rate_limited". `record` writes one durable record
before it returns. Refusals that anyone can provoke in bulk (calls over the rate limit, failed
authentications) go to `refused` / `authentication_failed` instead, which only count them; they
reach the log in aggregate from a background thread (`refusals.py`), so a flood neither fills the
disk nor holds the log's lock while other callers wait.

Every other MCP request (`initialize`, `server/discover`, `tools/list`, `ping`, ...) is limited
too, by `request_middleware`: at the same rate as calls, in a bucket of its own, so a client's
start-up requests never use up its budget for calls and cannot be flooded either.

A refusal is answered when the caller may call again (`hold`: up to its retry-after, at most
`refusal_hold` seconds, with the retry-after in the answer reduced by the wait). A client that
honours retry-afters loses nothing; one that ignores them is answered at the pace it may call,
instead of as fast as it can send, so it cannot keep the server busy with refusals.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.shared.exceptions import MCPError

from aesoperator.engine.stores.out_of_space import out_of_space_errno
from aesoperator.errors import AesopError, AuthError, RateLimited
from aesoperator.security.audit import DECISIONS, AuditLog
from aesoperator.security.principal import Principal
from aesoperator.security.ratelimit import Limit, RateLimiter
from aesoperator.security.refusals import RefusalRecorder
from aesoperator.telemetry.metrics import observe_rate_limited
from aesoperator.telemetry.requests import current_request_id

log = logging.getLogger("aesoperator.security.guard")

AUTHENTICATE = "authenticate"
UNAUTHENTICATED = "unauthenticated"
REQUEST_CHANNEL = "requests"
# Requests that `admit` already charges as calls (the server admits them itself).
CALL_METHODS = frozenset({"tools/call", "resources/read", "resources/subscribe", "completion/complete"})
# JSON-RPC error code (implementation-defined server range) of a request refused for its rate.
RATE_LIMITED_ERROR_CODE = -32029
MAX_HELD_REFUSALS = 1024  # answers held at once; past this, refusals are answered at once


class CallGuard:
    """Admission (tool scope, then rate limit) and auditing of tool calls.

    Either part may be None: no audit log means nothing is recorded, no limiter means no limit."""

    def __init__(
        self,
        audit: AuditLog | None = None,
        limiter: RateLimiter | None = None,
        *,
        refusal_interval: float = 1.0,
        refusal_hold: float = 1.0,
    ) -> None:
        self.audit = audit
        self.limiter = limiter
        self.refusals = RefusalRecorder(audit, interval=refusal_interval) if audit is not None else None
        self.refusal_hold = max(0.0, refusal_hold)
        self._held = 0
        self._held_lock = threading.Lock()

    @classmethod
    def for_data_dir(
        cls,
        data_dir: Path,
        limit: Limit | str | None = None,
        *,
        audit: bool = True,
        audit_key_file: Path | None = None,
    ) -> CallGuard:
        """The usual guard: the audit log of `data_dir` (signed with the key at `audit_key_file`,
        default from the settings) and, when `limit` is given (a `Limit` or text such as
        "10/s:20"), that rate per principal."""
        if isinstance(limit, str):
            limit = Limit.parse(limit)
        return cls(
            AuditLog.in_data_dir(data_dir, key_path=audit_key_file) if audit else None,
            RateLimiter(limit) if limit is not None else None,
        )

    def admit(self, principal: Principal, tool: str) -> None:
        """Raise PermissionDenied if the principal's scopes do not allow `tool`, RateLimited (with
        `retry_after`) if it is over its rate. A refused call takes no token from the bucket."""
        principal.require_tool(tool)
        if self.limiter is not None:
            self.limiter.acquire(principal.id, scopes=principal.scopes)

    def admit_request(self, principal: Principal, method: str) -> None:
        """Raise RateLimited if the principal is over its rate for protocol requests (`method`
        other than a call: initialize, tools/list, ping, ...)."""
        if self.limiter is not None:
            self.limiter.acquire(principal.id, scopes=principal.scopes, channel=REQUEST_CHANNEL)

    def record(
        self,
        principal: Principal,
        tool: str,
        arguments: Any,
        decision: str,
        result_count: int | None = 0,
        latency_ms: float = 0.0,
    ) -> dict[str, Any] | None:
        """Append the call to the audit log (arguments are kept only as a digest).

        Returns the record, or None without an audit log. A record that cannot be written raises
        AesopError: a call that cannot be audited is reported as failed rather than silently
        unaudited."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {sorted(DECISIONS)}, got {decision!r}")
        if self.audit is None:
            return None
        try:
            return self.audit.append(
                principal=principal.id,
                kind=principal.kind,
                tool=tool,
                arguments=arguments,
                decision=decision,
                result_count=result_count or 0,
                latency_ms=latency_ms,
                request_id=current_request_id(),
            )
        except OSError as exc:
            log.error("audit record for %s by %s could not be written: %s", tool, principal.id, exc)
            hint = "; free disk space and call again" if out_of_space_errno(exc) is not None else ""
            raise AesopError(f"the audit log could not be written ({exc.strerror or exc}){hint}") from None

    @property
    def held_refusals(self) -> int:
        """Refusal answers waiting for their caller's retry time (see `hold`)."""
        return self._held

    @property
    def pending_refusals(self) -> int:
        """Refusals counted but not yet written to the audit log."""
        return self.refusals.pending() if self.refusals is not None else 0

    def refused(self, principal: Principal, tool: str, decision: str = "rate_limited") -> None:
        """Count a refused call; it is written with the others in one aggregate record."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {sorted(DECISIONS)}, got {decision!r}")
        if self.refusals is not None:
            self.refusals.add(principal.id, principal.kind, tool, decision)

    async def hold(self, retry_after: float) -> float:
        """Wait before answering a refusal: up to `retry_after`, at most `refusal_hold` seconds,
        and only while fewer than MAX_HELD_REFUSALS answers wait. Returns the retry-after that is
        left, to put in the answer."""
        delay = min(max(0.0, retry_after), self.refusal_hold)
        with self._held_lock:
            if delay <= 0 or self._held >= MAX_HELD_REFUSALS:
                return retry_after
            self._held += 1
        try:
            await anyio.sleep(delay)
        finally:
            with self._held_lock:
                self._held -= 1
        return max(0.0, retry_after - delay)

    def authentication_failed(self, token: str | None, reason: str) -> None:
        """Count a request whose credentials were refused. The token is never kept: the record
        names it by a short fingerprint keyed with the audit key (so it cannot be reversed or
        checked against guesses), or "-" when there was none."""
        if self.refusals is None or self.audit is None:
            return
        try:
            who = f"token:{self.audit.fingerprint(token)}" if token else "-"
        except AesopError as exc:  # no usable key: still count the failure, without a name
            log.error("cannot fingerprint a refused token: %s", exc)
            who = "-"
        self.refusals.add(who, UNAUTHENTICATED, f"{AUTHENTICATE}:{reason}", "deny")

    def flush(self) -> None:
        """Write counted refusals now (they are also written every second and at close)."""
        if self.refusals is not None:
            self.refusals.flush()

    def request_middleware(self, resolve: Callable[[], Principal]) -> ServerMiddleware[Any]:
        """MCP server middleware that limits every request that is not a call (see the module
        docstring); `resolve` names the caller, as for calls. Refusals answer with a JSON-RPC
        error carrying `retry_after`."""

        async def limit_requests(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
            method = ctx.method
            if self.limiter is None or ctx.request_id is None or method in CALL_METHODS:
                return await call_next(ctx)  # notifications are not answered, calls are admitted later
            try:
                principal = resolve()
            except AuthError:
                return await call_next(ctx)
            try:
                self.admit_request(principal, method)
            except RateLimited as exc:
                self.refused(principal, method)
                observe_rate_limited(method)
                retry_after = await self.hold(exc.retry_after)
                message = f"rate limited: {exc} (retry after {retry_after:.1f} s)"
                raise MCPError(RATE_LIMITED_ERROR_CODE, message, {"retry_after": retry_after}) from None
            return await call_next(ctx)

        return limit_requests

    def close(self) -> None:
        if self.refusals is not None:
            self.refusals.close()
        if self.audit is not None:
            self.audit.close()
