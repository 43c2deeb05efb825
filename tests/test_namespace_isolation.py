"""Namespace isolation: what a caller limited to some namespaces can change and see.

- sessions and episodes belong to their namespace: the same agent and session ids remembered in
  two namespaces make two sessions (the reviewed attack, reproduced over HTTP with real tokens);
- a store upsert never moves a stored entity or relation into another namespace unless the batch
  says so explicitly, on both stores.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CallToolResult

from aesoperator.engine.stores.base import GraphStore, WriteBatch
from aesoperator.errors import NamespaceConflict
from aesoperator.graph_schema.models import Entity, Relation

pytestmark = pytest.mark.timeout(600)


# -- helpers --------------------------------------------------------------------------------------------
@contextmanager
def serving(engine: Any, data_dir: Path, scopes: dict[str, list[str]], **options: Any) -> Iterator[dict[str, Any]]:
    """The engine's MCP server on 127.0.0.1 over streamable HTTP, with one static token per entry
    of `scopes`; yields the URL and the tokens."""
    from aesoperator.serve.auth import (
        HTTPServerThread,
        StaticTokenVerifier,
        TokenStore,
        bind_socket,
        build_http_app,
        http_principal_resolver,
        resource_url_for,
    )
    from aesoperator.serve.server import build_server

    tokens = TokenStore.in_data_dir(data_dir)
    issued = {name: tokens.add(name, granted).token for name, granted in scopes.items()}
    server = build_server(engine, None, http_principal_resolver(), warm=False, **options)
    sock = bind_socket()
    url = resource_url_for(sock)
    app = build_http_app(server, StaticTokenVerifier.in_data_dir(data_dir, resource=url), url)
    with HTTPServerThread(app, sock):
        yield {"url": url, "tokens": issued}


@asynccontextmanager
async def connect(server: dict[str, Any], who: str) -> AsyncIterator[Client]:
    async with (
        create_mcp_http_client(headers={"Authorization": f"Bearer {server['tokens'][who]}"}) as http,
        Client(streamable_http_client(server["url"], http_client=http)) as client,
    ):
        yield client


def ok(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def error(result: CallToolResult) -> str:
    assert result.is_error, f"expected an error, got {result.structured_content!r}"
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture(params=["embedded", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    if request.param == "neo4j":
        yield request.getfixturevalue("neo4j_store_factory")()
        return
    from aesoperator.engine.stores.embedded import EmbeddedGraphStore

    store = EmbeddedGraphStore(tmp_path / "store")
    yield store
    store.close()


# -- item: sessions are per namespace -----------------------------------------------------------------------
def test_a_writer_of_another_namespace_cannot_take_over_an_agents_session(
    tmp_path: Path, make_engine: Callable[..., Any]
) -> None:
    engine = make_engine(tmp_path / "data")
    scopes = {"alice": ["write:agent:alice"], "w1": ["write:ns1"]}
    session_id = "memory:session:alice/s1"
    with serving(engine, tmp_path / "data", scopes) as server:

        async def run() -> None:
            async with connect(server, "alice") as alice, connect(server, "w1") as w1:
                first = ok(
                    await alice.call_tool("remember", {"content": "x", "agent_id": "alice", "session_id": "s1"})
                )["episode"]
                theirs = ok(
                    await w1.call_tool(
                        "remember",
                        {"content": "y", "agent_id": "alice", "session_id": "s1", "namespace": "ns1"},
                    )
                )["episode"]
                assert theirs["namespace"] == "ns1" and theirs["id"] != first["id"]

                # alice still reads her session, unchanged, in her namespace
                got = ok(await alice.call_tool("get_entities", {"ids": [session_id]}))["entities"]
                assert [(e["id"], e["namespace"]) for e in got] == [(session_id, "agent:alice")]
                assert got[0]["properties"]["last_episode_id"] == first["id"]
                # w1 cannot read it: its write made a session of its own, in ns1
                assert "no entity found" in error(await w1.call_tool("get_entities", {"ids": [session_id]}))
                own = ok(await w1.call_tool("neighbors", {"ids": [theirs["id"]]}))
                sessions = [e for e in own["entities"] if e["type"] == "Session"]
                assert [e["namespace"] for e in sessions] == ["ns1"] and sessions[0]["id"] != session_id

                # alice's chain continues from her own episode, not from w1's
                second = ok(
                    await alice.call_tool("remember", {"content": "z", "agent_id": "alice", "session_id": "s1"})
                )["episode"]
                around = ok(
                    await alice.call_tool(
                        "neighbors", {"ids": [second["id"]], "relation_types": ["NEXT"], "direction": "in"}
                    )
                )
                assert [(r["src"], r["dst"]) for r in around["relations"]] == [(first["id"], second["id"])]

        seq = engine.store.last_seq()
        anyio.run(run)
    changes = engine.store.changes_since(seq)
    written = {(c.kind, c.id): c.namespace for c in changes}
    assert written[("entity", session_id)] == "agent:alice"
    assert {ns for (kind, _), ns in written.items()} == {"agent:alice", "ns1"}
    # nothing alice owns was ever written in ns1
    assert all(ns == "agent:alice" for (kind, i), ns in written.items() if i == session_id)
    stored = engine.store.get_entities([session_id])
    assert stored[0].namespace == "agent:alice"


def test_session_stored_under_its_old_id_in_another_namespace_keeps_its_chain(
    tmp_path: Path, make_engine: Callable[..., Any]
) -> None:
    """A session remembered in an explicit namespace before ids carried it continues its chain."""
    from aesoperator.graph_schema.ids import entity_id

    engine = make_engine(tmp_path / "data")
    first = engine.memory.remember("first turn about tea", "bot", "chat", namespace="team")
    # store the session as an older version did: under the id without its namespace
    (session,) = engine.store.get_entities(["memory:session@team:bot/chat"])
    engine.store.write(WriteBatch(delete_entity_ids=[session.id]))
    engine.store.upsert([session.model_copy(update={"id": entity_id("memory", "session", "bot/chat")})])

    second = engine.memory.remember("second turn about coffee", "bot", "chat", namespace="team")
    sub = engine.store.neighbors([second.id], relation_types=["NEXT"], direction="in", namespaces=["team"])
    assert [(r.src, r.dst) for r in sub.relations] == [(first.id, second.id)]


# -- item: the store refuses silent namespace moves --------------------------------------------------------
def _doc(eid: str, namespace: str, text: str = "some text") -> Entity:
    return Entity(id=eid, type="Document", name=eid, text=text, namespace=namespace)


def test_upsert_does_not_move_entities_or_relations_between_namespaces(any_store: GraphStore) -> None:
    store = any_store
    store.upsert(
        [_doc("a", "A"), _doc("b", "A"), _doc("x", "B")], [Relation(type="LINKS", src="a", dst="b", namespace="A")]
    )
    seq = store.last_seq()

    with pytest.raises(NamespaceConflict, match="entity 'a' is already stored in another namespace") as caught:
        store.upsert([_doc("new", "B"), _doc("a", "B", "taken over")])
    assert "'A'" not in str(caught.value)  # the stored namespace is not revealed
    with pytest.raises(NamespaceConflict, match="relation"):
        store.upsert(relations=[Relation(type="LINKS", src="a", dst="b", namespace="B")])
    # nothing of either batch was written
    assert store.last_seq() == seq
    assert [e.id for e in store.get_entities(["new"])] == []
    assert [(e.namespace, e.text) for e in store.get_entities(["a"])] == [("A", "some text")]

    # the same namespace is an ordinary update; an explicit move is allowed
    store.upsert([_doc("a", "A", "updated")])
    moved = store.write(WriteBatch(entities=[_doc("a", "B", "moved")], allow_namespace_moves=True))
    assert moved.entities_written == 1
    assert [e.namespace for e in store.get_entities(["a"])] == ["B"]
    link = Relation(type="LINKS", src="a", dst="b", namespace="B")
    store.write(WriteBatch(relations=[link], allow_namespace_moves=True))
    assert [r.namespace for r in store.get_relations([link.id])] == ["B"]
