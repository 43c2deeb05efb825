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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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
    from aesoperator.security.http.gate import build_http_app
    from aesoperator.security.http.listener import HTTPServerThread, bind_socket, resource_url_for
    from aesoperator.security.request_principal import http_principal_resolver
    from aesoperator.security.tokens import StaticTokenVerifier, TokenStore
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


# -- item: memory graphs of two namespaces ------------------------------------------------------------------
def test_a_second_memory_namespace_cannot_overwrite_the_first(tmp_path: Path, make_engine: Callable[..., Any]) -> None:
    """Two servers on one data dir, the second with `--memory-namespace team2` and a `write:team2`
    token: the same names make two memory graphs."""
    data = tmp_path / "data"
    first, second = make_engine(data), make_engine(data)
    ada = {"name": "Ada", "entityType": "person", "observations": ["writes programs"]}
    other = {"name": "Ada", "entityType": "robot", "observations": ["taken over"]}
    with (
        serving(first, data, {"admin": ["read:*", "write:*"]}) as home,
        serving(second, data, {"t2": ["write:team2"]}, memory_namespace="team2") as team2,
    ):

        async def run() -> None:
            async with connect(home, "admin") as admin, connect(team2, "t2") as t2:
                ok(await admin.call_tool("create_entities", {"entities": [ada]}))
                created = ok(await t2.call_tool("create_entities", {"entities": [other]}))
                assert created == {"entities": [other]}  # a name of its own graph, not an existing one
                ok(await t2.call_tool("add_observations", {"observations": [{"entityName": "Ada", "contents": ["x"]}]}))
                ok(
                    await t2.call_tool(
                        "delete_observations", {"deletions": [{"entityName": "Ada", "observations": ["x"]}]}
                    )
                )
                assert ok(await t2.call_tool("read_graph", {}))["entities"] == [other]
                assert ok(await admin.call_tool("read_graph", {}))["entities"] == [ada]
                got = ok(await admin.call_tool("get_entities", {"ids": ["memory-graph:entity:Ada"]}))["entities"]
                assert [(e["namespace"], e["properties"]["observations"]) for e in got] == [
                    ("memory-graph", ["writes programs"])
                ]
                ok(await t2.call_tool("delete_entities", {"entityNames": ["Ada"]}))
                assert ok(await admin.call_tool("read_graph", {}))["entities"] == [ada]

        anyio.run(run)
    stored = first.store.get_entities(["memory-graph:entity:Ada", "memory-graph:entity@team2:Ada"])
    assert [(e.id, e.namespace) for e in stored] == [("memory-graph:entity:Ada", "memory-graph")]


