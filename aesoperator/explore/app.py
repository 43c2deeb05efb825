"""The explorer as an ASGI app: the page and its assets, and the JSON API under `api/`.

Every API call goes through one envelope (`ExplorerApp._call`): the Host check, the caller
(`CallerAuth`: bearer token, or the local principal without authentication), the same tool
scopes and rate limit as the MCP server (`CallGuard.admit`, with the MCP tool each endpoint
stands for), the read through the caller's namespaces on a worker thread, and one record in the
same audit log as the MCP server (`explore.<endpoint>`), refusals and failures included. Errors are
JSON with a one-line message, never a traceback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from aesoperator.context import ContextEngine
from aesoperator.engine.stores import StoreStats
from aesoperator.errors import PermissionDenied, RateLimited, SchemaError
from aesoperator.explore import queries
from aesoperator.explore.models import ErrorOut, WhoAmI
from aesoperator.explore.params import EntityParams, GraphParams, MemoryParams, ResyncBody, SearchParams
from aesoperator.explore.sources_view import ResyncJobs, list_sources
from aesoperator.explore.web_security import (
    CallerAuth,
    RequestRefused,
    SecurityHeaders,
    check_host,
    check_state_change,
)
from aesoperator.security.failures import classify
from aesoperator.security.guard import CallGuard
from aesoperator.security.principal import Principal

PREFIX = "/explore"
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "graph.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
INDEX_FILE = "index.html"
MAX_BODY_BYTES = 4096
# The MCP tool each endpoint stands for: a token's `tool:` scopes allow the same reads here.
TOOL_OF = {
    "me": None,
    "search": "search",
    "entity": "entity",
    "graph": "neighbors",
    "agents": "recall",
    "memory": "recall",
    "sources": "sources",
    "resync": "resync_source",
}
_STATUS_OF_ERROR = {"permission_denied": 403, "unauthenticated": 401, "rate_limited": 429, "internal": 500}


def _asset(name: str) -> bytes:
    return resources.files("aesoperator.explore").joinpath("static", name).read_bytes()


def _json(payload: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        payload.model_dump_json(),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store", **(headers or {})},
    )


def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(ErrorOut(error=error, message=message), status, headers)


@dataclass
class _StatsCache:
    """`stats()` for the page's filters, read again only when the store changed."""

    seq: int = -1
    stats: StoreStats | None = None


