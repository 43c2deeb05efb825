from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from aesoperator.graph_schema import Entity, Episode, Relation, entity_id, normalize_type_name, relation_id
from aesoperator.graph_schema.models import MAX_TEXT_CHARS


def make(**kw: object) -> Entity:
    base: dict[str, object] = {"id": "t:doc:1", "type": "Document", "name": "doc", "text": "hello"}
    base.update(kw)
    return Entity(**base)  # type: ignore[arg-type]


def test_ids_are_deterministic_and_bounded() -> None:
    assert entity_id("git", "commit", "abc") == entity_id("git", "commit", "abc") == "git:commit:abc"
    long_key = "x" * 5000
    long_id = entity_id("fs", "file", long_key)
    assert len(long_id) <= 512 and long_id == entity_id("fs", "file", long_key)
    assert long_id != entity_id("fs", "file", long_key + "y")
    assert relation_id("CONTAINS", "a", "b") == relation_id("CONTAINS", "a", "b") != relation_id("CONTAINS", "b", "a")
    rel = Relation(type="CONTAINS", src="a", dst="b")
    assert rel.id == relation_id("CONTAINS", "a", "b")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("text", "   ", "must not be empty"),
        ("text", "x" * (MAX_TEXT_CHARS + 1), "limit"),
        ("name", "", "must not be empty"),
        ("type", "Bad Type", "not a valid type name"),
        ("type", "Foo`) DETACH DELETE n //", "not a valid type name"),
        ("properties", {"when": object()}, "not JSON-safe"),
        ("properties", {"x": math.nan}, "non-finite"),
        ("properties", {"nested": {1: "a"}}, "non-string key"),
        ("id", "", "must not be empty"),
    ],
)
def test_bad_entities_are_rejected_with_a_clear_message(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make(**{field: value})


def test_relation_type_names_are_checked() -> None:
    with pytest.raises(ValidationError, match="relation type"):
        Relation(type="REL]->() DELETE", src="a", dst="b")


def test_normalize_type_name_makes_free_text_safe() -> None:
    assert normalize_type_name("works at") == "works_at"
    assert normalize_type_name("works at", upper=True) == "WORKS_AT"
    assert normalize_type_name("123 go") == "T_123_go"
    assert normalize_type_name("!!!") == "Unknown"


def test_episode_validation() -> None:
    with pytest.raises(ValidationError, match="agent_id"):
        Episode(content="hi", agent_id=" ")
    with pytest.raises(ValidationError, match="content"):
        Episode(content="", agent_id="a")
