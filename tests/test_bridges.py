"""Multi-step retrieval through bridge entities: an entity the best hit names and the query does
not is asked for again with the part of the query that hit leaves open, which finds the second
passage of a two-hop question, and the hit says which entity of which passage found it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aesoperator.engine.bridges import Bridge, BridgePass, bridge_scores, pick_bridges, residual_query
from aesoperator.engine.keyword_index import KeywordIndex
from aesoperator.engine.search_settings import SearchSettings
from aesoperator.errors import ConfigError
from aesoperator.graph_schema.models import Entity
from aesoperator.ingest.documents import DocumentInput


def ent(eid: str, name: str, type_: str) -> Entity:
    return Entity(id=eid, type=type_, name=name, text=name)


def test_bridges_are_specific_entities_the_query_lacks() -> None:
    entities = {
        "k1": ent("k1", "Steve Hillage", "Person"),
        "k2": ent("k2", "1978", "DateTime"),
        "k3": ent("k3", "Green", "Product"),
        "k4": ent("k4", "Virgin Records", "Organization"),
        "k5": ent("k5", "steve hillage", "Person"),
    }
    mentions = {"a": ["k2", "k3", "k1", "k4"], "b": ["k5", "k4"]}
    got = pick_bridges("Who is the spouse of the Green performer?", [("a", 2.0), ("b", 1.0)], mentions, entities, 5)
    assert [(b.name, b.hit_id, b.hit_weight) for b in got] == [
        ("Virgin Records", "a", 1.0),  # longer names first within a hit
        ("Steve Hillage", "a", 1.0),
    ]  # no date, nothing the query already names, each name once
    assert len(pick_bridges("q", [("a", 2.0)], mentions, entities, 1)) == 1


def test_bridge_scores_keep_each_items_best_pass() -> None:
    strong, weak = Bridge("k1", "X", "a", 1.0), Bridge("k2", "Y", "b", 0.5)
    passes = [BridgePass(strong, [("d1", 10.0), ("d2", 5.0)]), BridgePass(weak, [("d2", 8.0), ("d3", 2.0)])]
    ranked, via = bridge_scores(passes)
    assert ranked == [("d1", 1.0), ("d2", 0.5), ("d3", 0.125)]
    assert via["d2"] is strong and via["d3"] is weak


def test_a_pass_on_a_fixed_scale_lends_little_when_its_best_match_is_weak() -> None:
    bridge = Bridge("k1", "X", "a", 1.0)
    weak_pass = BridgePass(bridge, [("d1", 4.0), ("d2", 2.0)], scale=20.0, weight=0.5)
    assert bridge_scores([weak_pass])[0] == [("d1", 0.1), ("d2", 0.05)]
    capped = BridgePass(bridge, [("d1", 30.0)], scale=20.0)  # never more than the hit's own weight
    assert bridge_scores([capped])[0] == [("d1", 1.0)]
    assert bridge_scores([BridgePass(bridge, [("d1", 4.0)], scale=20.0, weight=0.0)])[0] == []


def test_the_residual_query_is_what_the_hit_leaves_open() -> None:
    hit = "Green is a 1978 album by the English guitarist Steve Hillage."
    assert residual_query("Who is the spouse of the Green performer?", hit) == "Who spouse of performer"
    assert residual_query("green album", hit) == ""


def test_specificity_and_score_ceiling_of_the_keyword_index(tmp_path: Path) -> None:
    from aesoperator.engine.stores.embedded import EmbeddedGraphStore

    texts = [f"Passage {i} mentions the North and a method." for i in range(40)]
    texts += ["Steve Hillage married Miquette Giraudy.", "Steve Hillage played in Gong."]
    store = EmbeddedGraphStore(tmp_path / "g.db")
    try:
        store.upsert([Entity(id=f"d{i}", type="Document", name=f"d{i}", text=t) for i, t in enumerate(texts)])
        index = KeywordIndex(tmp_path / "kw")
        index.sync(store)
        common, rare = index.specificity("North"), index.specificity("Steve Hillage")
        assert 0.0 <= common < 0.05 < 0.75 < rare <= 1.0  # in 40 of 42 items vs in 2 of them
        assert index.specificity("Miquette") == pytest.approx(1.0)  # one item holds it
        assert index.specificity("zzzz") == 0.0
        ceiling = index.score_ceiling("Hillage Giraudy")
        best = index.search("Hillage Giraudy", 1)[0]
        assert best[0] == "d40" and 0 < best[1] < ceiling
        assert index.score_ceiling("zzzz") == 0.0
    finally:
        store.close()


def test_bridge_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="bridge_hits"):
        SearchSettings(bridge_hits=0)
    with pytest.raises(ConfigError, match="bridge_query"):
        SearchSettings(bridge_query="all")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bridge_depth"):
        SearchSettings(bridge_depth=0)


def test_search_finds_the_second_hop_through_a_bridge(make_engine: Callable[..., Any]) -> None:
    engine = make_engine()
    docs = [
        DocumentInput(title="Green", text="Green is a 1978 album by the English guitarist Steve Hillage."),
        DocumentInput(
            title="Hillage biography", text="Steve Hillage married Miquette Giraudy, his partner in System 7."
        ),
    ]
    docs += [
        DocumentInput(
            title=f"Album {i}", text=f"Album {i} is a record by a performer from Leeds, released in 19{60 + i}."
        )
        for i in range(10)
    ]
    engine.add_documents(docs, source="m")
    query = "Who is the spouse of the performer of Green?"
    off = engine.search(query, k=5, hops=1, preset=SearchSettings(bridge_weight=0.0))
    on = engine.search(query, k=5, hops=1, preset=SearchSettings(bridge_weight=1.0))
    assert "bridge" in on.timings_ms and "bridge" not in off.timings_ms
    assert on.hits[0].id == "m:doc:Green"
    second = next(h for h in on.hits if h.id == "m:doc:Hillage biography")
    assert "found via 'Steve Hillage', named in 'Green'" in second.reasons
    before = {h.id: (rank, h.score) for rank, h in enumerate(off.hits)}
    rank_on = [h.id for h in on.hits].index(second.id)
    assert rank_on <= before.get(second.id, (99, 0.0))[0] and second.score > before.get(second.id, (99, 0.0))[1]


def test_scaled_channels_keep_their_scores_in_fusion() -> None:
    """Min-max scaling would give the last of a two-item list nothing; a channel scoring on [0, 1]
    against a fixed zero is taken as it is."""
    from aesoperator.engine.retrieval import score_fusion

    channels = {"keyword": [("a", 4.0), ("b", 2.0), ("c", 1.0)], "bridge": [("a", 1.0), ("c", 0.5)]}
    plain = {c.id: c.score for c in score_fusion(channels)}
    scaled = {c.id: c.score for c in score_fusion(channels, scaled=("bridge",))}
    assert plain["c"] == pytest.approx(0.0) and scaled["c"] == pytest.approx(0.5)
    assert scaled["a"] == pytest.approx(2.0) and scaled["b"] == pytest.approx(1 / 3)
    assert [c.id for c in score_fusion(channels, scaled=("bridge",), limit=2)] == ["a", "c"]
