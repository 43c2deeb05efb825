"""The data that flows through ingest: what a source yields and what a mapper makes of it.

Every source kind (a local folder now, MCP servers next) yields `SourceRecord`s; a mapper turns
one record into entities and relations without any model call, so mapping is deterministic and
testable without servers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from aesoperator.graph_schema.models import Entity, Relation


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One item of a source, identified by a key that is stable across runs."""

    key: str
    kind: str
    content_hash: str
    payload: dict[str, Any]
    uri: str


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
