"""The checks around every tool call: may this principal call it, is it within its rate, and the
audit record afterwards.

The MCP server calls, for each tool call:

    guard.admit(principal, tool)            # raises PermissionDenied or RateLimited
    ... run the tool ...
    guard.record(principal, tool, arguments, decision, result_count, latency_ms)

with `decision` one of "allow", "deny", "error", "rate_limited" (also for refused calls, so the
audit log shows every attempt).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aesoperator.errors import AesopError
from aesoperator.serve.audit import DECISIONS, AuditLog
from aesoperator.serve.principal import Principal
from aesoperator.serve.ratelimit import Limit, RateLimiter

log = logging.getLogger("aesoperator.serve.guard")


class CallGuard:
    """Admission (tool scope, then rate limit) and auditing of tool calls.

    Either part may be None: no audit log means nothing is recorded, no limiter means no limit."""

    def __init__(self, audit: AuditLog | None = None, limiter: RateLimiter | None = None) -> None:
        self.audit = audit
        self.limiter = limiter

    @classmethod
    def for_data_dir(cls, data_dir: Path, limit: Limit | str | None = None, *, audit: bool = True) -> CallGuard:
        """The usual guard: the audit log of `data_dir` and, when `limit` is given (a `Limit` or
        text such as "10/s:20"), that rate per principal."""
        if isinstance(limit, str):
            limit = Limit.parse(limit)
        return cls(
            AuditLog.in_data_dir(data_dir) if audit else None,
            RateLimiter(limit) if limit is not None else None,
        )

    def admit(self, principal: Principal, tool: str) -> None:
        """Raise PermissionDenied if the principal's scopes do not allow `tool`, RateLimited (with
        `retry_after`) if it is over its rate. A refused call takes no token from the bucket."""
        principal.require_tool(tool)
        if self.limiter is not None:
            self.limiter.acquire(principal.id, scopes=principal.scopes)

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
            )
        except OSError as exc:
            log.error("audit record for %s by %s could not be written: %s", tool, principal.id, exc)
            raise AesopError(f"the audit log could not be written ({exc.strerror or exc})") from None

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
