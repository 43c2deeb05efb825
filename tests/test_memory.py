"""Agent memory: remember, recall, links to entities, sessions, and survival across restarts."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from aesoperator.graph_schema import Entity, utcnow


def test_remember_links_mentions_and_recall_finds_it(make_engine: Callable[..., Any]) -> None:
    engine = make_engine()
    engine.upsert([Entity(id="p:ada", type="Person", name="Ada Okafor", text="Ada Okafor, database admin")])
    ep = engine.remember("Ada Okafor said the nightly backup moved to 02:00 UTC", agent_id="ops", session_id="s1")
    engine.remember("The coffee machine on floor 3 is broken", agent_id="ops", session_id="s1")
    engine.remember("Lunch order: two pizzas", agent_id="ops", session_id="s2")
    assert ep.mentions == ["p:ada"]
    result = engine.recall("when does the backup run?", agent_id="ops", k=2)
    assert result.episodes[0].episode.id == ep.id
    assert [e.id for e in result.episodes[0].entities] == ["p:ada"]
    sub = engine.neighbors([ep.id], relation_types=["MENTIONS"], direction="out")
    assert "p:ada" in sub.entities


def test_recall_is_per_agent_and_per_session(make_engine: Callable[..., Any]) -> None:
    engine = make_engine()
    engine.remember("the deploy key rotates on Fridays", agent_id="alice", session_id="a1")
    engine.remember("the deploy key is in the vault", agent_id="bob", session_id="b1")
    engine.remember("deploy freeze during the holidays", agent_id="alice", session_id="a2")
    alice = engine.recall("deploy key", agent_id="alice", k=5)
    assert alice.episodes and all(r.episode.agent_id == "alice" for r in alice.episodes)
    only_a2 = engine.recall("deploy", agent_id="alice", session_id="a2", k=5)
    assert [r.episode.session_id for r in only_a2.episodes] == ["a2"]


def test_recency_prefers_the_newer_of_two_similar_memories(make_engine: Callable[..., Any]) -> None:
    engine = make_engine()
    old = engine.remember("the team standup is at 9:30", agent_id="a", created_at=utcnow() - timedelta(days=200))
    new = engine.remember("the team standup is at 10:00", agent_id="a", created_at=utcnow())
    top = engine.recall("what time is the team standup", agent_id="a", k=2).episodes
    assert [r.episode.id for r in top] == [new.id, old.id]


def test_memory_survives_a_restart(make_engine: Callable[..., Any], tmp_path: Path) -> None:
    data = tmp_path / "persist"
    first = make_engine(data)
    ep = first.remember("the staging database password was rotated by Kim", agent_id="ops", session_id="s9")
    first.close()
    second = make_engine(data)
    result = second.recall("who rotated the staging password?", agent_id="ops")
    assert result.episodes and result.episodes[0].episode.id == ep.id
    timeline = second.memory.episodes("ops")
    assert [e.id for e in timeline] == [ep.id]


def test_remember_many_chains_session_turns_and_continues_the_chain(make_engine: Callable[..., Any]) -> None:
    from aesoperator.graph_schema import Episode

    engine = make_engine()
    t0 = utcnow() - timedelta(hours=1)
    turns = [
        Episode(
            content=f"turn {i} about the garden", agent_id="conv", session_id="s1", created_at=t0 + timedelta(minutes=i)
        )
        for i in range(5)
    ]
    stored = engine.memory.remember_many(turns, detect_mentions=False)
    later = engine.remember(
        "turn 5 about the garden", agent_id="conv", session_id="s1", created_at=t0 + timedelta(minutes=9)
    )
    chain = [e.id for e in stored] + [later.id]
    for prev, nxt in itertools.pairwise(chain):
        sub = engine.neighbors([prev], relation_types=["NEXT"], direction="out")
        assert nxt in sub.entities, f"{prev} is not followed by {nxt}"
    assert [e.id for e in engine.memory.episodes("conv", session_id="s1")] == chain


def test_turns_of_one_moment_keep_their_given_order(make_engine: Callable[..., Any]) -> None:
    """A transcript's session gives all its turns one time; the NEXT chain follows the order the
    turns were given in (D1:2 after D1:1, not D1:10), not the order of their ids."""
    from aesoperator.graph_schema import Episode

    engine = make_engine()
    when = utcnow() - timedelta(days=3)
    keys = [f"D1:{i}" for i in range(1, 13)]
    turns = [Episode(id=f"c/{k}", content=f"turn {k}", agent_id="c", session_id="s", created_at=when) for k in keys]
    stored = engine.memory.remember_many(turns, detect_mentions=False)
    for prev, nxt in itertools.pairwise([e.id for e in stored]):
        sub = engine.neighbors([prev], relation_types=["NEXT"], direction="out")
        assert list(sub.entities) == [prev, nxt], f"{prev} is followed by {sorted(sub.entities)}"
