"""The data that flows through ingest: what a source yields and what a mapper makes of it.

Every source kind (a local folder now, MCP servers next) yields `SourceRecord`s; a mapper turns
one record into entities and relations without any model call, so mapping is deterministic and
testable without servers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aesoperator.errors import MappingError
from aesoperator.graph_schema.models import Entity, Relation


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One item of a source, identified by a key that is stable across runs."""

    key: str
    kind: str
    content_hash: str
    payload: dict[str, Any]
    uri: str


def required(data: Any, name: str, kind: type | tuple[type, ...] = object, what: str = "the record") -> Any:
    """`data[name]` for a mapper, where a record from a server may lack it or hold something else.

    Args:
        data: an object decoded from a server's answer (expected to be a mapping).
        name: the field the mapper needs.
        kind: the type(s) the value must have.
        what: how the message names `data` ("the record", "the issue", ...).

    Returns:
        The value.

    Raises:
        MappingError: `data` is not a mapping, lacks `name`, or its value is not a `kind`.
    """
    if not isinstance(data, Mapping):
        raise MappingError(f"{what} is {type(data).__name__}, not an object with a {name!r} field")
    if name not in data:
        raise MappingError(f"{what} has no {name!r} field")
    value = data[name]
    if not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise MappingError(f"{what}'s {name!r} is {type(value).__name__}, not {expected}")
    return value


def required_int(data: Any, name: str, what: str = "the record") -> int:
    """`required(...)` for an integer field, accepting digits in a string (as some servers send)."""
    value = required(data, name, (int, str), what)
    if isinstance(value, bool) or (isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
        raise MappingError(f"{what}'s {name!r} is {value!r}, not an integer")
    return int(value)


@dataclass(slots=True)
class MappedItem:
    """What one record becomes.

    `entities` and `relations` belong to the record: when the record changes or disappears, the
    ones it no longer yields are removed. `shared_entities` (a directory, a person) are upserted
    but never removed on the record's behalf, since other records point at them too.
    """

    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    shared_entities: list[Entity] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    key: str
    reason: str


class Mapper(Protocol):
    """Turns a source's records into graph items. Must be pure and deterministic."""

    kind: str

    def map(self, record: SourceRecord) -> MappedItem: ...


class Extractor(Protocol):
    """Lists a source's records. May report items it had to skip via `skipped`."""

    source_name: str
    skipped: list[SkippedRecord]

    def records(self) -> Iterator[SourceRecord]: ...
