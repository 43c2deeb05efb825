"""Unit and property tests of the retrieval stages (pure functions: no store, no model)."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aesoperator.engine.retrieval import (
    Candidate,
    apply_recency,
    estimate_tokens,
    expand_graph,
    mmr,
    pack_context,
    personalized_pagerank,
    reciprocal_rank_fusion,
)
from aesoperator.engine.stores.base import Subgraph
from aesoperator.graph_schema.models import Entity, Provenance, Relation

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ent(eid: str, name: str | None = None, text: str | None = None, type_: str = "Document") -> Entity:
    return Entity(id=eid, type=type_, name=name or eid, text=text or f"text of {eid}", source="test")


def rel(type_: str, src: str, dst: str, **kwargs: object) -> Relation:
    return Relation(type=type_, src=src, dst=dst, **kwargs)  # type: ignore[arg-type]


def graph(relations: list[Relation], extra: tuple[str, ...] = ()) -> Subgraph:
    ids = {r.src for r in relations} | {r.dst for r in relations} | set(extra)
    return Subgraph(entities={i: ent(i) for i in sorted(ids)}, relations=relations)


def by_id(cands: list[Candidate]) -> dict[str, Candidate]:
    return {c.id: c for c in cands}


# -- fusion ---------------------------------------------------------------------------------------


def test_rrf_matches_hand_computed_scores_and_reasons() -> None:
    fused = reciprocal_rank_fusion(
        {"vector": [("a", 0.91), ("b", 0.8), ("c", 0.5)], "keyword": [("b", 7.314), ("d", 3.0)]}
    )
    assert [c.id for c in fused] == ["b", "a", "d", "c"]
    scores = {c.id: c.score for c in fused}
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["a"] == pytest.approx(1 / 61)
    assert scores["d"] == pytest.approx(1 / 62)
    assert scores["c"] == pytest.approx(1 / 63)
    b = fused[0]
    assert b.channels == {"vector": 2, "keyword": 1}
    assert b.reasons == ["vector #2 (cosine 0.80)", "keyword #1 (bm25 7.31)"]
    assert b.hop == 0 and b.via is None


def test_rrf_two_channels_beat_one() -> None:
    fused = reciprocal_rank_fusion(
        {
            "vector": [("v1", 0.9), ("v2", 0.8), ("both", 0.7)],
            "keyword": [("k1", 9.0), ("k2", 8.0), ("both", 7.0)],
        }
    )
    assert fused[0].id == "both"
    assert fused[0].score == pytest.approx(2 / 63)


def test_rrf_weights_limit_name_channel_and_other_channels() -> None:
    fused = reciprocal_rank_fusion(
        {"name": [("n", 5.0)], "memory": [("m", 0.123456)], "keyword": [("k", 2.0)]},
        weights={"keyword": 0.0, "memory": 2.0},
        k=10,
    )
    assert [c.id for c in fused] == ["m", "n"]  # keyword has weight 0: left out
    assert fused[0].score == pytest.approx(2 / 11)
    assert fused[0].reasons == ["memory #1 (0.123)"]
    assert fused[1].reasons == ["exact name match"]
    assert len(reciprocal_rank_fusion({"vector": [("a", 1.0), ("b", 0.5)]}, limit=1)) == 1
    with pytest.raises(ValueError):
        reciprocal_rank_fusion({"vector": []}, k=-1)
    with pytest.raises(ValueError):
        reciprocal_rank_fusion({"vector": []}, weights={"vector": -1.0})


def test_rrf_ties_break_by_best_rank_then_id_and_duplicates_count_once() -> None:
    fused = reciprocal_rank_fusion({"keyword": [("z", 1.0)], "vector": [("a", 0.5)]})
    assert [c.id for c in fused] == ["a", "z"]  # equal score and best rank: by id
    # With k=0: m is 2nd in both channels (1/2 + 1/2), n and o are 1st in one (1/1): equal sums,
    # and the better single rank wins before the id does.
    fused = reciprocal_rank_fusion({"x": [("n", 0), ("m", 0)], "y": [("o", 0), ("m", 0)]}, k=0)
    assert [c.score for c in fused] == [1.0, 1.0, 1.0]
    assert [c.id for c in fused] == ["n", "o", "m"]
    fused = reciprocal_rank_fusion({"vector": [("a", 0.9), ("a", 0.8), ("b", 0.7)]})
    assert by_id(fused)["b"].channels == {"vector": 2}
    assert by_id(fused)["a"].reasons == ["vector #1 (cosine 0.90)"]


@given(
    st.dictionaries(
        st.sampled_from(["vector", "keyword", "name"]),
        st.lists(st.tuples(st.sampled_from("abcdefghij"), st.floats(0, 10)), max_size=12),
    )
)
def test_rrf_properties(channels: dict[str, list[tuple[str, float]]]) -> None:
    fused = reciprocal_rank_fusion(channels)
    assert len({c.id for c in fused}) == len(fused)
    assert {c.id for c in fused} == {i for ranked in channels.values() for i, _ in ranked}
    assert all(a.score >= b.score for a, b in itertools.pairwise(fused))
    for cand in fused:
        assert cand.score == pytest.approx(sum(1 / (60 + r) for r in cand.channels.values()))
    assert fused == reciprocal_rank_fusion(channels)


# -- graph expansion --------------------------------------------------------------------------------


def test_entity_linked_to_two_seeds_outranks_one_linked_to_one() -> None:
    sub = graph(
        [rel("MENTIONS", "A", "X"), rel("MENTIONS", "B", "X"), rel("MENTIONS", "A", "Y")],
    )
    seeds = [Candidate("A", 0.5), Candidate("B", 0.5)]
    out = expand_graph(seeds, sub, names={"A": "Alice", "B": "Bob"})
    got = by_id(out)
    assert got["X"].score > got["Y"].score
    # Per link: score × hop_decay 0.5 × weight(MENTIONS)=1.0 / sqrt(product of the ends' MENTIONS
    # degrees): A and X have two, B and Y one.
    assert got["Y"].score == pytest.approx(0.5 * 0.5 / math.sqrt(2))
    assert got["X"].score == pytest.approx(0.5 * 0.5 / 2 + 0.5 * 0.5 / math.sqrt(2))
    assert got["X"].hop == 1 and got["X"].via == "B"
    assert got["X"].reasons == ["1 hop from 'Bob' via MENTIONS", "1 hop from 'Alice' via MENTIONS"]
    assert got["X"].channels == {"graph": 1}
    # The seeds reach each other through X: B–X then X–A, each damped by its ends' degrees.
    assert got["A"].score == pytest.approx(0.5 + 0.5 * (0.5 / math.sqrt(2)) * (0.5 / 2))
    assert got["A"].reasons == ["2 hops from 'Bob' via MENTIONS → MENTIONS"]
    assert [c.score for c in out] == sorted((c.score for c in out), reverse=True)
    assert seeds[0].score == 0.5 and seeds[0].reasons == []  # inputs untouched


def test_seeds_linked_to_each_other_get_a_bonus_and_a_reason() -> None:
    sub = graph([rel("AUTHORED", "P", "C")])
    out = by_id(expand_graph([Candidate("C", 0.2), Candidate("P", 0.1)], sub))
    assert out["C"].score == pytest.approx(0.2 + 0.1 * 0.7 * 0.5)
    assert out["P"].score == pytest.approx(0.1 + 0.2 * 0.7 * 0.5)
    assert out["C"].reasons == ["1 hop from 'P' via AUTHORED"]
    assert out["C"].hop == 0


def test_hub_is_normalised_and_max_new_caps_new_candidates() -> None:
    files = [f"f{i:03d}" for i in range(400)]
    relations = [rel("CONTAINS", "dir", f) for f in files] + [rel("CONTAINS", "lone", "only")]
    relations.append(rel("MENTIONS", "doc", "concept"))
    sub = graph(relations)
    seeds = [Candidate("dir", 1.0), Candidate("lone", 1.0), Candidate("doc", 1.0)]
    out = expand_graph(seeds, sub, max_new=5)
    got = by_id(out)
    new = [c for c in out if c.id not in {"dir", "lone", "doc"}]
    assert len(new) == 5
    assert [c.id for c in new[:2]] == ["concept", "only"]
    assert got["only"].score == pytest.approx(0.4 * 0.5)
    assert got["f000"].score == pytest.approx(0.4 * 0.5 / math.sqrt(400))  # 20x less than "only"
    assert [c.id for c in new[2:]] == ["f000", "f001", "f002"]  # equal scores: by id


def test_hub_does_not_rise_on_the_votes_of_its_members() -> None:
    files = [f"f{i:03d}" for i in range(400)]
    relations = [rel("CONTAINS", "dir", f) for f in files] + [rel("MENTIONS", "note", "topic")]
    sub = graph(relations)
    seeds = [Candidate(f, 0.1) for f in files[:40]] + [Candidate("note", 0.1)]
    walked = by_id(expand_graph(seeds, sub, method="ppr"))
    assert walked["dir"].score < walked["topic"].score
    # ... and a hub seed spreads thin over its members in both methods.
    for method in ("paths", "ppr"):
        spread = by_id(expand_graph([Candidate("dir", 0.1), Candidate("note", 0.1)], sub, method=method))
        assert spread["f000"].score < spread["topic"].score / 10
    got = by_id(expand_graph(seeds, sub))
    one_link = 0.1 * 1.0 * 0.5  # topic: a single MENTIONS from one seed of the same score
    assert got["topic"].score == pytest.approx(one_link)
    # Damped only on the members' side, the directory would collect 40 × 0.02 = 0.8, sixteen
    # times the topic; damped on its own side too, it collects 40 / sqrt(400) links' worth.
    assert got["dir"].score == pytest.approx(40 * 0.1 * 0.4 * 0.5 / math.sqrt(400))
    assert got["dir"].score < got["topic"].score


def test_expired_relation_followed_only_while_it_held() -> None:
    r = rel("MENTIONS", "A", "B", valid_from=T0, valid_to=T0 + timedelta(days=10))
    sub = graph([r])
    seeds = [Candidate("A", 1.0)]
    before = by_id(expand_graph(seeds, sub, as_of=T0 + timedelta(days=5)))
    after = by_id(expand_graph(seeds, sub, as_of=T0 + timedelta(days=11)))
    assert "B" in before and "B" not in after
    now_gone = rel("MENTIONS", "A", "B", expired_at=T0)
    assert "B" not in by_id(expand_graph(seeds, graph([now_gone])))
    for method in ("paths", "ppr"):
        assert "B" not in by_id(expand_graph(seeds, sub, as_of=T0 + timedelta(days=11), method=method))


def test_hop_decay_and_max_hops() -> None:
    sub = graph([rel("MENTIONS", "A", "B"), rel("MENTIONS", "B", "C")])
    out = by_id(expand_graph([Candidate("A", 1.0)], sub, names={"A": "Alice"}))
    # B has two MENTIONS relations, A and C one: each link is damped by sqrt(1 × 2).
    assert out["B"].score == pytest.approx(0.5 / math.sqrt(2))
    assert out["C"].score == pytest.approx((0.5 / math.sqrt(2)) ** 2)
    assert out["C"].hop == 2 and out["C"].via == "A"
    assert out["C"].reasons == ["2 hops from 'Alice' via MENTIONS → MENTIONS"]
    flat = by_id(expand_graph([Candidate("A", 1.0)], sub, hop_decay=1.0))
    assert flat["B"].score == pytest.approx(1 / math.sqrt(2))
    assert flat["C"].score == pytest.approx(0.5)
    assert "C" not in by_id(expand_graph([Candidate("A", 1.0)], sub, max_hops=1))
    sub.hops = {"A": 0, "B": 1}  # the store fetched one hop: the default follows it
    assert "C" not in by_id(expand_graph([Candidate("A", 1.0)], sub))


def test_only_entities_of_the_subgraph_are_reached() -> None:
    sub = graph([rel("MENTIONS", "A", "B")])
    sub.relations.append(rel("MENTIONS", "A", "hidden"))  # e.g. another namespace
    out = by_id(expand_graph([Candidate("A", 1.0)], sub))
    assert set(out) == {"A", "B"}


def test_max_seeds_limits_who_spreads() -> None:
    sub = graph([rel("MENTIONS", "A", "X"), rel("MENTIONS", "B", "Y")])
    out = by_id(expand_graph([Candidate("A", 1.0), Candidate("B", 0.5)], sub, max_seeds=1))
    assert "X" in out and "Y" not in out


def test_ppr_scores_sum_to_one_and_prefer_nodes_shared_by_seeds() -> None:
    sub = graph(
        [rel("MENTIONS", "A", "X"), rel("MENTIONS", "B", "X"), rel("MENTIONS", "A", "Y"), rel("MENTIONS", "Y", "Z")]
    )
    ppr = personalized_pagerank([Candidate("A", 1.0), Candidate("B", 1.0)], sub)
    assert sum(ppr.values()) == pytest.approx(1.0)
    assert ppr["X"] > ppr["Y"] > ppr["Z"] > 0
    assert personalized_pagerank({"A": 1.0}, sub)["A"] == max(personalized_pagerank({"A": 1.0}, sub).values())
    assert personalized_pagerank([], sub) == {}
    out = expand_graph([Candidate("A", 0.5), Candidate("B", 0.5)], sub, method="ppr")
    got = by_id(out)
    assert got["X"].score > got["Y"].score > got["Z"].score > 0
    assert got["Z"].hop == 2
    assert got["X"].reasons[0].startswith("1 hop from ")
    # Restricting the walk: Z is two hops from A.
    assert "Z" not in by_id(expand_graph([Candidate("A", 0.5)], sub, method="ppr", max_hops=1))


def test_expansion_validates_arguments() -> None:
    sub = graph([rel("MENTIONS", "A", "B")])
    with pytest.raises(ValueError):
        expand_graph([Candidate("A", 1.0)], sub, hop_decay=2.0)
    with pytest.raises(ValueError):
        expand_graph([Candidate("A", 1.0)], sub, max_new=-1)
    with pytest.raises(ValueError):
        expand_graph([Candidate("A", 1.0)], sub, method="walk")  # type: ignore[arg-type]
    assert expand_graph([], sub) == []


node_ids = st.sampled_from([f"n{i}" for i in range(12)])
edge_lists = st.lists(
    st.tuples(st.sampled_from(["MENTIONS", "CONTAINS", "AUTHORED", "CUSTOM"]), node_ids, node_ids), max_size=40
)


@settings(max_examples=60, deadline=None)
@given(
    edges=edge_lists,
    seeds=st.dictionaries(node_ids, st.floats(0, 1), min_size=1, max_size=5),
    max_new=st.integers(0, 6),
    method=st.sampled_from(["paths", "ppr"]),
)
def test_expansion_properties(
    edges: list[tuple[str, str, str]], seeds: dict[str, float], max_new: int, method: str
) -> None:
    sub = graph([rel(t, a, b) for t, a, b in edges], extra=tuple(seeds))
    cands = [Candidate(i, s) for i, s in seeds.items()]
    out = expand_graph(cands, sub, max_new=max_new, method=method)  # type: ignore[arg-type]
    got = by_id(out)
    assert len(got) == len(out)
    assert all(got[c.id].score >= c.score for c in cands)
    assert len(out) - len(cands) <= max_new
    assert all(a.score >= b.score for a, b in itertools.pairwise(out))
    assert all(c.hop > 0 and c.via in seeds for c in out if c.id not in seeds)
    assert out == expand_graph(cands, sub, max_new=max_new, method=method)  # type: ignore[arg-type]
    ppr = personalized_pagerank(cands, sub)
    assert sum(ppr.values()) == pytest.approx(1.0)


# -- recency ----------------------------------------------------------------------------------------


def test_recency_scales_by_half_life_and_resorts() -> None:
    now = T0 + timedelta(days=100)
    cands = [Candidate("old", 1.0), Candidate("new", 0.95), Candidate("undated", 0.5)]
    stamps = {"old": now - timedelta(days=30), "new": now, "undated_not_there": now}
    out = apply_recency(cands, stamps, now, half_life_days=30.0, weight=0.2)
    got = by_id(out)
    assert got["old"].score == pytest.approx(1.0 * (0.8 + 0.2 * 0.5))
    assert got["new"].score == pytest.approx(0.95)
    assert got["undated"].score == 0.5 and got["undated"].reasons == []
    assert [c.id for c in out] == ["new", "old", "undated"]
    assert got["old"].reasons == ["recency ×0.90 (30 days old)"]
    assert cands[0].score == 1.0


def test_recency_handles_future_and_naive_timestamps() -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    out = by_id(
        apply_recency(
            [Candidate("future", 1.0), Candidate("naive", 1.0)],
            {"future": now + timedelta(days=3), "naive": datetime(2024, 5, 2)},
            now,
            weight=1.0,
        )
    )
    assert out["future"].score == pytest.approx(1.0)
    assert out["naive"].score == pytest.approx(0.5)
    with pytest.raises(ValueError):
        apply_recency([], {}, now, half_life_days=0)


# -- diversification --------------------------------------------------------------------------------


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_mmr_prefers_a_diverse_item_over_a_near_duplicate() -> None:
    cands = [Candidate("a", 1.0), Candidate("a_dup", 0.95), Candidate("b", 0.9)]
    vectors = {"a": unit(1, 0, 0), "a_dup": unit(1, 0.05, 0), "b": unit(0, 1, 0)}
    assert [c.id for c in mmr(cands, vectors, 2)] == ["a", "b"]
    assert [c.id for c in mmr(cands, vectors, 3, lambda_=1.0)] == ["a", "a_dup", "b"]
    assert [c.id for c in mmr(cands, {}, 2)] == ["a", "a_dup"]  # no vectors: no redundancy
    assert mmr(cands, vectors, 2)[0] is cands[0]
    assert mmr(cands, vectors, 0) == []
    assert len(mmr(cands, vectors, 10)) == 3


def test_mmr_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        mmr([], {}, -1)
    with pytest.raises(ValueError):
        mmr([], {}, 1, lambda_=1.5)
    with pytest.raises(ValueError):
        mmr([Candidate("a", 1), Candidate("b", 0)], {"a": unit(1, 0), "b": unit(1, 0, 0)}, 2)


@given(
    scores=st.lists(st.floats(0, 1), min_size=0, max_size=15),
    k=st.integers(0, 20),
    lam=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_mmr_properties(scores: list[float], k: int, lam: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cands = [Candidate(f"c{i}", s) for i, s in enumerate(scores)]
    vectors = {c.id: rng.normal(size=8) for c in cands if rng.random() < 0.8}
    picked = mmr(cands, vectors, k, lambda_=lam)
    assert len(picked) == min(k, len(cands))
    assert len({c.id for c in picked}) == len(picked)
    top = sorted(cands, key=lambda c: -c.score)[:k]
    assert [c.id for c in mmr(cands, vectors, k, lambda_=1.0)] == [c.id for c in top]


# -- token estimate ---------------------------------------------------------------------------------


def test_estimate_tokens_examples() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("   \n\t ") == 0
    assert estimate_tokens("The quick brown fox jumps over the lazy dog.") == 10
    assert estimate_tokens("internationalization") == 5
    assert estimate_tokens("2024") == 2
    assert estimate_tokens("a_b->c") == 5
    assert estimate_tokens("日本語") == 3


@given(st.text(max_size=200), st.text(max_size=200))
def test_estimate_tokens_is_additive_over_whitespace_and_monotone(a: str, b: str) -> None:
    assert estimate_tokens(a + "\n" + b) == estimate_tokens(a) + estimate_tokens(b)
    text = a + b
    counts = [estimate_tokens(text[:i]) for i in range(0, len(text) + 1, 7)]
    assert counts == sorted(counts)


# -- packing ----------------------------------------------------------------------------------------

PROSE = (
    "Alice wrote the retrieval module. It fuses keyword and vector results. "
    "Then it expands over the graph and diversifies the list. "
) * 40


def test_first_hit_is_shortened_not_dropped() -> None:
    entities = {"big": ent("big", "Big doc", PROSE), "small": ent("small", "Small", "short text")}
    pack = pack_context([Candidate("big", 1.0), Candidate("small", 0.5)], entities, [], 60)
    assert [h.id for h in pack.hits] == ["big"]
    hit = pack.hits[0]
    assert hit.truncated and hit.text.endswith(" …")
    body = hit.text[: -len(" …")]
    assert PROSE.startswith(body) and (body.endswith(".") or PROSE[len(body)].isspace())
    assert pack.tokens_used <= 60 and pack.dropped == 1
    assert pack.tokens_used == estimate_tokens(pack.to_text())


def test_max_chars_per_hit_shortens_at_a_boundary() -> None:
    entities = {"big": ent("big", "Big doc", PROSE)}
    pack = pack_context([Candidate("big", 1.0)], entities, [], 10_000, max_chars_per_hit=300)
    hit = pack.hits[0]
    assert hit.truncated and len(hit.text) <= 300
    assert hit.text.endswith(". …")  # a sentence ends within the last 40 % of the room


def test_hits_fields_come_from_entity_and_candidate() -> None:
    e = Entity(
        id="git:commit:1",
        type="Commit",
        name="Fix bug",
        text="Fix the bug",
        source="git",
        namespace="team",
        provenance=Provenance(uri="git://repo/1"),
        properties={"sha": "1"},
    )
    cand = Candidate("git:commit:1", 0.3, reasons=["keyword #1 (bm25 3.00)"], hop=1, via="x")
    pack = pack_context([cand, Candidate("unknown", 0.2)], {e.id: e}, [], 100)
    hit = pack.hits[0]
    assert (hit.type, hit.name, hit.text, hit.namespace, hit.source) == (
        "Commit",
        "Fix bug",
        "Fix the bug",
        "team",
        "git",
    )
    assert hit.provenance == e.provenance and hit.properties == {"sha": "1"}
    assert (hit.score, hit.reasons, hit.hop, hit.truncated) == (0.3, ["keyword #1 (bm25 3.00)"], 1, False)
    assert pack.dropped == 0  # unknown ids are skipped, not counted as dropped
    assert pack.tokens_used == estimate_tokens(pack.to_text())


def test_triples_only_between_included_hits_and_deduplicated() -> None:
    entities = {i: ent(i, f"Name {i}", f"text {i}") for i in "abc"}
    relations = [
        rel("AUTHORED", "a", "b"),
        rel("AUTHORED", "a", "b", id="rel:duplicate"),
        rel("MENTIONS", "b", "a"),
        rel("MENTIONS", "a", "outside"),
        rel("MENTIONS", "c", "a"),
    ]
    cands = [Candidate("a", 1.0), Candidate("b", 0.9), Candidate("c", 0.8)]
    full = pack_context(cands, entities, relations, 1_000)
    assert [(t.src, t.type, t.dst) for t in full.triples] == [
        ("a", "AUTHORED", "b"),
        ("b", "MENTIONS", "a"),
        ("c", "MENTIONS", "a"),
    ]
    assert full.triples[0].src_name == "Name a"
    # A budget that holds two hits and one fact: c (and its triple) are out.
    two = pack_context(cands[:2], entities, [], 1_000)
    budget = two.tokens_used + estimate_tokens("Facts:") + estimate_tokens("- Name a AUTHORED Name b")
    pack = pack_context(cands, entities, relations, budget)
    assert [h.id for h in pack.hits] == ["a", "b"]
    assert all(t.src in {"a", "b"} and t.dst in {"a", "b"} for t in pack.triples)
    assert len(pack.triples) == 1 and pack.tokens_used == budget
    assert pack.tokens_used == estimate_tokens(pack.to_text())


def test_packing_is_deterministic_and_ignores_relation_order() -> None:
    entities = {i: ent(i, f"Name {i}", PROSE[: 100 * (ord(i) - 96)]) for i in "abcd"}
    relations = [rel("MENTIONS", "a", "b"), rel("LINKS_TO", "c", "a"), rel("MENTIONS", "b", "d")]
    cands = [Candidate(i, 1.0 / (n + 1)) for n, i in enumerate("abcd")]
    one = pack_context(cands, entities, relations, 150)
    two = pack_context(cands, entities, list(reversed(relations)), 150)
    assert one.model_dump() == two.model_dump()


def test_zero_budget_and_bad_arguments() -> None:
    entities = {"a": ent("a")}
    pack = pack_context([Candidate("a", 1.0)], entities, [], 0)
    assert pack.hits == [] and pack.dropped == 1 and pack.tokens_used == 0
    with pytest.raises(ValueError):
        pack_context([], entities, [], -1)
    with pytest.raises(ValueError):
        pack_context([], entities, [], 10, max_chars_per_hit=2)


words = st.sampled_from(["graph", "Alice", "commit", "retrieval", "x", "2024", "naïve", "日本", "a_b", "!?"])
texts = st.lists(words, min_size=1, max_size=120).map(" ".join) | st.text(min_size=1, max_size=400).filter(
    lambda s: s.strip() != ""
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.lists(texts, min_size=0, max_size=8),
    budget=st.integers(0, 400),
    edges=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=12),
    max_chars=st.integers(8, 600),
    char_counter=st.booleans(),
)
def test_packing_never_exceeds_budget(
    docs: list[str], budget: int, edges: list[tuple[int, int]], max_chars: int, char_counter: bool
) -> None:
    entities = {f"e{i}": ent(f"e{i}", f"Entity {i}", text) for i, text in enumerate(docs)}
    cands = [Candidate(f"e{i}", 1.0 / (i + 1)) for i in range(len(docs))]
    relations = [rel("MENTIONS", f"e{a}", f"e{b}") for a, b in edges if a < len(docs) and b < len(docs)]
    count = len if char_counter else estimate_tokens
    pack = pack_context(cands, entities, relations, budget, max_chars_per_hit=max_chars, count_tokens=count)
    assert pack.tokens_used <= budget
    assert [h.id for h in pack.hits] == [c.id for c in cands[: len(pack.hits)]]
    assert pack.dropped == len(cands) - len(pack.hits)
    included = {h.id for h in pack.hits}
    assert all(t.src in included and t.dst in included for t in pack.triples)
    assert len({(t.src, t.type, t.dst) for t in pack.triples}) == len(pack.triples)
    assert all(h.text.strip() and len(h.text) <= max(max_chars, 0) for h in pack.hits)
    if not char_counter:
        assert pack.tokens_used == estimate_tokens(pack.to_text())
    if cands and budget >= 60:
        assert pack.hits  # the header leaves room for some text: the first hit is shortened, not lost
