"""The Python API of the product brief: MCP servers, clients, tasks, and queries by server name.

```python
from aesoperator import MCPServer, MCPClient
import aesoperator as aesop

db = MCPServer(name="analytics_db", connection_string="postgresql://...", allowed_tables=["users", "events"])
aesop.register_server(db)
aesop.mcp_query("analytics_db", "events", {"filters": {"kind": "login"}, "limit": 10})
result = aesop.execute_task(aesop.Task(name="user_analysis", mcp_context=[db], inputs={"metric": "retention"}))
```

- `MCPServer` (`server.py`) describes one server: a built-in connector (postgres, git, filesystem,
  github: the rules are enforced by the connector itself), any third-party MCP server
  (`command`/`args` or `url`; reached read-only unless told otherwise), or the engine itself
  (`kind="engine"`). It can `serve()` a built-in connector (stdio, or streamable HTTP on 127.0.0.1
  behind bearer tokens), give the engine a `source_definition()` to ingest from, and report its
  `health()`.
- `MCPClient` (`client.py`) talks to a server over streamable HTTP with a bearer token or OAuth2
  client credentials; its methods are synchronous (an event loop runs in a background thread,
  `loop.py`; live sessions are `links.py`), so it works from a notebook.
- Servers are found by name (`registry.py`: `register_server`, or `[servers.NAME]` tables in
  aesop.toml; the name "engine" is the local context engine, `engine_server.py`): `mcp_query`
  reads, `mcp_update` writes what the server allows, `mcp_subscribe` delivers change events to a
  handler until cancelled (`verbs.py`, `subscriptions.py`).
- `execute_task` (`tasks.py`) syncs the task's sources incrementally, assembles context with the
  hybrid retriever (`task_context.py`), records the task and its outcome in memory, and calls the
  task's operator if it has one. Without an operator it returns the assembled context and says
  that no operator ran.
"""

from __future__ import annotations

from aesoperator.api.client import MCPClient
from aesoperator.api.engine_server import EngineServer
from aesoperator.api.errors import UnknownEventType, UnknownOperation, UnknownServer
from aesoperator.api.registry import get_server, register_server, registered_servers, unregister_server
from aesoperator.api.server import MCPServer
from aesoperator.api.subscriptions import Event, Subscription
from aesoperator.api.task_models import ContextItem, SourceSync, Task, TaskContext, TaskResult
from aesoperator.api.tasks import execute_task, iter_episodes
from aesoperator.api.verbs import health, mcp_query, mcp_subscribe, mcp_update

__all__ = [
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
    "iter_episodes",
    "mcp_query",
    "mcp_subscribe",
    "mcp_update",
    "register_server",
    "registered_servers",
    "unregister_server",
]
