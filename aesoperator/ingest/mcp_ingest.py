"""Ingest from MCP servers: an adapter's async records streamed into the synchronous pipeline.

The MCP session lives on an event loop in a background thread (an anyio blocking portal). Records
cross into the calling thread through a bounded buffer, so a large source never sits in memory
whole and a slow store slows the server down instead of filling memory. An exception on either
side ends both: a server failure surfaces from the pipeline's iterator, a store or mapping
failure cancels the producer, and leaving the portal (also on Ctrl-C) stops the server process.

Each run is recorded as the source item "__run__" (its cursor is the JSON summary), items an
adapter could not read are kept as quarantine entries with their reason, and the vector index is
refreshed afterwards, as `ContextEngine.ingest_path` does for folders.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from aesoperator.engine.progress import NoProgress, ProgressReporter
from aesoperator.engine.stores.base import GraphStore, SourceItemState, WriteBatch
from aesoperator.errors import SourceError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.graph_schema.models import to_iso, utcnow
from aesoperator.ingest.adapters.base import McpConnection, SourceAdapter
from aesoperator.ingest.adapters.kinds import make_adapter
from aesoperator.ingest.client import (
    BACKOFF_FIRST_SECONDS,
    BACKOFF_MAX_SECONDS,
    LIST_CHANGED,
    CallTimeout,
    ConnectionFailed,
    McpClientConnection,
    ResourceUpdates,
    open_connection,
    transport_identity,
)
from aesoperator.ingest.pipeline import IngestPipeline, IngestReport, quarantine_key
from aesoperator.ingest.records import SourceRecord
from aesoperator.ingest.sources import SourceDefinition

if TYPE_CHECKING:
    from aesoperator.engine.context import EngineCore

log = logging.getLogger(__name__)

RUN_KEY = "__run__"
BUFFER_RECORDS = 32  # records in flight between the server thread and the pipeline


# -- run records -------------------------------------------------------------------------------
def record_run(store: GraphStore, source: str, summary: dict[str, Any]) -> None:
    text = json.dumps(summary, sort_keys=True, default=str)
    store.write(WriteBatch(source_items=[SourceItemState(source, RUN_KEY, content_hash(text), cursor=text)]))


def last_run(store: GraphStore, source: str) -> dict[str, Any] | None:
    """The summary of a source's last ingest run, if any."""
    state = store.source_items(source).get(RUN_KEY)
    if state is None or not state.cursor:
        return None
    try:
        data = json.loads(state.cursor)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _summary(
    store: GraphStore,
    definition: SourceDefinition,
    started_at: str | None,
    started: float,
    mode: str,
    report: IngestReport | None = None,
    error: BaseException | None = None,
) -> dict[str, Any]:
    previous = last_run(store, definition.name) or {}
    now = to_iso(utcnow())
    summary: dict[str, Any] = {
        "status": "ok" if error is None else "interrupted" if isinstance(error, KeyboardInterrupt) else "failed",
        "mode": mode,
        "transport": transport_identity(definition),
        "started_at": started_at,
        "finished_at": now,
        "seconds": round(time.perf_counter() - started, 3),
        "last_ok_at": now if error is None else previous.get("last_ok_at"),
    }
    if error is not None:
        summary["error"] = str(error) or type(error).__name__
    if report is not None:
        for name in (
            "records_seen",
            "records_changed",
            "records_unchanged",
            "records_removed",
            "entities_written",
            "relations_written",
            "entities_deleted",
            "relations_expired",
            "texts_embedded",
            "quarantined",
        ):
            summary[name] = getattr(report, name)
        summary["skipped"] = len(report.skipped)
    return summary


def _record_failure(
    engine: EngineCore,
    definition: SourceDefinition,
    started_at: str | None,
    started: float,
    exc: BaseException,
    mode: str = "full",
) -> None:
    try:
        summary = _summary(engine.store, definition, started_at, started, mode, error=exc)
        record_run(engine.store, definition.name, summary)
    except Exception as write_error:  # the original failure matters more
        log.warning("source %r: could not record the failed run: %s", definition.name, write_error)


def _quarantine_skipped(store: GraphStore, source: str, adapter: SourceAdapter) -> int:
    """Persist the items the adapter could not read as quarantine entries, with their reason."""
    at = to_iso(utcnow())
    states = [
        SourceItemState(
            source,
            quarantine_key(s.key),
            content_hash(s.reason),
            cursor=json.dumps({"reason": s.reason, "at": at, "uri": s.key}),
        )
        for s in adapter.skipped
    ]
    if states:
        store.write(WriteBatch(source_items=states))
    return len(states)


