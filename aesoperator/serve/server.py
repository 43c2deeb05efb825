"""The engine as an MCP server (stdio and streamable HTTP).

`build_server(engine)` returns an `MCPServer` with

- tools: `search`, `recall`, `remember`, `get_entities`, `neighbors`, `sources` (tools_engine.py),
  `update_memory` and `memory_history` (tools_memory_updates.py)
  and the official memory server's nine tools (tools_memory_compat.py), each with typed input and
  output schemas;
- resources: `entity://{id}` (one entity as JSON, then as packed context text within the
  default token budget), `stats://graph` (store statistics) and `memory://knowledge-graph` (the
  memory-server graph, as that server offers it);
- resource subscriptions: `subscriptions/listen` (protocol 2026-07-28) and `resources/subscribe`
  (earlier protocol versions). Updates are driven by the store's change log, polled in the
  background, so writes made by other processes (an `aesop ingest` next door) notify too.

Every tool call resolves the caller (`principal_resolver()`, full access by default, which suits a
local stdio server), asks the call guard to admit it, runs, and reports the outcome to the guard
(allow, deny, error or rate_limited, with the result size and latency). Errors reach the client as
tool results with `isError` set and a one-line message (plus machine-readable details under
`_meta["aesoperator/error"]`), never as tracebacks.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import MCPServer, ResourceSecurity
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import UriTemplate
from mcp_types import (
    INVALID_PARAMS,
    Completion,
    EmptyResult,
    InputRequiredResult,
    ResourceTemplateReference,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)

from aesoperator.errors import AesopError
from aesoperator.security.envelope import GuardedCalls
from aesoperator.security.failures import classify
from aesoperator.security.guard import CallGuard
from aesoperator.security.principal import Principal
from aesoperator.serve.memory_graph import DEFAULT_MEMORY_NAMESPACE, MemoryGraph
from aesoperator.serve.packed_text import entities_text
from aesoperator.serve.sampling_bridge import host_sampling
from aesoperator.serve.schemas import ENTITY_URI_TEMPLATE, MEMORY_GRAPH_URI, STATS_URI, EntityOut
from aesoperator.serve.tools_engine import (
    Runtime,
    entity_out,
    readable_entities,
    register_engine_tools,
    visible_stats,
)
from aesoperator.serve.tools_forget import register_forget_tool
from aesoperator.serve.tools_knowledge import register_knowledge_tools
from aesoperator.serve.tools_memory_compat import register_memory_tools
from aesoperator.serve.tools_memory_updates import register_memory_update_tools
from aesoperator.version import __version__

if TYPE_CHECKING:
    from mcp.server.auth.provider import TokenVerifier
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import Context
    from starlette.applications import Starlette

    from aesoperator.context import ContextEngine
    from aesoperator.engine.stores import GraphStore

log = logging.getLogger(__name__)

SUBSCRIBE_CALL = "subscribe"
COMPLETE_CALL = "complete"
DEFAULT_POLL_SECONDS = 0.25
_ENTITY_TEMPLATE = UriTemplate.parse(ENTITY_URI_TEMPLATE)

INSTRUCTIONS = """\
A knowledge graph of the user's sources (code, documents, databases, issues) and of agents' memories.
- `search` first: its text is the packed context (passages and entities, most relevant first, with
  short source references and dates, cut to `token_budget`); its structured content has the ranked
  hits with ids, reasons and provenance. Follow up with `get_entities` / `neighbors` on those ids.
- `remember` stores an event for an agent (agent_id, session_id); `recall` finds relevant earlier events
  (what holds now; `as_of` for an earlier time). `update_memory` corrects one; `memory_history` shows
  every version of a memory, a fact or what is known about an entity; `forget` retires events that are
  no longer true (or erases them, with purge).
- `sources` says what is ingested and how fresh it is.
- The memory-server tools (create_entities, add_observations, read_graph, search_nodes, ...) keep a
  small knowledge graph of their own, with the same shapes as the official memory server.
