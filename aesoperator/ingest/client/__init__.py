"""MCP client sessions for ingest: one `SourceDefinition` in, one robust `McpConnection` out.

`open_connection(definition)` starts the server (stdio) or reaches it (streamable HTTP) with the
`mcp` SDK's `Client` and wraps every call in the same guard rails:

- a per-call timeout (`timeout_seconds`): a hung server costs at most that long, and the session
  is dropped (the server process is stopped) so the next call starts clean. Starting a session
  (spawn and handshake) may take at least CONNECT_TIMEOUT_FLOOR seconds, since launchers such as
  `npx -y` may first download the server;
- bounded retries with exponential backoff on connection failures (`retries`): a server that
  died, closed its pipes or garbled its JSON-RPC is restarted or reconnected, then the call is
  sent again;
- a size limit per response (`max_response_bytes`, counted over the content received). The stdio
  transport never assembles a message much larger than that, so a server that answers with
  gigabytes cannot exhaust memory;
- cursor pagination for `list_tools` and `list_resources`;
- one error type: every failure is a `SourceError` naming the server and the call, e.g.
  "source 'git': call_tool git_log timed out after 60s". Failures that concern one item only
  (a tool error, an oversize answer, a JSON-RPC error response) are `McpCallError`s: the session
  is still usable and adapters may record the item as skipped instead of stopping.

Credentials (a static bearer token, or OAuth2 client credentials fetched from `token_url` and
cached until they expire) are sent only to the definition's own origin, and never logged.

Layout: `errors` (the error types), `stdio` (the bounded stdio transport), `credentials` (bearer
tokens and OAuth2 client credentials), `feed` (resource updates), and the connection in layers:
`state` → `transports` → `faults` (guarded calls, failure classification) → `sessions` (lifecycle,
retries) → `calls` (tools, paged listings, resources) and `subscriptions`, joined in `connection`.
"""

from __future__ import annotations

from aesoperator.ingest.client.calls import MAX_PAGES
from aesoperator.ingest.client.connection import McpClientConnection, open_connection
from aesoperator.ingest.client.errors import (
    CallTimeout,
    ConnectionFailed,
    McpCallError,
    ResponseTooLarge,
    ServerRequestError,
    ToolCallError,
)
from aesoperator.ingest.client.feed import LIST_CHANGED, ResourceUpdates
from aesoperator.ingest.client.sessions import BACKOFF_FIRST_SECONDS, BACKOFF_MAX_SECONDS
from aesoperator.ingest.client.state import CONNECT_TIMEOUT_FLOOR, transport_identity
from aesoperator.ingest.client.stdio import RESPONSE_TOO_LARGE, STOP_GRACE_SECONDS, MalformedMessage, OversizeMessage

__all__ = [
    "BACKOFF_FIRST_SECONDS",
    "BACKOFF_MAX_SECONDS",
    "CONNECT_TIMEOUT_FLOOR",
    "LIST_CHANGED",
    "MAX_PAGES",
    "RESPONSE_TOO_LARGE",
    "STOP_GRACE_SECONDS",
    "CallTimeout",
    "ConnectionFailed",
    "MalformedMessage",
    "McpCallError",
    "McpClientConnection",
    "OversizeMessage",
    "ResourceUpdates",
    "ResponseTooLarge",
    "ServerRequestError",
    "ToolCallError",
    "open_connection",
    "transport_identity",
]
