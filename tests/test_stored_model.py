"""Models rebuilt from stored rows (`stored_model`) are the same objects `model_construct` makes,
and a decoder that no longer names every field fails loudly instead of building half a model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, PrivateAttr, ValidationError

from aesoperator.engine.stores.embedded_rows import ENTITY_COLUMNS, RELATION_COLUMNS, row_to_entity, row_to_relation
from aesoperator.engine.stores.neo4j_rows import columns_to_entity, columns_to_relation
from aesoperator.graph_schema.models import Entity, Provenance, Relation
from aesoperator.graph_schema.stored import stored_model

WHEN = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def _entity_values() -> dict[str, Any]:
    return {
        "id": "doc:1",
        "type": "Document",
        "name": "Design notes",
        "text": "The store is the source of truth.",
        "properties": {"path": "notes.md", "lines": [1, 40]},
        "source": "filesystem",
        "provenance": Provenance(uri="file:///notes.md", fetched_at=WHEN, version="abc"),
        "namespace": "team",
        "valid_from": WHEN,
        "valid_to": None,
        "created_at": WHEN,
        "updated_at": WHEN,
    }


def _relation_values() -> dict[str, Any]:
    return {
        "id": "rel:1",
        "type": "MENTIONS",
        "src": "doc:1",
        "dst": "person:ada",
        "properties": {"weight": 0.5},
        "source": "filesystem",
        "provenance": None,
        "namespace": "team",
        "valid_from": None,
        "valid_to": WHEN,
        "recorded_at": WHEN,
        "expired_at": None,
    }


@pytest.mark.parametrize(
    ("cls", "values"),
    [
        (Entity, _entity_values()),
        (Relation, _relation_values()),
        (Provenance, {"uri": "file:///a", "fetched_at": WHEN, "version": None}),
    ],
)
def test_stored_model_equals_model_construct(cls: type[BaseModel], values: dict[str, Any]) -> None:
    made = stored_model(cls, **values)
    reference = cls.model_construct(**values)
    assert type(made) is cls
    assert made == reference
    assert made.model_dump() == reference.model_dump()
    assert made.model_dump_json() == reference.model_dump_json()
    assert made.model_fields_set == reference.model_fields_set
    # what was stored passes validation unchanged
    assert cls.model_validate(made.model_dump()) == made
    assert made.model_copy(update={}) == made


def test_stored_models_behave_like_constructed_ones() -> None:
    entity = stored_model(Entity, **_entity_values())
    entity.name = "Renamed"  # entities stay mutable, like validated ones
    assert entity.name == "Renamed"
    assert entity.model_copy(update={"text": "other"}).text == "other"
    provenance = entity.provenance
    assert provenance is not None
    with pytest.raises(ValidationError):
        provenance.uri = "file:///elsewhere"  # provenance stays frozen


def test_a_decoder_missing_a_field_is_refused() -> None:
    values = _entity_values()
    del values["updated_at"]
    with pytest.raises(ValueError, match=r"Entity.*missing fields \['updated_at'\]"):
        stored_model(Entity, **values)
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        stored_model(Entity, **_entity_values(), colour="red")


def test_models_with_private_attributes_are_refused() -> None:
    class WithPrivate(BaseModel):
        name: str
        _cache: dict[str, str] = PrivateAttr(default_factory=dict)

    with pytest.raises(ValueError, match="private attributes"):
        stored_model(WithPrivate, name="x")


def test_row_decoders_of_both_stores_build_full_models() -> None:
    entity_row = (
        "doc:1",
        "Document",
        "Design notes",
        "text",
        '{"path":"notes.md"}',
        "filesystem",
        '{"uri":"file:///notes.md","version":"abc","fetched_at":"2026-03-01T12:30:00Z"}',
        "team",
        None,
        None,
        "2026-03-01T12:30:00Z",
        "2026-03-01T12:30:00Z",
    )
    assert len(entity_row) == len(ENTITY_COLUMNS.split(","))
    for entity in (row_to_entity(entity_row), columns_to_entity(entity_row)):
        assert Entity.model_validate(entity.model_dump()) == entity
        assert entity.provenance == Provenance(uri="file:///notes.md", fetched_at=WHEN, version="abc")
        assert entity.created_at == WHEN
    relation_row = (
        "rel:1",
        "MENTIONS",
        "doc:1",
        "person:ada",
        "{}",
        "filesystem",
        None,
        "team",
        None,
        None,
        None,
        None,
    )
    assert len(relation_row) == len(RELATION_COLUMNS.split(","))
    relation = row_to_relation(relation_row)
    assert Relation.model_validate(relation.model_dump()) == relation
    neo4j_relation = columns_to_relation(("MENTIONS", "doc:1", "person:ada", "rel:1", *relation_row[4:]))
    assert neo4j_relation == relation


def test_an_unknown_instance_layout_falls_back_to_model_construct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should pydantic lay instances out otherwise, rows still decode, through the public API."""
    import aesoperator.graph_schema.stored as stored

    assert stored._DIRECT  # the layout of the pydantic this runs with is the known one
    monkeypatch.setattr(stored, "_DIRECT", False)
    calls: list[dict[str, Any]] = []
    original = Entity.model_construct.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Entity], **values: Any) -> Entity:
        calls.append(values)
        made: Entity = original(cls, **values)
        return made

    monkeypatch.setattr(Entity, "model_construct", classmethod(spy))
    made = stored_model(Entity, **_entity_values())
    assert len(calls) == 1 and made == Entity.model_validate(made.model_dump())