"""


def entity_id_from_uri(uri: str) -> str | None:
    params = _ENTITY_TEMPLATE.match(uri)
    if not params:
        return None
    value = params.get("id")
    return value if isinstance(value, str) and value else None


# -- change notifications ------------------------------------------------------------------------------
class ChangeNotifier:
    """Tells subscribers when a resource they watch changes, from the store's change log.

    One poller runs at a time per server (each lifespan runs a watcher that takes over when no
    poller is running). It reads the change log only while someone is subscribed."""

    def __init__(self, store: GraphStore, bus: InMemorySubscriptionBus, memory_namespace: str, interval: float) -> None:
        self.store = store
        self.bus = bus
        self.memory_namespace = memory_namespace
        self.interval = interval
        self.seq: int | None = None
        self._legacy: dict[str, dict[int, Any]] = {}
        self._listening: Counter[str] = Counter()
        self._polling = False

    # subscriptions ---------------------------------------------------------------------------
    def watched(self) -> set[str]:
        return {u for u, n in self._listening.items() if n > 0} | {u for u, s in self._legacy.items() if s}

    def add_session(self, uri: str, session: Any) -> None:
        self._legacy.setdefault(uri, {})[_connection_key(session)] = session

    def remove_session(self, uri: str, session: Any) -> None:
        sessions = self._legacy.get(uri)
        if sessions is not None:
            sessions.pop(_connection_key(session), None)
            if not sessions:
                del self._legacy[uri]

    def listen(self, uris: Sequence[str]) -> None:
        self._listening.update(uris)

    def unlisten(self, uris: Sequence[str]) -> None:
        self._listening.subtract(uris)
        for uri in [u for u, n in self._listening.items() if n <= 0]:
            del self._listening[uri]

    # polling ---------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            if not self._polling:
                self._polling = True
                try:
                    await self._poll()
                finally:
                    self._polling = False
            await anyio.sleep(self.interval)

    async def starting_to_watch(self) -> None:
        """Call before adding a subscription: with nothing watched, the change log is not read, so
        its position is taken now (changes before the subscription are not reported)."""
        if not self.watched():
            self.seq = await anyio.to_thread.run_sync(self.store.last_seq)

    async def _poll(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # a store hiccup must not end notifications for good
                log.warning("could not read the change log; will retry", exc_info=True)

    async def check(self) -> None:
        """Read new changes and notify subscribers of the resources they touch."""
        if not self.watched():
            return
        if self.seq is None:
            self.seq = await anyio.to_thread.run_sync(self.store.last_seq)
            return
        start = self.seq
        changes = await anyio.to_thread.run_sync(lambda: self.store.changes_since(start, 10_000))
        if not changes:
            return
        self.seq = changes[-1].seq
        watched = self.watched()
        touched: set[str] = set()
        if STATS_URI in watched:
            touched.add(STATS_URI)
        if MEMORY_GRAPH_URI in watched and any(c.namespace == self.memory_namespace for c in changes):
            touched.add(MEMORY_GRAPH_URI)
        changed_ids = {c.id for c in changes if c.kind == "entity"}
        for uri in watched:
            eid = entity_id_from_uri(uri)
            if eid is not None and eid in changed_ids:
                touched.add(uri)
        for uri in sorted(touched):
            await self.notify(uri)

    async def notify(self, uri: str) -> None:
        if self._listening.get(uri, 0) > 0:
            await self.bus.publish(ResourceUpdated(uri=uri))
        for key, session in list(self._legacy.get(uri, {}).items()):
            try:
                with anyio.fail_after(10):
                    await session.send_resource_updated(uri)
            except Exception:  # the connection went away: forget it
                self._legacy.get(uri, {}).pop(key, None)


def _connection_key(session: Any) -> int:
    # One ServerSession is built per request; the connection behind it is what subscribes.
    return id(getattr(session, "_connection", session))


# -- the server ----------------------------------------------------------------------------------------
class AesopMCPServer(MCPServer[Any]):
    """MCPServer whose tool calls and resource reads run in the guarded-call envelope
    (`security/envelope.py`): the caller resolved, admitted by the call guard, audited, and
    errors turned into one-line messages."""

    def __init__(
        self,
        runtime: Runtime,
        guard: CallGuard | None,
        notifier: ChangeNotifier,
        name: str,
        **kwargs: Any,
    ) -> None:
        self.runtime = runtime
        self.guard = guard
        self.calls = GuardedCalls(guard, runtime.resolve_principal)
        self.notifier = notifier
        super().__init__(name, **kwargs)

    def _principal(self) -> Principal:
        return self.runtime.resolve_principal()

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None) -> Any:
        # extraction inside the call may ask the calling client's model (llm_transport = "sampling")
        with host_sampling(context, self.runtime.engine.settings):
            return await self.calls.call_tool(
                name, arguments, lambda: super(AesopMCPServer, self).call_tool(name, arguments, context)
            )

    async def read_resource(self, uri: Any, context: Context[Any, Any] | None = None) -> Any:
        async def read() -> Any:
            contents = await super(AesopMCPServer, self).read_resource(uri, context)
            if entity_id_from_uri(str(uri)) is None or isinstance(contents, InputRequiredResult):
                return contents
            return await anyio.to_thread.run_sync(self._with_context_text, list(contents))

        return await self.calls.read_resource(str(uri), read)

    def _with_context_text(self, contents: list[ReadResourceContents]) -> list[ReadResourceContents]:
        """An entity's JSON followed by the entity as packed context, for a model to read."""
        entity = EntityOut.model_validate_json(contents[0].content)
        rt = self.runtime
        text = entities_text([entity], [], rt.budget(None), rt.count_tokens, "ask with get_entities and a token_budget")
        return [*contents, ReadResourceContents(content=text, mime_type="text/plain")]


