"""Neo4j-specific behaviour of `Neo4jGraphStore`: injection safety, the graph layout, errors when
the server is unreachable or rejects the credentials, and durability across a server crash.

The behaviour every backend shares is covered by tests/conformance.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from neo4j import Driver, GraphDatabase

from aesoperator.engine.stores.base import SourceItemState, WriteBatch
from aesoperator.engine.stores.neo4j import Neo4jGraphStore
from aesoperator.engine.stores.neo4j_rows import lucene_query
from aesoperator.engine.stores.neo4j_schema import cypher_name
from aesoperator.errors import SchemaError, StoreError
from aesoperator.graph_schema.models import Entity, Provenance, Relation
from tests.neo4j_support import Neo4jServer, start_local_neo4j

pytestmark = pytest.mark.neo4j

StoreFactory = Callable[[], Neo4jGraphStore]

NASTY = [
    'x"}) MATCH (n) DETACH DELETE n //',
    "x'}) MATCH (n) DETACH DELETE n //",
    "' OR 1=1 --",
    '" OR 1=1 --',
    "`) DETACH DELETE n //",
    "$ids}) DETACH DELETE n",
    "}]->(x) DELETE x WITH 1 AS one MATCH (n) DETACH DELETE n //",
    "\\'; CALL dbms.security.createUser('evil', 'pw', false) //",
    "line\nbreak\r\n\t and \x00 nul",
    "ünïcödé 東京 🙂",
]


@pytest.fixture
def driver(neo4j_server: Neo4jServer) -> Iterator[Driver]:
    with GraphDatabase.driver(neo4j_server.uri, auth=(neo4j_server.user, neo4j_server.password)) as drv:
        yield drv


def census(driver: Driver) -> dict[str, int]:
    """Every label and relationship type in the database with its count."""
    out: dict[str, int] = {}
    with driver.session() as session:
        for r in session.run("MATCH (n) UNWIND labels(n) AS label RETURN label, count(*) AS n"):
            out[f"node:{r['label']}"] = r["n"]
        for r in session.run("MATCH ()-[r]->() RETURN type(r) AS t, count(*) AS n"):
            out[f"rel:{r['t']}"] = r["n"]
    return out


def nasty_entity(i: int, value: str) -> Entity:
    return Entity(
        id=f"nasty:{i}:{value}",
        type="Document",
        name=value,
        text=f"{value} marker{i}",
        properties={value: value, "nested": {value: [value]}},
        source=value[:200] or "s",
        provenance=Provenance(uri=value, version=value),
        namespace=value[:200],
    )


# injection --------------------------------------------------------------------------------------
def test_hostile_text_is_stored_as_plain_data(neo4j_store_factory: StoreFactory, driver: Driver) -> None:
    store = neo4j_store_factory()
    anchor = Entity(id="anchor", type="Concept", name="anchor", text="the anchor entity")
    store.upsert([anchor])
    entities = [nasty_entity(i, value) for i, value in enumerate(NASTY)]
    relations = [
        Relation(id=f"r:{value}", type="MENTIONS", src=e.id, dst="anchor", properties={"why": value},
                 namespace=e.namespace, source=value[:200] or "s")
        for e, value in zip(entities, NASTY, strict=True)
    ]  # fmt: skip
    vectors = {e.id: (value, np.arange(4, dtype=np.float32)) for e, value in zip(entities, NASTY, strict=True)}
    result = store.write(
        WriteBatch(
            entities=entities,
            relations=relations,
            vectors=vectors,
            vector_model=NASTY[0],
            source_items=[SourceItemState(source=v, key=v, content_hash=v, entity_ids=(v,), cursor=v) for v in NASTY],
        )
    )
    assert (result.entities_written, result.relations_written, result.vectors_written) == (
        len(NASTY), len(NASTY), len(NASTY)
    )  # fmt: skip
    assert census(driver) == {
        "node:Entity": len(NASTY) + 1,
        "node:Document": len(NASTY),
        "node:Concept": 1,
        "node:_Vector": len(NASTY),
        "node:_SourceItem": len(NASTY),
        "node:_ChangeLog": 2,
        "node:_Counter": 1,
        "node:_Schema": 1,
        "rel:MENTIONS": len(NASTY),
    }

    got = store.get_entities([e.id for e in entities])
    for stored, original in zip(got, entities, strict=True):
        assert stored.model_dump(exclude={"created_at", "updated_at"}) == original.model_dump(
            exclude={"created_at", "updated_at"}
        )
    assert [r.properties for r in store.get_relations([r.id for r in relations])] == [{"why": v} for v in NASTY]
    for value in NASTY:
        assert store.get_entities([f"nasty:{NASTY.index(value)}:{value}"], namespaces=[value[:200]])
        assert store.name_lookup([value]) == {value.lower(): [f"nasty:{NASTY.index(value)}:{value}"]}
        assert value in store.source_items(value)
        assert store.vector_hashes([f"nasty:{NASTY.index(value)}:{value}"], NASTY[0])
    sub = store.neighbors(["anchor"], namespaces=[*(v[:200] for v in NASTY), "default"])
    assert len(sub.entities) == len(NASTY) + 1
    assert not store.neighbors(["anchor"], namespaces=[NASTY[0]]).entities
    before = census(driver)
    assert store.neighbors(["anchor"], relation_types=NASTY).relations == []
    assert store.keyword_search("marker3", namespaces=NASTY, types=NASTY) == []
    assert census(driver) == before


@pytest.mark.parametrize("query", [*NASTY, "marker1 OR *:*", 'text:"x" AND name:y~', "/.*/", "a\\"])
def test_hostile_keyword_queries_are_data(neo4j_store_factory: StoreFactory, driver: Driver, query: str) -> None:
    store = neo4j_store_factory()
    store.upsert([Entity(id=f"d{i}", type="Document", name=f"doc {i}", text=f"marker{i} text") for i in range(3)])
    before = census(driver)
    hits = store.keyword_search(query)
    assert all(score > 0 for _id, score in hits)
    if "marker1" in query:
        assert [i for i, _s in hits] == ["d1"]
    assert census(driver) == before


def test_lucene_query_quotes_every_term() -> None:
    assert lucene_query('x"}) MATCH (n) //') == '"x" OR "match" OR "n"'
    assert lucene_query("*:* OR a~2") == '"or" OR "a" OR "2"'
    assert lucene_query("?!*") is None
    assert lucene_query("Straße") == '"straße"'


@pytest.mark.parametrize(
    "bad",
    ["Foo`) DETACH DELETE n //", "Foo` SET n.x = 1 //", "A:B", "A|B", "1abc", "", "a b", "x" * 65, "_Vector", "Ä"],
)
def test_malicious_type_names_are_rejected_before_any_query(
    neo4j_store_factory: StoreFactory, driver: Driver, bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = neo4j_store_factory()
    store.upsert([Entity(id="a", type="Concept", name="a", text="a")])
    before = census(driver)
    with pytest.raises(SchemaError):
        cypher_name(bad)
    with pytest.raises(ValueError):  # the model refuses it first
        Entity(id="x", type=bad, name="x", text="x")

    def no_session(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a query was about to run")

    monkeypatch.setattr(store._driver, "session", no_session)
    bad_entity = Entity.model_construct(
        **{**Entity(id="x", type="Concept", name="x", text="x").model_dump(), "type": bad}
    )
    with pytest.raises(SchemaError, match="not a valid type name"):
        store.upsert([bad_entity])
    bad_relation = Relation.model_construct(**{**Relation(type="LINKS_TO", src="a", dst="a").model_dump(), "type": bad})
    with pytest.raises(SchemaError, match="not a valid type name"):
        store.upsert([], [bad_relation])
    monkeypatch.undo()
    assert census(driver) == before


# layout -----------------------------------------------------------------------------------------
def test_type_change_moves_the_label_and_keeps_history(neo4j_store_factory: StoreFactory, driver: Driver) -> None:
    store = neo4j_store_factory()
    store.upsert([Entity(id="e", type="Person", name="Ada", text="first")])
    store.upsert([Entity(id="e", type="Concept", name="Ada", text="second")])
    with driver.session() as session:
        labels = session.run("MATCH (e:Entity {id: 'e'}) RETURN labels(e) AS l").single()
    assert labels is not None and sorted(labels["l"]) == ["Concept", "Entity"]
    history = store.history("e")
    assert [(h.type, h.text) for h in history] == [("Person", "first")]
    assert store.stats().entity_types == {"Concept": 1}


def test_entity_types_named_like_bookkeeping_stay_apart(neo4j_store_factory: StoreFactory) -> None:
    store = neo4j_store_factory()
    store.upsert([Entity(id=f"x{t}", type=t, name=t, text=t) for t in ("Change", "Counter", "Vector", "Schema")])
    assert store.stats().entities == 4
    assert store.last_seq() == 4
    assert [c.id for c in store.changes_since(0)] == ["xChange", "xCounter", "xVector", "xSchema"]


def test_concurrent_writers_get_distinct_increasing_seqs(neo4j_store_factory: StoreFactory) -> None:
    stores = [neo4j_store_factory(), neo4j_store_factory()]
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for b in range(10):
                stores[k].upsert([Entity(id=f"w{k}:{b}:{i}", type="Document", name="n", text="t") for i in range(20)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    changes = stores[0].changes_since(0)
    assert [c.seq for c in changes] == list(range(1, 401))
    assert len({c.id for c in changes}) == 400
    assert stores[1].last_seq() == 400


# write shortcuts --------------------------------------------------------------------------------
def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
    return v / np.linalg.norm(v)


def test_entity_recreated_in_one_batch_gets_fresh_relations_and_vectors(neo4j_store_factory: StoreFactory) -> None:
    """Relations and vectors of an entity created by the batch skip the lookup for stored ones:
    a delete and re-create of the same id in one batch must still leave exactly one of each."""
    store = neo4j_store_factory()
    a, b = Entity(id="a", type="Document", name="A", text="one"), Entity(id="b", type="Document", name="B", text="b")
    link = Relation(type="REFERENCES", src="a", dst="b")
    store.upsert([a, b], [link], vectors={"a": ("h1", unit(1)), "b": ("hb", unit(2))}, vector_model="m")
    again = a.model_copy(update={"text": "two"})
    result = store.write(
        WriteBatch(entities=[again], relations=[link], vectors={"a": ("h2", unit(3))}, vector_model="m",
                   delete_entity_ids=["a"])
    )  # fmt: skip
    assert (result.entities_written, result.relations_written, result.vectors_written) == (1, 1, 1)
    stats = store.stats()
    assert (stats.entities, stats.relations, stats.vectors) == (2, 1, 2)
    assert store.get_relations([link.id])[0].src == "a"
    assert store.get_vectors(["a"], "m")["a"].tobytes() == unit(3).tobytes()
    seq = store.last_seq()
    # The same content again (the entity now stored) changes nothing.
    unchanged = store.upsert([again], [link], vectors={"a": ("h2", unit(3))}, vector_model="m")
    assert (unchanged.entities_written, unchanged.relations_written, unchanged.vectors_written) == (0, 0, 0)
    assert store.last_seq() == seq


def test_vectors_of_stored_entities_are_compared_with_what_is_stored(neo4j_store_factory: StoreFactory) -> None:
    store = neo4j_store_factory()
    store.upsert(
        [Entity(id=f"e{i}", type="Document", name=f"E{i}", text="t", namespace=f"ns{i % 2}") for i in range(4)]
    )
    first = {f"e{i}": (f"h{i}", unit(i)) for i in range(4)}
    assert store.upsert(vectors=first, vector_model="m").vectors_written == 4
    seq = store.last_seq()
    # Same hash but other values is a change; same hash and values is not; a new hash is.
    second = {**first, "e1": ("h1", unit(10)), "e2": ("h2-new", unit(2))}
    assert store.upsert(vectors=second, vector_model="m").vectors_written == 2
    changes = store.changes_since(seq)
    assert [(c.kind, c.id, c.namespace) for c in changes] == [("vector", "e1", "ns1"), ("vector", "e2", "ns0")]
    got = store.get_vectors(list(first), "m")
    assert got["e1"].tobytes() == unit(10).tobytes() and got["e0"].tobytes() == unit(0).tobytes()
    assert store.vector_hashes(["e2"], "m") == {"e2": "h2-new"}
    assert store.stats().vectors == 4


# errors -----------------------------------------------------------------------------------------
def test_wrong_password_is_a_store_error(neo4j_server: Neo4jServer) -> None:
    secret = "definitely-wrong-password-42"
    with pytest.raises(StoreError) as info:
        Neo4jGraphStore(neo4j_server.uri, neo4j_server.user, secret)
    message = str(info.value)
    assert neo4j_server.uri in message
    assert "credentials" in message
    assert secret not in message


def test_unreachable_server_is_a_store_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"bolt://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(StoreError, match=f"{uri}.*not reachable"):
        Neo4jGraphStore(uri, "neo4j", "irrelevant-password")
    assert time.monotonic() - started < 60


def test_a_server_older_than_5_26_is_refused_by_name() -> None:
    from aesoperator.engine.stores.neo4j_connection import check_server_agent

    with pytest.raises(StoreError, match=r"is Neo4j/5\.20\.0; aesoperator needs Neo4j 5\.26 or newer"):
        check_server_agent("Neo4j/5.20.0", "neo4j://127.0.0.1:7687")
    with pytest.raises(StoreError, match=r"Neo4j/4\.4\.30"):
        check_server_agent("Neo4j/4.4.30", "neo4j://127.0.0.1:7687")
    for fine in ("Neo4j/5.26.0", "Neo4j/5.26.12", "Neo4j/2025.01.0", "Neo4j/dev"):
        check_server_agent(fine, "neo4j://127.0.0.1:7687")


def test_invalid_uri_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="invalid Neo4j URI"):
        Neo4jGraphStore("http://127.0.0.1:7474", "neo4j", "pw")
    with pytest.raises(StoreError) as info:
        Neo4jGraphStore("bolt://neo4j:hunter2secret@127.0.0.1:7687", "neo4j", "pw")
    assert "hunter2secret" not in str(info.value)


def test_closed_store_refuses_work(neo4j_store_factory: StoreFactory) -> None:
    store = neo4j_store_factory()
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.last_seq()


@pytest.mark.slow
def test_server_crash_mid_write_keeps_every_committed_batch(tmp_path: Path) -> None:
    """Kill the server while a writer is busy: the writer gets StoreError, and after a restart on
    the same directory every batch that was acknowledged is there, whole."""
    home = tmp_path / "neo4j"
    server = start_local_neo4j(home, fast_start=True)
    try:
        store = Neo4jGraphStore(server.uri, "neo4j", server.password, max_retry_time=2.0)
        acknowledged: list[int] = []
        failure: list[BaseException] = []
        stop = threading.Event()

        def batch(b: int) -> list[Entity]:
            return [Entity(id=f"b{b}:{i}", type="Document", name=f"n{i}", text=f"batch {b}") for i in range(200)]

        def writer() -> None:
            b = 0
            while not stop.is_set():
                try:
                    store.upsert(batch(b))
                except StoreError as exc:
                    failure.append(exc)
                    return
                acknowledged.append(b)
                b += 1

        thread = threading.Thread(target=writer)
        thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 5 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.05)
        port = server.port
        server.kill()
        thread.join(60)
        stop.set()
        assert not thread.is_alive()
        assert failure, "the writer should have seen the server go"
        assert "not reachable" in str(failure[0]) or server.uri in str(failure[0])
        assert len(acknowledged) >= 5
        with pytest.raises(StoreError, match=server.uri):
            store.last_seq()

        server = start_local_neo4j(home, password=server.password, port=port, fast_start=True)
        # The same store reconnects once the server is back.
        got = {e.id for page in store.iter_entities(5000) for e in page}
        for b in acknowledged:
            assert {e.id for e in batch(b)} <= got
        for b in {int(i.split(":")[0][1:]) for i in got}:  # no batch is half there
            assert {e.id for e in batch(b)} <= got
        assert store.stats().entities == len(got)
        store.close()
    finally:
        server.stop()


def test_created_and_updated_items_hold_the_same_properties(neo4j_store_factory: StoreFactory, driver: Driver) -> None:
    """Creates list their properties (one statement for every type); updates set the whole map.
    Both must leave the same set of properties on a node and on a relationship."""
    store = neo4j_store_factory()
    prov = Provenance(uri="https://example.org/p", fetched_at=datetime(2024, 1, 1, tzinfo=UTC), version="v1")
    full = {"source": "s", "provenance": prov, "valid_from": datetime(2024, 1, 1, tzinfo=UTC),
            "valid_to": datetime(2030, 1, 1, tzinfo=UTC), "properties": {"k": 1}}  # fmt: skip
    created = Entity(id="created", type="Person", name="C", text="c", **full)
    updated = Entity(id="updated", type="Concept", name="U", text="u", **full)
    link = Relation(type="KNOWS", src="created", dst="updated", **full, expired_at=datetime(2031, 1, 1, tzinfo=UTC))
    store.upsert([created, updated.model_copy(update={"text": "before"})])
    store.upsert([updated], [link])  # `updated` through the update path, `link` through the create path
    store.upsert([], [link.model_copy(update={"properties": {"k": 2}})])  # and `link` updated
    store.upsert([], [Relation(type="KNOWS", src="updated", dst="created", **full, expired_at=link.expired_at)])
    with driver.session() as session:
        nodes = {r["id"]: set(r["keys"]) for r in session.run("MATCH (e:Entity) RETURN e.id AS id, keys(e) AS keys")}
        labels = {
            r["id"]: set(r["labels"]) for r in session.run("MATCH (e:Entity) RETURN e.id AS id, labels(e) AS labels")
        }
        rels = {
            r["id"]: set(r["keys"]) for r in session.run("MATCH ()-[r:KNOWS]->() RETURN r.id AS id, keys(r) AS keys")
        }
    assert nodes["created"] == nodes["updated"]
    assert labels == {"created": {"Entity", "Person"}, "updated": {"Entity", "Concept"}}
    assert len(rels) == 2
    (updated_keys, created_keys) = (rels[link.id], next(v for k, v in rels.items() if k != link.id))
    assert updated_keys == created_keys
    store.close()
