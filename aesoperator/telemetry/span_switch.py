"""A span processor whose exporters can be replaced: OpenTelemetry keeps the first global tracer
provider of a process, so turning tracing on again (or off) swaps what this processor forwards to."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor


class SwitchableSpanProcessor(SpanProcessor):
    """Forwards every span to the processors of the moment (none: spans are dropped)."""

    def __init__(self) -> None:
        self._processors: tuple[SpanProcessor, ...] = ()
        self._lock = threading.Lock()

    def replace(self, processors: Sequence[SpanProcessor]) -> None:
        """Forward to `processors` from now on; the previous ones are flushed and shut down."""
        with self._lock:
            old, self._processors = self._processors, tuple(processors)
        for processor in old:
            processor.shutdown()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._processors:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        self.replace([])

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(processor.force_flush(timeout_millis) for processor in self._processors)
