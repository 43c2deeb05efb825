"""How a failed call is told to the client: a decision for the audit log and a one-line message.

`classify(exc, what)` turns an exception raised while serving `what` (a tool call, a resource
read) into a `CallFailure`: the audit decision ("deny", "error" or "rate_limited") and an
`ErrorInfo` with a message that names the problem and what to do. `error_result` makes the tool
result a client gets (`isError`, the message, the details under `_meta["aesoperator/error"]`),
`resource_error` the exception a resource read is answered with. Never a traceback: unexpected
failures are logged and answered as internal errors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from aesoperator.engine.stores.out_of_space import out_of_space_errno
from aesoperator.errors import AesopError, AuthError, PermissionDenied, RateLimited

log = logging.getLogger("aesoperator.security.failures")

ERROR_META_KEY = "aesoperator/error"
MAX_ERROR_CHARS = 1_000


class ErrorInfo(BaseModel):
    """Machine-readable details of a failed call (in the result's `_meta`)."""

    type: str
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class CallFailure:
    """How a call failed: the audit decision and what the client is told."""

    decision: str
    info: ErrorInfo


def _validation_summary(exc: ValidationError, most: int = 5) -> str:
    parts = []
    for err in exc.errors()[:most]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (and {exc.error_count() - most} more)" if exc.error_count() > most else ""
    return "; ".join(parts) + more


def _causes(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify(exc: BaseException, what: str) -> CallFailure:
    """Turn an exception raised while serving `what` into a decision and a clear message."""
    for cause in _causes(exc):
        if isinstance(cause, RateLimited):
            msg = f"rate limited: {cause} (retry after {cause.retry_after:.1f} s)"
            info = ErrorInfo(type="rate_limited", message=msg, retry_after=cause.retry_after)
            return CallFailure("rate_limited", info)
        if isinstance(cause, PermissionDenied):
            return CallFailure("deny", ErrorInfo(type="permission_denied", message=f"permission denied: {cause}"))
        if isinstance(cause, AuthError):
            return CallFailure("deny", ErrorInfo(type="unauthenticated", message=f"not authenticated: {cause}"))
        if isinstance(cause, ValidationError):
            msg = f"invalid arguments for {what}: {_validation_summary(cause)}"
            return CallFailure("error", ErrorInfo(type="invalid_arguments", message=msg))
        if isinstance(cause, AesopError):
            kind = type(cause).__name__.removesuffix("Error").lower() or "error"
            return CallFailure("error", ErrorInfo(type=kind, message=f"{what} failed: {cause}"))
    if out_of_space_errno(exc) is not None:  # a write outside the store's own error handling
        os_error = next((c for c in _causes(exc) if isinstance(c, OSError)), None)
        where = f" {os_error.filename}" if os_error is not None and os_error.filename else ""
        why = os_error.strerror if os_error is not None and os_error.strerror else str(exc)
        msg = f"{what} failed: no room left to write{where} ({why}); free disk space and call again"
        return CallFailure("error", ErrorInfo(type="store", message=msg))
    if isinstance(exc, ToolError) and exc.__cause__ is None and exc.__context__ is None:
        return CallFailure("error", ErrorInfo(type="invalid_call", message=str(exc)))
    log.error("unexpected failure in %s", what, exc_info=exc)
    return CallFailure(
        "error", ErrorInfo(type="internal", message=f"{what} failed with an internal error; see the server log")
    )


def error_result(info: ErrorInfo) -> CallToolResult:
    """The tool result of a failed call: `isError`, the message, the details under `_meta`."""
    if len(info.message) > MAX_ERROR_CHARS:
        info = info.model_copy(update={"message": info.message[:MAX_ERROR_CHARS] + "…"})
    return CallToolResult.model_validate(
        {
            "content": [TextContent(type="text", text=info.message)],
            "isError": True,
            "_meta": {ERROR_META_KEY: info.model_dump(exclude_none=True)},
        }
    )


def resource_error(failure: CallFailure) -> Exception:
    """The exception a failed resource read is answered with: a refusal for its rate carries
    `retry_after`; a permission refusal looks like an unknown resource."""
    if failure.info.retry_after is not None:
        return MCPError(INTERNAL_ERROR, failure.info.message, {"retry_after": failure.info.retry_after})
    if failure.info.type == "permission_denied":
        return ResourceNotFoundError(failure.info.message)
    return ResourceError(failure.info.message)
