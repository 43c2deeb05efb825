"""Conformance suite: what every `GraphStore` backend must do, written against the protocol only.

Ordering rules the suite relies on (anything else is compared as a set):
- `get_entities` and `get_relations` return items in the order of the ids asked for.
- `keyword_search` returns (id, score) best first: scores are positive and never increase down
  the list; the order of equal scores is unspecified.
- `changes_since` returns change rows in increasing `seq`; `seq` grows strictly across writes.
- The entities and relations of a `neighbors` result, the ids in a `name_lookup` list, the pages
  of `iter_*` and their contents, and `source_items` may come in any order.

Neighbourhood semantics: seeds are hop 0; from each entity at hop h < depth every live relation
(at `as_of`, or now) of an allowed type, direction and namespace is followed into an entity of an
allowed namespace, which gets hop h + 1. Entities of other namespaces are never returned and
never traversed through; the relations returned are those followed between returned entities.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from aesoperator.engine.stores.base import GraphStore, SourceItemState, WriteBatch
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.models import Entity, Provenance, Relation

MODEL = "test-model"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ent(eid: str, text: str | None = None, *, type: str = "Document", name: str | None = None,
        namespace: str = "default", **extra: Any) -> Entity:  # fmt: skip
    return Entity(id=eid, type=type, name=name or eid, text=text or f"text of {eid}", namespace=namespace, **extra)


def rel(src: str, dst: str, type: str = "LINKS_TO", *, namespace: str = "default", **extra: Any) -> Relation:
    return Relation(type=type, src=src, dst=dst, namespace=namespace, **extra)


def vec(seed: int, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def stats_tuple(store: GraphStore) -> tuple[Any, ...]:
    s = store.stats()
    return (s.entities, s.relations, s.live_relations, s.vectors, s.entity_types, s.relation_types,
            s.namespaces, s.last_seq)  # fmt: skip


def ids_of(sub_relations: list[Relation]) -> set[str]:
    return {r.id for r in sub_relations}


# writes -----------------------------------------------------------------------------------------
def test_upsert_is_idempotent(store: GraphStore) -> None:
    entities = [ent(f"e{i}") for i in range(5)]
    relations = [rel(f"e{i}", f"e{i + 1}") for i in range(4)]
    vectors = {f"e{i}": (f"h{i}", vec(i)) for i in range(5)}
    batch = WriteBatch(entities=entities, relations=relations, vectors=vectors, vector_model=MODEL)
    first = store.write(batch)
    assert (first.entities_written, first.relations_written, first.vectors_written) == (5, 4, 5)
    assert first.seq == store.last_seq() > 0
    before = stats_tuple(store)

    again = store.write(batch)
    assert (again.entities_written, again.relations_written, again.vectors_written) == (0, 0, 0)
    assert again.seq == first.seq
    assert stats_tuple(store) == before
    assert store.changes_since(first.seq) == []
    assert [e.id for e in store.get_entities([f"e{i}" for i in range(5)])] == [f"e{i}" for i in range(5)]


def test_refetched_provenance_is_not_a_change(store: GraphStore) -> None:
    a = ent("a", provenance=Provenance(uri="file:///a", fetched_at=T0, version="v1"))
    store.upsert([a])
    seq = store.last_seq()
    store.upsert([a.model_copy(update={"provenance": Provenance(uri="file:///a", version="v1")})])
    assert store.last_seq() == seq


def test_update_in_place_keeps_created_at(store: GraphStore) -> None:
    store.upsert([ent("a", "the original text about walruses", properties={"v": 1})])
    (old,) = store.get_entities(["a"])
    assert old.created_at is not None and old.updated_at is not None
    seq = store.last_seq()

    result = store.upsert([ent("a", "a rewritten text about penguins", properties={"v": 2})])
    assert result.entities_written == 1
    (new,) = store.get_entities(["a"])
    assert new.text == "a rewritten text about penguins"
    assert new.properties == {"v": 2}
    assert new.created_at == old.created_at
    assert new.updated_at is not None and new.updated_at >= old.updated_at
    assert store.stats().entities == 1
    assert [(c.kind, c.id, c.op) for c in store.changes_since(seq)] == [("entity", "a", "upsert")]
    # the keyword index follows the update
    assert [i for i, _ in store.keyword_search("penguins")] == ["a"]
    assert store.keyword_search("walruses") == []


def test_batch_with_dangling_relation_writes_nothing(store: GraphStore) -> None:
    store.upsert([ent("a")])
    before = stats_tuple(store)
    batch = WriteBatch(
        entities=[ent("b"), ent("c")],
        relations=[rel("a", "b"), rel("b", "ghost")],
        vectors={"b": ("hb", vec(1))},
        vector_model=MODEL,
        source_items=[SourceItemState(source="src", key="k", content_hash="h")],
    )
    with pytest.raises(SchemaError, match="ghost"):
        store.write(batch)
    assert stats_tuple(store) == before
    assert store.get_entities(["b", "c"]) == []
    assert store.source_items("src") == {}

    # an endpoint deleted by the same batch counts as missing
    with pytest.raises(SchemaError):
        store.write(WriteBatch(entities=[ent("d")], relations=[rel("d", "a")], delete_entity_ids=["a"]))
    assert stats_tuple(store) == before
    assert [e.id for e in store.get_entities(["a"])] == ["a"]


def test_relation_endpoints_may_come_in_the_same_batch(store: GraphStore) -> None:
    store.upsert([ent("a")])
    result = store.upsert([ent("b")], [rel("a", "b"), rel("b", "a", "REFERENCES")])
    assert result.relations_written == 2
    assert store.stats().relations == 2


def test_delete_cascades_to_relations_and_vectors(store: GraphStore) -> None:
    store.upsert(
        [ent("a"), ent("b"), ent("c")],
        [rel("a", "b"), rel("b", "c"), rel("a", "c")],
        {"a": ("ha", vec(1)), "b": ("hb", vec(2))},
        MODEL,
    )
    seq = store.last_seq()
    assert store.delete_entities(["b", "unknown"]) == 1
    assert [e.id for e in store.get_entities(["a", "b", "c"])] == ["a", "c"]
    assert {r.src + r.dst for batch in store.iter_relations() for r in batch} == {"ac"}
    assert set(store.get_vectors(["a", "b"], MODEL)) == {"a"}
    assert store.vector_hashes(["a", "b"], MODEL) == {"a": "ha"}
    assert "b" not in dict(store.keyword_search("text of b"))
    s = store.stats()
    assert (s.entities, s.relations, s.vectors) == (2, 1, 1)
    changes = {(c.kind, c.id, c.op) for c in store.changes_since(seq)}
    assert ("entity", "b", "delete") in changes
    assert ("relation", rel("a", "b").id, "delete") in changes
    assert ("relation", rel("b", "c").id, "delete") in changes
    assert ("vector", "b", "delete") in changes
    assert store.neighbors(["a"], depth=2).hops == {"a": 0, "c": 1}


def test_delete_relations(store: GraphStore) -> None:
    ab, bc = rel("a", "b"), rel("b", "c")
    store.upsert([ent("a"), ent("b"), ent("c")], [ab, bc])
    assert store.delete_relations([ab.id, "rel:unknown"]) == 1
    assert [r.id for r in store.get_relations([ab.id, bc.id])] == [bc.id]
    assert store.stats().entities == 3


def test_expire_keeps_history_for_as_of_queries(store: GraphStore) -> None:
    ab = rel("a", "b", valid_from=T0)
    store.upsert([ent("a"), ent("b")], [ab])
    expiry = T0 + timedelta(days=30)
    assert store.expire_relations([ab.id], at=expiry) == 1
    assert store.expire_relations([ab.id], at=expiry) == 0  # already retired

    (stored,) = store.get_relations([ab.id])
    assert stored.expired_at == expiry and stored.valid_to == expiry
    s = store.stats()
    assert (s.relations, s.live_relations) == (1, 0)

    def reached(as_of: datetime | None) -> set[str]:
        return set(store.neighbors(["a"], as_of=as_of).hops)

    assert reached(T0 - timedelta(days=1)) == {"a"}  # before it held
    assert reached(T0 + timedelta(days=10)) == {"a", "b"}  # while it held
    assert reached(expiry + timedelta(days=1)) == {"a"}  # after it was retired
    assert reached(None) == {"a"}  # now
    sub = store.neighbors(["a"], as_of=T0 + timedelta(days=10))
    assert ids_of(sub.relations) == {ab.id}


def test_outgoing_relations_return_a_subjects_history(store: GraphStore) -> None:
    """Every relation of the asked types leaving the asked entities, closed ones included, in the
    asked relation namespaces only, by source, type and valid_from."""
    paris = rel("kim", "paris", "LIVES_IN", namespace="mem", valid_from=T0, valid_to=T0 + timedelta(days=9))
    berlin = rel("kim", "berlin", "LIVES_IN", namespace="mem", valid_from=T0 + timedelta(days=9))
    acme = rel("kim", "acme", "WORKS_AT", namespace="mem", valid_from=T0)
    other_ns = rel("kim", "rome", "LIVES_IN", namespace="elsewhere", valid_from=T0)
    incoming = rel("ana", "kim", "LIVES_IN", namespace="mem")
    mention = rel("kim", "acme", "MENTIONS", namespace="mem")
    people = [ent(i, namespace=ns) for i, ns in (("kim", "mem"), ("ana", "mem"), ("rome", "elsewhere"))]
    places = [ent(i, namespace="mem") for i in ("paris", "berlin", "acme")]
    store.upsert(people + places, [berlin, paris, acme, other_ns, incoming, mention])
    store.expire_relations([paris.id], at=T0 + timedelta(days=9))

    found = store.outgoing_relations(["kim"], ["LIVES_IN", "WORKS_AT"], namespaces=["mem"])
    assert [r.id for r in found] == [paris.id, berlin.id, acme.id]
    assert found[0].expired_at is not None and found[0].valid_to == T0 + timedelta(days=9)
    assert {r.id for r in store.outgoing_relations(["kim"], ["LIVES_IN"])} == {paris.id, berlin.id, other_ns.id}
    assert store.outgoing_relations(["kim"], ["NEVER_SEEN"]) == []
    assert store.outgoing_relations(["nobody"], ["LIVES_IN"]) == []
    assert store.outgoing_relations(["kim"], []) == []


def test_expire_now_and_future_validity(store: GraphStore) -> None:
    future = rel("a", "b", valid_to=datetime.now(UTC) + timedelta(days=365))
    ended = rel("a", "c", valid_to=T0)
    store.upsert([ent("a"), ent("b"), ent("c")], [future, ended])
    assert set(store.neighbors(["a"]).hops) == {"a", "b"}
    assert store.stats().live_relations == 1
    assert store.expire_relations([future.id]) == 1
    assert set(store.neighbors(["a"]).hops) == {"a"}
    (stored,) = store.get_relations([future.id])
    assert stored.expired_at is not None
    assert stored.valid_to == future.valid_to  # a valid_to that was set is kept


# neighbourhoods ---------------------------------------------------------------------------------
@pytest.fixture
def small_graph(store: GraphStore) -> GraphStore:
    """d -MENTIONS-> a -AUTHORED-> b -REFERENCES-> c, and c -LINKS_TO-> e."""
    store.upsert(
        [ent(x) for x in "abcde"],
        [rel("d", "a", "MENTIONS"), rel("a", "b", "AUTHORED"), rel("b", "c", "REFERENCES"), rel("c", "e")],
    )
    return store


def test_neighbors_depth(small_graph: GraphStore) -> None:
    one = small_graph.neighbors(["a"], depth=1)
    assert one.hops == {"a": 0, "b": 1, "d": 1}
    assert set(one.entities) == {"a", "b", "d"}
    assert ids_of(one.relations) == {rel("d", "a", "MENTIONS").id, rel("a", "b", "AUTHORED").id}
    assert all(isinstance(e, Entity) for e in one.entities.values())

    two = small_graph.neighbors(["a"], depth=2)
    assert two.hops == {"a": 0, "b": 1, "d": 1, "c": 2}
    assert rel("b", "c", "REFERENCES").id in ids_of(two.relations)

    assert small_graph.neighbors(["a"], depth=0).hops == {"a": 0}


def test_neighbors_relation_types(small_graph: GraphStore) -> None:
    sub = small_graph.neighbors(["a"], depth=3, relation_types=["AUTHORED", "REFERENCES"])
    assert sub.hops == {"a": 0, "b": 1, "c": 2}
    assert {r.type for r in sub.relations} == {"AUTHORED", "REFERENCES"}


def test_neighbors_direction(small_graph: GraphStore) -> None:
    assert small_graph.neighbors(["a"], depth=2, direction="out").hops == {"a": 0, "b": 1, "c": 2}
    assert small_graph.neighbors(["a"], depth=2, direction="in").hops == {"a": 0, "d": 1}
    assert small_graph.neighbors(["c"], depth=1, direction="both").hops == {"c": 0, "b": 1, "e": 1}


def test_neighbors_multiple_seeds_unknown_seeds_and_limit(small_graph: GraphStore) -> None:
    sub = small_graph.neighbors(["a", "e", "nope"], depth=1)
    assert sub.hops == {"a": 0, "e": 0, "b": 1, "d": 1, "c": 1}
    limited = small_graph.neighbors(["a"], depth=3, limit=2)
    assert len(limited.entities) == 2 and limited.hops["a"] == 0
    assert set(limited.hops) == set(limited.entities)
    for r in limited.relations:
        assert r.src in limited.entities and r.dst in limited.entities


def test_neighbor_links_have_the_shape_of_neighbors(small_graph: GraphStore) -> None:
    """`neighbor_links` reaches what `neighbors` reaches and names the same relations."""
    for seeds, depth, types, limit in ((["a"], 2, None, 100), (["c", "e"], 1, None, 100),
                                       (["a"], 3, ["AUTHORED", "REFERENCES"], 100), (["a"], 3, None, 2),
                                       (["a"], 2, ["NEVER_STORED"], 100), (["a"], 2, [], 100)):  # fmt: skip
        sub = small_graph.neighbors(seeds, depth=depth, relation_types=types, limit=limit)
        links = small_graph.neighbor_links(seeds, depth=depth, relation_types=types, limit=limit)
        assert links.hops == sub.hops
        assert {frozenset((a, b)) | {t} for a, b, t in links.edges} == {
            frozenset((r.src, r.dst)) | {r.type} for r in sub.relations
        }
        # each edge names its relation, and the relation joins the edge's ends
        assert len(links.relation_ids) == len(links.edges)
        by_id = {r.id: r for r in sub.relations}
        assert set(links.relation_ids) == set(by_id)
        for (a, b, rel_type), rel_id in zip(links.edges, links.relation_ids, strict=True):
            found = by_id[rel_id]
            assert {a, b} == {found.src, found.dst} and rel_type == found.type
        # the records of what a Links names, in its order, as `neighbors` read them
        assert small_graph.relations_on(links) == [by_id[i] for i in links.relation_ids]
    assert small_graph.neighbor_links(["nope"], depth=2).hops == {}
    # a relation that is not stored (or not between those ends) is left out
    links = small_graph.neighbor_links(["a"], depth=1)
    links.edges.append(("a", "c", "AUTHORED"))
    links.relation_ids.append("no-such-relation")
    assert [r.id for r in small_graph.relations_on(links)] == links.relation_ids[:-1]


def test_neighbors_skip_prefixed_entities(store: GraphStore) -> None:
    """Entities under a skipped prefix are neither reached nor walked through; a seed under it
    still spreads."""
    # a -> k:x -> c ; a -> b -> c ; k:y -> b
    store.upsert(
        [ent("a"), ent("b"), ent("c"), ent("k:x"), ent("k:y")],
        [rel("a", "k:x", "MENTIONS"), rel("k:x", "c", "MENTIONS"), rel("a", "b"), rel("b", "c"),
         rel("k:y", "b", "MENTIONS")],
    )  # fmt: skip
    assert store.neighbors(["a"], depth=2).hops == {"a": 0, "b": 1, "k:x": 1, "c": 2, "k:y": 2}
    sub = store.neighbors(["a"], depth=3, skip_prefixes=["k:"])
    assert sub.hops == {"a": 0, "b": 1, "c": 2}
    assert all(not r.src.startswith("k:") and not r.dst.startswith("k:") for r in sub.relations)
    seeded = store.neighbors(["k:y"], depth=2, skip_prefixes=["k:"])
    assert seeded.hops == {"k:y": 0, "b": 1, "a": 2, "c": 2}
    links = store.neighbor_links(["a"], depth=3, skip_prefixes=["k:"])
    assert links.hops == sub.hops
    assert set(links.relation_ids) == ids_of(sub.relations)


def test_neighbors_never_cross_other_namespaces(store: GraphStore) -> None:
    # a(pub) -> x(priv) -> c(pub); a(pub) -> b(pub); a -[relation in priv]-> f(pub)
    store.upsert(
        [ent("a", namespace="pub"), ent("b", namespace="pub"), ent("c", namespace="pub"),
         ent("x", namespace="priv"), ent("f", namespace="pub")],
        [rel("a", "x", namespace="pub"), rel("x", "c", namespace="pub"), rel("a", "b", namespace="pub"),
         rel("a", "f", namespace="priv")],
    )  # fmt: skip
    sub = store.neighbors(["a"], depth=3, namespaces=["pub"])
    assert sub.hops == {"a": 0, "b": 1}
    links = store.neighbor_links(["a"], depth=3, namespaces=["pub"])
    assert links.hops == sub.hops and links.relation_ids == [rel("a", "b").id]
    assert {e.namespace for e in sub.entities.values()} == {"pub"}
    assert ids_of(sub.relations) == {rel("a", "b").id}

    # without the restriction, x and c (through x) and f are reached
    assert store.neighbors(["a"], depth=3).hops == {"a": 0, "b": 1, "x": 1, "f": 1, "c": 2}
    # seeds outside the allowed namespaces are dropped
    assert store.neighbors(["x", "b"], depth=1, namespaces=["pub"]).hops == {"b": 0, "a": 1}
    assert store.neighbors(["x"], namespaces=["pub"]).entities == {}
    assert store.neighbors(["a"], namespaces=[]).entities == {}


# keyword search and names -----------------------------------------------------------------------
@pytest.fixture
def docs(store: GraphStore) -> GraphStore:
    store.upsert(
        [
            ent("pg", "Postgres replication lag: how to diagnose replication delays on a standby server",
                name="Postgres replication guide", namespace="ops"),
            ent("fox", "The quick brown fox jumps over the lazy dog", name="Fox story", type="Page"),
            ent("cook", "A recipe for bread: flour, water, salt and yeast", name="Bread recipe"),
            ent("mixed", "Notes mention postgres once among many unrelated words about gardening and "
                "tomatoes and watering schedules", name="Garden notes", type="Page"),
        ]
    )  # fmt: skip
    return store


def test_keyword_search_ranks_best_first(docs: GraphStore) -> None:
    hits = docs.keyword_search("postgres replication lag", k=10)
    assert hits[0][0] == "pg"
    assert {i for i, _ in hits} == {"pg", "mixed"}
    scores = [s for _, s in hits]
    assert all(s > 0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert docs.keyword_search("fox")[0][0] == "fox"
    assert len(docs.keyword_search("postgres", k=1)) == 1
    assert docs.keyword_search("nonexistentword") == []


def test_keyword_search_filters(docs: GraphStore) -> None:
    assert [i for i, _ in docs.keyword_search("postgres", namespaces=["default"])] == ["mixed"]
    assert [i for i, _ in docs.keyword_search("postgres", namespaces=["ops"])] == ["pg"]
    assert [i for i, _ in docs.keyword_search("postgres", types=["Page"])] == ["mixed"]
    assert docs.keyword_search("postgres", namespaces=["ops"], types=["Page"]) == []
    assert docs.keyword_search("postgres", namespaces=[]) == []


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        '"',
        '"postgres',
        'postgres" OR "fox',
        "NEAR(postgres replication)",
        "name:postgres",
        "text : fox*",
        "postgres AND",
        "OR",
        "NOT fox",
        "(((",
        "^postgres",
        "-fox +bread",
        "*",
        "\\",
        "'; DROP TABLE entities; --",
        "MATCH (n) DETACH DELETE n",
        "CALL db.index.fulltext.queryNodes('x', 'y') YIELD node",
        "foo~2 bar^3 [a TO z] {x}",
        "ünïcödé 東京 postgres",
        "__ _ ..",
        "what is the status of postgres replication?",
        "the of and",
    ],
)
def test_keyword_search_treats_query_as_data(docs: GraphStore, query: str) -> None:
    before = stats_tuple(docs)
    hits = docs.keyword_search(query)
    assert isinstance(hits, list)
    for eid, score in hits:
        assert isinstance(eid, str) and score > 0
    assert stats_tuple(docs) == before
    if "postgres" in query.lower():
        assert "pg" in {i for i, _ in hits}


def test_name_lookup_is_case_insensitive(store: GraphStore) -> None:
    store.upsert(
        [
            ent("p1", name="Alice Smith", type="Person"),
            ent("p2", name="alice smith", type="Person", namespace="other"),
            ent("d1", name="ALICE SMITH", type="Document"),
            ent("z", name="Zoë Ærø", type="Person"),
        ]
    )
    found = store.name_lookup(["alice SMITH", "Alice Smith", "nobody"])
    assert set(found["alice smith"]) == {"p1", "p2", "d1"}
    assert found.get("nobody", []) == []
    assert set(store.name_lookup(["ALICE smith"], namespaces=["default"])["alice smith"]) == {"p1", "d1"}
    assert store.name_lookup(["alice smith"], types=["Person"], namespaces=["default"]) == {"alice smith": ["p1"]}
    assert store.name_lookup(["ZOË ÆRØ"]) == {"zoë ærø": ["z"]}
    assert store.name_lookup(["Alice"]).get("alice", []) == []  # exact names only


# iteration, vectors, change log, sync state, stats ---------------------------------------------
def test_iteration_covers_everything_once(store: GraphStore) -> None:
    entities = [ent(f"n{i:02d}", namespace="even" if i % 2 == 0 else "odd",
                    type="Page" if i % 3 == 0 else "Document") for i in range(23)]  # fmt: skip
    relations = [rel(f"n{i:02d}", f"n{(i * 7 + 3) % 23:02d}") for i in range(23)]
    relations += [rel(f"n{i:02d}", f"n{(i + 1) % 23:02d}", "NEXT") for i in range(23)]
    store.upsert(entities, relations)

    pages = list(store.iter_entities(batch_size=5))
    assert all(1 <= len(p) <= 5 for p in pages)
    seen = [e.id for p in pages for e in p]
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == {e.id for e in entities}

    odd = [e for p in store.iter_entities(batch_size=4, namespaces=["odd"]) for e in p]
    assert {e.id for e in odd} == {e.id for e in entities if e.namespace == "odd"} and len(odd) == 11
    pages_of_type = [e.id for p in store.iter_entities(batch_size=3, namespaces=["even"], types=["Page"])
                     for e in p]  # fmt: skip
    assert sorted(pages_of_type) == sorted(e.id for e in entities if e.namespace == "even" and e.type == "Page")

    text_pages = list(store.iter_texts(batch_size=5))
    assert all(1 <= len(p) <= 5 for p in text_pages)
    texts = [row for p in text_pages for row in p]
    assert [row.id for row in texts] == sorted(e.id for e in entities)  # in id order, each once
    assert [tuple(row) for row in texts] == [
        (e.id, e.type, e.name, e.text or "", e.namespace) for e in sorted(entities, key=lambda e: e.id)
    ]

    rel_pages = list(store.iter_relations(batch_size=7))
    rel_ids = [r.id for p in rel_pages for r in p]
    assert all(1 <= len(p) <= 7 for p in rel_pages)
    assert len(rel_ids) == len(set(rel_ids)) == len({r.id for r in relations})
    assert set(rel_ids) == {r.id for r in relations}


def test_vectors_round_trip_bit_exact(store: GraphStore) -> None:
    entities = [ent(f"v{i:02d}", namespace="a" if i < 5 else "b") for i in range(12)]
    special = np.array([0.0, -0.0, 1e-45, -3.4028235e38, 3.4028235e38, np.pi, -1 / 3, 1e-30], dtype=np.float32)
    vectors = {e.id: (f"hash-{e.id}", vec(i)) for i, e in enumerate(entities)}
    vectors["v00"] = ("hash-special", special)
    assert store.upsert(entities, vectors=vectors, vector_model=MODEL).vectors_written == 12

    got = store.get_vectors([e.id for e in entities] + ["missing"], MODEL)
    assert set(got) == set(vectors)
    for eid, (_, v) in vectors.items():
        assert got[eid].dtype == np.float32
        assert got[eid].tobytes() == v.tobytes()
    assert store.get_vectors(["v01"], "other-model") == {}
    assert store.vector_hashes(["v00", "v01", "missing"], MODEL) == {"v00": "hash-special", "v01": "hash-v01"}

    seen: dict[str, tuple[str, bytes]] = {}
    for ids, namespaces, matrix in store.iter_vectors(MODEL, batch_size=5):
        assert matrix.dtype == np.float32 and matrix.shape == (len(ids), 8) and len(namespaces) == len(ids)
        assert len(ids) <= 5
        for eid, ns, row in zip(ids, namespaces, matrix, strict=True):
            assert eid not in seen
            seen[eid] = (ns, row.tobytes())
    assert set(seen) == set(vectors)
    for e in entities:
        assert seen[e.id] == (e.namespace, vectors[e.id][1].tobytes())
    assert list(store.iter_vectors("other-model")) == []
    counter = getattr(store, "vector_namespace_counts", None)
    if counter is not None:  # beyond the protocol: both stores here have it
        assert counter(MODEL) == {"a": 5, "b": 7}
        assert counter("other-model") == {}

    # the same vectors again change nothing; a new hash replaces the vector
    seq = store.last_seq()
    assert store.upsert(vectors=vectors, vector_model=MODEL).vectors_written == 0
    assert store.last_seq() == seq
    store.upsert(vectors={"v01": ("hash-new", vec(99))}, vector_model=MODEL)
    assert store.vector_hashes(["v01"], MODEL) == {"v01": "hash-new"}
    assert store.get_vectors(["v01"], MODEL)["v01"].tobytes() == vec(99).tobytes()
    assert [(c.kind, c.id, c.op) for c in store.changes_since(seq)] == [("vector", "v01", "upsert")]
    assert store.stats().vectors == 12


def test_delete_vector_ids_drops_vectors_of_every_model_and_keeps_the_entities(store: GraphStore) -> None:
    store.upsert([ent("a"), ent("b", namespace="ns2"), ent("c")])
    store.upsert(vectors={i: (f"h-{i}", vec(n)) for n, i in enumerate("abc")}, vector_model=MODEL)
    store.upsert(vectors={"a": ("h-a2", vec(9))}, vector_model="other-model")
    seq = store.last_seq()
    result = store.write(WriteBatch(delete_vector_ids=["a", "b", "b", "no-such-entity"]))
    assert result.vectors_deleted == 2 and result.entities_deleted == 0
    assert store.vector_hashes(["a", "b", "c"], MODEL) == {"c": "h-c"}
    assert store.vector_hashes(["a"], "other-model") == {}
    assert [e.id for e in store.get_entities(["a", "b", "c"])] == ["a", "b", "c"]
    assert sorted((c.kind, c.id, c.op, c.namespace) for c in store.changes_since(seq)) == [
        ("vector", "a", "delete", "default"),
        ("vector", "b", "delete", "ns2"),
    ]
    assert store.stats().vectors == 1
    # nothing left to drop: the write changes nothing
    seq = store.last_seq()
    assert store.write(WriteBatch(delete_vector_ids=["a", "b"])).vectors_deleted == 0
    assert store.changes_since(seq) == []
    # a batch that drops an entity's vector and stores a new one keeps the new one
    store.write(WriteBatch(vectors={"c": ("h-c2", vec(5))}, vector_model=MODEL, delete_vector_ids=["c"]))
    assert store.vector_hashes(["c"], MODEL) == {"c": "h-c2"}


def test_vectors_need_a_stored_entity(store: GraphStore) -> None:
    with pytest.raises(SchemaError):
        store.upsert(vectors={"ghost": ("h", vec(1))}, vector_model=MODEL)
    assert store.stats().vectors == 0


def test_change_log_is_monotonic(store: GraphStore) -> None:
    assert store.last_seq() == 0 or store.changes_since(store.last_seq()) == []
    start = store.last_seq()
    r1 = store.upsert([ent("a"), ent("b")], [rel("a", "b")])
    r2 = store.upsert([ent("a", "changed text")])
    store.expire_relations([rel("a", "b").id])
    r4 = store.write(WriteBatch(delete_entity_ids=["b"]))
    assert start < r1.seq < r2.seq < r4.seq == store.last_seq()

    changes = store.changes_since(start)
    seqs = [c.seq for c in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > start
    assert seqs[-1] == store.last_seq()
    assert all(c.namespace == "default" for c in changes)
    ops = [(c.kind, c.id, c.op) for c in changes]
    assert ops.count(("entity", "a", "upsert")) == 2
    assert ("relation", rel("a", "b").id, "upsert") in ops
    assert set(ops[-2:]) == {("entity", "b", "delete"), ("relation", rel("a", "b").id, "delete")}
    assert [c.seq for c in store.changes_since(start, limit=2)] == seqs[:2]
    assert store.changes_since(seqs[2]) == changes[3:]


def test_source_items_round_trip(store: GraphStore) -> None:
    store.upsert([ent("a"), ent("b")], [rel("a", "b")])
    items = [
        SourceItemState("fs", "docs/a.md", "h1", ("a",), (rel("a", "b").id,), cursor="c1"),
        SourceItemState("fs", "docs/b.md", "h2", ("b",)),
        SourceItemState("git", "HEAD", "h3", cursor="abc123"),
    ]
    store.write(WriteBatch(source_items=items))
    assert store.source_items("fs") == {"docs/a.md": items[0], "docs/b.md": items[1]}
    assert store.source_items("git") == {"HEAD": items[2]}
    assert store.source_items("none") == {}

    replaced = SourceItemState("fs", "docs/a.md", "h1b", ("a", "b"), ())
    store.write(WriteBatch(source_items=[replaced], delete_source_items=[("fs", "docs/b.md")]))
    assert store.source_items("fs") == {"docs/a.md": replaced}


def test_stats(store: GraphStore) -> None:
    empty = store.stats()
    assert (empty.entities, empty.relations, empty.live_relations, empty.vectors) == (0, 0, 0, 0)
    assert empty.backend == store.backend
    store.upsert(
        [ent("a", type="Person", namespace="x"), ent("b"), ent("c", type="Page")],
        [rel("a", "b", "AUTHORED"), rel("a", "c", "AUTHORED"), rel("b", "c")],
        {"a": ("h", vec(1))},
        MODEL,
    )
    store.expire_relations([rel("b", "c").id])
    s = store.stats()
    assert (s.entities, s.relations, s.live_relations, s.vectors) == (3, 3, 2, 1)
    assert s.entity_types == {"Person": 1, "Document": 1, "Page": 1}
    assert s.relation_types == {"AUTHORED": 2, "LINKS_TO": 1}
    assert s.namespaces == {"x": 1, "default": 2}
    assert s.last_seq == store.last_seq() > 0


def test_get_entities_and_relations_order_and_namespaces(store: GraphStore) -> None:
    store.upsert([ent("a"), ent("b", namespace="n2"), ent("c")], [rel("a", "b"), rel("b", "c")])
    assert [e.id for e in store.get_entities(["c", "zz", "a", "b"])] == ["c", "a", "b"]
    assert [e.id for e in store.get_entities(["c", "a", "b"], namespaces=["default"])] == ["c", "a"]
    assert store.get_entities([]) == []
    r1, r2 = rel("a", "b"), rel("b", "c")
    assert [r.id for r in store.get_relations([r2.id, "rel:x", r1.id])] == [r2.id, r1.id]
    (got,) = store.get_relations([r1.id])
    assert (got.type, got.src, got.dst, got.namespace) == ("LINKS_TO", "a", "b", "default")
    assert got.recorded_at is not None and got.expired_at is None


def test_models_round_trip(store: GraphStore) -> None:
    prov = Provenance(uri="https://example.org/a", fetched_at=T0, version="etag-1")
    a = ent(
        "a",
        "some text",
        name="A name",
        properties={"n": 1, "f": 1.5, "s": "x", "l": [1, "two", None], "d": {"k": True}},
        source="web",
        provenance=prov,
        valid_from=T0,
        valid_to=T0 + timedelta(days=3650),
    )
    r = rel("a", "a", "RELATED_TO", properties={"w": 0.5}, source="web", provenance=prov, valid_from=T0)
    store.upsert([a], [r])
    (got,) = store.get_entities(["a"])
    assert got.model_dump(exclude={"created_at", "updated_at"}) == a.model_dump(exclude={"created_at", "updated_at"})
    (got_r,) = store.get_relations([r.id])
    assert got_r.model_dump(exclude={"recorded_at"}) == r.model_dump(exclude={"recorded_at"})
