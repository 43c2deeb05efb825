"""Prometheus metrics of a serving engine, on a port of their own (`metrics_port`).

Why a separate port rather than `/metrics` on the MCP endpoint: the MCP endpoint requires a bearer
token on every request and answers through the call guard (rate limits, audit), which a scraper
should neither need nor load; a loopback-only port keeps the numbers off the network by default
(`--allow-remote` is needed to bind elsewhere, as for the MCP endpoint) and leaves the MCP app's
routes as they are.

What is counted as it happens lives in `aesoperator.telemetry.metrics` (calls, errors, latency,
rate-limit refusals, ingest items); `ServingCollector` reads the rest at scrape time: store
change-log position, index sizes and how far each index lags behind the store, and the depth of
the server's queues (calls in flight are a gauge of their own).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aesoperator.security.http.listener import HTTPServerThread, bind_socket, resource_url_for
from aesoperator.telemetry.metrics import REGISTRY, add_collector, remove_collector

if TYPE_CHECKING:
    from aesoperator.engine.context import EngineCore
    from aesoperator.engine.stores.base import StoreStats
    from aesoperator.security.guard import CallGuard

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
STATS_TTL_SECONDS = 30.0  # store counts are read at most this often (a COUNT over a large store)


class ServingCollector(Collector):
    """Gauges read from the engine and the guard when Prometheus scrapes."""

    def __init__(self, engine: EngineCore, guard: CallGuard | None = None) -> None:
        self.engine = engine
        self.guard = guard
        self._stats: StoreStats | None = None
        self._stats_at = 0.0
        self._lock = threading.Lock()

    def _store_stats(self) -> StoreStats | None:
        with self._lock:
            if self._stats is None or time.monotonic() - self._stats_at > STATS_TTL_SECONDS:
                try:
                    self._stats = self.engine.store.stats()
                    self._stats_at = time.monotonic()
                except Exception:  # a scrape must not fail because the store hiccups
                    log.warning("could not read store statistics for metrics", exc_info=True)
            return self._stats

    def collect(self) -> Iterator[Metric]:
        try:
            seq: int | None = self.engine.store.last_seq()
        except Exception:
            log.warning("could not read the store's change log position for metrics", exc_info=True)
            seq = None
        if seq is not None:
            yield GaugeMetricFamily("aesop_store_change_seq", "Position of the store's change log.", value=seq)
        stats = self._store_stats()
        if stats is not None:
            items = GaugeMetricFamily("aesop_store_items", "What the store holds, by kind.", labels=["kind"])
            for kind, value in (("entities", stats.entities), ("relations", stats.relations)):
                items.add_metric([kind], value)
            items.add_metric(["vectors"], stats.vectors)
            yield items
        vectors, keywords = self.engine.loaded_indexes()
        size = GaugeMetricFamily("aesop_index_entries", "Entries in the loaded indexes.", labels=["index"])
        lag = GaugeMetricFamily(
            "aesop_index_sync_lag",
            "Store changes not yet applied to the index (change-log positions).",
            labels=["index"],
        )
        for name, index in (("vector", vectors), ("keyword", keywords)):
            if index is None:
                continue
            size.add_metric([name], len(index))
            if seq is not None and index.store_seq is not None:
                lag.add_metric([name], max(0, seq - index.store_seq))
        yield size
        yield lag
        if self.guard is not None:
            queued = GaugeMetricFamily("aesop_queue_depth", "Work waiting in the server's queues.", labels=["queue"])
            queued.add_metric(["refusals_held"], self.guard.held_refusals)
            queued.add_metric(["refusals_unwritten"], self.guard.pending_refusals)
            yield queued


class MetricsEndpoint:
    """`GET /metrics` on its own socket, served from a background thread.

    ```python
    with MetricsEndpoint(engine, guard, port=9464) as endpoint:
        print(endpoint.url)  # http://127.0.0.1:9464/metrics
    ```
    """

    def __init__(
        self,
        engine: EngineCore,
        guard: CallGuard | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
    ) -> None:
        self.collector = ServingCollector(engine, guard)
        self._sock: socket.socket = bind_socket(host, port, allow_remote=allow_remote)
        self.url = resource_url_for(self._sock, METRICS_PATH)
        self._thread: HTTPServerThread | None = None

    def start(self) -> MetricsEndpoint:
        add_collector(self.collector)
        try:
            self._thread = HTTPServerThread(metrics_app(), self._sock).start()
        except BaseException:
            remove_collector(self.collector)
            raise
        return self

    def stop(self) -> None:
        remove_collector(self.collector)
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        else:
            self._sock.close()

    def __enter__(self) -> MetricsEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def metrics_app() -> Starlette:
    """The ASGI app: `GET /metrics` in the Prometheus text format; everything else is 404."""

    async def metrics(_: Request) -> Response:
        # collectors read the store: off the event loop
        body = await anyio.to_thread.run_sync(generate_latest, REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route(METRICS_PATH, metrics, methods=["GET"])])
