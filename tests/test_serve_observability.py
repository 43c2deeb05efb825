"""`aesop serve --http` observed from outside, as an operator would: the real server in a
subprocess, a real MCP client calling it over HTTP, Prometheus metrics scraped from its metrics
port, JSON log lines read from its stderr, and its traces exported over OTLP/HTTP to a real OTLP
receiver (OtelTap's native one, from the `oteltap` package) listening on 127.0.0.1."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from aesoperator.security.audit import AuditLog
from aesoperator.security.tokens import TokenStore
from tests.test_serve_tools import ServerProcess, aesop_command, server_env

pytestmark = pytest.mark.timeout(300)


class ObservedServer(ServerProcess):
    """`ServerProcess` with extra environment (metrics port, log format, OTEL variables)."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        import queue
        import subprocess
        import threading

        self.proc = subprocess.Popen(
            command, cwd=cwd, env=server_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.url = self._wait_ready()

    def metrics_url(self) -> str:
        for line in self.log:
            found = re.search(r"serving metrics at (http://\S+)", line)
            if found:
                return found.group(1)
        raise AssertionError("no metrics line:\n" + "".join(self.log))

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log if line.startswith("{")]


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx2.get(url, timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _calls(url: str, token: str) -> list[Any]:
    headers = {"Authorization": f"Bearer {token}"}
    results: list[Any] = []
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        results.append(await client.call_tool("search", {"query": "Falcon telemetry pipeline", "k": 3}))
        results.append(await client.call_tool("sources", {}))
        results.append(await client.call_tool("get_entities", {"ids": []}))  # invalid: an error result
        for _ in range(4):  # a burst of 5 calls: the last two are refused
            results.append(await client.call_tool("sources", {}))
    return results


def test_metrics_logs_and_otlp_traces_of_a_serving_engine(tmp_path: Path, make_engine: Any) -> None:
    from oteltap import OtelTapHttpProtobufReceiver, OtelTapHttpProtobufReceiverSettings

    data = tmp_path / "data"
    engine = make_engine(data)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "falcon.md").write_text("# Falcon\nProject Falcon ships the telemetry pipeline in March.\n")
    engine.ingest_path(docs, name="docs", namespace="default")
    engine.close()
    token = TokenStore.in_data_dir(data).add("ops", ["read:*", "tool:*"]).token
    otlp_port = _free_port()
    env = {
        "AESOP_LOG_FORMAT": "json",
        "AESOP_LOG_LEVEL": "info",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
        "OTEL_SERVICE_NAME": "aesop-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    command = aesop_command(
        data, "serve", "--http", "--port", "0", "--metrics-port", "0", "--rate-limit", "1/min:5", "--no-warm"
    )
    received: list[Any] = []

    async def main() -> tuple[ObservedServer, list[Any]]:
        settings = OtelTapHttpProtobufReceiverSettings(http_port=otlp_port)
        async with OtelTapHttpProtobufReceiver(settings) as receiver, anyio.create_task_group() as tg:

            async def collect() -> None:
                async for span in receiver.stream_traces():
                    received.append(span)

            tg.start_soon(collect)
            server = await anyio.to_thread.run_sync(ObservedServer, command, data, env)
            try:
                results = await _calls(server.url, token)
                with anyio.fail_after(60):
                    while not any(s.name == "aesop.call search" for s in received):
                        await anyio.sleep(0.1)
                    while not any(s.name == "search.vector" for s in received):
                        await anyio.sleep(0.1)
            except BaseException:
                server.stop()
                raise
            tg.cancel_scope.cancel()
            return server, results

    server, results = anyio.run(main)
    try:
        assert not results[0].is_error and results[0].structured_content["hits"]
        assert results[2].is_error
        assert [r.is_error for r in results[3:]] == [False, False, True, True]  # burst 5: the 6th and 7th calls
        samples = _scrape(server.metrics_url())
        assert samples[("aesop_tool_calls_total", (("decision", "allow"), ("tool", "search")))] == 1
        assert samples[("aesop_tool_calls_total", (("decision", "allow"), ("tool", "sources")))] == 3
        assert samples[("aesop_tool_errors_total", (("tool", "get_entities"),))] == 1
        assert samples[("aesop_rate_limited_total", (("tool", "sources"),))] == 2
        assert samples[("aesop_tool_call_duration_seconds_count", (("tool", "search"),))] == 1
        assert samples[("aesop_tool_call_duration_seconds_sum", (("tool", "search"),))] > 0
        assert samples[("aesop_store_change_seq", ())] > 0
        assert samples[("aesop_store_items", (("kind", "entities"),))] >= 1
        assert samples[("aesop_index_entries", (("index", "vector"),))] >= 1  # the search loaded it
        assert samples[("aesop_index_sync_lag", (("index", "vector"),))] == 0
        assert samples[("aesop_calls_in_flight", ())] == 0
        assert ("aesop_queue_depth", (("queue", "refusals_unwritten"),)) in samples
        assert "process_cpu_seconds_total" in {name for name, _ in samples}
        assert httpx2.get(server.metrics_url().replace("/metrics", "/mcp"), timeout=10).status_code == 404

        # one JSON line per call, carrying the trace id the OTLP receiver got
        calls = [x for x in server.json_lines() if x.get("logger") == "aesoperator.calls"]
        assert [x["tool"] for x in calls] == ["search", "sources", "get_entities", *["sources"] * 4]
        [search_line] = [x for x in calls if x["tool"] == "search"]
        call_spans = [s for s in received if s.name == "aesop.call search"]
        assert search_line["request_id"] == call_spans[0].trace_id.hex() == search_line["trace_id"]
        assert all("Falcon" not in json.dumps(x) for x in server.json_lines())
        stage_spans = {s.name for s in received if s.trace_id == call_spans[0].trace_id}
        assert {"tools/call search", "search", "search.embed", "search.vector", "search.pack"} <= stage_spans
    finally:
        server.stop()
    records = [r for r in AuditLog.in_data_dir(data).tail(20) if r["tool"] == "search"]
    assert records[-1]["request_id"] == search_line["request_id"]
    assert AuditLog.in_data_dir(data).verify().ok
