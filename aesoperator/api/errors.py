"""Errors of the Python API, beside those of `aesoperator.errors`."""

from __future__ import annotations

from aesoperator.errors import ConfigError, SchemaError


class UnknownServer(ConfigError):
    """No server is registered (or declared in aesop.toml) under that name."""


class UnknownOperation(SchemaError):
    """The server has no such operation (or query tool)."""


class UnknownEventType(SchemaError):
    """The server cannot deliver that kind of event."""
