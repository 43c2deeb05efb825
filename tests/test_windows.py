"""Conversation windows: a turn gains a share of its best neighbour's score, neighbours of strong
hits come in just below them with a reason, and the stage runs (and is timed) only when on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from aesoperator.engine.candidates import Candidate
from aesoperator.engine.search_settings import SearchSettings
from aesoperator.engine.windows import widen
from aesoperator.errors import ConfigError
from aesoperator.graph_schema import utcnow


def test_neighbours_of_a_strong_hit_come_in_below_it() -> None:
    cands = [Candidate("t5", 1.0), Candidate("x", 0.45), Candidate("t9", 0.2)]
    neighbours = {"t5": ["t4", "t6"], "t4": ["t3", "t5"], "t6": ["t5", "t7"], "t9": ["t8", "t10"]}
    out = widen(cands, neighbours, 0.5, {"t5": "turn five"})
    scores = {c.id: round(c.score, 6) for c in out}
    assert scores["t5"] == 1.0 and scores["t6"] == 0.5 and scores["t4"] == 0.5
    assert scores["x"] == 0.45 and scores["t8"] == 0.1
    assert [c.id for c in out][:3] == ["t5", "t4", "t6"]
    t6 = next(c for c in out if c.id == "t6")
    assert t6.reasons == ["next to 'turn five' in its conversation"] and t6.via == "t5"
    # a turn between two hits gains from the better one only
    between = widen([Candidate("a", 1.0), Candidate("c", 0.8)], {"a": ["b"], "c": ["b"]}, 0.5)
    assert {c.id: c.score for c in between}["b"] == 0.5
    assert widen(cands, neighbours, 0.0) == sorted(cands, key=lambda c: -c.score)


def test_window_weight_is_checked() -> None:
    with pytest.raises(ConfigError, match="window_weight"):
        SearchSettings(window_weight=1.5)


def test_recall_returns_the_reply_to_the_matching_turn(make_engine: Callable[..., Any]) -> None:
    """The reply names no word of the question; with windows on it is found next to the question
    it answers, and said to be."""
    from aesoperator.graph_schema import Episode

    engine = make_engine()
    when = utcnow() - timedelta(days=2)
    lines = [
        "Morning! Did you sleep well?",
        "I finally planted the flowers my aunt sent me. What kind are they, do you know?",
        "Alstroemeria. Bright orange.",
        "Nice. I'm off to the gym now.",
        "What kind of music does your aunt like?",
        "My aunt sent a postcard from Lisbon last week.",
        "What kind of car did you buy in the end?",
        "The flowers at the market were expensive today.",
    ] + [f"Random chatter number {i} about the weather and traffic." for i in range(8)]
    turns = [Episode(content=t, agent_id="pat", session_id="s1", created_at=when) for t in lines]
    stored = engine.memory.remember_many(turns, detect_mentions=False)
    reply = stored[2].id
    query = "what kind of flowers did the aunt send"
    off = engine.search(query, k=3, hops=0, types=["Episode"], preset=SearchSettings(window_weight=0.0))
    on = engine.search(query, k=3, hops=0, types=["Episode"], preset=SearchSettings(window_weight=0.5))
    assert off.hits[0].id == on.hits[0].id == stored[1].id
    assert reply not in [h.id for h in off.hits]
    found = next(h for h in on.hits if h.id == reply)
    assert any("next to" in r for r in found.reasons)
    assert "window" in on.timings_ms and "window" not in off.timings_ms
