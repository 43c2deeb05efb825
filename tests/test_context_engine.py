"""End-to-end search over the embedded store: ranked, explained, filtered, budgeted."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aesoperator.errors import SchemaError
from aesoperator.graph_schema import Entity, Relation, utcnow

FIXTURE = Path(__file__).parent / "fixtures" / "docs"


@pytest.fixture
def engine(make_engine: Callable[..., Any], tmp_path: Path) -> Any:
    folder = tmp_path / "bakery"
    shutil.copytree(FIXTURE, folder)
    eng = make_engine()
    eng.ingest_path(folder)
    return eng


def test_search_ranks_the_right_passage_first_with_reasons_and_provenance(engine: Any) -> None:
    result = engine.search("who runs the night shift?", k=5)
    top = result.hits[0]
    assert "Marguerite" in top.text
    assert top.reasons and any("vector" in r or "keyword" in r for r in top.reasons)
    assert top.provenance is not None and top.provenance.uri.startswith("file://")
    assert set(result.timings_ms) >= {"embed", "vector", "keyword", "fuse", "pack"}


def test_semantic_query_without_shared_words_still_finds_it(engine: Any) -> None:
    result = engine.search("pastry made without gravity", k=3, channels=("vector",), hops=0)
    assert any("croissant" in h.text for h in result.hits)


def test_type_and_namespace_filters(engine: Any, make_engine: Callable[..., Any]) -> None:
    only_files = engine.search("bakery staff", k=5, types=["File"])
    assert only_files.hits and all(h.type == "File" for h in only_files.hits)
    assert engine.search("bakery staff", k=5, namespaces=["elsewhere"]).hits == []


def test_graph_expansion_brings_in_neighbours_with_a_reason(engine: Any) -> None:
    engine.upsert(
        [
            Entity(id="p:tobias", type="Person", name="Tobias Lindqvist", text="Tobias Lindqvist, head baker"),
            Entity(
                id="c:croissant", type="Concept", name="zero-gravity croissant", text="A pastry laminated twelve times"
            ),
        ],
        [Relation(type="AUTHORED", src="p:tobias", dst="c:croissant")],
    )
    result = engine.search("Tobias Lindqvist", k=8, hops=1)
    by_id = {h.id: h for h in result.hits}
    assert "p:tobias" in by_id and "c:croissant" in by_id
    assert any("via AUTHORED" in r for r in by_id["c:croissant"].reasons)
    assert any(t.type == "AUTHORED" and t.src == "p:tobias" for t in result.triples)
    flat = {h.id: h for h in engine.search("Tobias Lindqvist", k=50, hops=0, mmr_lambda=1.0).hits}
    assert all(not any("via" in r for r in h.reasons) for h in flat.values())
    # the link to the best hit lifts the croissant above where text similarity alone puts it
    assert by_id["c:croissant"].score > flat["c:croissant"].score


def test_as_of_hides_facts_that_did_not_hold_then(engine: Any) -> None:
    past = utcnow() - timedelta(days=30)
    engine.upsert(
        [
            Entity(
                id="n:new", type="Document", name="launch note", text="the station opened a bakery", valid_from=utcnow()
            )
        ]
    )
    assert any(h.id == "n:new" for h in engine.search("station opened a bakery", k=5).hits)
    assert all(h.id != "n:new" for h in engine.search("station opened a bakery", k=5, as_of=past).hits)


def test_token_budget_is_respected(engine: Any) -> None:
    result = engine.search("bakery", k=10, token_budget=120)
    assert 0 < result.tokens_used <= 120
    assert result.context_text()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": ""}, "must not be empty"),
        ({"query": "x" * 20_000}, "limit"),
        ({"query": "ok", "k": 0}, "k must be"),
        ({"query": "ok", "hops": 9}, "hops"),
        ({"query": "ok", "channels": ("psychic",)}, "unknown retrieval channel"),
    ],
)
def test_bad_queries_get_clear_errors(engine: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        engine.search(**kwargs)


def test_query_text_that_looks_like_syntax_is_just_text(engine: Any) -> None:
    for q in ['"unbalanced', "NEAR(a b) OR *", "'); DROP TABLE entities; --", "MATCH (n) DETACH DELETE n"]:
        engine.search(q, k=3)
    assert engine.stats().entity_types["File"] == 4


def test_search_settings_choose_the_fusion_and_its_weights(engine: Any) -> None:
    from aesoperator import SearchSettings

    assert engine.search_settings.fusion == "score"
    engine.search_settings = SearchSettings(keyword_weight=2.0)
    top = engine.search("Marguerite", k=3, channels=("keyword",), hops=0).hits[0]
    assert top.score == pytest.approx(2.0)  # score fusion: the channel's best hit gets its full weight
    engine.search_settings = SearchSettings(fusion="rrf", rrf_k=10, keyword_weight=2.0)
    top = engine.search("Marguerite", k=3, channels=("keyword",), hops=0).hits[0]
    assert top.score == pytest.approx(2.0 / 11)


@pytest.mark.parametrize(
    "bad",
    [
        {"fusion": "max"},
        {"rrf_k": -1},
        {"vector_weight": -0.5},
        {"graph_weight": float("nan")},
        {"hop_decay": 1.5},
        {"expansion_relevance_weight": 2.0},
    ],
)
def test_search_settings_reject_bad_values(bad: dict[str, Any]) -> None:
    from aesoperator import SearchSettings
    from aesoperator.errors import ConfigError

    with pytest.raises(ConfigError):
        SearchSettings(**bad)


def test_query_aware_expansion_weighs_a_neighbour_by_its_own_match(engine: Any) -> None:
    from aesoperator import SearchSettings

    engine.upsert(
        [
            Entity(id="p:tobias", type="Person", name="Tobias Lindqvist", text="Tobias Lindqvist, head baker"),
            Entity(id="c:ledger", type="Concept", name="tax ledger", text="Quarterly VAT ledger and invoices"),
        ],
        [Relation(type="AUTHORED", src="p:tobias", dst="c:ledger")],
    )
    plain = {h.id: h for h in engine.search("Tobias Lindqvist, the baker", k=8, hops=1).hits}
    engine.search_settings = SearchSettings(expansion_relevance_weight=1.0)
    result = engine.search("Tobias Lindqvist, the baker", k=8, hops=1)
    aware = {h.id: h for h in result.hits}
    assert "relevance" in result.timings_ms
    assert "c:ledger" in plain
    # The ledger is only linked, not about the query: the query-aware bonus is smaller or nothing.
    assert "c:ledger" not in aware or aware["c:ledger"].score < plain["c:ledger"].score


def test_vector_index_settings_reach_the_engines_index(make_engine: Any) -> None:
    from aesoperator.ingest.documents import DocumentInput

    engine = make_engine(vector_exact_max=40, vector_nprobe=64)
    animals = ["otter", "heron", "badger", "lynx", "walrus", "ibis", "marmot", "gecko", "tapir", "okapi"]
    docs = [
        DocumentInput(title=f"{a.title()} note {n}", text=f"Field note {n}: the {a} seen near station {n}.")
        for n in range(12)
        for a in animals
    ]
    engine.add_documents(docs, link_mentions=False)
    assert set(engine.index.kinds().values()) == {"ivf"}
    hits = engine.search("where was the walrus seen near station 7", k=5, hops=0)
    assert hits.hits[0].name == "Walrus note 7"