def _default_resolver() -> Principal:
    return Principal.full_access()


def build_server(
    engine: ContextEngine,
    guard: CallGuard | None = None,
    principal_resolver: Callable[[], Principal] | None = None,
    name: str = "aesoperator",
    *,
    memory_namespace: str = DEFAULT_MEMORY_NAMESPACE,
    poll_interval: float = DEFAULT_POLL_SECONDS,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    warm: bool = True,
    load_model: bool = False,
) -> AesopMCPServer:
    """The engine's MCP server. Serve it with `run_stdio(server)` or `http_app(server)`.

    `principal_resolver` says who is calling (on HTTP, from the verified bearer token); without it
    every call has full access, which is right for a stdio server started by the user. `guard`
    admits and records every call. `token_verifier` and `auth` turn on bearer-token checks for
    HTTP (the MCP SDK's auth settings). With `warm`, the vector index is synced in the background
    when serving starts; with `load_model` too, the embedding model is loaded then, so the first
    search does not wait for it (without, the model is loaded by the first call that embeds: a
    server used only through the memory-server tools never loads it)."""
    runtime = Runtime(
        engine=engine,
        resolve_principal=principal_resolver or _default_resolver,
        memory_namespace=memory_namespace,
        guard=guard,
    )
    bus = InMemorySubscriptionBus()
    notifier = ChangeNotifier(engine.store, bus, memory_namespace, poll_interval)

    warmed = threading.Event()

    def warm_up() -> None:
        """Bring the vector index up to date (and load the model, if asked) before the first search."""
        try:
            if load_model:
                load = getattr(engine.embedder, "load", None)
                if callable(load):
                    load()
            engine.refresh_index()
        except Exception:
            log.warning("warming up the engine failed; the first search will retry", exc_info=True)

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        if warm and not warmed.is_set():
            warmed.set()
            threading.Thread(target=warm_up, name="aesop-warm-up", daemon=True).start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.run)
            try:
                yield {}
            finally:
                tg.cancel_scope.cancel()

    server = AesopMCPServer(
        runtime,
        guard,
        notifier,
        name,
        title="Aesoperator context engine",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        subscriptions=bus,
        token_verifier=token_verifier,
        auth=auth,
        # entity ids are not file paths: they are looked up, never opened
        resource_security=ResourceSecurity(reject_path_traversal=False, reject_absolute_paths=False),
        log_level="WARNING",
    )
    memory = MemoryGraph(engine, memory_namespace)
    register_engine_tools(server, runtime)
    register_forget_tool(server, runtime)
    register_knowledge_tools(server, runtime)
    register_memory_tools(server, runtime, memory)
    register_memory_update_tools(server, runtime)
    _register_resources(server, runtime, memory)
    _register_subscriptions(server, runtime, notifier)
    _register_completion(server, runtime)
    limit_requests = getattr(guard, "request_middleware", None)  # initialize, tools/list, ...: limited too
    if limit_requests is not None:
        server.middleware.append(limit_requests(runtime.resolve_principal))
    return server


# -- resources -------------------------------------------------------------------------------------------
def _register_resources(server: AesopMCPServer, rt: Runtime, memory: MemoryGraph) -> None:
    @server.resource(
        ENTITY_URI_TEMPLATE,
        name="entity",
        title="Entity",
        description="One entity of the graph as JSON: type, name, text, properties, provenance, validity.",
        mime_type="application/json",
    )
    def read_entity(id: str) -> str:
        principal = rt.principal()
        found = rt.engine.get_entities([id], principal.read_namespaces())
        if not found:
            raise ResourceNotFoundError(f"no entity {id[:200]!r} (unknown, or outside your namespaces)")
        rt.count(1)
        return entity_out(readable_entities(rt, found)[0]).model_dump_json(indent=2)

    @server.resource(
        STATS_URI,
        name="graph-stats",
        title="Graph statistics",
        description="Counts of entities, relations, vectors, types and namespaces, and the change-log position.",
        mime_type="application/json",
    )
    def read_stats() -> str:
        stats = visible_stats(rt.engine.stats(), rt.principal())
        rt.count(1)
        return stats.model_dump_json(indent=2)

    @server.resource(
        MEMORY_GRAPH_URI,
        name="knowledge-graph",
        title="Knowledge Graph",
        description="The full knowledge graph with all entities and relations",
        mime_type="application/json",
    )
    def read_memory_graph() -> str:
        rt.principal().read_namespaces([memory.namespace])
        graph = memory.read_graph()
        rt.count(len(graph.entities))
        return json.dumps(graph.model_dump(mode="json", by_alias=True), indent=2, ensure_ascii=False)


