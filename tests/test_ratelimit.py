"""Token buckets: the math with a fake clock, thread safety, and a flooding client over HTTP on
127.0.0.1 that is limited while another client is not."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jsonschema  # noqa: F401  (a client's first call_tool imports it: ~2 s that a timed call should not include)
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from aesoperator.errors import ConfigError, PermissionDenied, RateLimited
from aesoperator.security.audit import AuditLog
from aesoperator.security.guard import CallGuard
from aesoperator.security.http.gate import build_http_app
from aesoperator.security.http.listener import HTTPServerThread, bind_socket, resource_url_for
from aesoperator.security.principal import Principal
from aesoperator.security.ratelimit import Limit, RateLimiter
from aesoperator.security.request_principal import http_principal_resolver
from aesoperator.security.tokens import StaticTokenVerifier, TokenStore

pytestmark = pytest.mark.timeout(120)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _refused(limiter: RateLimiter, who: str = "a", **kwargs: Any) -> float:
    with pytest.raises(RateLimited) as caught:
        limiter.acquire(who, **kwargs)
    return caught.value.retry_after


def test_bucket_math() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Limit(rate=2, burst=3), clock=clock)
    for _ in range(3):
        limiter.acquire("a")  # the burst
    assert _refused(limiter) == pytest.approx(0.5)  # one token takes 1/rate seconds
    clock.advance(0.2)
    assert _refused(limiter) == pytest.approx(0.3)
    clock.advance(0.3)
    limiter.acquire("a")
    assert _refused(limiter) == pytest.approx(0.5)
    clock.advance(100)  # refills only up to the burst
    assert limiter.tokens_left("a") == pytest.approx(3)
    for _ in range(3):
        limiter.acquire("a")
    assert _refused(limiter) == pytest.approx(0.5)


def test_refusals_take_nothing_and_principals_are_separate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Limit(rate=1, burst=1), clock=clock)
    limiter.acquire("a")
    for _ in range(5):
        _refused(limiter)
    clock.advance(1.0)
    limiter.acquire("a")  # the refusals did not push the next token further away
    limiter.acquire("b")  # b has its own bucket


def test_limits_per_principal_per_scope_and_global() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        Limit(1, 1),
        per_principal={"vip": Limit(100, 100)},
        per_scope={"tool:*": Limit(10, 10), "read:bulk": Limit(50, 5)},
        global_limit=Limit(1000, 12),
        clock=clock,
    )
    assert limiter.limit_for("vip", ["tool:*"]) == Limit(100, 100)
    assert limiter.limit_for("x", ["tool:*", "read:bulk"]) == Limit(50, 5)  # the most generous scope
    assert limiter.limit_for("x", ["read:default"]) == Limit(1, 1)
    assert RateLimiter().limit_for("x") is None  # no default: unlimited

    for _ in range(10):
        limiter.acquire("vip")
    limiter.acquire("x", scopes=["read:default"])
    limiter.acquire("y", scopes=["read:default"])
    with pytest.raises(RateLimited, match="this server"):  # the shared bucket (12) is empty now
        limiter.acquire("vip")
    clock.advance(0.0011)
    limiter.acquire("vip")


def test_unlimited_principals_still_count_against_the_global_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, global_limit=Limit(1, 2), clock=clock)
    limiter.acquire("a")
    limiter.acquire("b")
    assert _refused(limiter, "c") == pytest.approx(1.0)


def test_limit_parsing() -> None:
    assert Limit.parse("10/s") == Limit(10, 10)
    assert Limit.parse("5/s:20") == Limit(5, 20)
    assert Limit.parse("600/min") == Limit(10, 10)
    assert Limit.parse("2.5") == Limit(2.5, 2.5)
    assert Limit.parse("60/h:3") == Limit(60 / 3600, 3)
    for bad in ("fast", "0/s", "5/day", "-1"):
        with pytest.raises(ConfigError):
            Limit.parse(bad)
    with pytest.raises(ConfigError):
        Limit(1, 0.5)


def test_many_threads_get_exactly_the_burst() -> None:
    clock = FakeClock()  # frozen: no refill while the threads run
    limiter = RateLimiter(Limit(1, 50), clock=clock)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(20):
            try:
                limiter.acquire("shared")
            except RateLimited:
                continue
            with lock:
                granted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 50


def test_bucket_table_is_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Limit(1, 1), clock=clock, max_buckets=10)
    for i in range(100):
        limiter.acquire(f"p{i}")
        clock.advance(0.01)
    assert len(limiter._buckets) <= 10


def test_guard_admit_checks_scope_before_rate() -> None:
    clock = FakeClock()
    guard = CallGuard(None, RateLimiter(Limit(1, 1), clock=clock))
    reader = Principal.from_scopes("r", ["read:default", "tool:search"])
    with pytest.raises(PermissionDenied):
        guard.admit(reader, "remember")
    guard.admit(reader, "search")  # the refused call above took no token
    with pytest.raises(RateLimited) as caught:
        guard.admit(reader, "search")
    assert caught.value.retry_after == pytest.approx(1.0)


# -- over HTTP ----------------------------------------------------------------------------------
def _limited_server(guard: CallGuard) -> MCPServer:
    """A minimal server that does what the engine's server does around a call."""
    server = MCPServer("limit-test")
    resolve = http_principal_resolver()

    @server.tool()
    def ping(n: int = 0) -> str:
        principal = resolve()
        started = time.perf_counter()
        try:
            guard.admit(principal, "ping")
        except RateLimited as exc:
            guard.record(principal, "ping", {"n": n}, "rate_limited", 0, 0.0)
            raise ToolError(f"rate limited: {exc} (retry after {exc.retry_after:.2f} s)") from None
        guard.record(principal, "ping", {"n": n}, "allow", 1, (time.perf_counter() - started) * 1000)
        return f"pong {n}"

    return server


