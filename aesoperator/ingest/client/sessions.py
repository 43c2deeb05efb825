"""Session lifecycle of a connection: one owned SDK client at a time, reconnects and retries."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Final, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types as types
from mcp import Client
from mcp.client import Transport

from aesoperator.ingest.client.errors import (
    CallTimeout,
    ConnectionFailed,
    SessionTrouble,
)
from aesoperator.ingest.client.faults import ConnectionFaults
from aesoperator.ingest.client.state import Session
from aesoperator.ingest.client.stdio import STOP_GRACE_SECONDS
from aesoperator.version import __version__

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_FIRST_SECONDS: Final = 0.5
BACKOFF_MAX_SECONDS: Final = 10.0


class ConnectionSessions(ConnectionFaults):
    """Opens, replaces and closes the SDK session; sends requests with retries."""

    # Each session is owned by one task that enters the SDK `Client` and holds it open until told
    # to stop: task groups opened by the client never straddle a caller's timeout scope, and a
    # session can be abandoned from any task.
    async def _own(self, session: Session, make_transport: Callable[[AsyncExitStack], Awaitable[Transport]]) -> None:
        with session.scope:
            try:
                async with AsyncExitStack() as stack:
                    client = Client(
                        await make_transport(stack),
                        read_timeout_seconds=self._connect_timeout,  # calls get the shorter self._timeout
                        cache=None,
                        message_handler=self._on_message,
                        client_info=types.Implementation(name="aesoperator", version=__version__),
                    )
                    async with client:
                        session.client = client
                        session.ready.set()
                        await session.stop.wait()
            except Exception as exc:
                session.error = exc
        session.ready.set()
        session.finished.set()

    async def _start_session(self) -> Session:
        assert self._tg is not None, "use open_connection()"
        self._http_refusal = None
        make_transport = self._make_transport_factory()
        session = Session(self._generation + 1)
        self._tg.start_soon(self._own, session, make_transport)
        try:
            await self._guarded(session.ready.wait, self._connect_timeout)
        except BaseException:
            await self._stop(session)
            raise
        if session.error is not None or session.client is None:
            await self._stop(session)
            raise session.error or SessionTrouble("the session ended during the handshake")
        self._generation = session.generation
        if self._feed is not None:
            self._feed.fail("the connection was re-established, so its subscriptions are gone")
        return session

    async def _stop(self, session: Session) -> None:
        with anyio.CancelScope(shield=True):
            session.stop.set()
            with anyio.move_on_after(3 * STOP_GRACE_SECONDS + 1):
                await session.finished.wait()
            if not session.finished.is_set():
                session.scope.cancel()
                with anyio.move_on_after(3 * STOP_GRACE_SECONDS + 1):
                    await session.finished.wait()

    async def _drop_session(self, generation: int | None = None) -> None:
        async with self._lock:
            session = self._current
            if session is None or (generation is not None and session.generation != generation):
                return  # already replaced
            self._current = None
        await self._stop(session)

    async def _session(self) -> tuple[Client, int]:
        async with self._lock:
            if self._current is None:
                self._current = await self._start_session()
            assert self._current.client is not None
            return self._current.client, self._current.generation

    async def aclose(self) -> None:
        """Close the current session (a stdio server is stopped); the next call opens a new one."""
        await self._drop_session()

    async def _call(self, what: str, op: Callable[[Client], Awaitable[T]]) -> T:
        """One request with reconnects and retries; raises only SourceError."""
        delay = BACKOFF_FIRST_SECONDS
        attempt = 0
        while True:
            generation: int | None = None
            try:
                client, generation = await self._session()
                return await self._guarded(functools.partial(op, client))
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as raw:
                if not isinstance(raw, Exception | BaseExceptionGroup):
                    raise
                failure = await self._classify("connect" if generation is None else what, raw)
            if isinstance(failure, CallTimeout):
                if self._process is not None:
                    self._process.hung = True
                await self._drop_session(generation)  # a hung server is not trusted with the next call
                raise failure
            if not isinstance(failure, SessionTrouble):
                raise failure
            await self._drop_session(generation)
            if attempt >= self.definition.retries:
                tries = f" (gave up after {attempt + 1} attempts)" if attempt else ""
                raise ConnectionFailed(self._label(f"{what}: {failure}{tries}"))
            attempt += 1
            log.info("source %r: %s: %s; retrying in %.1fs", self.server_name, what, failure, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    async def connect(self) -> None:
        """Open the session now (retries included) so configuration errors surface early.

        Raises:
            ConfigError: Credentials or environment references are incomplete.
            SourceError: The server could not be started or reached.
        """
        await self._call("connect", lambda client: anyio.lowlevel.checkpoint())
