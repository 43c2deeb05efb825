"""Change events and the subscriptions that deliver them to a handler."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, Field

from aesoperator.api.errors import UnknownEventType
from aesoperator.api.links import ClientLink, Link, LocalLink
from aesoperator.errors import AesopError, SchemaError, SourceError
from aesoperator.graph_schema.models import utcnow

log = logging.getLogger(__name__)

RESOURCE_EVENTS = ("resource.updated",)


class Event(BaseModel):
    """A change event delivered to an `mcp_subscribe` handler."""

    type: str
    server: str
    id: str | None = None
    uri: str | None = None
    namespace: str | None = None
    seq: int | None = None
    at: datetime = Field(default_factory=utcnow)


class Subscription:
    """A running subscription: events go to the handler until `cancel()`."""

    def __init__(self, server: str, event_type: str) -> None:
        self.server = server
        self.event_type = event_type
        self.delivered = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._cancel: Callable[[], None] | None = None
        self.ready = threading.Event()

    @property
    def active(self) -> bool:
        return not self._stop.is_set()

    def _deliver(self, handler: Callable[[Event], Any], event: Event) -> None:
        try:
            handler(event)
            self.delivered += 1
        except Exception as exc:  # a failing handler must not end the subscription
            log.warning("subscription %s/%s: handler failed: %s", self.server, self.event_type, exc)
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def cancel(self) -> None:
        self._stop.set()
        if self._cancel is not None:
            with suppress(Exception):
                self._cancel()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


def subscribe_link(
    server: str,
    link: Link,
    event_type: str,
    handler: Callable[[Event], Any],
    uris: Sequence[str] | None,
    timeout: float = 30.0,
) -> Subscription:
    if event_type not in RESOURCE_EVENTS:
        raise UnknownEventType(f"server {server!r} delivers {list(RESOURCE_EVENTS)}, not {event_type!r}")
    portal = link.ensure()
    if uris is None:
        uris = [r.uri for r in portal.call(list_resources, link)]
        if not uris:
            raise SchemaError(f"server {server!r} lists no resources to subscribe to")
    sub = Subscription(server, event_type)
    failure: list[BaseException] = []

    async def pump() -> None:
        try:
            async with link.listen(list(uris)) as updates:
                sub.ready.set()
                async for uri in updates:
                    if sub._stop.is_set():
                        return
                    event = Event(type=event_type, server=server, uri=uri)
                    await anyio.to_thread.run_sync(sub._deliver, handler, event)
        except BaseException as exc:
            failure.append(exc)
            sub.ready.set()
            raise

    future = portal.start_task_soon(pump)

    def stop() -> None:
        future.cancel()

    sub._cancel = stop
    if not sub.ready.wait(timeout):
        future.cancel()
        raise SourceError(f"server {server!r}: the subscription was not acknowledged within {timeout:g}s")
    if failure:
        exc = failure[0]
        raise exc if isinstance(exc, AesopError) else SourceError(f"server {server!r}: cannot subscribe: {exc}")
    return sub


async def list_resources(link: Link) -> list[Any]:
    if isinstance(link, ClientLink):
        resources: list[Any] = await link._conn.list_resources()
        return resources
    if isinstance(link, LocalLink):
        result = await link._client.list_resources()
        return list(result.resources)
    return []
