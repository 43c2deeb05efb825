"""The search pipeline's orchestration: named presets, the stage timer, the stages in order."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aesoperator import ContextEngine, SearchSettings
from aesoperator.engine.context import EngineCore
from aesoperator.engine.search import SEARCH_PRESETS, SearchRequest, StageTimer, channel_candidates
from aesoperator.engine.search_lexical import PendingLexical
from aesoperator.engine.search_request import LEXICAL_BESIDE_FROM_MS, LexicalCost
from aesoperator.errors import ConfigError, SchemaError
from aesoperator.graph_schema import Entity, Relation

FIXTURE = Path(__file__).parent / "fixtures" / "docs"


@pytest.fixture
def engine(make_engine: Callable[..., Any], tmp_path: Path) -> Any:
    folder = tmp_path / "bakery"
    shutil.copytree(FIXTURE, folder)
    eng = make_engine()
    eng.ingest_path(folder)
    return eng


def test_the_facade_is_the_engine_plus_ingest(engine: Any) -> None:
    assert isinstance(engine, ContextEngine) and isinstance(engine, EngineCore)
    assert not hasattr(EngineCore, "ingest_path") and not hasattr(EngineCore, "ingest_source")


def test_presets_are_named_valid_and_listed() -> None:
    names = SearchSettings.preset_names()
    assert {"default", "multi_hop", "direct", "rank_fusion", "query_aware"} <= set(names)
    assert SearchSettings.preset("default") == SearchSettings()
    assert SearchSettings.preset("multi_hop").hops == 2
    assert SearchSettings.preset("direct").hops == 0
    assert SearchSettings.preset("rank_fusion").fusion == "rrf"
    assert all(p.description and p.study_name for p in SEARCH_PRESETS.values())
    with pytest.raises(ConfigError, match="multi_hop"):
        SearchSettings.preset("nope")
    with pytest.raises(ConfigError):
        SearchSettings(hops=4)
    assert SearchSettings().with_changes(keyword_weight=2.0).keyword_weight == 2.0


def test_a_preset_by_name_equals_its_settings_and_hops(engine: Any) -> None:
    engine.upsert(
        [
            Entity(id="p:tobias", type="Person", name="Tobias Lindqvist", text="Tobias Lindqvist, head baker"),
            Entity(id="c:rye", type="Concept", name="rye sourdough", text="A dense loaf"),
        ],
        [Relation(type="AUTHORED", src="p:tobias", dst="c:rye")],
    )
    direct = engine.search("Tobias Lindqvist", k=5, preset="direct")
    assert "expand" not in direct.timings_ms
    assert [h.id for h in direct.hits] == [h.id for h in engine.search("Tobias Lindqvist", k=5, hops=0).hits]
    two = engine.search("Tobias Lindqvist", k=5, preset="multi_hop")
    assert [h.id for h in two.hits] == [h.id for h in engine.search("Tobias Lindqvist", k=5, hops=2).hits]
    # An explicit depth wins over the preset's.
    assert "expand" not in engine.search("Tobias Lindqvist", k=5, hops=0, preset="multi_hop").timings_ms
    # A SearchSettings works as a preset too, and the engine's own settings are untouched.
    rrf = engine.search("Tobias Lindqvist", k=5, hops=0, preset=SearchSettings(fusion="rrf", rrf_k=10))
    assert rrf.hits[0].score < 1.0 and engine.search_settings == SearchSettings()
    with pytest.raises(ConfigError):
        engine.search("Tobias", preset="nope")


def test_stage_timings_cover_every_stage_that_ran(engine: Any) -> None:
    result = engine.search("who runs the night shift?", k=5, hops=1, mmr_lambda=0.5)
    assert list(result.timings_ms)[:1] == ["index_sync"]
    # a small graph's lexical channels are quick: they run on the search's own thread
    assert {"index_sync", "embed", "vector", "keyword", "name", "fuse", "load", "expand", "rerank", "pack"} <= set(
        result.timings_ms
    )
    assert all(ms >= 0 for ms in result.timings_ms.values())
    keyword_only = engine.search("Marguerite", k=3, channels=("keyword",), hops=0)
    assert "embed" not in keyword_only.timings_ms and "vector" not in keyword_only.timings_ms


def test_the_stage_timer_keeps_nested_stages_disjoint() -> None:
    timer = StageTimer()
    with timer.stage("outer"):
        time.sleep(0.02)
        with timer.stage("inner"):
            time.sleep(0.03)
    with timer.stage("outer"):
        pass
    assert list(timer.ms) == ["inner", "outer"]
    assert timer.ms["inner"] >= 30
    assert 20 <= timer.ms["outer"] < 20 + timer.ms["inner"]
    assert all(isinstance(v, float) for v in timer.rounded().values())


@pytest.mark.parametrize(
    "bad",
    [{"query": " "}, {"query": "x" * 10_001}, {"k": 0}, {"hops": 4}, {"channels": ("vector", "graph")}],
)
def test_a_request_is_validated_when_made(bad: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        SearchRequest(**{"query": "ok", **bad})


def test_lexical_channels_beside_the_vector_channel_give_the_same_hits(engine: Any) -> None:
    """The keyword and name channels run on a worker while the query is embedded; what they find
    is what they find on the search's own thread, and an error they raise reaches the caller."""
    slow = LexicalCost()
    slow.record(LEXICAL_BESIDE_FROM_MS * 10)  # as if the channels had been taking long
    sources = dataclasses.replace(engine._search_sources(), lexical_cost=slow)
    for query in ("who runs the night shift?", "Marguerite", "Tobias Lindqvist"):
        request = SearchRequest(query=query, k=5)
        timer = StageTimer()
        beside = channel_candidates(sources, request, timer)
        assert "keyword" in timer.ms and "name" not in timer.ms  # the search only waited
        quick = dataclasses.replace(sources, lexical_cost=LexicalCost())
        timer = StageTimer()
        inline = channel_candidates(quick, request, timer)
        assert {"keyword", "name"} <= set(timer.ms)  # on the search's own thread
        assert beside.ranked == inline.ranked and beside.linked == inline.linked
        assert beside.ranked["vector"] and "keyword" in beside.ranked
    assert slow.mean_ms is not None and slow.mean_ms < LEXICAL_BESIDE_FROM_MS * 10  # the worker recorded its time

    class Broken:
        def __call__(self, _seq: int) -> Any:
            raise RuntimeError("keyword index unavailable")

    broken = dataclasses.replace(sources, keyword_index=Broken())
    pending = PendingLexical.start(broken, SearchRequest(query="anything", k=5), 0)
    with pytest.raises(RuntimeError, match="keyword index unavailable"):
        pending.wait(StageTimer())


def test_lexical_cost_is_a_weighted_mean_of_recent_searches() -> None:
    cost = LexicalCost()
    assert cost.mean_ms is None and not cost.worth_a_worker()
    cost.record(1.0)
    assert cost.mean_ms == 1.0 and not cost.worth_a_worker()
    for _ in range(20):
        cost.record(13.0)
    assert cost.worth_a_worker()
    for _ in range(20):
        cost.record(0.5)
    assert not cost.worth_a_worker()