@asynccontextmanager
async def _client(url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def test_flooding_client_is_limited_while_another_is_served(tmp_path: Path) -> None:
    store = TokenStore.in_data_dir(tmp_path)
    flood = store.add("flood", ["tool:ping"]).token
    calm = store.add("calm", ["tool:ping"]).token
    audit = AuditLog.in_data_dir(tmp_path)
    guard = CallGuard(audit, RateLimiter(Limit(rate=5, burst=5)))
    sock = bind_socket()
    url = resource_url_for(sock)
    app = build_http_app(_limited_server(guard), StaticTokenVerifier.in_data_dir(tmp_path), url)
    outcomes: dict[str, list[Any]] = {"flood_ok": [], "flood_limited": [], "calm": []}

    async def flooder() -> None:
        async with _client(url, flood) as client:
            for i in range(60):  # bounded
                result = await client.call_tool("ping", {"n": i})
                text = result.content[0].text  # type: ignore[union-attr]
                (outcomes["flood_limited"] if result.is_error else outcomes["flood_ok"]).append(text)

    async def calm_client() -> None:
        async with _client(url, calm) as client:
            for i in range(4):
                await anyio.sleep(0.05)
                started = time.perf_counter()
                result = await client.call_tool("ping", {"n": i})
                outcomes["calm"].append((result.is_error, time.perf_counter() - started))

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(flooder)
            tg.start_soon(calm_client)

    with HTTPServerThread(app, sock):
        anyio.run(run)

    assert outcomes["flood_limited"], "the flooding client was never limited"
    assert 5 <= len(outcomes["flood_ok"]) < 60
    message = outcomes["flood_limited"][0]
    assert "rate limited" in message and "retry after" in message and "flood" in message
    assert all(not is_error for is_error, _ in outcomes["calm"])
    assert all(seconds < 2.0 for _, seconds in outcomes["calm"])
    decisions = [r["decision"] for r in audit.tail(200)]
    assert decisions.count("rate_limited") == len(outcomes["flood_limited"])
    assert audit.verify().ok


def test_request_limiter_answers_429_with_retry_after(tmp_path: Path) -> None:
    token = TokenStore.in_data_dir(tmp_path).add("burst", ["tool:ping"]).token
    guard = CallGuard(None, None)
    sock = bind_socket()
    url = resource_url_for(sock)
    app = build_http_app(
        _limited_server(guard),
        StaticTokenVerifier.in_data_dir(tmp_path),
        url,
        request_limiter=RateLimiter(Limit(rate=1, burst=3)),
    )
    with HTTPServerThread(app, sock):
        statuses = []
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(6):
            response = httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers)
            statuses.append(response.status_code)
        assert statuses.count(429) >= 2
        assert int(response.headers["retry-after"]) >= 1
        error = response.json()["error"]
        assert "retry after" in error["message"] and error["data"]["retry_after"] > 0

        errors: list[MCPError] = []

        async def run() -> None:
            try:
                async with _client(url, token) as client:
                    await client.call_tool("ping", {})
            except* MCPError as group:
                errors.extend(_leaves(group))

        anyio.run(run)
        assert errors and "retry after" in str(errors[0])


