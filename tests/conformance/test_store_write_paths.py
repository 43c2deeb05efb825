"""Writes that mix many entity and relation types in one batch, as ingest does: every item comes
back as written, re-writing changes nothing, and changing some items logs exactly those."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aesoperator.engine.stores.base import GraphStore, WriteBatch
from aesoperator.graph_schema.models import Entity, Provenance, Relation

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TYPES = ["Document", "Chunk", "Person", "Concept"]
RELATION_TYPES = ["CONTAINS", "MENTIONS", "NEXT"]
STAMPS = {"created_at", "updated_at", "recorded_at"}


def mixed_batch(n: int = 40) -> tuple[list[Entity], list[Relation]]:
    """Entities of four types, every other one with provenance and validity (so some optional
    fields are empty), and relations of three types, one with an id of its own."""
    prov = Provenance(uri="https://example.org/x", fetched_at=T0, version="v1")
    entities = [
        Entity(
            id=f"e{i}",
            type=TYPES[i % len(TYPES)],
            name=f"Item {i}",
            text=f"text of item {i}",
            properties={"i": i} if i % 3 else {},
            source="bench",
            provenance=prov if i % 2 else None,
            valid_from=T0 + timedelta(days=i) if i % 2 else None,
        )
        for i in range(n)
    ]
    relations = [
        Relation(type=RELATION_TYPES[i % len(RELATION_TYPES)], src=f"e{i}", dst=f"e{i + 1}", source="bench")
        for i in range(n - 1)
    ]
    relations.append(Relation(id="own-id", type="MENTIONS", src="e0", dst=f"e{n - 1}", properties={"w": 0.5}))
    return entities, relations


def dumped(items: list[Entity] | list[Relation]) -> dict[str, dict[str, object]]:
    return {item.id: item.model_dump(exclude=STAMPS) for item in items}


def test_a_batch_of_many_types_round_trips(store: GraphStore) -> None:
    entities, relations = mixed_batch()
    result = store.write(WriteBatch(entities=entities, relations=relations))
    assert (result.entities_written, result.relations_written) == (len(entities), len(relations))

    assert dumped(store.get_entities([e.id for e in entities])) == dumped(entities)
    assert dumped(store.get_relations([r.id for r in relations])) == dumped(relations)
    stats = store.stats()
    assert stats.entity_types == {t: len(entities) // len(TYPES) for t in TYPES}
    assert sum(stats.relation_types.values()) == len(relations)
    # each relation is stored under its own type: a walk along one type finds only those
    for rel_type in RELATION_TYPES:
        want = {r.dst for r in relations if r.type == rel_type and r.src == "e0"}
        walk = store.neighbors(["e0"], depth=1, relation_types=[rel_type], direction="out")
        got = {eid for eid, hops in walk.hops.items() if hops == 1}
        assert got == want
    changes = store.changes_since(0)
    assert [(c.kind, c.id, c.op) for c in changes] == [("entity", e.id, "upsert") for e in entities] + [
        ("relation", r.id, "upsert") for r in relations
    ]


def test_rewriting_a_mixed_batch_changes_nothing_and_updates_log_only_what_changed(store: GraphStore) -> None:
    entities, relations = mixed_batch()
    first = store.write(WriteBatch(entities=entities, relations=relations))

    again = store.write(WriteBatch(entities=entities, relations=relations))
    assert (again.entities_written, again.relations_written, again.seq) == (0, 0, first.seq)
    assert store.changes_since(first.seq) == []

    changed_entity = entities[5].model_copy(update={"text": "new text"})
    changed_relation = relations[7].model_copy(update={"properties": {"w": 2}})
    new_entity = Entity(id="fresh", type="Person", name="Fresh", text="a new one")
    new_relation = Relation(type="NEXT", src="fresh", dst="e0")
    third = store.write(
        WriteBatch(
            entities=[*entities, changed_entity, new_entity], relations=[*relations, changed_relation, new_relation]
        )
    )
    assert (third.entities_written, third.relations_written) == (2, 2)
    assert [(c.kind, c.id, c.op) for c in store.changes_since(first.seq)] == [
        ("entity", changed_entity.id, "upsert"),
        ("entity", "fresh", "upsert"),
        ("relation", changed_relation.id, "upsert"),
        ("relation", new_relation.id, "upsert"),
    ]
    (got,) = store.get_entities([changed_entity.id])
    assert got.text == "new text"
    assert [old.text for old in store.history(changed_entity.id)] == [entities[5].text]
    (got_r,) = store.get_relations([changed_relation.id])
    assert got_r.properties == {"w": 2}
    assert dumped(store.get_entities(["fresh"])) == dumped([new_entity])
    assert dumped(store.get_relations([new_relation.id])) == dumped([new_relation])
