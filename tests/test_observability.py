"""Traces, JSON logs and the request id: a real MCP client calls the engine's server over HTTP on
127.0.0.1; spans are caught by the OpenTelemetry SDK's in-memory exporter, logs by a JSON handler,
and the audit record is read back from the log on disk."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aesoperator.errors import ConfigError
from aesoperator.security.audit import AuditLog
from aesoperator.security.guard import CallGuard
from aesoperator.security.http.gate import build_http_app
from aesoperator.security.http.listener import HTTPServerThread, bind_socket, resource_url_for
from aesoperator.security.request_principal import http_principal_resolver
from aesoperator.security.tokens import StaticTokenVerifier, TokenStore
from aesoperator.telemetry import tracing
from aesoperator.telemetry.logs import configure_logging

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

pytestmark = pytest.mark.timeout(180)

SECRET_QUERY = "Falcon telemetry pipeline"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    try:
        yield stream
    finally:
        configure_logging()  # back to the defaults (warning, text, stderr)


def _hex(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _parent_id(span: ReadableSpan) -> str | None:
    return f"{span.parent.span_id:016x}" if span.parent is not None else None


def _all_attribute_text(finished: tuple[ReadableSpan, ...]) -> str:
    return " ".join(str(v) for s in finished for v in (s.attributes or {}).values())


def _call_over_http(engine: Any, data_dir: Path, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Serve `engine` behind a static token on 127.0.0.1 and make `calls` with a real MCP client."""
    from aesoperator.serve.server import build_server

    issued = TokenStore.in_data_dir(data_dir).add("reader", ["read:team", "tool:search", "tool:sources"])
    guard = CallGuard(AuditLog.in_data_dir(data_dir), None)
    server = build_server(engine, guard, http_principal_resolver(), warm=False)
    sock = bind_socket()
    url = resource_url_for(sock)
    app = build_http_app(server, StaticTokenVerifier.in_data_dir(data_dir, resource=url), url, guard=guard)
    results: list[Any] = []
    with HTTPServerThread(app, sock):

        async def run() -> None:
            headers = {"Authorization": f"Bearer {issued.token}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=60) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                for name, arguments in calls:
                    results.append(await client.call_tool(name, arguments))

        anyio.run(run)
    guard.close()
    return results


def test_a_tool_call_has_one_request_id_in_its_span_log_line_and_audit_record(
    tmp_path: Path, make_engine: Any, spans: InMemorySpanExporter, json_logs: io.StringIO
) -> None:
    engine = make_engine(tmp_path / "data")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "falcon.md").write_text("# Falcon\nProject Falcon ships the telemetry pipeline in March.\n")
    engine.ingest_path(docs, name="docs", namespace="team")
    spans.clear()

    [found] = _call_over_http(engine, tmp_path / "data", [("search", {"query": SECRET_QUERY, "k": 3})])
    assert not found.is_error and found.structured_content["hits"]

    finished = spans.get_finished_spans()
    by_name = {s.name: s for s in finished}
    call = by_name["aesop.call search"]
    trace_id, call_span_id = _hex(call)
    attributes = dict(call.attributes or {})
    assert attributes["aesop.request_id"] == trace_id
    assert attributes["aesop.decision"] == "allow"
    assert attributes["gen_ai.tool.name"] == "search"
    assert int(attributes["aesop.result_count"]) >= 1  # type: ignore[call-overload]
    assert int(attributes["aesop.arguments.bytes"]) > len(SECRET_QUERY)  # type: ignore[call-overload]
    # the MCP SDK's server span is the parent: one trace from the protocol message down
    sdk_span = by_name["tools/call search"]
    assert _parent_id(call) == _hex(sdk_span)[1]
    # the search and its stages nest under the call
    search = by_name["search"]
    assert _parent_id(search) == call_span_id and _hex(search)[0] == trace_id
    stage_names = {s.name for s in finished if _parent_id(s) == _hex(search)[1]}
    assert {"search.embed", "search.vector", "search.keyword", "search.fuse", "search.pack"} <= stage_names
    assert dict(search.attributes or {})["aesop.search.query_chars"] == len(SECRET_QUERY)
    # no content in any attribute: neither the query nor its words
    text = _all_attribute_text(finished)
    assert SECRET_QUERY not in text and "Falcon" not in text

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    [line] = [x for x in lines if x.get("logger") == "aesoperator.calls" and x.get("tool") == "search"]
    assert line["request_id"] == trace_id and line["trace_id"] == trace_id
    assert line["decision"] == "allow" and line["level"] == "INFO" and line["duration_ms"] > 0
    assert SECRET_QUERY not in json_logs.getvalue()

    audit = AuditLog.in_data_dir(tmp_path / "data")
    [record] = [r for r in audit.tail(20) if r["tool"] == "search"]
    assert record["request_id"] == trace_id
    assert audit.verify().ok


