"""aesoperator: a knowledge-graph context engine for AI agents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aesoperator.version import __version__

if TYPE_CHECKING:
    from aesoperator.api import (
        ContextItem as ContextItem,
    )
    from aesoperator.api import (
        EngineServer as EngineServer,
    )
    from aesoperator.api import (
        Event as Event,
    )
    from aesoperator.api import (
        MCPClient as MCPClient,
    )
    from aesoperator.api import (
        MCPServer as MCPServer,
    )
    from aesoperator.api import (
        SourceSync as SourceSync,
    )
    from aesoperator.api import (
        Subscription as Subscription,
    )
    from aesoperator.api import (
        Task as Task,
    )
    from aesoperator.api import (
        TaskContext as TaskContext,
    )
    from aesoperator.api import (
        TaskResult as TaskResult,
    )
    from aesoperator.api import (
        UnknownEventType as UnknownEventType,
    )
    from aesoperator.api import (
        UnknownOperation as UnknownOperation,
    )
    from aesoperator.api import (
        UnknownServer as UnknownServer,
    )
    from aesoperator.api import (
        execute_task as execute_task,
    )
    from aesoperator.api import (
        get_server as get_server,
    )
    from aesoperator.api import (
        health as health,
    )
    from aesoperator.api import (
        mcp_query as mcp_query,
    )
    from aesoperator.api import (
        mcp_subscribe as mcp_subscribe,
    )
    from aesoperator.api import (
        mcp_update as mcp_update,
    )
    from aesoperator.api import (
        register_server as register_server,
    )
    from aesoperator.api import (
        registered_servers as registered_servers,
    )
    from aesoperator.api import (
        unregister_server as unregister_server,
    )
    from aesoperator.context import ContextEngine as ContextEngine
    from aesoperator.engine.search import SearchSettings as SearchSettings

# The brief's API (aesoperator/api/), imported on first use so that `import aesoperator` stays light.
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


# The engine, imported on first use too: `import aesoperator.errors` must not load numpy and FAISS.
_ENGINE = ("ContextEngine", "SearchSettings")


def __getattr__(name: str) -> Any:
    if name in _API:
        from aesoperator import api

        return getattr(api, name)
    if name == "ContextEngine":
        from aesoperator.context import ContextEngine

        return ContextEngine
    if name == "SearchSettings":
        from aesoperator.engine.search import SearchSettings

        return SearchSettings
    raise AttributeError(f"module 'aesoperator' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, *_ENGINE])


__all__ = ["__version__", *_ENGINE, *_API]
