"""Pruning of extracted entities: a re-ingest whose text no longer names an entity removes the
entity together with its last mention (same write), on the embedded store and on Neo4j; an entity
still mentioned elsewhere (another file, an agent's episode in another namespace) is kept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aesoperator.ingest.extract.keys import knowledge_entity_id, name_key

BACKENDS = ["embedded", pytest.param("neo4j", marks=pytest.mark.neo4j)]


@pytest.fixture(params=BACKENDS)
def open_engine(request: pytest.FixtureRequest, tmp_path: Path, embedder: Any) -> Callable[..., Any]:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    def factory(**overrides: Any) -> Any:
        settings = Settings(data_dir=tmp_path / "data", **overrides)
        if request.param == "embedded":
            return request.getfixturevalue("make_engine")(**overrides)
        store = request.getfixturevalue("neo4j_store_factory")()
        return ContextEngine(store, settings=settings, embedder=embedder)

    return factory


def person(name: str) -> str:
    return knowledge_entity_id("default", "Person", name_key(name))


def _names(engine: Any, item_id: str) -> set[str]:
    sub = engine.neighbors([item_id], relation_types=["MENTIONS"], direction="out")
    return {sub.entities[r.dst].name for r in sub.relations if r.src == item_id}


def _stored(engine: Any, *ids: str) -> set[str]:
    return {e.id for e in engine.get_entities(list(ids))}


def test_a_name_gone_from_the_text_is_pruned_and_one_mentioned_elsewhere_kept(
    open_engine: Callable[..., Any], tmp_path: Path
) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "a.md").write_text("# Visit\n\nGrace Hopper met Alan Turing in Boston in 1950.\n")
    (root / "b.md").write_text("# Compilers\n\nGrace Hopper wrote the first compiler.\n")
    engine = open_engine()
    engine.ingest_path(root)
    grace, alan = person("Grace Hopper"), person("Alan Turing")
    assert _stored(engine, grace, alan) == {grace, alan}
    assert "Alan Turing" in _names(engine, "notes:chunk:a.md#0")

    (root / "a.md").write_text("# Visit\n\nGrace Hopper stayed in Boston in 1950.\n")
    report = engine.ingest_path(root)
    assert report.records_changed == 1 and report.knowledge_pruned == 1
    assert _stored(engine, grace, alan) == {grace}  # Alan Turing went with his last mention
    assert not [e for e in engine.entities("Alan Turing") if e.id == alan]
    # the relations that reached him went with him; Grace Hopper is still mentioned by both files
    sub = engine.neighbors([grace], relation_types=["CO_OCCURS_WITH"])
    assert alan not in sub.entities
    assert _names(engine, "notes:chunk:a.md#0") >= {"Grace Hopper", "Boston"}
    assert "Grace Hopper" in _names(engine, "notes:chunk:b.md#0")

    # a file that goes takes the names only it mentioned; what another file names stays
    (root / "a.md").unlink()
    boston = knowledge_entity_id("default", "Place", name_key("Boston"))
    assert _stored(engine, boston) == {boston}
    gone = engine.ingest_path(root)
    assert gone.records_removed == 1 and gone.knowledge_pruned >= 1
    assert _stored(engine, grace, boston) == {grace}

    # unchanged text prunes nothing and writes nothing
    again = engine.ingest_path(root)
    assert again.knowledge_pruned == 0 and again.entities_written == 0 and again.entities_deleted == 0


def test_a_mention_in_an_agents_episode_keeps_the_entity(open_engine: Callable[..., Any], tmp_path: Path) -> None:
    root = tmp_path / "team"
    root.mkdir()
    (root / "team.md").write_text("# Team\n\nGrace Hopper runs the compiler group in Arlington.\n")
    engine = open_engine()
    engine.ingest_path(root)
    grace = person("Grace Hopper")
    episode = engine.remember("Asked Grace Hopper about the compiler", agent_id="ops")
    assert grace in episode.mentions and episode.namespace != "default"

    (root / "team.md").write_text("# Team\n\nThe compiler group moved to Arlington.\n")
    engine.ingest_path(root)
    assert _stored(engine, grace) == {grace}  # the episode, in the agent's namespace, still names her
    assert "Grace Hopper" not in _names(engine, "team:chunk:team.md#0")


def test_a_name_that_moves_to_a_later_batch_of_the_same_run_is_kept(
    open_engine: Callable[..., Any], tmp_path: Path
) -> None:
    root = tmp_path / "moves"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nAlan Turing worked at Bletchley Park.\n")
    (root / "b.md").write_text("# B\n\nThe park has a museum.\n")
    engine = open_engine(write_batch_size=1)  # one file per batch: a.md's write comes first
    engine.ingest_path(root)
    alan = person("Alan Turing")
    assert _stored(engine, alan) == {alan}

    (root / "a.md").write_text("# A\n\nThe park has gardens.\n")
    (root / "b.md").write_text("# B\n\nAlan Turing has a statue there.\n")
    report = engine.ingest_path(root)
    assert report.records_changed == 2
    assert _stored(engine, alan) == {alan}
    assert "Alan Turing" in _names(engine, "moves:chunk:b.md#0")
    assert "Alan Turing" not in _names(engine, "moves:chunk:a.md#0")
