"""Resource subscriptions of a connection: `subscriptions/listen` or legacy `resources/subscribe`."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

import anyio
import anyio.abc
import anyio.lowlevel
from mcp import Client
from mcp.client.subscriptions import ResourcesListChanged, ResourceUpdated
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from aesoperator.errors import SourceError
from aesoperator.ingest.client.errors import (
    ConnectionFailed,
    SessionTrouble,
)
from aesoperator.ingest.client.feed import LIST_CHANGED, ResourceUpdates
from aesoperator.ingest.client.sessions import ConnectionSessions

HEALTH_CHECK_SECONDS: Final = 15.0


class ConnectionSubscriptions(ConnectionSessions):
    """Follows resource updates into a `ResourceUpdates` feed."""

    @asynccontextmanager
    async def resource_updates(self, uris: Sequence[str]) -> AsyncIterator[ResourceUpdates]:
        """Subscribe to `uris` (and to changes of the resource list where offered) for as long as
        the context is open. 2026-era servers are followed with `subscriptions/listen`, earlier
        ones with `resources/subscribe`. The feed fails (ConnectionFailed) when the session ends."""
        assert self._tg is not None, "use open_connection()"
        client, generation = await self._session()
        if not self.supports_subscriptions:
            raise SourceError(
                self._label(
                    "the server does not offer resource subscriptions, so it cannot be watched; "
                    f"run `aesop ingest {self.server_name}` on a schedule instead"
                )
            )
        feed = ResourceUpdates(self.server_name)
        feed.uris = list(uris)
        self._feed = feed
        scope = anyio.CancelScope()  # the helper task runs in the connection's task group
        try:
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                await self._tg.start(self._pump_listen, client, list(uris), feed, scope)
            else:
                for uri in uris:
                    await self._subscribe_legacy(client, generation, uri)
                self._tg.start_soon(self._watch_health, client, feed, scope)
            yield feed
        finally:
            scope.cancel()
            self._feed = None

    async def _subscribe_legacy(self, client: Client, generation: int, uri: str) -> None:
        what = f"subscribe {uri}"

        async def op() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await client.session.subscribe_resource(uri)

        try:
            await self._guarded(op)
        except Exception as raw:
            failure = await self._classify(what, raw)
            if isinstance(failure, SessionTrouble):
                await self._drop_session(generation)
                raise ConnectionFailed(self._label(f"{what}: {failure}")) from None
            raise failure from None

    async def _pump_listen(
        self,
        client: Client,
        uris: list[str],
        feed: ResourceUpdates,
        scope: anyio.CancelScope,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        with scope:
            try:
                async with client.listen(resource_subscriptions=uris, resources_list_changed=True) as subscription:
                    started = True
                    task_status.started()
                    async for event in subscription:
                        if isinstance(event, ResourceUpdated):
                            feed.push(event.uri)
                        elif isinstance(event, ResourcesListChanged):
                            feed.push(LIST_CHANGED)
                feed.fail("the server closed the subscription")
            except Exception as raw:
                failure = await self._classify("subscribe", raw)
                if not started:
                    if isinstance(failure, SessionTrouble):
                        raise ConnectionFailed(self._label(f"subscribe: {failure}")) from None
                    raise failure from None
                feed.fail(str(failure))

    async def _watch_health(self, client: Client, feed: ResourceUpdates, scope: anyio.CancelScope) -> None:
        """Notice a dead session while idle: the stdio process ending, or an HTTP ping failing."""
        with scope:
            while True:
                if self._process is not None:
                    with anyio.move_on_after(HEALTH_CHECK_SECONDS):
                        await self._process.closed.wait()
                    if self._process.closed.is_set():
                        feed.fail(await self._describe_closed())
                        return
                    continue
                await anyio.sleep(HEALTH_CHECK_SECONDS)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        await self._guarded(client.send_ping)
                except Exception as raw:
                    feed.fail(str(await self._classify("ping", raw)))
                    return
