"""One exception hierarchy for the whole engine.

Every error names the bad input and, where it can, what to do about it, so that the CLI can
print a single line and the MCP server can return a clear tool error.
"""

from __future__ import annotations


class AesopError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(AesopError):
    """Settings or a config file are invalid."""


class EmbeddingBackendMismatch(ConfigError):
    """The store's vectors were made by another embedding backend than the configured one."""


class SourceError(AesopError):
    """A data source (an MCP server, a folder, a database) misbehaved or could not be read."""


class SchemaError(AesopError):
    """Input does not fit the graph schema (bad ids, types, sizes, dangling relations)."""


class MappingError(SchemaError, ValueError):
    """A source record does not fit its mapper (a missing field, a value of the wrong type, output
    that does not parse). The ingest pipeline quarantines the record with this message as the
    reason and goes on; any other exception from a mapper is a bug and stops the ingest."""


class DocumentError(MappingError):
    """A document file (PDF, Word, ...) that cannot be read: password-protected, corrupt, truncated,
    over a size limit, without a text layer, or needing a library that is not installed. The ingest
    pipeline quarantines it with this message and does not read it again while it is unchanged,
    unless `retry` says the cause lies outside the file (a missing library)."""

    def __init__(self, message: str, *, kind: str, retry: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry = retry


class StoreError(AesopError):
    """The graph store or the vector index could not complete an operation."""


class AuthError(AesopError):
    """Missing or invalid credentials."""


class PermissionDenied(AesopError):
    """Valid credentials, but the operation is outside the caller's scopes."""


class NamespaceConflict(PermissionDenied):
    """A write would move an existing entity or relation into another namespace without saying so."""


class RateLimited(AesopError):
    """Too many calls; `retry_after` says how many seconds to wait."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
