"""Keyword search on the embedded store: the fast path returns exactly what one query joining the
FTS index with the entities table returns (ties, filters and cut-offs included), and common-term
pruning on large stores leaves out only terms that match a large share of the entities."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from aesoperator.engine.query_terms import prune_common_terms
from aesoperator.engine.stores.embedded import BM25_WEIGHTS, EmbeddedGraphStore
from aesoperator.engine.stores.embedded_rows import fts_expression, json_list
from aesoperator.graph_schema.models import Entity

WORDS = [
    "river",
    "delta",
    "harbour",
    "granite",
    "meadow",
    "lantern",
    "violin",
    "orbit",
    "quartz",
    "saffron",
    "tundra",
    "walnut",
    "beacon",
    "cobalt",
    "ember",
    "fjord",
    "glacier",
    "hazel",
    "iris",
    "juniper",
    "kelp",
    "lagoon",
    "marble",
    "nectar",
]
QUERIES = [
    "river delta",
    "granite meadow lantern",
    "violin",
    "orbit quartz saffron tundra walnut",
    "what is the beacon of cobalt?",
    "ember fjord glacier hazel",
    "iris juniper kelp lagoon marble nectar river",
    "unknownword",
    "river unknownword",
    "zephyr",
    "zephyr meadow",
]


def reference(
    store: EmbeddedGraphStore,
    query: str,
    k: int,
    namespaces: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
) -> list[tuple[str, float]]:
    """The plain joined query: every match scored, filtered, ordered by (bm25, id)."""
    expression = fts_expression(query)
    assert expression is not None
    sql = (
        f"SELECT e.id, bm25(entities_fts, {BM25_WEIGHTS[0]}, {BM25_WEIGHTS[1]}) AS score "
        "FROM entities_fts JOIN entities e ON e.rid = entities_fts.rowid WHERE entities_fts MATCH ?1 "
        "AND (?2 IS NULL OR e.namespace IN (SELECT value FROM json_each(?2))) "
        "AND (?3 IS NULL OR e.type IN (SELECT value FROM json_each(?3))) ORDER BY score, e.id LIMIT ?4"
    )
    params = (
        expression,
        None if namespaces is None else json_list(list(namespaces)),
        None if types is None else json_list(list(types)),
        k,
    )
    rows = store._conn.execute(sql, params).fetchall()
    return [(eid, max(-float(score), 1e-9)) for eid, score in rows]


@pytest.fixture
def corpus(tmp_path: Path) -> Iterator[EmbeddedGraphStore]:
    """600 entities of random words over three namespaces and two types, with 75 exact duplicates
    (equal scores, so ties must be broken by id)."""
    rng = random.Random(7)
    entities = []
    for i in range(600):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30)))
        name = rng.choice(WORDS)
        if i % 8 == 0:  # 75 identical rows: ties across every cut-off
            name, text = "duplicate", "zephyr river zephyr"
        entities.append(
            Entity(
                id=f"doc-{(i * 7919) % 600:04d}",
                type="Document" if i % 3 else "Note",
                name=name,
                text=text,
                namespace=("alpha", "beta", "gamma")[i % 3],
            )
        )
    with EmbeddedGraphStore(tmp_path / "store") as store:
        store.upsert(entities)
        yield store


@pytest.mark.parametrize("k", [1, 5, 10, 17, 50, 1000])
def test_results_equal_the_joined_query(corpus: EmbeddedGraphStore, k: int) -> None:
    for query in QUERIES:
        assert corpus.keyword_search(query, k) == reference(corpus, query, k), query


@pytest.mark.parametrize(
    ("namespaces", "types"),
    [(["beta"], None), (None, ["Note"]), (["gamma"], ["Note"]), ([], None), (["alpha", "nowhere"], ["Document"])],
)
def test_filtered_results_equal_the_joined_query(
    corpus: EmbeddedGraphStore, namespaces: list[str] | None, types: list[str] | None
) -> None:
    # A selective filter leaves fewer than k of the over-fetched best matches: the fallback runs.
    for query in QUERIES:
        for k in (3, 10, 40):
            got = corpus.keyword_search(query, k, namespaces=namespaces, types=types)
            assert got == reference(corpus, query, k, namespaces, types), (query, k)


@pytest.mark.parametrize("k", [3, 10, 20, 75])
def test_ties_at_the_cut_off_are_broken_by_id(corpus: EmbeddedGraphStore, k: int) -> None:
    got = corpus.keyword_search("zephyr", k)
    assert got == reference(corpus, "zephyr", k)
    assert len({score for _, score in got}) == 1  # the duplicates tie ...
    tied = sorted(i for i, _ in reference(corpus, "zephyr", 1000))
    assert [i for i, _ in got] == tied[:k]  # ... and the smallest ids win


def test_small_stores_never_prune(corpus: EmbeddedGraphStore) -> None:
    corpus.keyword_max_df = 0.0  # would drop every term, but the store is below the size floor
    assert corpus.keyword_search("river meadow", 10) == reference(corpus, "river meadow", 10)


def test_common_terms_are_pruned_on_large_stores(tmp_path: Path) -> None:
    entities = [Entity(id=f"c{i:03d}", type="Document", name=f"c{i}", text="common filler") for i in range(100)]
    entities += [Entity(id=f"r{i}", type="Document", name=f"r{i}", text="rare common") for i in range(3)]
    with EmbeddedGraphStore(tmp_path / "store") as store:
        store.upsert(entities)
        store.keyword_prune_min_docs = 0
        store.keyword_max_df = 0.5
        # 'common' is in every entity: only 'rare' is matched, so only the three rare ones come back
        assert {i for i, _ in store.keyword_search("rare common", 50)} == {"r0", "r1", "r2"}
        assert store.keyword_search("rare common", 50) == reference(store, "rare", 50)
        # when every term is common, the rarest one is kept
        assert store.keyword_search("common filler", 5) == reference(store, "filler", 5)
        # the frequencies follow writes: once 'rare' is everywhere too, 'filler' is the rarer term
        store.upsert([Entity(id=f"c{i:03d}", type="Document", name=f"c{i}", text="rare common") for i in range(90)])
        assert store.keyword_search("rare filler", 50) == reference(store, "filler", 50)
        store.keyword_max_df = 1.0
        assert store.keyword_search("rare common", 50) == reference(store, "rare common", 50)


def test_prune_common_terms() -> None:
    df = {"a": 900, "b": 40, "c": 0, "d": 10, "e": 700}
    assert prune_common_terms(["a", "b", "c", "d"], df, 1000, 0.05) == ["b", "d"]
    assert prune_common_terms(["a", "e", "c"], df, 1000, 0.05) == ["e"]
    assert prune_common_terms(["c", "zz"], df, 1000, 0.05) == []
    assert prune_common_terms(["a", "b"], df, 1000, 1.0) == ["a", "b"]