def test_memory_graph_kept_under_unscoped_ids_moves_to_scoped_ids(
    tmp_path: Path, make_engine: Callable[..., Any]
) -> None:
    from aesoperator.graph_schema.ids import entity_id
    from aesoperator.serve.memory_graph import MemoryGraph
    from aesoperator.serve.schemas import MemoryEntity, MemoryRelation

    class UnscopedGraph(MemoryGraph):
        """How an older version kept a memory graph outside `memory-graph`."""

        def entity_id(self, name: str) -> str:
            return entity_id("memory-graph", "entity", name)

    engine = make_engine(tmp_path / "data")
    old = UnscopedGraph(engine, "team2")
    old._adopted = True
    old.create_entities([MemoryEntity(name=n, entityType="person", observations=[f"{n} obs"]) for n in ("Ada", "Bob")])
    knows = MemoryRelation.model_validate({"from": "Ada", "to": "Bob", "relationType": "knows"})
    gone = MemoryRelation.model_validate({"from": "Bob", "to": "Ada", "relationType": "helped"})
    old.create_relations(
        [knows, gone, MemoryRelation.model_validate({"from": "Ada", "to": "Zed", "relationType": "met"})]
    )
    old.delete_relations([gone])  # expired: history to keep
    mention = engine.memory.remember("Ada and Bob", "bot", mentions=["memory-graph:entity:Ada"], detect_mentions=False)
    before = old.read_graph()

    graph = MemoryGraph(engine, "team2")
    assert graph.read_graph() == before
    assert graph.search_nodes("ada obs").entities[0].name == "Ada"
    ids = {"Ada": "memory-graph:entity@team2:Ada", "Bob": "memory-graph:entity@team2:Bob"}
    assert {e.id for e in engine.store.get_entities(["memory-graph:entity:Ada", "memory-graph:entity:Bob"])} == set()
    assert {e.id: e.namespace for e in engine.store.get_entities(list(ids.values()))} == dict.fromkeys(
        ids.values(), "team2"
    )
    relations = [r for b in engine.store.iter_relations() for r in b]
    ends = {(r.type, r.src, r.dst, r.expired_at is None) for r in relations}
    assert ("KNOWS", ids["Ada"], ids["Bob"], True) in ends
    assert ("HELPED", ids["Bob"], ids["Ada"], False) in ends  # the history came along
    assert ("MENTIONS", mention.id, ids["Ada"], True) in ends  # so did the episode's link, in its namespace
    assert engine.wait_for_index(300)  # memory-tool writes are embedded in the background
    assert engine.store.vector_hashes(list(ids.values()), engine.embedder.model_name).keys() == set(ids.values())
    # and the graph works on: the same name is the same entity
    assert graph.create_entities([MemoryEntity(name="Ada", entityType="person", observations=[])]) == []


# -- property: a writer of one namespace changes nothing outside it ---------------------------------------
A = "team2"
NAMES = ["Ada", "Bob", "Acme"]
AGENTS = ["alice", "bob"]
WORDS = ["Ada likes tea", "Bob and Acme", "notes on Ada"]


def _names(max_size: int = 2) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(NAMES), min_size=1, max_size=max_size)


def _memory_entity() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "name": st.sampled_from(NAMES),
            "entityType": st.sampled_from(["person", "robot"]),
            "observations": st.lists(st.sampled_from(["likes tea", "taken over"]), max_size=2),
        }
    )


def _memory_relation() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"from": st.sampled_from(NAMES), "to": st.sampled_from(NAMES), "relationType": st.sampled_from(["knows"])}
    )


def _calls(known_ids: list[str]) -> st.SearchStrategy[list[tuple[str, dict[str, Any]]]]:
    ids = st.lists(st.sampled_from(known_ids), min_size=1, max_size=3)
    call = st.one_of(
        st.tuples(
            st.just("remember"),
            st.fixed_dictionaries(
                {"content": st.sampled_from(WORDS), "agent_id": st.sampled_from(AGENTS)},
                optional={
                    "session_id": st.sampled_from(["s1", "s2"]),
                    "namespace": st.sampled_from([A, "B", "memory-graph", "agent:alice"]),
                    "mentions": ids,
                },
            ),
        ),
        st.tuples(
            st.just("create_entities"), st.fixed_dictionaries({"entities": st.lists(_memory_entity(), max_size=2)})
        ),
        st.tuples(
            st.just("create_relations"), st.fixed_dictionaries({"relations": st.lists(_memory_relation(), max_size=2)})
        ),
        st.tuples(
            st.just("add_observations"),
            st.fixed_dictionaries(
                {
                    "observations": st.lists(
                        st.fixed_dictionaries({"entityName": st.sampled_from(NAMES), "contents": st.just(["more"])}),
                        max_size=2,
                    )
                }
            ),
        ),
        st.tuples(st.just("delete_entities"), st.fixed_dictionaries({"entityNames": _names()})),
        st.tuples(
            st.just("delete_observations"),
            st.fixed_dictionaries(
                {
                    "deletions": st.lists(
                        st.fixed_dictionaries(
                            {"entityName": st.sampled_from(NAMES), "observations": st.just(["more"])}
                        ),
                        max_size=2,
                    )
                }
            ),
        ),
        st.tuples(
            st.just("delete_relations"), st.fixed_dictionaries({"relations": st.lists(_memory_relation(), max_size=2)})
        ),
        st.tuples(st.just("get_entities"), st.fixed_dictionaries({"ids": ids})),
        st.tuples(st.just("neighbors"), st.fixed_dictionaries({"ids": ids, "depth": st.sampled_from([1, 2])})),
        st.tuples(
            st.just("recall"),
            st.fixed_dictionaries({"query": st.sampled_from(WORDS), "agent_id": st.sampled_from(AGENTS)}),
        ),
    )
    return st.lists(call, min_size=1, max_size=6)


