"""`forget` through the engine's MCP server: a purge leaves no byte of the erased text in the
data directory (and none in Neo4j), the audit log still verifies and says who erased how much,
scopes decide who may retire and who may erase, and memory tools' audit digests are keyed."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult

from aesoperator.security.audit import AuditLog, arguments_digest, canonical_json
from aesoperator.security.audit_format import keyed_arguments, read_key
from aesoperator.security.guard import CallGuard
from aesoperator.security.principal import Principal
from tests.forget_support import MARKER, traces

pytestmark = [pytest.mark.slow]

AGENT = "ops"
NS = f"agent:{AGENT}"
OTHER_MEMORIES = [
    "The coffee machine on floor 3 is broken again",
    "Lunch order for the ops team: two pizzas and a salad",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def structured(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error, f"expected an error, got {result.structured_content!r}"
    return " ".join(getattr(c, "text", "") for c in result.content)


def stdio_client(data_dir: Path) -> Client:
    """A client of `aesop serve --stdio` (full access, audit log on) on `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESOP_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", AESOP_CONFIG=os.devnull)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aesoperator.cli", "--data-dir", str(data_dir), "serve", "--stdio"],
        env=env,
        cwd=str(data_dir),
    )
    return Client(params, read_timeout_seconds=180)


async def _remember(client: Client) -> str:
    marked = structured(
        await client.call_tool(
            "remember",
            {
                "content": f"{MARKER} moved to Lisbon and now runs the harbour ferry",
                "agent_id": AGENT,
                "session_id": "s1",
            },
        )
    )["episode"]["id"]
    for text in OTHER_MEMORIES:
        structured(await client.call_tool("remember", {"content": text, "agent_id": AGENT, "session_id": "s1"}))
    return str(marked)


@pytest.mark.anyio
async def test_purge_through_mcp_leaves_no_trace_in_the_data_dir(tmp_path: Path, embedder: Any) -> None:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    data = tmp_path / "data"
    data.mkdir()
    async with stdio_client(data) as client:
        marked = await _remember(client)
        recalled = structured(
            await client.call_tool("recall", {"query": "who runs the harbour ferry?", "agent_id": AGENT})
        )
        assert recalled["episodes"][0]["episode"]["id"] == marked
    with ContextEngine.open(settings=Settings(data_dir=data), embedder=embedder) as engine:
        engine.rebuild_index()  # both derived indexes on disk, holding the marker
    before = traces(data)
    assert any(t.startswith("graph.sqlite") for t in before), before
    assert any(t.startswith("cache/extraction.sqlite") for t in before), before
    assert any(t.startswith("index/keywords-") for t in before), before

    async with stdio_client(data) as client:
        report = structured(
            await client.call_tool("forget", {"agent_id": AGENT, "query": MARKER.upper(), "purge": True})
        )
        assert report["mode"] == "purge" and report["episodes"] == [marked]
        left = structured(
            await client.call_tool("recall", {"query": "coffee machine lunch pizzas", "agent_id": AGENT, "k": 5})
        )
        assert {e["episode"]["content"] for e in left["episodes"]} == set(OTHER_MEMORIES)
        gone = structured(await client.call_tool("search", {"query": "harbour ferry Lisbon", "k": 10}))
        assert marked not in [h["id"] for h in gone["hits"]]

    assert traces(data) == []
    log = AuditLog.in_data_dir(data)
    report_ok = log.verify()
    assert report_ok.ok, report_ok.problem
    purge = [r for r in log.tail(50) if r["tool"] == "forget.purge"]
    assert len(purge) == 1 and purge[0]["principal"] == "local" and purge[0]["result_count"] >= 1
    assert [r["decision"] for r in log.tail(50) if r["tool"] == "forget"] == ["allow"]


@pytest.mark.anyio
async def test_write_scope_retires_only_the_purge_scope_erases(make_engine: Callable[..., Any], tmp_path: Path) -> None:
    from aesoperator.serve.server import build_server

    data = tmp_path / "scoped"
    engine = make_engine(data)
    marked = engine.remember(f"{MARKER} keeps the spare keys", agent_id=AGENT).id
    other = engine.remember("the spare keys are in the blue box", agent_id=AGENT).id
    guard = CallGuard.for_data_dir(data)
    who = {"p": Principal.from_scopes("writer", [f"read:{NS}", f"write:{NS}"])}
    server = build_server(engine, guard, lambda: who["p"], warm=False)
    async with Client(server) as client:
        denied = await client.call_tool("forget", {"agent_id": AGENT, "ids": [marked], "purge": True})
        assert "permission denied" in error_text(denied) and f"purge:{NS}" in error_text(denied)
        assert engine.get_entities([marked]), "a refused purge changes nothing"
        retired = structured(await client.call_tool("forget", {"agent_id": AGENT, "ids": [other]}))
        assert retired["mode"] == "retire" and retired["episodes"] == [other]
        who["p"] = Principal.from_scopes("eraser-without-write", [f"read:{NS}", f"purge:{NS}"])
        assert "permission denied" in error_text(
            await client.call_tool("forget", {"agent_id": AGENT, "ids": [marked], "purge": True})
        )
        who["p"] = Principal.from_scopes("elsewhere", ["read:*", "write:team", "purge:team"])
        assert "permission denied" in error_text(
            await client.call_tool("forget", {"agent_id": AGENT, "ids": [marked], "purge": True})
        )
        who["p"] = Principal.from_scopes("eraser", [f"write:{NS}", f"purge:{NS}"])
        erased = structured(await client.call_tool("forget", {"agent_id": AGENT, "ids": [marked], "purge": True}))
        assert erased["episodes"] == [marked] and not engine.get_entities([marked])
    guard.close()
    records = [(r["principal"], r["tool"], r["decision"]) for r in AuditLog.in_data_dir(data).tail(20)]
    assert records == [
        ("writer", "forget", "deny"),
        ("writer", "forget", "allow"),
        ("eraser-without-write", "forget", "deny"),
        ("elsewhere", "forget", "deny"),
        ("eraser", "forget.purge", "allow"),
        ("eraser", "forget", "allow"),
    ]
    assert AuditLog.in_data_dir(data).verify().ok


def test_memory_tool_digests_are_keyed_and_others_are_plain(tmp_path: Path) -> None:
    log = AuditLog.in_data_dir(tmp_path)
    remembered = {"content": f"{MARKER} likes tea", "agent_id": AGENT}
    searched = {"query": "tea", "k": 3}
    first = log.append(principal="p", tool="remember", arguments=remembered, decision="allow")
    second = log.append(principal="p", tool="search", arguments=searched, decision="allow")
    key = read_key(tmp_path / "audit.key")
    assert key is not None
    assert first["args_sha256"] != arguments_digest(remembered)  # no guess can be checked without the key
    assert first["args_sha256"] == arguments_digest(keyed_arguments(key, remembered))
    assert second["args_sha256"] == hashlib.sha256(canonical_json(searched).encode()).hexdigest()
    assert MARKER.encode() not in (tmp_path / "audit.log").read_bytes()
    assert json.loads(canonical_json(keyed_arguments(key, {"n": 1, "xs": ["a"]})))["n"] == 1
    assert log.verify().ok


@pytest.mark.neo4j
@pytest.mark.anyio
async def test_purge_on_neo4j_leaves_no_trace_in_neo4j_or_the_engine_files(
    neo4j_store_factory: Callable[[], Any], tmp_path: Path, embedder: Any
) -> None:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings
    from aesoperator.serve.server import build_server

    store = neo4j_store_factory()
    data = tmp_path / "replica"
    engine = ContextEngine(store, settings=Settings(data_dir=data), embedder=embedder)
    guard = CallGuard.for_data_dir(data)
    server = build_server(engine, guard, warm=False)
    async with Client(server) as client:
        marked = await _remember(client)
        engine.rebuild_index()
        assert _neo4j_traces(store), "the marker should be in Neo4j before the purge"
        assert traces(data), "and in the engine's own files"
        report = structured(await client.call_tool("forget", {"agent_id": AGENT, "entity": MARKER, "purge": True}))
        assert marked in report["episodes"]
        left = structured(
            await client.call_tool("recall", {"query": "coffee machine lunch pizzas", "agent_id": AGENT, "k": 5})
        )
        assert {e["episode"]["content"] for e in left["episodes"]} == set(OTHER_MEMORIES)
    assert _neo4j_traces(store) == []
    assert not store.erasure_pending()
    engine.close()
    guard.close()
    assert traces(data) == []
    assert AuditLog.in_data_dir(data).verify().ok


def _neo4j_traces(store: Any) -> list[str]:
    """Every node and relationship property of the database that holds the marker (any case)."""
    words = [w.lower() for w in (MARKER, *MARKER.split())]

    def work(tx: Any) -> list[str]:
        found: list[str] = []
        for query in (
            "MATCH (n) RETURN labels(n) AS what, properties(n) AS p",
            "MATCH ()-[r]->() RETURN type(r) AS what, properties(r) AS p",
        ):
            for record in tx.run(query):
                text = json.dumps(record["p"], default=str, ensure_ascii=False).lower()
                if any(w in text for w in words):
                    found.append(f"{record['what']}: {text[:200]}")
        return found

    with store._driver.session(database=store.database) as session:
        return list(session.execute_read(work))