def _register_completion(server: AesopMCPServer, rt: Runtime) -> None:
    """Completion of `entity://{id}`: ids of readable entities whose name or text matches the typed
    prefix, ids that start with it first."""

    def candidates(prefix: str) -> list[str]:
        principal = rt.resolve_principal()
        if server.guard is not None:
            server.guard.admit(principal, COMPLETE_CALL)
        if not prefix.strip():
            return []
        ns = principal.read_namespaces()
        ids = [eid for eid, _ in rt.engine.store.keyword_search(prefix[:200], 100, namespaces=ns)]
        ids += [eid for found in rt.engine.store.name_lookup([prefix[:1000]], namespaces=ns).values() for eid in found]
        unique = list(dict.fromkeys(ids))
        return sorted(unique, key=lambda eid: (not eid.startswith(prefix), unique.index(eid)))

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion:
        if not (
            isinstance(ref, ResourceTemplateReference) and ref.uri == ENTITY_URI_TEMPLATE and argument.name == "id"
        ):
            return Completion(values=[], total=0, has_more=False)
        try:
            values = await anyio.to_thread.run_sync(candidates, str(argument.value))
        except AesopError:
            values = []
        return Completion(values=values[:100], total=len(values), has_more=len(values) > 100)


async def _check_subscribable(rt: Runtime, uri: str) -> None:
    """Raise MCPError if `uri` names an entity the caller cannot read (unknown and unreadable look the
    same) or the memory graph without read access. Other URIs are accepted and never fire, as the
    protocol has it for subscriptions to resources that do not exist."""

    def check() -> None:
        principal = rt.resolve_principal()
        if uri == STATS_URI:
            if principal.read_namespaces() is not None:  # it would report writes in other namespaces
                raise ValueError("stats://graph changes with writes in every namespace: subscribing needs read:*")
            return
        if uri == MEMORY_GRAPH_URI:
            principal.read_namespaces([rt.memory_namespace])
            return
        eid = entity_id_from_uri(uri)
        if eid is None:
            return  # not one of this server's resources: honoured, and never fires
        if not rt.engine.get_entities([eid], principal.read_namespaces()):
            raise ValueError(f"no entity {eid[:200]!r} (unknown, or outside your namespaces)")

    try:
        await anyio.to_thread.run_sync(check)
    except (ValueError, AesopError) as exc:
        raise MCPError(INVALID_PARAMS, f"cannot subscribe: {exc}") from None


def _register_subscriptions(server: AesopMCPServer, rt: Runtime, notifier: ChangeNotifier) -> None:
    """`resources/subscribe` for clients on protocol versions before 2026-07-28, and bookkeeping of
    `subscriptions/listen` streams so the poller knows which URIs are watched."""

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        await _check_subscribable(rt, params.uri)
        if server.guard is not None:
            try:
                server.guard.admit(rt.resolve_principal(), SUBSCRIBE_CALL)
            except AesopError as exc:
                raise MCPError(INVALID_PARAMS, classify(exc, "subscribe").info.message) from None
        await notifier.starting_to_watch()
        notifier.add_session(params.uri, ctx.session)
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        notifier.remove_session(params.uri, ctx.session)
        return EmptyResult()

    async def track_listen(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "subscriptions/listen":
            return await call_next(ctx)
        notifications = (ctx.params or {}).get("notifications")
        raw = notifications.get("resourceSubscriptions") if isinstance(notifications, Mapping) else None
        uris = [u for u in raw if isinstance(u, str)] if isinstance(raw, list) else []
        for uri in uris:
            await _check_subscribable(rt, uri)
        if uris:
            await notifier.starting_to_watch()
        notifier.listen(uris)
        try:
            return await call_next(ctx)
        finally:
            notifier.unlisten(uris)

    lowlevel = server._lowlevel_server  # the MCPServer API has no hook for resources/subscribe
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    server.middleware.append(track_listen)


# -- transports ------------------------------------------------------------------------------------------
def run_stdio(server: MCPServer[Any]) -> None:
    """Serve over stdin/stdout until the client disconnects."""
    anyio.run(server.run_stdio_async)


def http_app(server: MCPServer[Any], host: str = "127.0.0.1", path: str = "/mcp") -> Starlette:
    """The streamable HTTP app (with DNS-rebinding protection when bound to a loopback address)."""
    return server.streamable_http_app(streamable_http_path=path, host=host)


def run_http(server: MCPServer[Any], host: str = "127.0.0.1", port: int = 8765, path: str = "/mcp") -> None:
    """Serve streamable HTTP on host:port until interrupted."""
    import uvicorn

    config = uvicorn.Config(http_app(server, host=host, path=path), host=host, port=port, log_level="warning")
    anyio.run(uvicorn.Server(config).serve)


__all__ = [
    "AesopMCPServer",
    "ChangeNotifier",
    "build_server",
    "http_app",
    "run_http",
    "run_stdio",
]