def _outside(store: GraphStore, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every entity and relation stored outside `namespace`, as data."""
    entities = {e.id: e.model_dump() for b in store.iter_entities() for e in b if e.namespace != namespace}
    relations = {r.id: r.model_dump() for b in store.iter_relations() for r in b if r.namespace != namespace}
    return entities, relations


def _seed_other_namespaces(engine: Any) -> list[str]:
    """As a full-access caller: memory graphs in `memory-graph`, in A and in B with the same
    names; alice's sessions in her namespace and in B; a B episode that mentions an A entity.
    Returns ids a caller might name."""
    from aesoperator.serve.memory_graph import MemoryGraph
    from aesoperator.serve.schemas import MemoryEntity, MemoryRelation

    people = [MemoryEntity(name=n, entityType="person", observations=[f"{n} is here"]) for n in NAMES]
    knows = MemoryRelation.model_validate({"from": "Ada", "to": "Bob", "relationType": "knows"})
    ids: list[str] = []
    for namespace in ("memory-graph", A, "B"):
        graph = MemoryGraph(engine, namespace)
        graph.create_entities(people)
        graph.create_relations([knows])
        ids += [graph.entity_id(n) for n in NAMES]
    ids.append(engine.memory.remember("Ada likes tea", "alice", "s1").id)
    ids.append(engine.memory.remember("Ada likes tea", "alice", "s1", namespace="B").id)
    ids.append(
        engine.memory.remember(
            "Bob met Ada", "bob", "s1", namespace="B", mentions=[MemoryGraph(engine, A).entity_id("Ada")]
        ).id
    )
    ids += ["memory:session:alice/s1", "memory:session@B:alice/s1"]
    # the seeded entities are embedded in the background; done now, their vectors are not
    # written during a check, where they would look like the writer's changes outside A
    assert engine.wait_for_index(timeout=120)
    return ids


def _check_writer_stays_in_its_namespace(engine: Any) -> None:
    from anyio.from_thread import start_blocking_portal

    from aesoperator.security.principal import Principal
    from aesoperator.serve.server import build_server

    known_ids = _seed_other_namespaces(engine)
    writer = Principal.from_scopes("t2", [f"write:{A}"])
    server = build_server(engine, None, lambda: writer, memory_namespace=A, warm=False)
    store = engine.store
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(Client(server)) as client:

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(calls=_calls(known_ids))
        def check(calls: list[tuple[str, dict[str, Any]]]) -> None:
            entities, relations = _outside(store, A)
            seq = store.last_seq()
            into_a = {
                i: r for i, r in relations.items() if not (r["src"] in entities and r["dst"] in entities)
            }  # relations outside A with an end in A
            for name, arguments in calls:
                result = portal.call(client.call_tool, name, arguments)
                assert not result.is_error or "internal error" not in str(result.content), result.content
            after_entities, after_relations = _outside(store, A)
            assert after_entities == entities
            lost = relations.keys() - after_relations.keys()
            assert {i: r for i, r in after_relations.items()} == {i: r for i, r in relations.items() if i not in lost}
            # a relation outside A goes only with the A entity it pointed at, deleted by A's writer
            gone_a = {c.id for c in store.changes_since(seq) if c.kind == "entity" and c.op == "delete"}
            for rid in lost:
                assert rid in into_a and (into_a[rid]["src"] in gone_a or into_a[rid]["dst"] in gone_a), rid
            for change in store.changes_since(seq):
                if change.namespace != A:
                    assert (change.kind, change.op) == ("relation", "delete") and change.id in lost, change

        check()


@pytest.mark.slow
def test_a_writer_of_one_namespace_changes_nothing_outside_it(
    any_store: GraphStore, tmp_path: Path, embedder: Any
) -> None:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    engine = ContextEngine(any_store, settings=Settings(data_dir=tmp_path / "engine"), embedder=embedder)
    _check_writer_stays_in_its_namespace(engine)


# -- item: mentions are filtered per reader ---------------------------------------------------------------
def test_mentions_of_unreadable_entities_are_not_shown(tmp_path: Path, make_engine: Callable[..., Any]) -> None:
    """An ns1 episode written by a caller that reads ns2 too keeps the ns2 ids it mentions; a
    `read:ns1` caller never sees them, through any tool or resource."""
    import json

    from aesoperator.serve.schemas import entity_uri

    engine = make_engine(tmp_path / "data")
    public, secret = tmp_path / "public", tmp_path / "secret"
    public.mkdir()
    secret.mkdir()
    (public / "roadmap.md").write_text("# Roadmap\nThe falcon telemetry launch is planned for March.\n")
    (secret / "layoffs-2027.md").write_text("# Layoffs\nConfidential reorganisation of the falcon team.\n")
    engine.ingest_path(public, name="public", namespace="ns1")
    engine.ingest_path(secret, name="secret", namespace="ns2")
    ns1_ids = [e.id for b in engine.store.iter_entities(namespaces=["ns1"]) for e in b]
    ns2_ids = [e.id for b in engine.store.iter_entities(namespaces=["ns2"]) for e in b]
    episode = engine.memory.remember(
        "Falcon telemetry launch notes", "planner", "s1", namespace="ns1", mentions=[*ns1_ids, *ns2_ids]
    )
    assert set(episode.mentions) == {*ns1_ids, *ns2_ids}  # stored as written

    scopes = {"reader": ["read:ns1"], "admin": ["read:*", "write:*"]}
    with serving(engine, tmp_path / "data", scopes) as server:

        async def run() -> list[Any]:
            async with connect(server, "reader") as reader:
                seen = [
                    ok(await reader.call_tool("search", {"query": "falcon telemetry launch notes", "k": 20})),
                    ok(await reader.call_tool("get_entities", {"ids": [episode.id]})),
                    ok(await reader.call_tool("neighbors", {"ids": [episode.id], "depth": 2})),
                    ok(await reader.call_tool("neighbors", {"ids": ns1_ids[:1], "depth": 2})),
                    ok(
                        await reader.call_tool(
                            "recall", {"query": "falcon", "agent_id": "planner", "namespaces": ["ns1"]}
                        )
                    ),
                    ok(
                        await reader.call_tool(
                            "recall",
                            {
                                "query": "falcon",
                                "agent_id": "planner",
                                "namespaces": ["ns1"],
                                "include_entities": False,
                            },
                        )
                    ),
                    json.loads((await reader.read_resource(entity_uri(episode.id))).contents[0].text),  # type: ignore[union-attr]
                ]
            async with connect(server, "admin") as admin:
                full = ok(await admin.call_tool("get_entities", {"ids": [episode.id]}))["entities"][0]
                assert set(full["properties"]["mentions"]) == {*ns1_ids, *ns2_ids}
            return seen

        results = anyio.run(run)
    for result in results:
        text = json.dumps(result)
        assert episode.id in text
        for hidden in ns2_ids:
            assert hidden not in text, f"{hidden} leaked in {text[:300]}"
    shown = results[1]["entities"][0]["properties"]["mentions"]
    assert shown == [m for m in episode.mentions if m in ns1_ids] and shown  # readable mentions stay
    assert results[4]["episodes"][0]["episode"]["mentions"] == shown
    assert {e["id"] for e in results[4]["episodes"][0]["entities"]} <= set(ns1_ids)


# -- item: control characters are refused at the boundary -------------------------------------------------
CONTROL = ["\x00", "\x01", "\x1b", "\n", "\x7f", "\x85"]


def _bad_calls(ch: str) -> list[tuple[str, dict[str, Any]]]:
    person = {"entityType": "person", "observations": []}
    return [
        ("remember", {"content": "hi", "agent_id": f"a{ch}b"}),
        ("remember", {"content": "hi", "agent_id": "a", "session_id": f"s{ch}"}),
        ("remember", {"content": "hi", "agent_id": "a", "task_id": f"t{ch}"}),
        ("remember", {"content": "hi", "agent_id": "a", "namespace": f"ns{ch}"}),
        ("recall", {"query": "hi", "agent_id": f"a{ch}"}),
        ("search", {"query": "hi", "namespaces": [f"ns{ch}"]}),
        ("sources", {"names": [f"docs{ch}"]}),
        ("create_entities", {"entities": [{"name": f"Ada{ch}", **person}]}),
        ("create_relations", {"relations": [{"from": "Ada", "to": f"Bob{ch}", "relationType": "knows"}]}),
    ]


def _nul_calls() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("get_entities", {"ids": ["memory-graph:entity:Ada\x00"]}),
        ("neighbors", {"ids": ["memory-graph:entity:Ada\x00"]}),
        ("remember", {"content": "hi", "agent_id": "a", "mentions": ["x\x00"]}),
    ]


def test_control_characters_are_refused_with_a_clear_error(tmp_path: Path, make_engine: Callable[..., Any]) -> None:
    from aesoperator.serve.server import build_server

    engine = make_engine(tmp_path / "data")
    server = build_server(engine, warm=False)

    async def run() -> None:
        async with Client(server) as client:
            ok(
                await client.call_tool(
                    "create_entities", {"entities": [{"name": "Ada", "entityType": "person", "observations": ["x"]}]}
                )
            )
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert tools["remember"].input_schema["properties"]["agent_id"]["pattern"] == "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
            seq = engine.store.last_seq()
            calls = [call for ch in CONTROL for call in _bad_calls(ch)] + _nul_calls()
            for name, arguments in calls:
                message = error(await client.call_tool(name, arguments))
                assert "invalid arguments" in message and "internal error" not in message, (name, message)
                assert "U+00" in message and "use printable text" in message, (name, message)
            # names that are only looked up are taken as the memory server takes them, and find nothing
            assert ok(await client.call_tool("open_nodes", {"names": ["Ada\x00"]}))["entities"] == []
            ok(await client.call_tool("delete_entities", {"entityNames": ["Ada\x00zzz"]}))
            assert engine.store.last_seq() == seq  # nothing was written
            graph = ok(await client.call_tool("read_graph", {}))
            assert graph["entities"] == [{"name": "Ada", "entityType": "person", "observations": ["x"]}]
            # text may hold line breaks and tabs (observations, content); labels and names may not
            ok(
                await client.call_tool(
                    "remember", {"content": "line one\nline\ttwo", "agent_id": "a", "session_id": "s"}
                )
            )

    anyio.run(run)


@pytest.mark.parametrize("ch", ["\x00", "\x1f", "\x9f", "\ud800"])
def test_python_api_refuses_control_characters_in_an_agents_labels(
    ch: str, tmp_path: Path, make_engine: Callable[..., Any]
) -> None:
    from pydantic import ValidationError

    from aesoperator.graph_schema.models import Episode

    engine = make_engine(tmp_path / "data")
    seq = engine.store.last_seq()
    for arguments in ({"agent_id": f"a{ch}"}, {"session_id": f"s{ch}"}, {"namespace": f"n{ch}"}):
        with pytest.raises(ValidationError, match="use printable text"):
            engine.remember(**{"content": "hi", "agent_id": "a", **arguments})
    with pytest.raises(ValidationError, match="use printable text"):
        Episode(content="hi", agent_id="a", task_id=f"t{ch}")
    assert engine.store.last_seq() == seq


@pytest.mark.parametrize("ch", ["\x00", "\ud800"])
def test_embedded_store_refuses_what_it_cannot_read_back(ch: str, tmp_path: Path) -> None:
    """NUL ends a string in SQLite's JSON functions and a lone surrogate cannot be encoded: an id,
    namespace or name holding one is refused with a SchemaError, not stored half-readable."""
    from aesoperator.engine.stores.embedded import EmbeddedGraphStore
    from aesoperator.errors import SchemaError

    store = EmbeddedGraphStore(tmp_path / "store")
    try:
        store.upsert([_doc("a", "ns")])
        seq = store.last_seq()
        bad = [_doc(f"e{ch}", "ns"), _doc("e", f"ns{ch}")]
        if ch == "\ud800":  # NUL may be in a name: it is stored and read back by id
            bad.append(_doc("e", "ns").model_copy(update={"name": f"n{ch}"}))
        for entity in bad:
            with pytest.raises(SchemaError, match="embedded store cannot hold"):
                store.upsert([entity])
        with pytest.raises(SchemaError, match="embedded store cannot hold"):
            store.upsert(relations=[Relation(type="LINKS", src="a", dst="a", namespace=f"ns{ch}")])
        assert store.last_seq() == seq
    finally:
        store.close()


# -- item: sources and statistics show only what the caller reads ------------------------------------------
def test_sources_and_stats_are_scoped_to_readable_namespaces(tmp_path: Path, make_engine: Callable[..., Any]) -> None:
    import json

    from mcp.shared.exceptions import MCPError

    engine = make_engine(tmp_path / "data")
    public, secret = tmp_path / "public-notes", tmp_path / "board-secrets"
    for folder, text in ((public, "Team lunch on Friday."), (secret, "Acquisition talks with Initech.")):
        folder.mkdir()
        (folder / "notes.md").write_text(f"# Notes\n{text}\n")
    engine.ingest_path(public, name="public", namespace="ns1")
    engine.ingest_path(secret, name="secret", namespace="ns2")
    scopes = {"reader": ["read:ns1", "source:*"], "admin": ["read:*", "source:*"]}
    with serving(engine, tmp_path / "data", scopes) as server:

        async def run() -> None:
            async with connect(server, "reader") as reader:
                listed = ok(await reader.call_tool("sources", {}))
                named = ok(await reader.call_tool("sources", {"names": ["secret", "public"]}))
                stats = json.loads((await reader.read_resource("stats://graph")).contents[0].text)  # type: ignore[union-attr]
                with pytest.raises(MCPError, match="needs read:\\*"):
                    async with reader.listen(resource_subscriptions=["stats://graph"]):
                        pass
            for result in (listed, named):
                assert [s["name"] for s in result["sources"]] == ["public"]
                assert result["stats"]["last_seq"] is None
                text = json.dumps(result)
                assert "board-secrets" not in text and "secret" not in text, text[:400]
            assert public.as_uri() in json.dumps(listed)  # its own source keeps its details
            assert stats["last_seq"] is None and set(stats["namespaces"]) == {"ns1"}

            async with connect(server, "admin") as admin:
                everything = ok(await admin.call_tool("sources", {"names": ["secret"]}))
                assert [s["identity"] for s in everything["sources"]] == [secret.as_uri()]
                assert everything["sources"][0]["entities"] > 0 and everything["stats"]["last_seq"] > 0

        anyio.run(run)