def test_request_ids_differ_per_call_and_exist_with_tracing_off(
    tmp_path: Path, make_engine: Any, json_logs: io.StringIO
) -> None:
    assert not tracing.tracing_on()
    engine = make_engine(tmp_path / "data")
    results = _call_over_http(engine, tmp_path / "data", [("sources", {}), ("sources", {})])
    assert all(not r.is_error for r in results)
    lines = [json.loads(x) for x in json_logs.getvalue().splitlines()]
    calls = [x for x in lines if x.get("logger") == "aesoperator.calls"]
    assert len(calls) == 2 and "trace_id" not in calls[0]
    ids = [x["request_id"] for x in calls]
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    records = [r for r in AuditLog.in_data_dir(tmp_path / "data").tail(10) if r["tool"] == "sources"]
    assert [r["request_id"] for r in records] == ids


def test_records_without_a_request_id_still_verify_and_a_changed_id_breaks_the_chain(tmp_path: Path) -> None:
    audit = AuditLog.in_data_dir(tmp_path)
    audit.append(principal="old", tool="search", arguments={"q": 1}, decision="allow")  # as written before ids
    audit.append(principal="new", tool="search", arguments={"q": 2}, decision="allow", request_id="a" * 32)
    audit.close()
    records = audit.tail(5)
    assert "request_id" not in records[0] and records[1]["request_id"] == "a" * 32
    assert audit.verify().ok
    lines = audit.path.read_text().splitlines()
    changed = json.loads(lines[-1])
    changed["request_id"] = "b" * 32
    audit.path.write_text("\n".join([*lines[:-1], json.dumps(changed)]) + "\n")
    report = AuditLog.in_data_dir(tmp_path).verify()
    assert not report.ok and report.status == "broken"


def test_ingest_batches_are_spans_with_sizes_and_no_content(
    tmp_path: Path, make_engine: Any, spans: InMemorySpanExporter
) -> None:
    engine = make_engine(tmp_path / "data")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"note{i}.md").write_text(f"# Note {i}\nAda Lovelace wrote note {i} about the Analytical Engine.\n")
    engine.ingest_path(docs, name="notes", namespace="team")
    finished = spans.get_finished_spans()
    batches = [s for s in finished if s.name == "ingest.batch"]
    assert batches
    batch = batches[0]
    assert dict(batch.attributes or {})["aesop.ingest.source"] == "notes"
    assert int(dict(batch.attributes or {})["aesop.ingest.items"]) == 3  # type: ignore[call-overload]
    children = {s.name: s for s in finished if _parent_id(s) == _hex(batch)[1]}
    assert {"ingest.extract", "ingest.embed", "ingest.write"} <= set(children)
    embed = children["ingest.embed"]
    model = [s for s in finished if _parent_id(s) == _hex(embed)[1] and s.name == "ingest.embed.model"]
    assert model and int(dict(model[0].attributes or {})["aesop.embed.texts"]) >= 3  # type: ignore[call-overload]
    assert "Lovelace" not in _all_attribute_text(finished)


def test_tracing_is_off_unless_the_otel_variables_turn_it_on() -> None:
    assert tracing.exporter_names({}) == []
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.exporter_names({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == ["otlp"]
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "console,otlp"}) == ["console", "otlp"]
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}) == []
    assert not tracing.configure_tracing(environ={})
    with tracing.span("nothing") as current:  # off: a shared no-op, no span
        assert current is None
    with pytest.raises(ConfigError, match="zipkin"):
        tracing.configure_tracing(environ={"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigError, match="grpc"):
        tracing.configure_tracing(environ={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"})
    assert not tracing.tracing_on()


def test_log_level_and_format_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from aesoperator.config import Settings

    monkeypatch.setenv("AESOP_LOG_LEVEL", "INFO")
    monkeypatch.setenv("AESOP_LOG_FORMAT", "json")
    settings = Settings()
    assert (settings.log_level, settings.log_format) == ("info", "json")
    stream = io.StringIO()
    configure_logging(settings.log_level, settings.log_format, stream=stream)
    try:
        logging.getLogger("aesoperator.test").debug("hidden")
        logging.getLogger("aesoperator.test").info("shown", extra={"fields": {"items": 3}})
    finally:
        configure_logging()
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["message"] == "shown" and line["items"] == 3 and "request_id" not in line
    monkeypatch.setenv("AESOP_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()


def test_lexical_channels_on_a_worker_stay_under_the_search_span(spans: InMemorySpanExporter, make_engine: Any) -> None:
    """When the keyword and name channels run on a worker thread (a large graph's), their spans
    are still children of the search's, and the search's wait has a span of its own."""
    from aesoperator.engine.search_request import LEXICAL_BESIDE_FROM_MS
    from aesoperator.graph_schema.models import Entity

    engine = make_engine()
    engine.upsert(
        [Entity(id=f"doc:{i}", type="Document", name=f"Note {i}", text=f"Falcon note number {i}") for i in range(5)]
    )
    engine._lexical_cost.record(LEXICAL_BESIDE_FROM_MS * 10)  # as if the channels had been taking long
    spans.clear()
    result = engine.search("Falcon note", k=3)
    assert result.hits and "name" not in result.timings_ms
    finished = spans.get_finished_spans()
    search = next(s for s in finished if s.name == "search")
    children = {s.name for s in finished if _parent_id(s) == _hex(search)[1]}
    assert {"search.keyword", "search.name", "search.lexical_wait", "search.embed", "search.vector"} <= children
    assert all(_hex(s)[0] == _hex(search)[0] for s in finished if s.name.startswith("search."))
