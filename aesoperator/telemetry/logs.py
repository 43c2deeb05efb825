"""Logs: plain text, or one JSON object per line carrying the request id (and trace and span ids
while tracing is on), set up from the `log_level` and `log_format` settings.

A JSON line: `{"time": "...Z", "level": "INFO", "logger": "aesoperator.calls", "message": "...",
"request_id": "...", "trace_id": "...", "span_id": "...", ...fields}`. Code adds fields with
`log.info("...", extra={"fields": {...}})`; only names, counts and timings go there, never content.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

from aesoperator.errors import ConfigError
from aesoperator.telemetry.requests import current_request_id
from aesoperator.telemetry.tracing import current_trace_ids

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = ("text", "json")
ROOT_LOGGER = "aesoperator"
_HANDLER_NAME = "aesop-log-handler"


class RequestContextFilter(logging.Filter):
    """Stamps each record with the request id and the current trace and span ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        if not hasattr(record, "trace_id"):
            ids = current_trace_ids()
            record.trace_id, record.span_id = ids if ids is not None else (None, None)
        return True


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "trace_id", "span_id"):
            value = getattr(record, key, None)
            if value:
                line[key] = value
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if k not in line})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextLogFormatter(logging.Formatter):
    """`time LEVEL logger [request id] message key=value ...`, then the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        fields = getattr(record, "fields", None)
        parts = [self.formatTime(record), record.levelname, record.name]
        if request_id:
            parts.append(f"[{request_id}]")
        parts.append(record.getMessage())
        if isinstance(fields, dict):
            parts.extend(f"{k}={v}" for k, v in fields.items())
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def parse_level(level: str | int) -> int:
    """A logging level from a name (debug, info, warning, error, critical) or a number."""
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ConfigError(f"log level {level!r} is not one of debug, info, warning, error, critical")
    return value


def configure_logging(level: str | int = "WARNING", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Send the package's logs to `stream` (stderr: stdout carries the stdio MCP protocol) at
    `level`, as text or JSON lines. Calling it again replaces the handler it added before."""
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"log format {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else TextLogFormatter())
    value = parse_level(level)
    handler.setLevel(value)
    logger.addHandler(handler)
    # The logger itself is only opened up below the default (warning): left alone otherwise, so
    # whoever configured the root logger (an application embedding the engine, pytest) still
    # decides; records still reach the root's handlers too.
    logger.setLevel(value if value < logging.WARNING else logging.NOTSET)
