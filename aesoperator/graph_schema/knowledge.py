"""What knowledge extraction produces, and the protocols the engine and the ingest pipeline use
to ask for it.

An extractor reads text items and reports mentions (a character span, the entity type it stands
for, a resolution key) and relations between mentions (with the span that is their evidence).
A knowledge stage turns those reports into graph entities and relations; the engine's memory and
the ingest pipeline both hold one through `KnowledgeStage`, so neither needs to know how
extraction is done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from aesoperator.graph_schema.models import Entity, Relation

# Entities extraction finds are stored under this source; their ids start with the prefix.
KNOWLEDGE_SOURCE = "knowledge"
KNOWLEDGE_ID_PREFIX = KNOWLEDGE_SOURCE + ":"

PROSE = "prose"
CODE = "code"
TERSE = "terse"  # short structured lines (commit messages): rules only, the NER model misreads them


@dataclass(frozen=True, slots=True)
class TextItem:
    """One text to extract from: an item of the graph (a chunk, a document, an episode...)."""

    id: str
    text: str
    kind: str = PROSE  # PROSE, TERSE (rules only) or CODE (only the rules that make sense for code)


@dataclass(frozen=True, slots=True)
class Mention:
    """A span of an item's text that names an entity.

    `key` identifies the entity across items: an exact key such as `email:kim@example.com`,
    `login:kim`, `url:https://...`, or `name:<normalised name>` when only the name is known.
    `aliases` are other names the text gives it (an acronym's expansion).
    """

    start: int
    end: int
    text: str
    type: str
    key: str
    extractor: str
    confidence: float = 1.0
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MentionRelation:
    """A relation between two mentions of one item (indexes into its mention list), with the
    span of text that is its evidence. `type` is CO_OCCURS_WITH unless the extractor knows more."""

    src: int
    dst: int
    type: str
    start: int
    end: int
    extractor: str
    confidence: float = 1.0


@dataclass(slots=True)
class ItemExtraction:
    item_id: str
    mentions: list[Mention] = field(default_factory=list)
    relations: list[MentionRelation] = field(default_factory=list)
    error: str | None = None  # why nothing could be extracted (the item is quarantined, not fatal)


@runtime_checkable
class EntityExtractor(Protocol):
    """Finds mentions and relations in text. `signature` names the extractor and its version:
    cached results are reused only under the same signature."""

    @property
    def name(self) -> str: ...

    @property
    def signature(self) -> str: ...

    def extract(self, items: Sequence[TextItem]) -> list[ItemExtraction]: ...

    def begin_run(self) -> None:
        """An ingest starts (per-ingest limits start afresh)."""
        ...


@dataclass(slots=True)
class KnowledgeBatch:
    """What a knowledge stage adds for a batch of items.

    `entities` are shared (an entity mentioned by many items is never removed on one item's
    behalf); `relations` map each item id to the relations it owns (its MENTIONS and the relations
    found in its text), which go when the item changes or disappears.
    """

    entities: list[Entity] = field(default_factory=list)
    relations: dict[str, list[Relation]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # item id -> reason
    notes: list[str] = field(default_factory=list)
    items_extracted: int = 0
    items_from_cache: int = 0
    mentions: int = 0


@runtime_checkable
class KnowledgeStage(Protocol):
    """Turns graph items into knowledge: entities, MENTIONS, relations; and resolves entities."""

    def process(self, items: Sequence[Entity], link_namespaces: Sequence[str] | None = None) -> KnowledgeBatch:
        """Extract from `items` (those with text worth reading; others are passed over).
        Mentions that name an entity already stored in `link_namespaces` link to it instead of
        creating a new one in the item's namespace."""
        ...

    def begin_run(self) -> None:
        """An ingest starts: per-ingest limits (an LLM token budget) start afresh."""
        ...

    def resolve(self, namespaces: Sequence[str], new_ids: Sequence[str] | None = None) -> int:
        """Run entity resolution within each namespace; returns how many merges were recorded.
        `new_ids`: the entities created since these namespaces were last resolved, when the caller
        knows them (a few let the resolver compare just those); None: compare everything."""
        ...
