"""Multi-step retrieval through bridge entities: an entity the best hit names and the query does
not is asked for again with the query, which finds the second passage of a two-hop question, and
the hit says which entity of which passage found it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aesoperator.engine.bridges import Bridge, bridge_scores, pick_bridges
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
    ranked, via = bridge_scores([(strong, [("d1", 10.0), ("d2", 5.0)]), (weak, [("d2", 8.0), ("d3", 2.0)])])
    assert ranked == [("d1", 1.0), ("d2", 0.5), ("d3", 0.125)]
    assert via["d2"] is strong and via["d3"] is weak


def test_bridge_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="bridge_hits"):
        SearchSettings(bridge_hits=0)


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
