"""Time words in a query: the period is read deterministically (absolute dates, months, years,
relative expressions), and search favours what is dated in it, saying why."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aesoperator.engine.query_time import time_window
from aesoperator.engine.search_settings import SearchSettings
from aesoperator.errors import ConfigError

NOW = datetime(2026, 12, 6, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "inside", "outside"),
    [
        (
            "Who did Maria have dinner with on May 3, 2023?",
            datetime(2023, 5, 3, 20, tzinfo=UTC),
            datetime(2023, 5, 4, tzinfo=UTC),
        ),
        (
            "What did Gina find on 1 February, 2023?",
            datetime(2023, 2, 1, tzinfo=UTC),
            datetime(2023, 1, 31, tzinfo=UTC),
        ),
        ("the 2023-05-08 incident", datetime(2023, 5, 8, 9, tzinfo=UTC), datetime(2023, 5, 9, tzinfo=UTC)),
        ("What did she donate in December 2023?", datetime(2023, 12, 31, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)),
        (
            "How often did they go to the beach in 2023?",
            datetime(2023, 7, 1, tzinfo=UTC),
            datetime(2022, 12, 31, tzinfo=UTC),
        ),
        ("When did Melanie go camping in June?", datetime(2019, 6, 30, tzinfo=UTC), datetime(2023, 7, 1, tzinfo=UTC)),
        ("what broke yesterday", NOW - timedelta(days=1), NOW),
        ("what did we decide last week", NOW - timedelta(days=6), NOW - timedelta(days=30)),
        ("the call 3 days ago", NOW - timedelta(days=3), NOW - timedelta(days=6)),
    ],
)
def test_the_period_a_query_names(query: str, inside: datetime, outside: datetime) -> None:
    window = time_window(query, NOW)
    assert window is not None, query
    assert window.holds(inside) and not window.holds(outside), (query, window)


@pytest.mark.parametrize("query", ["May I ask about the rota?", "how is the index kept consistent", "version 2023.1.4"])
def test_no_period_where_none_is_named(query: str) -> None:
    assert time_window(query, NOW) is None


def test_time_boost_is_checked() -> None:
    with pytest.raises(ConfigError, match="time_boost"):
        SearchSettings(time_boost=-1)


def test_recall_favours_what_was_said_in_the_named_month(make_engine: Callable[..., Any]) -> None:
    from aesoperator.graph_schema import Episode

    engine = make_engine()
    said = [
        ("We went to the lake for a swim with the kids.", datetime(2023, 3, 12, tzinfo=UTC)),
        ("Another swim at the lake with the kids today.", datetime(2023, 7, 9, tzinfo=UTC)),
        ("The kids loved the swim at the lake again.", datetime(2023, 10, 1, tzinfo=UTC)),
    ]
    stored = engine.memory.remember_many(
        [Episode(content=t, agent_id="mel", session_id=f"s{i}", created_at=w) for i, (t, w) in enumerate(said)],
        detect_mentions=False,
    )
    query = "Where did Mel swim with the kids in July 2023?"
    off = engine.search(query, k=3, hops=0, types=["Episode"], preset=SearchSettings(time_boost=0.0))
    on = engine.search(query, k=3, hops=0, types=["Episode"], preset=SearchSettings(time_boost=1.0))
    assert on.hits[0].id == stored[1].id
    assert "dated in the period the query names (July 2023)" in on.hits[0].reasons
    assert "time" in on.timings_ms and "time" not in off.timings_ms
    assert on.hits[0].score == pytest.approx(2 * next(h.score for h in off.hits if h.id == stored[1].id))
