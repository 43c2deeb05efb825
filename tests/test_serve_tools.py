"""The engine's MCP server, through real MCP client sessions.

- over streamable HTTP (`aesop serve --http`, bearer tokens) against one server process for the
  module: every tool and resource, namespace isolation for a token limited to one namespace,
  resource subscriptions (`subscriptions/listen` and the earlier `resources/subscribe`) fired by
  writes from this process, bad input through every tool;
- over stdio (`python -m aesoperator.cli serve --stdio`): every tool and resource in one session;
- in-process (the SDK client connected to the `MCPServer` object): the call guard's decisions,
  rate limits, and hypothesis property tests over the tool argument schemas.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ResourceTemplateReference, ResourceUpdatedNotification

from aesoperator.errors import PermissionDenied, RateLimited
from aesoperator.graph_schema.models import Entity, Relation
from aesoperator.security.principal import Principal

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DOCS = REPO / "tests" / "fixtures" / "docs"
SERVER_START_SECONDS = 120

NS1_TEXT = "The Apollo guidance computer flew the lunar missions; its software came from Margaret Hamilton's team."
ZEBRA_TEXT = "Classified zebra project notes. The zebra project builds on the Apollo guidance computer."

SEED_ENTITIES = [
    Entity(
        id="t:doc:apollo",
        type="Document",
        name="Apollo guidance computer",
        text=NS1_TEXT,
        namespace="ns1",
        source="seed",
    ),
    Entity(
        id="t:person:hamilton",
        type="Person",
        name="Margaret Hamilton",
        text="Margaret Hamilton led the software engineering division that built the Apollo flight software.",
        namespace="ns1",
        source="seed",
    ),
    Entity(id="t:doc:zebra", type="Document", name="Zebra project", text=ZEBRA_TEXT, namespace="ns2", source="seed2"),
    Entity(
        id="t:doc:bridge",
        type="Document",
        name="Bridge memo",
        text="A memo that only the classified project links to.",
        namespace="ns1",
        source="seed",
    ),
]
SEED_RELATIONS = [
    Relation(type="AUTHORED", src="t:person:hamilton", dst="t:doc:apollo", namespace="ns1", source="seed"),
    Relation(type="REFERENCES", src="t:doc:apollo", dst="t:doc:zebra", namespace="ns2", source="seed2"),
    Relation(type="REFERENCES", src="t:doc:zebra", dst="t:doc:bridge", namespace="ns2", source="seed2"),
]
NS2_IDS = {"t:doc:zebra"}
TOKEN_SCOPES = {
    "admin": ["read:*", "write:*", "source:*", "tool:*"],
    "ns1": ["read:ns1", "write:ns1", "source:docs1"],
    "searcher": ["read:ns1", "tool:search"],
}
ENGINE_TOOLS = ["search", "recall", "remember", "get_entities", "neighbors", "sources"]
MEMORY_TOOLS = [
    "create_entities",
    "create_relations",
    "add_observations",
    "delete_entities",
    "delete_observations",
    "delete_relations",
    "read_graph",
    "search_nodes",
    "open_nodes",
]


def uri(entity_id: str) -> str:
    return "entity://" + quote(entity_id, safe="")


# -- processes ----------------------------------------------------------------------------------------
def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a server subprocess: offline model loading, no stray aesop.toml."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESOP_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", AESOP_CONFIG=os.devnull, PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def aesop_command(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "aesoperator.cli", "--data-dir", str(data_dir), *args]


class ServerProcess:
    """`aesop serve --http --port 0` in a subprocess; `url` is read from its ready line."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            command, cwd=cwd, env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.url = self._wait_ready()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines.put(line)

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            found = re.search(r"serving MCP at (http://\S+)", line)
            if found:
                return found.group(1)
        self.stop()
        raise RuntimeError("server did not start:\n" + "".join(self.log[-40:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@asynccontextmanager
async def bearer_transport(url: str, token: str) -> AsyncIterator[Any]:
    async with (
        create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


def http_client(server: dict[str, Any], who: str = "admin", **options: Any) -> Client:
    return Client(bearer_transport(server["url"], server["tokens"][who]), **options)


def stdio_client(data_dir: Path, *args: str) -> Client:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aesoperator.cli", "--data-dir", str(data_dir), "serve", "--stdio", *args],
        env=server_env(),
        cwd=str(data_dir),
    )
    return Client(params, read_timeout_seconds=120)


def structured(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error, f"expected an error, got {result.structured_content!r}"
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert text.strip(), "an error result must say what went wrong"
    assert "Traceback" not in text and 'File "' not in text
    return text


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def seed(data: Path, embedder: Any, tmp: Path) -> Any:
    """Entities in ns1 and ns2, folders ingested as sources (docs1 in ns1, secret-docs in ns2), and
    memory-server entities of another server in ns2. Returns the open engine."""
    from aesoperator import ContextEngine
    from aesoperator.config import Settings
    from aesoperator.serve.memory_graph import MemoryGraph
    from aesoperator.serve.schemas import MemoryEntity

    engine = ContextEngine.open(settings=Settings(data_dir=data), embedder=embedder)
    engine.upsert(SEED_ENTITIES, SEED_RELATIONS)
    secret = tmp / "secret-docs"
    secret.mkdir(exist_ok=True)
    (secret / "plan.md").write_text("# Zebra rollout\nThe classified zebra rollout plan.\n")
    engine.ingest_path(FIXTURE_DOCS, name="docs1", namespace="ns1")
    engine.ingest_path(secret, name="secret-docs", namespace="ns2")
    MemoryGraph(engine, "ns2").create_entities(
        [MemoryEntity(name="Zebra agent", entityType="agent", observations=["works on zebra"])]
    )
    return engine


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[dict[str, Any]]:
    """The HTTP server's data dir, with static tokens; the engine stays open so tests can write
    from this process while the server runs."""
    from aesoperator.security.tokens import TokenStore

    data = tmp_path_factory.mktemp("served")
    engine = seed(data, embedder, tmp_path_factory.mktemp("sources"))
    store = TokenStore.in_data_dir(data)
    tokens = {name: store.add(name, scopes).token for name, scopes in TOKEN_SCOPES.items()}
    yield {"dir": data, "engine": engine, "tokens": tokens}
    engine.close()


class Background:
    """Runs the stdio sessions in a thread of their own, on a data dir of their own, while the
    HTTP tests run (each server process spends most of its start loading the embedding model)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.errors: dict[str, BaseException | None] = {}
        self.thread = threading.Thread(target=self._run, name="stdio-sessions", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for name, scenario in (("every_tool", stdio_every_tool_and_resource), ("scopes", stdio_scopes)):
            try:
                anyio.run(scenario, self.data)
                self.errors[name] = None
            except BaseException as exc:
                self.errors[name] = exc

    def result(self, name: str) -> None:
        deadline = time.monotonic() + 300
        while name not in self.errors and time.monotonic() < deadline:
            self.thread.join(timeout=0.5)
        if name not in self.errors:
            raise TimeoutError(f"stdio session {name} did not finish")
        error = self.errors[name]
        if error is not None:
            raise error


@pytest.fixture(scope="module")
def stdio_sessions(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Background:
    data = tmp_path_factory.mktemp("stdio")
    seed(data, embedder, tmp_path_factory.mktemp("stdio-sources")).close()
    return Background(data)


@pytest.fixture(scope="module")
def http_server(seeded: dict[str, Any], stdio_sessions: Background) -> Iterator[dict[str, Any]]:
    server = ServerProcess(aesop_command(seeded["dir"], "serve", "--http", "--port", "0"), cwd=seeded["dir"])
    try:
        yield {**seeded, "url": server.url, "process": server}
    finally:
        server.stop()


def last_seq(server: dict[str, Any]) -> int:
    return int(server["engine"].store.last_seq())


# -- every tool over HTTP -------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_http_lists_typed_tools_and_resources(http_server: dict[str, Any]) -> None:
    async with http_client(http_server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(ENGINE_TOOLS + MEMORY_TOOLS) <= set(tools)
        for name in ENGINE_TOOLS + MEMORY_TOOLS:
            assert tools[name].input_schema["type"] == "object", name
            assert tools[name].output_schema is not None and tools[name].output_schema.get("type") == "object", name
        assert tools["search"].annotations is not None and tools["search"].annotations.read_only_hint
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"stats://graph", "memory://knowledge-graph"} <= resources
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        assert "entity://{id}" in templates
        caps = client.session.server_capabilities
        assert caps is not None and caps.resources is not None and caps.resources.subscribe


@pytest.mark.anyio
async def test_http_engine_tools(http_server: dict[str, Any]) -> None:
    async with http_client(http_server) as client:
        found = structured(await client.call_tool("search", {"query": "who wrote the Apollo software?", "k": 5}))
        ids = [h["id"] for h in found["hits"]]
        assert "t:doc:apollo" in ids or "t:person:hamilton" in ids
        first = found["hits"][0]
        assert first["reasons"] and first["uri"].startswith("entity://") and first["namespace"]
        assert found["context"] and found["tokens_used"] <= found["token_budget"]
        assert any(t["type"] == "AUTHORED" for t in found["triples"])

        narrowed = structured(
            await client.call_tool(
                "search", {"query": "Apollo", "k": 3, "hops": 0, "types": ["Person"], "namespaces": ["ns1"]}
            )
        )
        assert narrowed["hits"] and {h["type"] for h in narrowed["hits"]} == {"Person"}

        got = structured(await client.call_tool("get_entities", {"ids": ["t:doc:apollo", "t:unknown:x"]}))
        assert [e["id"] for e in got["entities"]] == ["t:doc:apollo"] and got["missing"] == ["t:unknown:x"]
        assert got["entities"][0]["text"] == NS1_TEXT and got["entities"][0]["uri"] == uri("t:doc:apollo")

        around = structured(await client.call_tool("neighbors", {"ids": ["t:doc:apollo"], "depth": 2}))
        hops = {e["id"]: e["hop"] for e in around["entities"]}
        assert hops == {"t:doc:apollo": 0, "t:person:hamilton": 1, "t:doc:zebra": 1, "t:doc:bridge": 2}
        assert {r["type"] for r in around["relations"]} == {"AUTHORED", "REFERENCES"}
        out_only = structured(
            await client.call_tool(
                "neighbors", {"ids": ["t:doc:apollo"], "direction": "out", "relation_types": ["AUTHORED"]}
            )
        )
        assert [e["id"] for e in out_only["entities"]] == ["t:doc:apollo"]

        stored = structured(
            await client.call_tool(
                "remember",
                {
                    "content": "Discussed the Apollo guidance computer with the user",
                    "agent_id": "agent-7",
                    "session_id": "s1",
                    "metadata": {"channel": "chat"},
                },
            )
        )
        episode = stored["episode"]
        assert episode["namespace"] == "agent:agent-7" and "t:doc:apollo" in episode["mentions"]
        recalled = structured(await client.call_tool("recall", {"query": "guidance computer", "agent_id": "agent-7"}))
        assert recalled["episodes"][0]["episode"]["id"] == episode["id"]
        assert "t:doc:apollo" in [e["id"] for e in recalled["episodes"][0]["entities"]]
        none_here = structured(
            await client.call_tool(
                "recall", {"query": "guidance computer", "agent_id": "agent-7", "session_id": "other"}
            )
        )
        assert none_here["episodes"] == []

        listed = structured(await client.call_tool("sources", {}))
        by_name = {s["name"]: s for s in listed["sources"]}
        assert {"docs1", "secret-docs", "seed", "seed2"} <= set(by_name)
        assert by_name["docs1"]["items"] >= 2 and by_name["docs1"]["entities"] >= 2
        assert by_name["docs1"]["identity"] and by_name["docs1"]["identity"].startswith("file://")
        assert listed["stats"]["entities"] >= len(SEED_ENTITIES) and listed["stats"]["relations"] is not None
        only = structured(await client.call_tool("sources", {"names": ["docs1"]}))
        assert [s["name"] for s in only["sources"]] == ["docs1"]


@pytest.mark.anyio
async def test_http_resources(http_server: dict[str, Any]) -> None:
    async with http_client(http_server) as client:
        read = await client.read_resource(uri("t:doc:apollo"))
        body = json.loads(read.contents[0].text)  # type: ignore[union-attr]
        assert (
            body["id"] == "t:doc:apollo"
            and body["text"] == NS1_TEXT
            and read.contents[0].mime_type == "application/json"
        )
        stats = json.loads((await client.read_resource("stats://graph")).contents[0].text)  # type: ignore[union-attr]
        assert stats["namespaces"]["ns2"] >= 1 and stats["last_seq"] >= 1
        graph = json.loads((await client.read_resource("memory://knowledge-graph")).contents[0].text)  # type: ignore[union-attr]
        assert set(graph) == {"entities", "relations"}
        assert "Zebra agent" not in {e["name"] for e in graph["entities"]}
        with pytest.raises(MCPError, match="no entity"):
            await client.read_resource(uri("t:does-not:exist"))
        done = await client.complete(
            ResourceTemplateReference(uri="entity://{id}"), {"name": "id", "value": "Apollo guidance"}
        )
        assert "t:doc:apollo" in done.completion.values


@pytest.mark.anyio
async def test_http_memory_tools_round_trip(http_server: dict[str, Any]) -> None:
    async with http_client(http_server) as client:
        created = structured(
            await client.call_tool(
                "create_entities",
                {
                    "entities": [
                        {"name": "Ada", "entityType": "person", "observations": ["writes programs"]},
                        {"name": "Analytical Engine", "entityType": "machine", "observations": []},
                    ]
                },
            )
        )
        assert [e["name"] for e in created["entities"]] == ["Ada", "Analytical Engine"]
        again = structured(
            await client.call_tool(
                "create_entities", {"entities": [{"name": "Ada", "entityType": "person", "observations": []}]}
            )
        )
        assert again == {"entities": []}
        rels = structured(
            await client.call_tool(
                "create_relations",
                {
                    "relations": [
                        {"from": "Ada", "to": "Analytical Engine", "relationType": "programs for"},
                        {"from": "Ada", "to": "Babbage", "relationType": "works with"},
                    ]
                },
            )
        )
        assert rels["relations"][0] == {"from": "Ada", "to": "Analytical Engine", "relationType": "programs for"}
        added = structured(
            await client.call_tool(
                "add_observations",
                {"observations": [{"entityName": "Ada", "contents": ["writes programs", "is a countess"]}]},
            )
        )
        assert added == {"results": [{"entityName": "Ada", "addedObservations": ["is a countess"]}]}
        graph = structured(await client.call_tool("read_graph", {}))
        assert [e["name"] for e in graph["entities"]] == ["Ada", "Analytical Engine"]
        assert {(r["from"], r["to"], r["relationType"]) for r in graph["relations"]} == {
            ("Ada", "Analytical Engine", "programs for"),
            ("Ada", "Babbage", "works with"),
        }
        hits = structured(await client.call_tool("search_nodes", {"query": "COUNTESS"}))
        assert [e["name"] for e in hits["entities"]] == ["Ada"] and len(hits["relations"]) == 2
        opened = structured(await client.call_tool("open_nodes", {"names": ["Analytical Engine", "Nobody"]}))
        assert [e["name"] for e in opened["entities"]] == ["Analytical Engine"] and len(opened["relations"]) == 1
        # the graph is searchable with the engine's own tools too
        found = structured(await client.call_tool("search", {"query": "countess who writes programs", "k": 3}))
        assert "memory-graph:entity:Ada" in [h["id"] for h in found["hits"]]
        relation = next(
            r
            for r in (await client.call_tool("neighbors", {"ids": ["memory-graph:entity:Ada"]})).structured_content[
                "relations"
            ]
            if r["properties"]["relationType"] == "programs for"
        )  # type: ignore[index]
        assert relation["type"] == "PROGRAMS_FOR"

        ok = structured(
            await client.call_tool(
                "delete_observations", {"deletions": [{"entityName": "Ada", "observations": ["is a countess"]}]}
            )
        )
        assert ok == {"success": True, "message": "Observations deleted successfully"}
        structured(
            await client.call_tool(
                "delete_relations", {"relations": [{"from": "Ada", "to": "Babbage", "relationType": "works with"}]}
            )
        )
        structured(await client.call_tool("delete_entities", {"entityNames": ["Analytical Engine"]}))
        graph = structured(await client.call_tool("read_graph", {}))
        assert graph == {
            "entities": [{"name": "Ada", "entityType": "person", "observations": ["writes programs"]}],
            "relations": [],
        }
        structured(await client.call_tool("delete_entities", {"entityNames": ["Ada"]}))
        assert structured(await client.call_tool("read_graph", {})) == {"entities": [], "relations": []}
        # the relation to an unknown name left no trace once it was deleted
        assert not http_server["engine"].get_entities(["memory-graph:entity:Babbage"])


# -- namespace isolation ------------------------------------------------------------------------------------
def assert_no_ns2(payload: Any) -> None:
    text = json.dumps(payload)
    for hidden in ("t:doc:zebra", "Zebra project", "Classified zebra", "secret-docs", "Zebra agent", '"ns2"'):
        assert hidden not in text, f"{hidden!r} leaked: {text[:500]}"


@pytest.mark.anyio
async def test_http_namespace_isolation(http_server: dict[str, Any]) -> None:
    before = last_seq(http_server)
    async with http_client(http_server, "ns1") as client:
        for query, hops in (("zebra project", 2), ("Apollo guidance computer", 2), ("classified", 1)):
            result = structured(await client.call_tool("search", {"query": query, "k": 20, "hops": hops}))
            assert_no_ns2(result)
            assert all(h["namespace"] == "ns1" for h in result["hits"])
        # graph expansion from Apollo may not pass through the ns2 document to the ns1 memo behind it
        result = structured(await client.call_tool("search", {"query": "Apollo guidance computer", "k": 1, "hops": 3}))
        assert "t:doc:bridge" not in [h["id"] for h in result["hits"]]

        around = structured(await client.call_tool("neighbors", {"ids": ["t:doc:apollo"], "depth": 3}))
        assert {e["id"] for e in around["entities"]} == {"t:doc:apollo", "t:person:hamilton"}
        assert_no_ns2(around)
        error_text(await client.call_tool("neighbors", {"ids": ["t:doc:zebra"]}))

        got = structured(await client.call_tool("get_entities", {"ids": ["t:doc:apollo", "t:doc:zebra"]}))
        assert [e["id"] for e in got["entities"]] == ["t:doc:apollo"] and got["missing"] == ["t:doc:zebra"]
        hidden = error_text(await client.call_tool("get_entities", {"ids": ["t:doc:zebra"]}))
        unknown = error_text(await client.call_tool("get_entities", {"ids": ["t:doc:nothing"]}))
        assert hidden.replace("zebra", "X") == unknown.replace("nothing", "X")  # no existence oracle

        for explicit in (["ns2"], ["ns1", "ns2"]):
            assert "permission denied" in error_text(
                await client.call_tool("search", {"query": "zebra", "namespaces": explicit})
            )
        for name, args in (
            ("read_graph", {}),
            ("search_nodes", {"query": "zebra"}),
            ("open_nodes", {"names": ["Zebra agent"]}),
        ):
            assert "permission denied" in error_text(await client.call_tool(name, args))

        with pytest.raises(MCPError, match="no entity"):
            await client.read_resource(uri("t:doc:zebra"))
        with pytest.raises(MCPError):
            await client.read_resource("memory://knowledge-graph")
        stats = json.loads((await client.read_resource("stats://graph")).contents[0].text)  # type: ignore[union-attr]
        assert set(stats["namespaces"]) == {"ns1"} and stats["relations"] is None

        sources = structured(await client.call_tool("sources", {}))
        assert [s["name"] for s in sources["sources"]] == ["docs1"]
        assert_no_ns2(sources)

        assert "permission denied" in error_text(
            await client.call_tool("remember", {"content": "note", "agent_id": "a", "namespace": "ns2"})
        )
        assert "permission denied" in error_text(
            await client.call_tool(
                "create_entities", {"entities": [{"name": "X", "entityType": "t", "observations": []}]}
            )
        )
        # mentions of entities it cannot read are not linked (and not revealed)
        episode = structured(
            await client.call_tool(
                "remember",
                {
                    "content": "Notes on the Apollo guidance computer",
                    "agent_id": "a",
                    "namespace": "ns1",
                    "mentions": ["t:doc:zebra"],
                },
            )
        )["episode"]
        assert episode["mentions"] == ["t:doc:apollo"]
        recalled = structured(
            await client.call_tool("recall", {"query": "Apollo notes", "agent_id": "a", "namespaces": ["ns1"]})
        )
        assert_no_ns2(recalled)
    assert last_seq(http_server) > before  # only the ns1 episode was written

    async with http_client(http_server, "searcher") as client:
        assert structured(await client.call_tool("search", {"query": "Apollo"}))["hits"]
        # the HTTP gate answers 403 insufficient_scope (naming the scope to step up to) before the tool runs
        with pytest.raises(MCPError, match="tool:get_entities"):
            await client.call_tool("get_entities", {"ids": ["t:doc:apollo"]})


# -- subscriptions ------------------------------------------------------------------------------------------
def touch(server: dict[str, Any], entity_id: str, text: str) -> None:
    engine = server["engine"]
    (entity,) = engine.get_entities([entity_id])
    engine.upsert([entity.model_copy(update={"text": text})], embed=False)


@pytest.mark.anyio
async def test_http_listen_notifies_on_change_from_another_process(http_server: dict[str, Any]) -> None:
    target = uri("t:person:hamilton")
    async with (
        http_client(http_server) as client,
        client.listen(resource_subscriptions=[target, "stats://graph"]) as events,
    ):
        await anyio.sleep(0.5)
        touch(http_server, "t:person:hamilton", "Margaret Hamilton coined the term software engineering.")
        seen: set[str] = set()
        with anyio.fail_after(20):
            async for event in events:
                seen.add(getattr(event, "uri", ""))
                if {target, "stats://graph"} <= seen:
                    break
        body = json.loads((await client.read_resource(target, cache_mode="bypass")).contents[0].text)  # type: ignore[union-attr]
        assert "coined the term" in body["text"]


@pytest.mark.anyio
async def test_http_legacy_subscribe_and_unsubscribe(http_server: dict[str, Any]) -> None:
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updates.append(message.params.uri)

    target = uri("t:doc:bridge")
    async with http_client(http_server, mode="legacy", message_handler=on_message) as client:
        with pytest.warns(Warning):
            await client.subscribe_resource(target)
        touch(http_server, "t:doc:bridge", "A memo, revised.")
        with anyio.fail_after(20):
            while target not in updates:
                await anyio.sleep(0.1)
        with pytest.warns(Warning):
            await client.unsubscribe_resource(target)
        updates.clear()
        touch(http_server, "t:doc:bridge", "A memo, revised twice.")
        await anyio.sleep(1.5)
        assert updates == []


@pytest.mark.anyio
async def test_http_subscriptions_respect_namespaces(http_server: dict[str, Any]) -> None:
    async with http_client(http_server, "ns1") as client:
        with pytest.raises(MCPError, match="cannot subscribe: no entity"):
            async with client.listen(resource_subscriptions=[uri("t:doc:zebra")]):
                pass
    async with http_client(http_server, "ns1", mode="legacy") as client:
        with pytest.raises(MCPError, match="cannot subscribe: no entity"), pytest.warns(Warning):
            await client.subscribe_resource(uri("t:doc:zebra"))


# -- bad input ------------------------------------------------------------------------------------------------
HUGE = "x" * 200_000
INJECTIONS = [
    "'; DROP TABLE entities; --",
    "MATCH (n) DETACH DELETE n",
    'apollo" OR 1=1 --',
    "NEAR(apollo zebra) AND * OR ^",
    "{{7*7}} ${jndi:ldap://x} ../../etc/passwd",
    "\x00\u202e\ufeff",
]
BAD_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("search", {}),
    ("search", {"query": 5}),
    ("search", {"query": ""}),
    ("search", {"query": HUGE}),
    ("search", {"query": "a", "k": 0}),
    ("search", {"query": "a", "k": "ten"}),
    ("search", {"query": "a", "hops": 9}),
    ("search", {"query": "a", "types": ["bad type!"]}),
    ("search", {"query": "a", "namespaces": "ns1"}),
    ("search", {"query": "a", "as_of": "yesterday"}),
    ("search", {"query": "a", "token_budget": -1}),
    ("recall", {"query": "a"}),
    ("recall", {"query": "a", "agent_id": "x" * 500}),
    ("recall", {"query": "a", "agent_id": "a", "k": -1}),
    ("remember", {"content": "", "agent_id": "a"}),
    ("remember", {"content": HUGE, "agent_id": "a"}),
    ("remember", {"content": "hi", "agent_id": ""}),
    ("remember", {"content": "hi", "agent_id": "a", "metadata": "not a dict"}),
    ("remember", {"content": "hi", "agent_id": "a", "metadata": {"blob": "x" * 300_000}}),
    ("remember", {"content": "hi", "agent_id": "a", "mentions": [""]}),
    ("get_entities", {"ids": []}),
    ("get_entities", {"ids": "t:doc:apollo"}),
    ("get_entities", {"ids": ["t:unknown:1", "t:unknown:2"]}),
    ("get_entities", {"ids": ["x" * 5000]}),
    ("get_entities", {"ids": [INJECTIONS[0]]}),
    ("neighbors", {"ids": ["nope"]}),
    ("neighbors", {"ids": ["t:doc:apollo"], "depth": 7}),
    ("neighbors", {"ids": ["t:doc:apollo"], "direction": "sideways"}),
    ("neighbors", {"ids": ["t:doc:apollo"], "relation_types": ["DROP TABLE x"]}),
    ("neighbors", {"ids": ["t:doc:apollo"], "limit": 10**9}),
    ("sources", {"names": "all"}),
    ("sources", {"names": [""]}),
    ("create_entities", {"entities": "nope"}),
    ("create_entities", {"entities": [{"name": "ok"}]}),
    ("create_entities", {"entities": [{"name": "   ", "entityType": "t", "observations": []}]}),
    ("create_entities", {"entities": [{"name": "x" * 2000, "entityType": "t", "observations": []}]}),
    ("create_entities", {"entities": [{"name": "fine", "entityType": "t", "observations": [HUGE]}]}),
    (
        "create_entities",
        {
            "entities": [
                {"name": "good one", "entityType": "t", "observations": []},
                {"name": "", "entityType": "t", "observations": []},
            ]
        },
    ),
    ("create_relations", {"relations": [{"from": "", "to": "b", "relationType": "r"}]}),
    ("create_relations", {"relations": [{"to": "b", "relationType": "r"}]}),
    ("add_observations", {"observations": [{"entityName": "Nobody at all", "contents": ["x"]}]}),
    ("add_observations", {"observations": [{"entityName": "Nobody", "contents": "x"}]}),
    ("delete_entities", {"entityNames": "x"}),
    ("delete_entities", {"entityNames": [1, 2]}),
    ("delete_observations", {"deletions": [{"entityName": "x"}]}),
    ("delete_relations", {"relations": [{"from": "a"}]}),
    ("search_nodes", {"query": 5}),
    ("search_nodes", {"query": HUGE}),
    ("open_nodes", {"names": "Alice"}),
    ("open_nodes", {"names": [None]}),
    ("no_such_tool", {}),
]


@pytest.mark.anyio
async def test_http_bad_input_is_a_clear_error_and_changes_nothing(http_server: dict[str, Any]) -> None:
    async with http_client(http_server) as client:
        graph_before = structured(await client.call_tool("read_graph", {}))
        before = last_seq(http_server)
        for name, args in BAD_CALLS:
            result = await client.call_tool(name, args)
            text = error_text(result)
            assert len(text) < 2000, f"{name}: the message should be short, got {len(text)} characters"
            if name in ("search", "recall", "remember", "get_entities", "neighbors") and "x" * 100 in json.dumps(args):
                assert "x" * 100 not in text, "the rejected value must not be echoed back"
            assert last_seq(http_server) == before, f"{name}({str(args)[:80]}) changed the store"
        assert structured(await client.call_tool("read_graph", {})) == graph_before

        # text that looks like an injection is data: reads answer normally and change nothing
        for text in INJECTIONS:
            structured(await client.call_tool("search", {"query": text or "x"}))
            structured(await client.call_tool("search_nodes", {"query": text}))
            structured(await client.call_tool("open_nodes", {"names": [text]}))
            with pytest.raises(MCPError):
                await client.read_resource(uri(text))
        assert last_seq(http_server) == before
        name = "Robert'); DROP TABLE entities;--"
        structured(
            await client.call_tool(
                "create_entities",
                {"entities": [{"name": name, "entityType": "MATCH (n) DELETE n", "observations": INJECTIONS[:3]}]},
            )
        )
        opened = structured(await client.call_tool("open_nodes", {"names": [name]}))
        assert opened["entities"] == [
            {"name": name, "entityType": "MATCH (n) DELETE n", "observations": INJECTIONS[:3]}
        ]
        structured(await client.call_tool("delete_entities", {"entityNames": [name]}))
        assert structured(await client.call_tool("read_graph", {})) == graph_before
        assert structured(await client.call_tool("search", {"query": "Apollo guidance computer"}))["hits"]


# -- stdio ----------------------------------------------------------------------------------------------------
async def stdio_every_tool_and_resource(data: Path) -> None:
    async with stdio_client(data, "--memory-namespace", "stdio-graph") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert set(ENGINE_TOOLS + MEMORY_TOOLS) <= names
        hits = structured(await client.call_tool("search", {"query": "Apollo guidance computer", "k": 3}))["hits"]
        assert hits[0]["id"] == "t:doc:apollo"
        assert (
            structured(await client.call_tool("get_entities", {"ids": ["t:doc:zebra"]}))["entities"][0]["namespace"]
            == "ns2"
        )
        assert len(structured(await client.call_tool("neighbors", {"ids": ["t:doc:zebra"]}))["entities"]) == 3
        episode = structured(
            await client.call_tool("remember", {"content": "stdio note about Zebra project", "agent_id": "cli"})
        )
        recalled = structured(await client.call_tool("recall", {"query": "stdio note", "agent_id": "cli"}))
        assert recalled["episodes"][0]["episode"]["id"] == episode["episode"]["id"]
        assert structured(await client.call_tool("sources", {"names": ["docs1"]}))["sources"][0]["items"] >= 2
        structured(
            await client.call_tool(
                "create_entities", {"entities": [{"name": "S", "entityType": "t", "observations": ["o"]}]}
            )
        )
        structured(
            await client.call_tool("create_relations", {"relations": [{"from": "S", "to": "T", "relationType": "r"}]})
        )
        structured(
            await client.call_tool("add_observations", {"observations": [{"entityName": "S", "contents": ["p"]}]})
        )
        structured(
            await client.call_tool("delete_observations", {"deletions": [{"entityName": "S", "observations": ["o"]}]})
        )
        assert structured(await client.call_tool("search_nodes", {"query": "p"}))["entities"][0]["observations"] == [
            "p"
        ]
        assert len(structured(await client.call_tool("open_nodes", {"names": ["S"]}))["relations"]) == 1
        structured(
            await client.call_tool("delete_relations", {"relations": [{"from": "S", "to": "T", "relationType": "r"}]})
        )
        structured(await client.call_tool("delete_entities", {"entityNames": ["S"]}))
        assert structured(await client.call_tool("read_graph", {})) == {"entities": [], "relations": []}
        entity = json.loads((await client.read_resource(uri("t:doc:zebra"))).contents[0].text)  # type: ignore[union-attr]
        assert entity["name"] == "Zebra project"
        assert json.loads((await client.read_resource("stats://graph")).contents[0].text)["entities"] > 0  # type: ignore[union-attr]
        assert json.loads((await client.read_resource("memory://knowledge-graph")).contents[0].text) == {  # type: ignore[union-attr]
            "entities": [],
            "relations": [],
        }
        error_text(await client.call_tool("search", {"query": ""}))


async def stdio_scopes(data: Path) -> None:
    async with stdio_client(data, "--scopes", "read:ns1,tool:get_entities,tool:sources") as client:
        assert structured(await client.call_tool("get_entities", {"ids": ["t:doc:apollo"]}))["entities"]
        error_text(await client.call_tool("get_entities", {"ids": ["t:doc:zebra"]}))
        assert "permission denied" in error_text(await client.call_tool("neighbors", {"ids": ["t:doc:apollo"]}))
        assert structured(await client.call_tool("sources", {}))["sources"] == []


def test_stdio_every_tool_and_resource(stdio_sessions: Background) -> None:
    stdio_sessions.result("every_tool")


def test_stdio_scopes_narrow_the_caller(stdio_sessions: Background) -> None:
    stdio_sessions.result("scopes")


# -- in process: the guard, rate limits, property tests --------------------------------------------------------
class RecordingGuard:
    """A call guard that remembers every decision and refuses calls past `allow` per principal."""

    def __init__(self, allow: int = 10**9) -> None:
        self.allow = allow
        self.admitted: dict[str, int] = {}
        self.records: list[tuple[str, str, str, int]] = []

    def admit(self, principal: Principal, tool: str) -> None:
        principal.require_tool(tool)
        count = self.admitted.get(principal.id, 0)
        if count >= self.allow:
            raise RateLimited(f"{principal.id} is over its limit", retry_after=2.5)
        self.admitted[principal.id] = count + 1

    def record(
        self, principal: Principal, tool: str, arguments: Any, decision: str, result_count: int, latency_ms: float
    ) -> None:
        assert latency_ms >= 0
        self.records.append((principal.id, tool, decision, result_count))


@pytest.fixture(scope="module")
def local_engine(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Any]:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings
    from aesoperator.serve.memory_graph import MemoryGraph
    from aesoperator.serve.schemas import MemoryEntity

    engine = ContextEngine.open(settings=Settings(data_dir=tmp_path_factory.mktemp("local")), embedder=embedder)
    engine.upsert(SEED_ENTITIES, SEED_RELATIONS)
    MemoryGraph(engine).create_entities(
        [MemoryEntity(name=n, entityType="person", observations=[f"{n} writes software"]) for n in MEMORY_NAMES]
    )
    yield engine
    engine.close()


@pytest.mark.anyio
async def test_guard_sees_every_decision(local_engine: Any) -> None:
    from aesoperator.serve.server import build_server

    guard = RecordingGuard(allow=4)
    who = {"principal": Principal.from_scopes("p1", ["read:ns1", "tool:search", "tool:get_entities"])}
    server = build_server(local_engine, guard, lambda: who["principal"], warm=False)
    async with Client(server) as client:
        structured(await client.call_tool("search", {"query": "Apollo", "k": 2}))
        error_text(await client.call_tool("get_entities", {"ids": ["t:doc:zebra"]}))
        denied = await client.call_tool("neighbors", {"ids": ["t:doc:apollo"]})
        assert "permission denied" in error_text(denied)
        error_text(await client.call_tool("search", {"query": 12}))
        structured(await client.call_tool("get_entities", {"ids": ["t:doc:apollo"]}))
        limited = await client.call_tool("search", {"query": "Apollo"})
        assert "rate limited" in error_text(limited) and "2.5" in error_text(limited)
        assert limited.meta is not None and limited.meta["aesoperator/error"]["retry_after"] == 2.5
        who["principal"] = Principal(id="nobody", kind="anonymous", tools=frozenset())

        def refuse() -> Principal:
            raise PermissionDenied("no token")

        who_fn = server.runtime.resolve_principal
        server.runtime.resolve_principal = refuse
        assert "permission denied" in error_text(await client.call_tool("search", {"query": "x"}))
        server.runtime.resolve_principal = who_fn
    decisions = [(tool, decision) for _, tool, decision, _ in guard.records]
    assert decisions == [
        ("search", "allow"),
        ("get_entities", "error"),
        ("neighbors", "deny"),
        ("search", "error"),
        ("get_entities", "allow"),
        ("search", "rate_limited"),
        ("search", "deny"),
    ]
    assert guard.records[0][3] >= 1 and guard.records[4][3] == 1


@pytest.mark.anyio
async def test_resource_reads_go_through_the_guard(local_engine: Any) -> None:
    from aesoperator.serve.server import build_server

    guard = RecordingGuard()
    server = build_server(local_engine, guard, lambda: Principal.from_scopes("r", ["read:ns1"]), warm=False)
    async with Client(server) as client:
        await client.read_resource(uri("t:doc:apollo"))
        with pytest.raises(MCPError, match="no entity"):
            await client.read_resource(uri("t:doc:zebra"))
    assert [(tool, decision) for _, tool, decision, _ in guard.records] == [
        ("read_resource", "allow"),
        ("read_resource", "error"),
    ]


@pytest.mark.anyio
async def test_in_process_subscription_with_real_guard(local_engine: Any, tmp_path: Path) -> None:
    from aesoperator.security.audit import AuditLog
    from aesoperator.security.guard import CallGuard
    from aesoperator.serve.server import build_server

    audit = AuditLog.in_data_dir(tmp_path)
    server = build_server(local_engine, CallGuard(audit=audit), poll_interval=0.05, warm=False)
    async with Client(server) as client, client.listen(resource_subscriptions=[uri("t:doc:apollo")]) as events:
        structured(await client.call_tool("get_entities", {"ids": ["t:doc:apollo"]}))
        touch({"engine": local_engine}, "t:doc:apollo", NS1_TEXT + " Revised.")
        with anyio.fail_after(10):
            event = await events.__anext__()
        assert getattr(event, "uri", None) == uri("t:doc:apollo")
    assert [r["tool"] for r in audit.tail(5)][-1] == "get_entities"
    assert audit.verify().ok
    audit.close()


# -- hypothesis over the argument schemas -------------------------------------------------------------------------
JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False, width=32), st.text(max_size=40)
)
ANY_JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


MEMORY_NAMES = ["Ada", "Grace", "Linus"]
KNOWN_IDS = [e.id for e in SEED_ENTITIES]
# values that exist, so that generated calls reach past the "unknown id" answer too
HINTS: dict[str, st.SearchStrategy[Any]] = {
    "ids": st.lists(st.sampled_from(KNOWN_IDS), min_size=1, max_size=3),
    "names": st.lists(st.sampled_from(MEMORY_NAMES), max_size=3),
    "entityNames": st.lists(st.sampled_from(MEMORY_NAMES), max_size=2),
    "entityName": st.sampled_from(MEMORY_NAMES),
    "from": st.sampled_from(MEMORY_NAMES),
    "to": st.sampled_from(MEMORY_NAMES),
    "query": st.sampled_from(["Apollo", "zebra", "Ada", "software"]),
    "agent_id": st.sampled_from(["agent-1", "agent-2"]),
    "namespaces": st.sampled_from([["ns1"], ["ns1", "ns2"], ["agent:agent-1"]]),
}


def from_schema(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that mostly fit `schema` (a small JSON Schema subset), sometimes anything at all."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].split("/")[-1]], defs, depth)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs, depth) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.datetimes().map(lambda d: d.isoformat())
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 60), 60))
    if kind == "integer":
        return st.integers(schema.get("minimum", -5), min(schema.get("maximum", 50), 50))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {}), defs, depth + 1) if depth < 5 else JSON_LEAF
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))

        def field(key: str, sub: dict[str, Any]) -> st.SearchStrategy[Any]:
            made = from_schema(sub, defs, depth + 1)
            return st.one_of(HINTS[key], made) if key in HINTS else made

        return st.fixed_dictionaries(
            {k: field(k, v) for k, v in props.items() if k in required},
            optional={k: field(k, v) for k, v in props.items() if k not in required},
        )
    return ANY_JSON


@pytest.fixture(scope="module")
def portal_client(local_engine: Any) -> Iterator[tuple[Any, Client, dict[str, Any]]]:
    """One in-process client session, driven from synchronous hypothesis tests through a portal."""
    from anyio.from_thread import start_blocking_portal

    from aesoperator.serve.server import build_server

    server = build_server(
        local_engine, None, lambda: Principal.from_scopes("h", ["read:*", "write:*", "source:*"]), warm=False
    )
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(Client(server)) as client:
        tools = {t.name: t for t in portal.call(client.list_tools).tools}
        yield portal, client, tools


READ_ONLY_TOOLS = [
    "search",
    "recall",
    "get_entities",
    "neighbors",
    "sources",
    "read_graph",
    "search_nodes",
    "open_nodes",
]


def arguments_for(tool: Any) -> st.SearchStrategy[Any]:
    schema = tool.input_schema
    fitting = from_schema(schema, schema.get("$defs", {}))
    anything = st.dictionaries(st.sampled_from([*schema.get("properties", {}), "junk"]), ANY_JSON, max_size=4)
    return st.one_of(fitting, fitting, anything)


@pytest.mark.parametrize("name", ENGINE_TOOLS + MEMORY_TOOLS)
def test_tool_arguments_property(
    portal_client: tuple[Any, Client, dict[str, Any]], local_engine: Any, name: str
) -> None:
    portal, client, tools = portal_client
    tool = tools[name]
    validator = jsonschema.Draft202012Validator(tool.input_schema)

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(args=arguments_for(tool))
    def check(args: Any) -> None:
        assert local_engine.wait_for_index(120)  # earlier memory writes' vectors land in the background
        before = local_engine.store.last_seq()
        graph_before = portal.call(client.call_tool, "read_graph", {}).structured_content
        result = portal.call(client.call_tool, name, args)  # never raises: errors are results
        assert isinstance(result, CallToolResult)
        if not validator.is_valid(args):
            error_text(result)  # the server rejects what the schema rejects
        if result.is_error:
            error_text(result)
            assert local_engine.store.last_seq() == before, "a failed call changed the store"
        else:
            assert result.structured_content is not None  # and the client checked it against the output schema
        if name in READ_ONLY_TOOLS:
            assert local_engine.store.last_seq() == before
        if result.is_error or name in READ_ONLY_TOOLS:
            assert portal.call(client.call_tool, "read_graph", {}).structured_content == graph_before

    check()


def test_tool_descriptions_are_clean(portal_client: tuple[Any, Client, dict[str, Any]]) -> None:
    _, _, tools = portal_client
    for tool in tools.values():
        assert tool.description and not tool.description.startswith(" ") and "\n    " not in tool.description
