"""The walk channel: personalised PageRank over items and the entities they mention finds the
bridge passage that shares a specific entity with the first-stage hits, says which entity it came
through, spreads little through common names, and is reported in the stage timings."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from aesoperator.engine.entity_walk import walk_items
from aesoperator.engine.search_settings import SearchSettings
from aesoperator.engine.stores.base import Links
from aesoperator.errors import ConfigError
from aesoperator.ingest.documents import DocumentInput


def is_item(node: str) -> bool:
    return not node.startswith("k:")


def test_a_shared_specific_entity_outranks_a_shared_common_one() -> None:
    # seed s mentions k:rare (also in bridge b) and k:year (also in 30 other items)
    edges = [("s", "k:rare", "MENTIONS"), ("b", "k:rare", "MENTIONS"), ("s", "k:year", "MENTIONS")]
    edges += [(f"o{i}", "k:year", "MENTIONS") for i in range(30)]
    hops = {"s": 0, "k:rare": 1, "k:year": 1, "b": 2, **{f"o{i}": 2 for i in range(30)}}
    result = walk_items({"s": 1.0}, {}, Links(hops=hops, edges=edges), is_item)
    ranked = [i for i, _ in result.ranked]
    assert ranked[0] == "s" and ranked[1] == "b"
    scores = dict(result.ranked)
    assert scores["b"] > 10 * scores["o0"]
    assert result.bridges["b"] == ("k:rare", "s")
    assert "s" not in result.bridges


def test_an_entity_the_query_names_brings_its_items() -> None:
    edges = [("x", "k:q", "MENTIONS"), ("s", "k:other", "MENTIONS")]
    result = walk_items({"s": 1.0}, {"k:q": 1.0}, Links(hops={"s": 0, "k:q": 0}, edges=edges), is_item)
    assert "x" in dict(result.ranked)
    assert result.bridges["x"] == ("k:q", None)
    assert walk_items({}, {}, Links(), is_item).ranked == []


def test_walk_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="walk_alpha"):
        SearchSettings(walk_alpha=1.0)
    with pytest.raises(ConfigError, match="walk_weight"):
        SearchSettings(walk_weight=-1)


def test_search_finds_the_bridge_passage_through_an_entity(make_engine: Callable[..., object]) -> None:
    engine = make_engine()
    docs = [
        DocumentInput(title="Founding", text="Maria Okafor founded the Zentrix Foundry in 1998 after leaving Siemens."),
        DocumentInput(title="Site", text="The Zentrix Foundry runs its main works in Tromsø, Norway."),
    ]
    docs += [
        DocumentInput(title=f"Filler {i}", text=f"Weather report {i}: rain and wind along the coast.") for i in range(8)
    ]
    engine.add_documents(docs, source="w")  # type: ignore[attr-defined]
    query = "Where is the main plant of the company Maria Okafor founded?"
    # one seed: the walk starts at the best first-stage hit alone
    off = engine.search(query, k=5, hops=1, preset=SearchSettings(walk_weight=0.0, bridge_weight=0.0))  # type: ignore[attr-defined]
    on = engine.search(query, k=5, hops=1, preset=SearchSettings(walk_weight=1.0, walk_seeds=1, bridge_weight=0.0))  # type: ignore[attr-defined]
    assert "walk" in on.timings_ms and "walk" not in off.timings_ms
    assert on.hits[0].id == "w:doc:Founding"
    site = next(h for h in on.hits if h.id == "w:doc:Site")
    assert any(re.search(r"found via '(the )?Zentrix Foundry', named in 'Founding'", r) for r in site.reasons), (
        site.reasons
    )
    off_ids = [h.id for h in off.hits]
    assert [h.id for h in on.hits].index("w:doc:Site") <= (
        off_ids.index("w:doc:Site") if "w:doc:Site" in off_ids else 99
    )
