"""The request id: one id per MCP call that ties its log lines, its span and its audit record.

While tracing is on the id is the call's trace id (32 hex digits), so a log line or an audit record
leads straight to the trace; while it is off, a random id of the same shape.
"""

from __future__ import annotations

import contextvars
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aesoperator.telemetry.tracing import AttributeValue, mark_error, set_attributes, span, trace_ids

REQUEST_ID_ATTRIBUTE = "aesop.request_id"
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("aesop_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled in this context, or None outside one."""
    return _REQUEST_ID.get()


@dataclass
class RequestScope:
    """The request in progress: its id and its span (None while tracing is off)."""

    request_id: str
    span: Any

    def finish(self, outcome: str, attributes: Mapping[str, AttributeValue]) -> None:
        """Record how the request ended on its span; anything but `allow` marks it as an error."""
        set_attributes(self.span, {"aesop.decision": outcome, **attributes})
        if outcome != "allow":
            mark_error(self.span, outcome)


@contextmanager
def request_scope(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Iterator[RequestScope]:
    """Open the request's span and make its id current for the block."""
    with span(name, attributes) as current:
        ids = trace_ids(current)
        request_id = ids[0] if ids is not None else secrets.token_hex(16)
        set_attributes(current, {REQUEST_ID_ATTRIBUTE: request_id})
        token = _REQUEST_ID.set(request_id)
        try:
            yield RequestScope(request_id, current)
        finally:
            _REQUEST_ID.reset(token)
