"""Tests of score fusion and query-aware graph expansion (pure functions: no store, no model)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aesoperator.engine.retrieval import Candidate, expand_graph, query_relevance, score_fusion
from aesoperator.engine.stores.base import Subgraph
from aesoperator.graph_schema.models import Entity, Relation


def ent(eid: str) -> Entity:
    return Entity(id=eid, type="Document", name=eid, text=f"text of {eid}", source="test")


def graph(pairs: list[tuple[str, str]]) -> Subgraph:
    relations = [Relation(type="MENTIONS", src=a, dst=b) for a, b in pairs]
    ids = sorted({a for a, _ in pairs} | {b for _, b in pairs})
    return Subgraph(entities={i: ent(i) for i in ids}, relations=relations)


# -- score fusion ---------------------------------------------------------------------------------


def test_score_fusion_min_max_scales_each_channel_and_sums_weights() -> None:
    fused = score_fusion(
        {"keyword": [("a", 12.0), ("b", 4.0), ("c", 2.0)], "vector": [("c", 0.9), ("b", 0.7), ("d", 0.5)]},
        weights={"vector": 0.5},
    )
    scores = {c.id: c.score for c in fused}
    assert scores["a"] == pytest.approx(1.0)
    assert scores["b"] == pytest.approx(0.2 + 0.5 * 0.5)
    assert scores["c"] == pytest.approx(0.0 + 0.5 * 1.0)
    assert scores["d"] == pytest.approx(0.0)
    assert [c.id for c in fused] == ["a", "c", "b", "d"]
    assert fused[2].channels == {"keyword": 2, "vector": 2}
    assert fused[2].reasons == ["keyword #2 (bm25 4.00)", "vector #2 (cosine 0.70)"]


def test_score_fusion_keeps_a_keyword_hit_far_ahead_where_rank_fusion_would_not() -> None:
    # BM25 puts "k" far ahead; both channels agree weakly on "both". Rank fusion only sees ranks.
    channels = {
        "keyword": [("k", 30.0), ("both", 3.1), ("x", 3.0)],
        "vector": [("v", 0.62), ("both", 0.61), ("y", 0.30)],
    }
    assert score_fusion(channels)[0].id == "k"


def test_score_fusion_equal_scores_single_items_duplicates_and_bad_arguments() -> None:
    fused = score_fusion({"keyword": [("a", 2.0), ("a", 1.0), ("b", 2.0)], "name": [("n", 4.0)], "vector": []})
    assert {c.id: c.score for c in fused} == {"a": 1.0, "b": 1.0, "n": 1.0}
    assert fused[0].reasons == ["keyword #1 (bm25 2.00)"]
    assert len(score_fusion({"keyword": [("a", 2.0), ("b", 1.0)]}, limit=1)) == 1
    assert score_fusion({"keyword": [("a", 2.0)]}, weights={"keyword": 0.0}) == []
    with pytest.raises(ValueError):
        score_fusion({"keyword": []}, weights={"keyword": -1.0})
    with pytest.raises(ValueError):
        score_fusion({"keyword": []}, limit=-1)


@given(
    st.dictionaries(
        st.sampled_from(["vector", "keyword", "name"]),
        st.lists(st.tuples(st.sampled_from("abcdefghij"), st.floats(-5, 10)), max_size=12),
    )
)
def test_score_fusion_properties(channels: dict[str, list[tuple[str, float]]]) -> None:
    fused = score_fusion(channels)
    assert len({c.id for c in fused}) == len(fused)
    assert {c.id for c in fused} == {i for ranked in channels.values() for i, _ in ranked}
    assert all(a.score >= b.score for a, b in itertools.pairwise(fused))
    assert all(0.0 <= c.score <= len(c.channels) + 1e-9 for c in fused)
    assert fused == score_fusion(channels)


# -- query relevance ------------------------------------------------------------------------------


def test_query_relevance_scales_between_floor_and_top_and_clips() -> None:
    got = query_relevance({"a": 0.8, "b": 0.5, "c": 0.2, "d": 0.9}, floor=0.4, top=0.8)
    assert got == pytest.approx({"a": 1.0, "b": 0.25, "c": 0.0, "d": 1.0})
    assert query_relevance({"a": 0.3}, floor=0.5, top=0.5) == {"a": 1.0}


# -- query-aware expansion ------------------------------------------------------------------------


def test_relevance_decides_which_neighbour_the_graph_brings_in() -> None:
    sub = graph([("A", "X"), ("A", "Y")])
    plain = {c.id: c.score for c in expand_graph([Candidate("A", 1.0)], sub)}
    assert plain["X"] == pytest.approx(plain["Y"])
    aware = expand_graph([Candidate("A", 1.0)], sub, relevance={"X": 1.0, "Y": 0.25}, relevance_weight=0.8)
    scores = {c.id: c.score for c in aware}
    assert scores["X"] == pytest.approx(plain["X"])
    assert scores["Y"] == pytest.approx(plain["Y"] * (0.2 + 0.8 * 0.25))
    assert [c.id for c in aware] == ["A", "X", "Y"]
    # Fully query-aware: a neighbour that does not match the query at all is not brought in.
    strict = expand_graph([Candidate("A", 1.0)], sub, relevance={"X": 1.0}, relevance_weight=1.0)
    assert [c.id for c in strict] == ["A", "X"]


def test_strong_direct_match_stays_above_an_off_topic_neighbour_of_two_seeds() -> None:
    # D is a direct match ranked third; N links the two top seeds but does not match the query.
    sub = graph([("A", "N"), ("B", "N")])
    seeds = [Candidate("A", 1.0), Candidate("B", 0.9), Candidate("D", 0.6)]
    plain = [c.id for c in expand_graph(seeds, sub)]
    assert plain.index("N") < plain.index("D")
    aware = [
        c.id for c in expand_graph(seeds, sub, relevance={"A": 1.0, "B": 1.0, "D": 0.9, "N": 0.1}, relevance_weight=0.8)
    ]
    assert aware.index("D") < aware.index("N")


def test_graph_weight_scales_every_bonus_and_arguments_are_checked() -> None:
    sub = graph([("A", "X")])
    one = {c.id: c.score for c in expand_graph([Candidate("A", 1.0)], sub)}
    half = {c.id: c.score for c in expand_graph([Candidate("A", 1.0)], sub, weight=0.5)}
    assert half["X"] == pytest.approx(one["X"] / 2)
    assert half["A"] == one["A"] == 1.0
    assert [c.id for c in expand_graph([Candidate("A", 1.0)], sub, weight=0.0)] == ["A"]
    for bad in ({"weight": -1.0}, {"weight": math.inf}, {"relevance_weight": 1.5}, {"relevance_weight": -0.1}):
        with pytest.raises(ValueError):
            expand_graph([Candidate("A", 1.0)], sub, **bad)  # type: ignore[arg-type]
