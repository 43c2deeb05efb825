"""OpenTelemetry traces: off unless the standard `OTEL_*` variables turn an exporter on.

Tracing is on when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`; `none` is off) or,
without it, when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, which then means `otlp`). `OTEL_SDK_DISABLED=true` turns it
off whatever else is set. The OTLP exporter reads its own variables (endpoint, headers, timeout,
`OTEL_EXPORTER_OTLP_PROTOCOL` = `http/protobuf` by default or `grpc`), the SDK reads
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and the batch processor's `OTEL_BSP_*`.

While tracing is off, `span()` returns one shared no-op context manager: a call costs a global
read and a function call, and the OpenTelemetry packages are not even imported. Attributes carry
names, counts and sizes only, never content (no query text, no arguments, no tokens).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from aesoperator.errors import ConfigError
from aesoperator.version import __version__

SERVICE_NAME = "aesoperator"
INSTRUMENTATION_NAME = "aesoperator"
AttributeValue = str | bool | int | float

_NO_SPAN: AbstractContextManager[None] = nullcontext()
_tracer: Any = None  # an opentelemetry Tracer while tracing is on
_provider: Any = None  # the global TracerProvider, once made
_switch: Any = None  # its SwitchableSpanProcessor


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def exporter_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters the `OTEL_*` variables ask for (empty: tracing stays off)."""
    env = os.environ if environ is None else environ
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return []
    named = env.get("OTEL_TRACES_EXPORTER")
    if named is None or not named.strip():
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    names = [n.strip().lower() for n in named.split(",") if n.strip()]
    return [] if names == ["none"] else [n for n in names if n != "none"]


def _otlp_exporter(environ: Mapping[str, str]) -> Any:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        elif protocol in {"http/protobuf", "http"}:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use 'http/protobuf' (default) or 'grpc'"
            )
    except ImportError as exc:
        package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if protocol == "grpc" else "http")
        raise ConfigError(
            f"OTLP {protocol} export needs the {package} package: pip install 'aesoperator[otel]' ({exc.name} missing)"
        ) from None
    return OTLPSpanExporter()


def _exporter(name: str, environ: Mapping[str, str]) -> Any:
    if name == "otlp":
        return _otlp_exporter(environ)
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ConfigError(f"OTEL_TRACES_EXPORTER names {name!r}: use otlp, console or none")


def configure_tracing(exporter: Any = None, *, environ: Mapping[str, str] | None = None, batch: bool = False) -> bool:
    """Turn tracing on, exporting to `exporter` (a SpanExporter, e.g. the SDK's in-memory one;
    each span as it ends, or in batches with `batch`) or, without it, to the exporters the
    `OTEL_*` variables name (in batches). Returns whether tracing is on.

    The tracer provider becomes the process's global one, so the MCP SDK's own spans (one per
    protocol message, continuing the client's trace when its request carries a `traceparent`)
    are exported too, and the engine's spans nest under them. Calling it again replaces the
    exporters (OpenTelemetry allows one global provider per process: it is kept).

    Raises:
        ConfigError: the variables name an exporter that is unknown or not installed, or the
            OpenTelemetry SDK is missing (install `aesoperator[otel]`).
    """
    global _tracer
    env = os.environ if environ is None else environ
    names = [] if exporter is not None else exporter_names(env)
    if exporter is None and not names:
        return _tracer is not None
    try:
        from opentelemetry.sdk.trace import SpanProcessor
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        raise ConfigError(
            "OTEL_* variables turn tracing on but the OpenTelemetry SDK is not installed: "
            "pip install 'aesoperator[otel]', or unset OTEL_TRACES_EXPORTER"
        ) from None
    processors: list[SpanProcessor] = []
    if exporter is not None:
        processors.append(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    processors += [BatchSpanProcessor(_exporter(name, env)) for name in names]
    provider, switch = _global_provider(env)
    switch.replace(processors)
    _tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__)
    return True


def _global_provider(environ: Mapping[str, str]) -> tuple[Any, Any]:
    """The process's tracer provider and the processor that forwards to the current exporters,
    made and installed globally on first use."""
    global _provider, _switch
    if _provider is None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        from aesoperator.telemetry.span_switch import SwitchableSpanProcessor

        resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME})
        _provider = TracerProvider(resource=resource)
        _switch = SwitchableSpanProcessor()
        _provider.add_span_processor(_switch)
        trace.set_tracer_provider(_provider)
    return _provider, _switch


def shutdown_tracing() -> None:
    """Flush and stop the exporters; the engine's spans are off afterwards."""
    global _tracer
    _tracer = None
    if _switch is not None:
        _switch.replace([])


def tracing_on() -> bool:
    return _tracer is not None


def span(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> AbstractContextManager[Any]:
    """A span named `name`, current inside the block (children nest under it); yields the span,
    or None while tracing is off. An exception leaving the block is recorded on the span."""
    if _tracer is None:
        return _NO_SPAN
    started: AbstractContextManager[Any] = _tracer.start_as_current_span(name, attributes=attributes)
    return started


def set_attributes(current: Any, attributes: Mapping[str, AttributeValue]) -> None:
    """Add attributes to a span from `span()` (a no-op for None, i.e. while tracing is off)."""
    if current is not None:
        current.set_attributes(dict(attributes))


def mark_error(current: Any, description: str) -> None:
    """Set the span's status to error with a short description (no content)."""
    if current is not None:
        from opentelemetry.trace import Status, StatusCode

        current.set_status(Status(StatusCode.ERROR, description))


def trace_ids(current: Any) -> tuple[str, str] | None:
    """(trace id, span id) of a span as lowercase hex, or None while tracing is off."""
    if current is None:
        return None
    context = current.get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def current_trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the span current in this context, or None."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    return trace_ids(trace.get_current_span())