def _leaves(group: BaseExceptionGroup[Any]) -> list[Any]:
    return [leaf for e in group.exceptions for leaf in (_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])]


def test_engine_server_rate_limit_over_http(tmp_path: Path, make_engine: Any) -> None:
    server_module = pytest.importorskip("aesoperator.serve.server")
    engine = make_engine(tmp_path / "data")
    store = TokenStore.in_data_dir(tmp_path)
    flood = store.add("flood", ["read:*", "tool:search"]).token
    calm = store.add("calm", ["read:*", "tool:search"]).token
    guard = CallGuard(AuditLog.in_data_dir(tmp_path), RateLimiter(Limit(rate=0.2, burst=2)))
    server = server_module.build_server(engine, guard, http_principal_resolver())
    sock = bind_socket()
    url = resource_url_for(sock)
    app = build_http_app(server, StaticTokenVerifier.in_data_dir(tmp_path), url, guard=guard)

    async def run() -> None:
        async with _client(url, flood) as client:
            results = [await client.call_tool("search", {"query": f"q{i}"}) for i in range(4)]
        limited = [r for r in results if r.is_error]
        assert limited, "never limited"
        text = limited[0].content[0].text  # type: ignore[union-attr]
        assert "rate limited" in text and "retry after" in text
        meta = json.dumps(limited[0].meta or {})
        assert "retry_after" in meta
        async with _client(url, calm) as client:
            started = time.perf_counter()
            ok = await client.call_tool("search", {"query": "anything"})
            assert not ok.is_error and time.perf_counter() - started < 5

    with HTTPServerThread(app, sock):
        anyio.run(run)


# -- refusals are counted, not written one by one -------------------------------------------------
def test_refused_calls_are_counted_then_written_in_aggregate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    audit = AuditLog.in_data_dir(tmp_path)
    guard = CallGuard(audit, RateLimiter(Limit(rate=1, burst=1), clock=FakeClock()), refusal_interval=3600)
    flood = Principal.from_scopes("flood", ["read:default", "tool:search"])
    guard.admit(flood, "search")
    guard.record(flood, "search", {"query": "x"}, "allow", 1, 1.0)
    audit.settle()  # its checkpoint, written behind the answer, is on disk before fsyncs are counted
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    for _ in range(500):
        with pytest.raises(RateLimited):
            guard.admit(flood, "search")
        guard.refused(flood, "search")
    assert fsyncs == [] and len(audit.tail(10)) == 1  # refusals cost no write, no fsync, no checkpoint
    assert guard.refusals is not None and guard.refusals.pending() == 500

    guard.flush()
    audit.settle()
    records = audit.tail(10)
    assert len(records) == 2 and len(fsyncs) == 2  # one record and its checkpoint, for all 500
    aggregate = records[-1]
    assert aggregate["decision"] == "rate_limited" and aggregate["count"] == 500
    assert aggregate["principal"] == "flood" and aggregate["tool"] == "search"
    assert aggregate["since"] <= aggregate["time"]
    guard.close()
    assert audit.verify().ok
    from typer.testing import CliRunner

    from aesoperator.cli import app

    shown = CliRunner().invoke(app, ["-d", str(tmp_path), "audit", "tail", "-n", "1"])
    assert shown.exit_code == 0 and "x500" in shown.output  # an aggregate shows how many calls it stands for