class ExplorerApp:
    """Holds the engine, the caller check and the audit; `asgi()` is the app to serve or mount."""

    def __init__(
        self,
        engine: ContextEngine,
        auth: CallerAuth,
        guard: CallGuard | None = None,
        *,
        allowed_hosts: frozenset[str] | None = None,
        origin: str | None = None,
    ) -> None:
        self.engine = engine
        self.auth = auth
        self.guard = guard
        self.allowed_hosts = allowed_hosts
        self.origin = origin
        self.jobs = ResyncJobs(engine)
        self._stats = _StatsCache()
        self._stats_lock = threading.Lock()
        self._assets = {name: _asset(name) for name in STATIC_FILES}
        self._index = _asset(INDEX_FILE)

    # -- the app --------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/static/{name}", self.static, methods=["GET"]),
            Route("/api/me", self.me, methods=["GET"]),
            Route("/api/search", self.search, methods=["GET"]),
            Route("/api/entity", self.entity, methods=["GET"]),
            Route("/api/graph", self.graph, methods=["GET"]),
            Route("/api/agents", self.agents, methods=["GET"]),
            Route("/api/memory", self.memory, methods=["GET"]),
            Route("/api/sources", self.sources, methods=["GET"]),
            Route("/api/sources/resync", self.resync, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]

    def asgi(self) -> ASGIApp:
        """The explorer's routes at the root (mount it under `PREFIX`), with the security headers."""
        return SecurityHeaders(Starlette(routes=self.routes()))

    # -- page and assets ------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        if (refused := self._host_refusal(request)) is not None:
            return refused
        return Response(self._index, media_type="text/html; charset=utf-8", headers={"cache-control": "no-store"})

    async def static(self, request: Request) -> Response:
        if (refused := self._host_refusal(request)) is not None:
            return refused
        name = request.path_params["name"]
        media = STATIC_FILES.get(name)
        if media is None:
            return _error(404, "not_found", f"no asset {name[:80]!r}")
        return Response(self._assets[name], media_type=media, headers={"cache-control": "no-cache"})

    def _host_refusal(self, request: Request) -> Response | None:
        try:
            check_host(request.headers, self.allowed_hosts)
        except RequestRefused as exc:
            return _error(exc.status, exc.error, exc.message)
        return None

    # -- the API --------------------------------------------------------------------------------
    async def me(self, request: Request) -> Response:
        return await self._call(request, "me", {}, lambda p: (self._whoami(p), 1))

    async def search(self, request: Request) -> Response:
        def run(p: Principal, args: SearchParams) -> tuple[BaseModel, int]:
            out = queries.search(
                self.engine,
                p.read_namespaces(args.namespace or None),
                args.q,
                k=args.k,
                hops=args.hops,
                types=args.type,
                sources=args.source,
                as_of=args.as_of,
            )
            return out, len(out.hits)

        return await self._call_with(request, "search", SearchParams, run, lists=("namespace", "type", "source"))

    async def entity(self, request: Request) -> Response:
        def run(p: Principal, args: EntityParams) -> tuple[BaseModel, int]:
            return queries.entity_page(self.engine, p.read_namespaces(), args.id), 1

        return await self._call_with(request, "entity", EntityParams, run)

    async def graph(self, request: Request) -> Response:
        def run(p: Principal, args: GraphParams) -> tuple[BaseModel, int]:
            out = queries.neighbourhood(
                self.engine, p.read_namespaces(), args.id, relation_types=args.relation_type, as_of=args.as_of
            )
            return out, len(out.nodes)

        return await self._call_with(request, "graph", GraphParams, run, lists=("relation_type",))

    async def agents(self, request: Request) -> Response:
        def run(p: Principal) -> tuple[BaseModel, int]:
            counts = self._readable_counts(p)
            out = queries.agents(list(counts), counts)
            return out, len(out.agents)

        return await self._call(request, "agents", {}, run)

    async def memory(self, request: Request) -> Response:
        def run(p: Principal, args: MemoryParams) -> tuple[BaseModel, int]:
            out = queries.memory_timeline(self.engine, p.read_namespaces(), args.agent)
            return out, out.shown

        return await self._call_with(request, "memory", MemoryParams, run)

    async def sources(self, request: Request) -> Response:
        def run(p: Principal) -> tuple[BaseModel, int]:
            out = list_sources(self.engine, p, self.jobs)
            return out, len(out.sources)

        return await self._call(request, "sources", {}, run)

    async def resync(self, request: Request) -> Response:
        try:
            check_state_change(request.method, request.headers, self.origin)
            raw = await request.body()
            if len(raw) > MAX_BODY_BYTES:
                raise RequestRefused(413, "too_large", f"the body may hold at most {MAX_BODY_BYTES} bytes")
            body = ResyncBody.model_validate_json(raw or b"{}")
        except RequestRefused as exc:
            return await self._refuse_unaudited_or(request, "resync", exc)
        except ValidationError as exc:
            return _error(400, "invalid_arguments", classify(exc, "resync").info.message)
        return await self._call(
            request, "resync", {"source": body.source}, lambda p: (self.jobs.start(p, body.source), 1), status=202
        )

    # -- the envelope ---------------------------------------------------------------------------
    async def _call_with(
        self,
        request: Request,
        action: str,
        params: type[Any],
        run: Callable[[Principal, Any], tuple[BaseModel, int]],
        lists: tuple[str, ...] = (),
    ) -> Response:
        arguments = {k: request.query_params.getlist(k) for k in request.query_params}
        try:
            args = params.from_query(request.query_params, lists)
        except ValidationError as exc:
            invalid = exc
            return await self._call(request, action, arguments, lambda p: _raise(invalid))
        return await self._call(request, action, arguments, lambda p: run(p, args))

    async def _call(
        self,
        request: Request,
        action: str,
        arguments: dict[str, Any],
        run: Callable[[Principal], tuple[BaseModel, int]],
        status: int = 200,
    ) -> Response:
        started = time.perf_counter()
        try:
            check_host(request.headers, self.allowed_hosts)
            principal = await self.auth.principal(request.headers)
        except RequestRefused as exc:
            headers = {"www-authenticate": exc.challenge} if exc.challenge else None
            return _error(exc.status, exc.error, exc.message, headers)
        what = f"explore {action}"
        try:
            tool = TOOL_OF[action]
            if tool is not None:
                principal.require_tool(tool)
                if self.guard is not None:
                    self.guard.admit(principal, tool)
            payload, count = await anyio.to_thread.run_sync(run, principal)
        except RateLimited as exc:
            if self.guard is not None:
                self.guard.refused(principal, f"explore.{action}")
            info = classify(exc, what).info
            return _error(429, info.type, info.message, {"retry-after": str(max(1, round(exc.retry_after)))})
        except Exception as exc:
            failure = classify(exc, what)
            status_code = _status_for(exc, failure.info.type)
            await self._record(principal, action, arguments, failure.decision, 0, started)
            return _error(status_code, failure.info.type, failure.info.message)
        try:
            await self._record(principal, action, arguments, "allow", count, started)
        except Exception as exc:  # a call that cannot be audited is reported as failed
            info = classify(exc, what).info
            return _error(500, info.type, info.message)
        return _json(payload, status)

    async def _record(
        self, principal: Principal, action: str, arguments: Any, decision: str, count: int, started: float
    ) -> None:
        guard = self.guard
        if guard is None:
            return
        latency = (time.perf_counter() - started) * 1000
        await anyio.to_thread.run_sync(
            guard.record, principal, f"explore.{action}", arguments, decision, count, latency
        )

    async def _refuse_unaudited_or(self, request: Request, action: str, exc: RequestRefused) -> Response:
        """A malformed state-changing request: recorded as denied when its caller is known."""
        try:
            check_host(request.headers, self.allowed_hosts)
            principal = await self.auth.principal(request.headers)
        except RequestRefused as refused:
            return _error(refused.status, refused.error, refused.message)
        await self._record(principal, action, {"method": request.method}, "deny", 0, time.perf_counter())
        return _error(exc.status, exc.error, exc.message)

    # -- helpers --------------------------------------------------------------------------------
    def _store_stats(self) -> StoreStats:
        seq = self.engine.store.last_seq()
        with self._stats_lock:
            if self._stats.stats is None or self._stats.seq != seq:
                self._stats = _StatsCache(seq, self.engine.stats())
            assert self._stats.stats is not None
            return self._stats.stats

    def _readable_counts(self, principal: Principal) -> dict[str, int]:
        """Entities per namespace, for the namespaces the caller may read that hold data."""
        readable = principal.read_namespaces()
        stats = self._store_stats()
        return {ns: n for ns, n in sorted(stats.namespaces.items()) if readable is None or ns in readable}

    def _whoami(self, principal: Principal) -> WhoAmI:
        counts = self._readable_counts(principal)
        everything = principal.read_namespaces() is None
        stats = self._store_stats()
        return WhoAmI(
            principal=principal.id,
            kind=principal.kind,
            scopes=list(principal.scopes),
            namespaces=list(counts),
            all_namespaces=everything,
            # types and source names of namespaces the caller cannot read are not shown
            entity_types=sorted(stats.entity_types) if everything else [],
            sources=sorted(s for s in self.engine.store.source_names() if principal.can_see_source(s))
            if everything
            else [],
            entities=sum(counts.values()),
        )


def _raise(exc: Exception) -> tuple[BaseModel, int]:
    raise exc


def _status_for(exc: Exception, kind: str) -> int:
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, SchemaError):
        return 404 if "no entity" in str(exc) or "no agent" in str(exc) else 400
    return _STATUS_OF_ERROR.get(kind, 400 if kind != "store" else 503)


def explorer_routes(explorer: ExplorerApp) -> list[Route | Mount]:
    """`/explore/...` and a redirect from `/explore`, for an app that serves other paths too."""

    async def to_index(request: Request) -> Response:
        return RedirectResponse(PREFIX + "/", status_code=308)

    return [Route(PREFIX, to_index, methods=["GET"]), Mount(PREFIX, app=explorer.asgi())]


def standalone_app(explorer: ExplorerApp) -> ASGIApp:
    """The explorer alone (`aesop explore`): `/explore/...`, and `/` leads there."""

    async def to_explorer(request: Request) -> Response:
        return RedirectResponse(PREFIX + "/", status_code=307)

    return SecurityHeaders(Starlette(routes=[Route("/", to_explorer, methods=["GET"]), *explorer_routes(explorer)]))
