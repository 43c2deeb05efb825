"""aesoperator: a knowledge-graph context engine for AI agents.

The public API, re-exported here. Only the errors and the version are imported with the package:
everything else is imported on first use, so `import aesoperator` stays light (no numpy, FAISS,
torch or sentence-transformers until they are needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aesoperator.errors import (
    AesopError,
    AuthError,
    ConfigError,
    DocumentError,
    EmbeddingBackendMismatch,
    MappingError,
    NamespaceConflict,
    PermissionDenied,
    RateLimited,
    SchemaError,
    SourceError,
    StoreError,
)
from aesoperator.version import __version__

if TYPE_CHECKING:
    from aesoperator.api import (
        ContextItem,
        EngineServer,
        Event,
        MCPClient,
        MCPServer,
        SourceSync,
        Subscription,
        Task,
        TaskContext,
        TaskResult,
        UnknownEventType,
        UnknownOperation,
        UnknownServer,
        execute_task,
        get_server,
        health,
        mcp_query,
        mcp_subscribe,
        mcp_update,
        register_server,
        registered_servers,
        unregister_server,
    )
    from aesoperator.config import Settings
    from aesoperator.context import ContextEngine
    from aesoperator.engine.search import SearchSettings
    from aesoperator.graph_schema.models import Entity, Episode, Provenance, Relation

# The brief's API (aesoperator/api/).
_API = (
    "ContextItem",
    "EngineServer",
    "Event",
    "MCPClient",
    "MCPServer",
    "SourceSync",
    "Subscription",
    "Task",
    "TaskContext",
    "TaskResult",
    "UnknownEventType",
    "UnknownOperation",
    "UnknownServer",
    "execute_task",
    "get_server",
    "health",
    "mcp_query",
    "mcp_subscribe",
    "mcp_update",
    "register_server",
    "registered_servers",
    "unregister_server",
)
_MODELS = ("Entity", "Relation", "Episode", "Provenance")
_LAZY = (*_API, *_MODELS, "ContextEngine", "SearchSettings", "Settings")


def __getattr__(name: str) -> Any:
    # Each import on first use: pydantic, numpy, FAISS and the MCP SDK cost more than the
    # package itself, and `import aesoperator.errors` runs this module first.
    value: Any
    if name in _API:
        from aesoperator import api

        value = getattr(api, name)
    elif name in _MODELS:
        from aesoperator.graph_schema import models

        value = getattr(models, name)
    elif name == "Settings":
        from aesoperator.config import Settings

        value = Settings
    elif name == "ContextEngine":
        from aesoperator.context import ContextEngine

        value = ContextEngine
    elif name == "SearchSettings":
        from aesoperator.engine.search import SearchSettings

        value = SearchSettings
    else:
        raise AttributeError(f"module 'aesoperator' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AesopError",
    "AuthError",
    "ConfigError",
    "ContextEngine",
    "ContextItem",
    "DocumentError",
    "EmbeddingBackendMismatch",
    "EngineServer",
    "Entity",
    "Episode",
    "Event",
    "MCPClient",
    "MCPServer",
    "MappingError",
    "NamespaceConflict",
    "PermissionDenied",
    "Provenance",
    "RateLimited",
    "Relation",
    "SchemaError",
    "SearchSettings",
    "Settings",
    "SourceError",
    "SourceSync",
    "StoreError",
    "Subscription",
    "Task",
    "TaskContext",
    "TaskResult",
    "UnknownEventType",
    "UnknownOperation",
    "UnknownServer",
    "__version__",
    "execute_task",
    "get_server",
    "health",
    "mcp_query",
    "mcp_subscribe",
    "mcp_update",
    "register_server",
    "registered_servers",
    "unregister_server",
]
