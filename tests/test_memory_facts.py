"""Memory that stays true: facts from remembered episodes, supersede on single-valued predicates,
`as_of`, restatements, out-of-order imports, corrections, history, duplicates, compaction and TTL.

The supersede tests run on both stores (the timeline read is a store query)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aesoperator.graph_schema.facts import SUPERSEDED_BY

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(params=["embedded", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def engine(request: pytest.FixtureRequest, tmp_path: Path, embedder: Any) -> Iterator[Any]:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    settings = Settings(data_dir=tmp_path / "data")
    if request.param == "embedded":
        built = ContextEngine.open(settings=settings, embedder=embedder)
    else:
        built = ContextEngine(request.getfixturevalue("neo4j_store_factory")(), settings=settings, embedder=embedder)
    try:
        yield built
    finally:
        built.close()


def _alice(engine: Any) -> str:
    (alice,) = [i for i in engine.store.name_lookup(["Alice"], types=["Person"]).get("alice", [])]
    return str(alice)


def test_a_move_supersedes_the_old_home_and_as_of_still_answers_with_it(engine: Any) -> None:
    paris = engine.remember(
        "I live in Paris, near the Louvre.", agent_id="bot", session_id="s1", speaker="Alice", created_at=T0
    )
    engine.remember(
        "The weather was lovely today.",
        agent_id="bot",
        session_id="s1",
        speaker="Alice",
        created_at=T0 + 60 * timedelta(seconds=1),
    )
    berlin = engine.remember(
        "I just moved to Berlin!", agent_id="bot", session_id="s2", speaker="Alice", created_at=T0 + 30 * DAY
    )

    facts = engine.store.outgoing_relations([_alice(engine)], ["LIVES_IN"])
    old, new = facts
    assert [engine.get_entities([f.dst])[0].name for f in facts] == ["Paris", "Berlin"]
    assert old.valid_to == T0 + 30 * DAY and old.properties["superseded_by"] == new.id and new.valid_to is None
    assert old.properties["evidence"] == [paris.id] and new.properties["evidence"] == [berlin.id]
    links = engine.neighbors([paris.id], relation_types=[SUPERSEDED_BY], direction="out").entities
    assert berlin.id in links

    now = engine.recall("Where does Alice live?", agent_id="bot", k=5)
    ids = [r.episode.id for r in now.episodes]
    assert ids[0] == berlin.id and paris.id not in ids
    assert [(f.predicate, f.object_name, f.current) for f in now.episodes[0].facts] == [("LIVES_IN", "Berlin", True)]

    then = engine.recall("Where does Alice live?", agent_id="bot", k=5, as_of=T0 + 10 * DAY)
    (old_ep,) = [r for r in then.episodes if r.episode.id == paris.id]
    assert berlin.id not in [r.episode.id for r in then.episodes]
    assert old_ep.superseded_by == berlin.id and old_ep.retired_reason == "superseded"
    assert old_ep.valid_to == T0 + 30 * DAY and any(berlin.id in why for why in old_ep.reasons)
    assert [(f.object_name, f.current) for f in old_ep.facts] == [("Paris", True)]  # it held then

    # search and graph walks see the same: now without the old home, as_of with it (and why)
    assert paris.id not in [h.id for h in engine.search("Alice live Paris Louvre", k=10).hits]
    hit = next(h for h in engine.search("Alice live Paris Louvre", k=10, as_of=T0 + DAY).hits if h.id == paris.id)
    assert any("superseded" in why and berlin.id in why for why in hit.reasons)
    homes = engine.neighbors([_alice(engine)], relation_types=["LIVES_IN"], direction="out")
    assert [e.name for e in homes.entities.values() if e.type != "Person"] == ["Berlin"]
    before = engine.neighbors([_alice(engine)], relation_types=["LIVES_IN"], direction="out", as_of=T0 + DAY)
    assert [e.name for e in before.entities.values() if e.type != "Person"] == ["Paris"]


def test_restatements_add_evidence_and_late_imports_land_in_time_order(engine: Any) -> None:
    berlin = engine.remember(
        "I moved to Berlin.", agent_id="bot", session_id="s2", speaker="Alice", created_at=T0 + 30 * DAY
    )
    # an older conversation imported afterwards: its fact ends where the newer one starts
    paris = engine.remember("I live in Paris.", agent_id="bot", session_id="s1", speaker="Alice", created_at=T0)
    again = engine.remember(
        "I live in Berlin now, I love it.", agent_id="bot", session_id="s3", speaker="Alice", created_at=T0 + 60 * DAY
    )
    facts = engine.store.outgoing_relations([_alice(engine)], ["LIVES_IN"])
    assert [(f.properties["evidence"], f.valid_to) for f in facts] == [
        ([paris.id], T0 + 30 * DAY),
        ([berlin.id, again.id], None),
    ]
    stored = {e.id: e for e in engine.get_entities([paris.id, berlin.id, again.id])}
    assert stored[paris.id].properties["retired_reason"] == "superseded"
    assert stored[paris.id].properties["superseded_by"] == berlin.id
    assert "retired_reason" not in stored[berlin.id].properties and "retired_reason" not in stored[again.id].properties


def test_job_changes_and_roles_supersede_per_subject_and_predicate(engine: Any) -> None:
    engine.remember("I work at Acme as a data analyst.", agent_id="bot", speaker="Alice", created_at=T0)
    engine.remember("Bob works at Initech.", agent_id="bot", speaker="Alice", created_at=T0 + DAY)
    engine.remember("I joined Stripe as a product manager.", agent_id="bot", speaker="Alice", created_at=T0 + 9 * DAY)
    history = engine.memory_history("Alice")
    held = {(e.predicate, e.object_name): e.current for e in history.entries}
    assert held == {
        ("WORKS_AT", "Acme"): False,
        ("WORKS_AT", "Stripe"): True,
        ("HAS_ROLE", "data analyst"): False,
        ("HAS_ROLE", "product manager"): True,
    }
    bob = engine.memory_history("Bob")
    assert [(e.predicate, e.object_name, e.current) for e in bob.entries] == [("WORKS_AT", "Initech", True)]
    assert all(e.evidence and e.evidence[0].content.startswith("Alice: ") for e in history.entries)


def test_with_supersede_off_facts_only_add_up(make_engine: Callable[..., Any]) -> None:
    engine = make_engine(memory_supersede=False)
    paris = engine.remember("I live in Paris.", agent_id="bot", speaker="Alice", created_at=T0)
    engine.remember("I moved to Berlin.", agent_id="bot", speaker="Alice", created_at=T0 + DAY)
    assert all(e.current for e in engine.memory_history("Alice").entries)
    assert paris.id in [r.episode.id for r in engine.recall("where does Alice live", agent_id="bot", k=5).episodes]


def test_update_memory_corrects_with_a_new_version_and_keeps_history(make_engine: Callable[..., Any]) -> None:
    engine = make_engine()
    engine.remember("I live in Paris.", agent_id="bot", session_id="s1", speaker="Alice", created_at=T0)
    lyon = engine.remember(
        "I moved to Lyon and I work at Acme.",
        agent_id="bot",
        session_id="s2",
        speaker="Alice",
        created_at=T0 + 30 * DAY,
    )
    fixed_at = T0 + 40 * DAY
    result = engine.update_memory(lyon.id, "Sorry, I moved to Marseille, not Lyon.", at=fixed_at)
    assert result.replaced == lyon.id and result.episode.metadata["corrects"] == lyon.id
    assert len(result.retracted_facts) == 1  # WORKS_AT Acme: only the old version stated it

    versions = engine.memory_history(lyon.id)
    episodes = [e for e in versions.entries if e.kind == "episode"]
    assert [(e.version, e.current, e.retired_reason) for e in episodes] == [(1, False, "corrected"), (2, True, None)]
    assert episodes[0].valid_to == fixed_at and episodes[0].superseded_by == result.episode.id
    homes = [(e.object_name, e.current) for e in engine.memory_history("Alice").entries if e.predicate == "LIVES_IN"]
    assert homes == [("Paris", False), ("Lyon", False), ("Marseille", True)]
    acme = next(e for e in engine.memory_history("Alice").entries if e.predicate == "WORKS_AT")
    assert acme.retracted_by == result.episode.id and acme.valid_to == fixed_at

    now = [r.episode.id for r in engine.recall("where does Alice live", agent_id="bot", k=5).episodes]
    assert result.episode.id in now and lyon.id not in now
    then = [
        r.episode.id for r in engine.recall("where does Alice live", agent_id="bot", k=5, as_of=T0 + 35 * DAY).episodes
    ]
    assert lyon.id in then and result.episode.id not in then
    with pytest.raises(Exception, match="already corrected"):
        engine.update_memory(lyon.id, "again")


def test_repeats_are_counted_and_compact_merges_and_expires(make_engine: Callable[..., Any]) -> None:
    from aesoperator.graph_schema.models import Episode

    engine = make_engine(memory_ttl_days={"agent:bot": 365.0})
    first = engine.remember(
        "Thanks, see you tomorrow!", agent_id="bot", session_id="s1", speaker="Alice", created_at=T0
    )
    again = engine.remember(
        "thanks, see you  tomorrow", agent_id="bot", session_id="s1", speaker="Alice", created_at=T0 + DAY
    )
    other_session = engine.remember(
        "Thanks, see you tomorrow!", agent_id="bot", session_id="s2", speaker="Alice", created_at=T0
    )
    assert again.id == first.id and other_session.id != first.id
    stored = engine.get_entities([first.id])[0]
    assert stored.properties["count"] == 2 and len(stored.properties["seen_at"]) == 1

    # episodes given ids are stored as given; compact finds them (spacing differs, so does punctuation)
    now = datetime.now(UTC)
    engine.memory.remember_many(
        [
            Episode(
                id="t1", content="The deploy is at 5 pm.", agent_id="bot", session_id="s3", created_at=now - 2 * DAY
            ),
            Episode(id="t2", content="the deploy is at 5  pm", agent_id="bot", session_id="s3", created_at=now - DAY),
        ]
    )
    recent = engine.remember("Fresh note about the rota.", agent_id="bot", session_id="s4", created_at=now)
    report = engine.compact_memory("bot")
    assert not report.applied and len(report.duplicates) == 1 and report.duplicates[0].count == 2
    expired = set(report.expired)
    assert expired == {first.id, other_session.id}  # from early 2025: more than a year old
    assert recent.id in [r.episode.id for r in engine.recall("rota note", agent_id="bot", k=10).episodes]
    assert first.id not in [r.episode.id for r in engine.recall("see you tomorrow", agent_id="bot", k=10).episodes]

    applied = engine.compact_memory("bot", apply=True)
    assert applied.applied and engine.compact_memory("bot").model_dump(exclude={"episodes"}) == {
        "namespaces": ["agent:bot"],
        "duplicates": [],
        "expired": [],
        "applied": False,
    }
    (kept,) = engine.get_entities([applied.duplicates[0].keep])
    (merged,) = engine.get_entities(applied.duplicates[0].merged)
    assert kept.properties["count"] == 2 and merged.properties["retired_reason"] == "duplicate"
    assert merged.properties["superseded_by"] == kept.id
    assert [r.episode.id for r in engine.recall("when is the deploy", agent_id="bot", k=10).episodes].count(
        kept.id
    ) == 1
    assert merged.id not in [r.episode.id for r in engine.recall("when is the deploy", agent_id="bot", k=10).episodes]