# -- the bridge --------------------------------------------------------------------------------
def _channel(size: int) -> tuple[MemoryObjectSendStream[SourceRecord], MemoryObjectReceiveStream[SourceRecord]]:
    return anyio.create_memory_object_stream[SourceRecord](size)


async def _take(receive: MemoryObjectReceiveStream[SourceRecord], most: int) -> list[SourceRecord]:
    """At least one record (waiting for it), plus whatever else is already buffered."""
    batch = [await receive.receive()]
    while len(batch) < most:
        try:
            batch.append(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            break
    return batch


def stream_records(
    portal: BlockingPortal, make: Callable[[], AsyncIterator[SourceRecord]], buffer: int = BUFFER_RECORDS
) -> Generator[SourceRecord, None, None]:
    """Iterate, in this thread, an async record stream running on `portal`'s event loop.

    At most `buffer` records wait in between. The producer's exception is raised here once the
    records before it are consumed; closing this iterator early cancels the producer."""
    send, receive = portal.call(_channel, buffer)

    async def produce() -> None:
        async with send:
            records = make()
            try:
                async for record in records:
                    await send.send(record)
            finally:
                close = getattr(records, "aclose", None)
                if close is not None:  # run the adapter's own cleanup now, not at garbage collection
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await close()

    future = portal.start_task_soon(produce)
    try:
        while True:
            try:
                batch = portal.call(_take, receive, buffer)
            except anyio.EndOfStream:
                break
            yield from batch
        future.result()
    finally:
        if not future.done():
            future.cancel()
            concurrent.futures.wait([future], timeout=30)
        with suppress(RuntimeError):  # the portal may already be shutting down
            portal.call(receive.aclose)


# -- ingest ------------------------------------------------------------------------------------
def _run(
    engine: EngineCore,
    definition: SourceDefinition,
    adapter: SourceAdapter,
    portal: BlockingPortal,
    conn: McpConnection,
    progress: ProgressReporter | None,
    embed: bool | None,
    only: Sequence[str] | None = None,
) -> IngestReport:
    """One pipeline run over an open connection: everything, or only the resources `only` names."""
    started, started_at = time.perf_counter(), to_iso(utcnow())
    use_embedder = engine.settings.embed_on_ingest if embed is None else embed
    pipeline = IngestPipeline(
        engine.store,
        engine.embedder if use_embedder else None,
        batch_size=engine.settings.write_batch_size,
        progress=progress,
        knowledge=engine.knowledge,
    )
    source = definition.name
    previous = engine.store.source_items(source)
    adapter.skipped.clear()
    records_for = getattr(adapter, "records_for", None)
    partial = only is not None and records_for is not None

    def make() -> AsyncIterator[SourceRecord]:
        if partial:
            assert records_for is not None and only is not None
            it: AsyncIterator[SourceRecord] = records_for(conn, list(only), previous)
            return it
        return adapter.records(conn, previous)

    mode = "update" if partial else "full"
    try:
        with closing(stream_records(portal, make)) as records:
            report = pipeline.run(source, records, adapter.mapper, skipped=adapter.skipped, remove_missing=not partial)
        report.quarantined += _quarantine_skipped(engine.store, source, adapter)
        if use_embedder:
            engine.refresh_index(save=True)
    except (Exception, KeyboardInterrupt) as exc:
        _record_failure(engine, definition, started_at, started, exc, mode)
        raise
    record_run(engine.store, source, _summary(engine.store, definition, started_at, started, mode, report=report))
    return report


def _claim(engine: EngineCore, definition: SourceDefinition) -> None:
    IngestPipeline(engine.store).claim_source(definition.name, transport_identity(definition))


def ingest_source(
    engine: EngineCore,
    definition: SourceDefinition,
    progress: ProgressReporter | None = None,
    embed: bool | None = None,
) -> IngestReport:
    """Ingest one MCP source into `engine` (incremental: unchanged items are not mapped again)."""
    adapter = make_adapter(definition)
    _claim(engine, definition)
    started, started_at = time.perf_counter(), to_iso(utcnow())
    connected = False  # once connected, `_run` records its own outcome
    try:
        with (
            start_blocking_portal(backend="asyncio") as portal,
            portal.wrap_async_context_manager(open_connection(definition)) as conn,
        ):
            connected = True
            return _run(engine, definition, adapter, portal, conn, progress, embed)
    except (Exception, KeyboardInterrupt) as exc:
        if not connected:
            _record_failure(engine, definition, started_at, started, exc)
        raise


# -- watch -------------------------------------------------------------------------------------
@dataclass
class WatchEvent:
    """What `watch_source` reports: a full ingest, the subscription being in place, an
    incremental re-ingest after updates, or a reconnect after the server went away."""

    kind: Literal["ingested", "subscribed", "updated", "reconnecting"]
    source: str
    uris: list[str] = field(default_factory=list)
    report: IngestReport | None = None
    message: str = ""


async def _watch_targets(adapter: SourceAdapter, conn: McpConnection) -> list[str]:
    chooser = getattr(adapter, "watch_uris", None)
    if chooser is not None:
        return list(await chooser(conn))
    return [r.uri for r in await conn.list_resources()]


async def _watch_started(adapter: SourceAdapter, conn: McpConnection) -> None:
    hook = getattr(adapter, "watch_started", None)
    if hook is not None:
        await hook(conn)


@dataclass
class _WatchState:
    failures: int = 0  # connection failures in a row
    ingested: bool = False


def watch_source(
    engine: EngineCore,
    definition: SourceDefinition,
    stop: threading.Event | None = None,
    on_event: Callable[[WatchEvent], None] | None = None,
    progress: ProgressReporter | None = None,
    embed: bool | None = None,
    poll_seconds: float = 0.5,
) -> None:
    """Ingest a source, then keep it fresh: subscribe to its resources (those the adapter's
    `watch_uris(conn)` names, else all listed) and re-ingest incrementally on every
    `notifications/resources/updated`, until `stop` is set. The server must advertise resource
    subscriptions. A lost connection is re-opened (with a full incremental ingest to catch up)
    up to `definition.retries` times in a row; other errors, and `on_event`'s, end the watch."""
    stop = stop or threading.Event()
    emit = on_event or (lambda event: None)
    adapter = make_adapter(definition)
    _claim(engine, definition)
    state = _WatchState()
    with start_blocking_portal(backend="asyncio") as portal:
        while not stop.is_set():
            started, started_at = time.perf_counter(), to_iso(utcnow())
            connected = False  # once connected, `_run` records its own outcome
            try:
                with portal.wrap_async_context_manager(open_connection(definition)) as conn:
                    connected = True
                    shown = progress if not state.ingested else NoProgress()
                    report = _run(engine, definition, adapter, portal, conn, shown, embed)
                    state.ingested = True
                    emit(WatchEvent("ingested", definition.name, report=report))
                    _follow(engine, definition, adapter, portal, conn, stop, emit, embed, poll_seconds, state)
            except (ConnectionFailed, CallTimeout) as exc:
                if not connected:
                    _record_failure(engine, definition, started_at, started, exc)
                state.failures += 1
                if state.failures > definition.retries:
                    raise
                delay = min(BACKOFF_FIRST_SECONDS * 2 ** (state.failures - 1), BACKOFF_MAX_SECONDS)
                emit(WatchEvent("reconnecting", definition.name, message=f"{exc}; reconnecting in {delay:g}s"))
                stop.wait(delay)
            except (Exception, KeyboardInterrupt) as exc:
                if not connected:
                    _record_failure(engine, definition, started_at, started, exc)
                raise


def _follow(
    engine: EngineCore,
    definition: SourceDefinition,
    adapter: SourceAdapter,
    portal: BlockingPortal,
    conn: McpConnection,
    stop: threading.Event,
    emit: Callable[[WatchEvent], None],
    embed: bool | None,
    poll_seconds: float,
    state: _WatchState,
) -> None:
    """Subscribe and re-ingest on updates until `stop`; re-subscribe when the resource list changes."""
    if not isinstance(conn, McpClientConnection):
        raise SourceError(f"source {definition.name!r}: this connection cannot subscribe to resources")
    while not stop.is_set():
        uris = portal.call(_watch_targets, adapter, conn)
        with portal.wrap_async_context_manager(conn.resource_updates(uris)) as feed:
            portal.call(_watch_started, adapter, conn)
            emit(WatchEvent("subscribed", definition.name, uris=list(uris)))
            state.failures = 0
            if not _follow_feed(engine, definition, adapter, portal, conn, feed, stop, emit, embed, poll_seconds):
                return


def _follow_feed(
    engine: EngineCore,
    definition: SourceDefinition,
    adapter: SourceAdapter,
    portal: BlockingPortal,
    conn: McpConnection,
    feed: ResourceUpdates,
    stop: threading.Event,
    emit: Callable[[WatchEvent], None],
    embed: bool | None,
    poll_seconds: float,
) -> bool:
    """Re-ingest each batch of updates; True when the resource list changed (re-subscribe)."""
    while not stop.is_set():
        batch = portal.call(feed.next_batch, poll_seconds)
        if not batch:
            continue
        relist = LIST_CHANGED in batch
        report = _run(engine, definition, adapter, portal, conn, NoProgress(), embed, only=None if relist else batch)
        emit(WatchEvent("updated", definition.name, uris=[u for u in batch if u != LIST_CHANGED], report=report))
        if relist:
            return True
    return False
