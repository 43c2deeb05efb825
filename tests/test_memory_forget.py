"""Forgetting memories through the Python API: retire (hidden now, kept for `as_of` and history),
purge (erased from the store, the derived indexes and the extraction cache, down to the bytes of
the data directory), what each way of selecting touches, and index replicas in step afterwards."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aesoperator.engine.stores.base import ERASED_ID
from aesoperator.errors import SchemaError
from aesoperator.graph_schema import Entity, utcnow
from aesoperator.security.audit import AuditLog
from tests.forget_support import MARKER, traces

AGENT = "ops"


def _remember_three(engine: Any) -> tuple[Any, Any, Any]:
    marked = engine.remember(
        f"{MARKER} moved to Lisbon and now runs the harbour ferry", agent_id=AGENT, session_id="s1"
    )
    coffee = engine.remember("The coffee machine on floor 3 is broken again", agent_id=AGENT, session_id="s1")
    pizza = engine.remember("Lunch order for the ops team: two pizzas", agent_id=AGENT, session_id="s1")
    return marked, coffee, pizza


def _recalled(engine: Any, query: str, **kwargs: Any) -> list[str]:
    return [r.episode.id for r in engine.recall(query, agent_id=AGENT, k=5, **kwargs).episodes]


def test_retire_hides_a_memory_now_and_keeps_it_as_of_before(make_engine: Callable[..., Any]) -> None:
    engine = make_engine()
    marked, coffee, pizza = _remember_three(engine)
    assert marked.id in _recalled(engine, "who runs the harbour ferry?")
    before = utcnow()
    time.sleep(0.01)

    report = engine.forget(AGENT, ids=[marked.id])

    assert report.mode == "retire" and report.episodes == [marked.id] and report.relations > 0
    assert marked.id not in _recalled(engine, "who runs the harbour ferry?")
    assert marked.id not in [h.id for h in engine.search("harbour ferry Lisbon", k=10).hits]
    assert set(_recalled(engine, "coffee machine lunch pizzas")) >= {coffee.id, pizza.id}
    # as of a moment before the forget the memory is there, with its links
    assert marked.id in _recalled(engine, "who runs the harbour ferry?", as_of=before)
    kept = engine.get_entities([marked.id])[0]
    assert kept.properties["retired_at"] and kept.valid_to is not None and kept.text.startswith(MARKER)
    assert engine.store.history(marked.id)[-1].properties.get("retired_at") is None
    assert not engine.neighbors([marked.id], relation_types=["MENTIONS"]).relations
    assert engine.neighbors([marked.id], relation_types=["MENTIONS"], as_of=before).relations
    # the session chain goes around it now, and its latest episode is one that is left
    chain = engine.neighbors([coffee.id], relation_types=["NEXT"], direction="in").entities
    assert marked.id not in chain
    # forgetting it again changes nothing
    assert engine.forget(AGENT, ids=[marked.id]).episodes == []


def test_forget_by_query_and_by_entity_select_what_they_say(make_engine: Callable[..., Any]) -> None:
    engine = make_engine()
    engine.upsert([Entity(id="p:ada", type="Person", name="Ada Okafor", text="Ada Okafor, database admin")])
    about_ada = engine.remember("Ada Okafor moved the nightly backup to 02:00", agent_id=AGENT)
    named_ada = engine.remember("ask ADA   okafor about the restore drill", agent_id=AGENT, detect_mentions=False)
    other = engine.remember("Adamant about the coffee: Okafors are not involved", agent_id=AGENT)
    by_query = engine.forget(AGENT, query="nightly   BACKUP", dry_run=True)
    assert by_query.dry_run and by_query.episodes == [about_ada.id]
    by_entity = engine.forget(AGENT, entity="Ada Okafor", dry_run=True)
    assert by_entity.episodes == sorted([about_ada.id, named_ada.id])  # a link, or the name as whole words
    assert other.id not in by_entity.episodes
    assert engine.forget(AGENT, entity="p:ada", dry_run=True).episodes == by_entity.episodes
    with pytest.raises(SchemaError, match="exactly one"):
        engine.forget(AGENT, query="x", entity="y")
    with pytest.raises(SchemaError, match="no memory"):
        engine.forget(AGENT, ids=["p:ada"])
    with pytest.raises(SchemaError, match="no entity"):
        engine.forget(AGENT, entity="Nobody Atall")
    # the source's entity lives in another namespace: the forget leaves it alone
    engine.forget(AGENT, entity="Ada Okafor")
    assert engine.get_entities(["p:ada"])[0].properties.get("retired_at") is None
    left = _recalled(engine, "Ada Okafor restore drill nightly backup coffee")
    assert other.id in left and about_ada.id not in left and named_ada.id not in left


def test_purge_erases_every_trace_and_keeps_the_rest(make_engine: Callable[..., Any], tmp_path: Path) -> None:
    data = tmp_path / "data"
    engine = make_engine(data)
    marked, coffee, pizza = _remember_three(engine)
    engine.rebuild_index()  # both derived indexes saved to disk, holding the marker
    assert traces(data), "the marker should be on disk before the purge"

    report = engine.forget(AGENT, query=MARKER.lower(), purge=True)

    assert report.mode == "purge" and report.episodes == [marked.id]
    assert engine.get_entities([marked.id, *report.entities]) == []
    assert marked.id not in engine.index and marked.id not in engine.keywords
    assert set(_recalled(engine, "coffee machine lunch pizzas")) >= {coffee.id, pizza.id}
    assert all(c.id == ERASED_ID or c.id not in report.episodes for c in engine.store.changes_since(0))
    session = engine.get_entities([e.id for b in engine.store.iter_entities(types=["Session"]) for e in b])[0]
    assert session.properties["last_episode_id"] == pizza.id
    engine.close()
    assert traces(data) == []
    assert AuditLog.in_data_dir(data).verify().ok


def test_a_replica_rebuilds_when_it_replays_an_erasure(make_engine: Callable[..., Any], tmp_path: Path) -> None:
    data = tmp_path / "shared"
    writer = make_engine(data)
    marked, coffee, _ = _remember_three(writer)
    reader = make_engine(data)
    assert marked.id in reader.index and marked.id in reader.keywords  # a loaded replica holds it
    writer.forget(AGENT, ids=[marked.id], purge=True)
    hits = reader.search("harbour ferry Lisbon", k=10)  # catching up meets the erasure row
    assert reader.index.last_sync is not None and reader.index.last_sync.rebuilt
    assert marked.id not in reader.index and marked.id not in reader.keywords
    assert marked.id not in [h.id for h in hits.hits]
    assert coffee.id in reader.index


def test_cli_forget_asks_first_purges_with_yes_and_audits(make_engine: Callable[..., Any], tmp_path: Path) -> None:
    from aesoperator.cli import app

    data = tmp_path / "cli"
    engine = make_engine(data)
    marked, coffee, _ = _remember_three(engine)
    engine.close()
    runner = CliRunner()
    base = ["--data-dir", str(data)]
    refused = runner.invoke(
        app, [*base, "forget", "--query", "harbour ferry", "--agent", AGENT, "--purge"], input="n\n"
    )
    assert refused.exit_code == 1 and "ERASE" in refused.output
    done = runner.invoke(app, [*base, "--json", "forget", marked.id, "--agent", AGENT, "--purge", "--yes"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["episodes"] == [marked.id]
    retired = runner.invoke(app, [*base, "--json", "forget", "--query", "coffee", "--agent", AGENT, "-y"])
    assert json.loads(retired.stdout)["episodes"] == [coffee.id]
    log = AuditLog.in_data_dir(data)
    assert log.verify().ok
    tools = [(r["tool"], r["kind"], r["result_count"]) for r in log.tail(10)]
    assert tools[0][:2] == ("forget", "cli") and ("forget.purge", "cli", tools[1][2]) == tools[1]
    assert tools[2][:2] == ("forget", "cli") and tools[2][2] == 1
    assert traces(data) == []


def test_a_replica_closing_after_a_purge_elsewhere_saves_nothing_erased(
    make_engine: Callable[..., Any], tmp_path: Path
) -> None:
    data = tmp_path / "shared"
    writer = make_engine(data)
    marked, _, _ = _remember_three(writer)
    reader = make_engine(data)
    assert marked.id in reader.index and marked.id in reader.keywords
    writer.forget(AGENT, ids=[marked.id], purge=True)
    writer.close()
    reader.close()  # its indexes still held the memory: closing catches up before saving
    assert traces(data) == []