def test_engine_server_limits_protocol_requests_and_aggregates_refusals(tmp_path: Path, make_engine: Any) -> None:
    from aesoperator.serve.server import build_server

    engine = make_engine(tmp_path / "data")
    token = TokenStore.in_data_dir(tmp_path).add("flood", ["read:*", "tool:search"]).token
    audit = AuditLog.in_data_dir(tmp_path)
    guard = CallGuard(audit, RateLimiter(Limit(rate=0.01, burst=3)), refusal_interval=3600, refusal_hold=0.2)
    server = build_server(engine, guard, http_principal_resolver(), warm=False)
    sock = bind_socket()
    url = resource_url_for(sock)
    app = build_http_app(server, StaticTokenVerifier.in_data_dir(tmp_path), url, guard=guard)
    listing_errors: list[str] = []

    async def run() -> None:
        async with _client(url, token) as client:  # server/discover: the first protocol request
            calls, seconds = [], []
            for i in range(8):  # and one tools/list after the first
                started = time.perf_counter()
                calls.append(await client.call_tool("search", {"query": f"q{i}"}))
                seconds.append(time.perf_counter() - started)
            assert [c.is_error for c in calls] == [False] * 3 + [True] * 5
            assert all(s >= 0.19 for s in seconds[3:])  # each refusal was held for the hold time
            await client.list_tools()  # the third protocol request: the burst
            try:
                await client.list_tools()
            except MCPError as exc:
                listing_errors.append(f"{exc} {exc.error.data}")

    with HTTPServerThread(app, sock):
        anyio.run(run)
        while_serving = audit.tail(100)
    assert listing_errors and "rate limited" in listing_errors[0] and "retry_after" in listing_errors[0]
    assert [r["decision"] for r in while_serving] == ["allow"] * 3  # refusals were only counted
    written = [r for r in audit.tail(100) if r["decision"] == "rate_limited"]  # at shutdown
    assert sorted((r["tool"], r["count"]) for r in written) == [("search", 5), ("tools/list", 1)]
    guard.close()
    assert audit.verify().ok


def test_refusals_are_answered_when_the_caller_may_call_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from aesoperator.security import guard as guard_module

    guard = CallGuard(None, None, refusal_hold=0.3)

    async def timed(retry_after: float) -> tuple[float, float]:
        started = time.perf_counter()
        left = await guard.hold(retry_after)
        return time.perf_counter() - started, left

    async def run() -> None:
        waited, left = await timed(0.1)  # held until it may call again, then told to go ahead
        assert 0.09 <= waited < 0.25 and left == 0
        waited, left = await timed(5.0)  # held at most refusal_hold; the answer says what is left
        assert 0.29 <= waited < 0.6 and left == pytest.approx(4.7)
        monkeypatch.setattr(guard_module, "MAX_HELD_REFUSALS", 2)
        results: list[tuple[float, float]] = []

        async def one() -> None:
            results.append(await timed(5.0))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one)
        answered_at_once = [r for r in results if r[0] < 0.1]
        assert len(answered_at_once) == 2 and all(left == 5.0 for _, left in answered_at_once)

    anyio.run(run)
