"""The `GraphStore` protocol every backend implements, and the plain data it exchanges.

The store is the source of truth: entities, relations, the vectors computed for entities, the
per-source sync state and a change log. Everything derived (the FAISS index, a process's in-memory
traversal view) catches up from the change log, so nothing assumes the store and its readers live
in one process.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

from aesoperator.errors import NamespaceConflict
from aesoperator.graph_schema.models import Direction, Entity, Relation

ChangeKind = Literal["entity", "relation", "vector"]
ChangeOp = Literal["upsert", "delete"]
# What an erasing batch (`WriteBatch.erase`) leaves in the change log: every row that named an
# erased item names this instead, and one more row with this id tells the derived indexes that
# replaying the log cannot remove what was erased, so they rebuild from the store.
ERASED_ID = "~erased"


@dataclass(frozen=True, slots=True)
class SourceItemState:
    """What the store remembers about one item of a source, to make re-ingest incremental."""

    source: str
    key: str
    content_hash: str
    entity_ids: tuple[str, ...] = ()
    relation_ids: tuple[str, ...] = ()
    cursor: str | None = None


@dataclass(slots=True)
class WriteBatch:
    """Everything one atomic write changes. Applied all or nothing.

    `vectors` maps entity id -> (content hash of the embedded text, float32 vector) for `vector_model`.

    An upsert never changes the namespace of a stored entity or relation unless
    `allow_namespace_moves` is set (an explicit move, for a caller that may write both
    namespaces) or the item's id is in `movable_ids` (an ingest moving the items its own source
    wrote before); without it such a batch raises `NamespaceConflict` and writes nothing.
    """

    entities: Sequence[Entity] = ()
    relations: Sequence[Relation] = ()
    vectors: Mapping[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    vector_model: str | None = None
    delete_entity_ids: Sequence[str] = ()
    # Entities whose stored vectors (of every model) are dropped while the entities stay: what
    # `vector_policy.has_vector` leaves out but an earlier version of the engine embedded.
    delete_vector_ids: Sequence[str] = ()
    delete_relation_ids: Sequence[str] = ()
    expire_relation_ids: Sequence[str] = ()
    source_items: Sequence[SourceItemState] = ()
    delete_source_items: Sequence[tuple[str, str]] = ()  # (source, key)
    allow_namespace_moves: bool = False
    movable_ids: frozenset[str] = frozenset()
    # An erasure (right to erasure): the deleted entities and relations leave no trace in the
    # store. Change-log rows naming them are rewritten to ERASED_ID and an ERASED_ID row is
    # appended; history versions of the batch's upserted entities that name them are dropped; the
    # store notes that its files still hold freed bytes until `scrub_erased` runs.
    erase: bool = False

    def may_move(self, item_id: str) -> bool:
        """Whether this batch may move the stored item `item_id` to another namespace."""
        return self.allow_namespace_moves or item_id in self.movable_ids

    def is_empty(self) -> bool:
        return not (
            self.entities
            or self.relations
            or self.vectors
            or self.delete_entity_ids
            or self.delete_vector_ids
            or self.delete_relation_ids
            or self.expire_relation_ids
            or self.source_items
            or self.delete_source_items
        )


def namespace_conflict(kind: str, item_id: str, namespace: str) -> NamespaceConflict:
    """The error for an upsert that would move a stored item into `namespace`. The namespace it
    is stored in is not named: the caller may not be allowed to know it."""
    return NamespaceConflict(
        f"{kind} {item_id[:200]!r} is already stored in another namespace, so it cannot be written "
        f"in namespace {namespace[:200]!r}: writes do not move items between namespaces (use another "
        "id, or make an explicit move with WriteBatch(allow_namespace_moves=True) as a caller that may "
        "write both namespaces)"
    )


@dataclass(frozen=True, slots=True)
class WriteResult:
    seq: int  # the change-log position after this write
    entities_written: int = 0
    relations_written: int = 0
    vectors_written: int = 0
    vectors_deleted: int = 0  # by `delete_vector_ids` (an entity's deletion takes its vectors too)
    entities_deleted: int = 0
    relations_deleted: int = 0
    relations_expired: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """One change-log row: `seq` increases monotonically across every write of the store."""

    seq: int
    kind: ChangeKind
    id: str
    op: ChangeOp
    namespace: str


@dataclass(slots=True)
class Subgraph:
    """The result of a neighbourhood query: entities, the relations between them, hop distances."""

    entities: dict[str, Entity] = field(default_factory=dict)
    relations: list[Relation] = field(default_factory=list)
    hops: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Links:
    """A neighbourhood's shape only: hop distances and the relations followed as (one end, other
    end, relation type), without reading entity or relation records (see `neighbor_links`)."""

    hops: dict[str, int] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    relation_ids: list[str] = field(default_factory=list)  # the relation of each edge, in order


class EntityText(NamedTuple):
    """What the keyword index reads of an entity: no properties, provenance or times, so a full
    scan skips decoding them (`GraphStore.iter_texts`)."""

    id: str
    type: str
    name: str
    text: str
    namespace: str


@dataclass(frozen=True, slots=True)
class StoreStats:
    entities: int
    relations: int
    live_relations: int
    vectors: int
    entity_types: dict[str, int]
    relation_types: dict[str, int]
    namespaces: dict[str, int]
    last_seq: int
    backend: str


@runtime_checkable
class GraphStore(Protocol):
    """A durable graph of entities and relations with keyword search and stored vectors."""

    backend: str
    # Whether every read is a round trip to a server: a search then reads a neighbourhood with its
    # records in one go rather than its shape first and the few records it needs after.
    remote_reads: bool

    # writes ---------------------------------------------------------------------------------
    def write(self, batch: WriteBatch) -> WriteResult:
        """Apply a batch atomically. Raises SchemaError (and writes nothing) if a relation's
        endpoint is neither stored nor in the batch."""
        ...

    def upsert(
        self,
        entities: Sequence[Entity] = (),
        relations: Sequence[Relation] = (),
        vectors: Mapping[str, tuple[str, np.ndarray]] | None = None,
        vector_model: str | None = None,
    ) -> WriteResult: ...

    def delete_entities(self, ids: Sequence[str]) -> int:
        """Delete entities, their vectors and every relation touching them."""
        ...

    def delete_relations(self, ids: Sequence[str]) -> int: ...

    def expire_relations(self, ids: Sequence[str], at: datetime | None = None) -> int:
        """Retire relations (history kept): sets expired_at, and valid_to where it is unset."""
        ...

    # reads ----------------------------------------------------------------------------------
    def get_entities(self, ids: Sequence[str], namespaces: Sequence[str] | None = None) -> list[Entity]:
        """Entities in the order of `ids`; unknown ids and other namespaces are left out."""
        ...

    def get_relations(self, ids: Sequence[str]) -> list[Relation]: ...

    def relations_on(self, links: Links) -> list[Relation]:
        """The relations `links` names (its `relation_ids`), in its order, unknown ones left out:
        `get_relations` for a caller that knows each relation's ends (a server store then finds
        each from an end instead of looking through every relation type)."""
        ...

    def outgoing_relations(
        self, ids: Sequence[str], relation_types: Sequence[str], namespaces: Sequence[str] | None = None
    ) -> list[Relation]:
        """Every relation of one of `relation_types` leaving one of `ids`, expired or not (the
        whole history of a subject's facts), of the relation namespaces `namespaces` (None: all),
        ordered by source, type, `valid_from` and id."""
        ...

    def neighbors(
        self,
        ids: Sequence[str],
        depth: int = 1,
        relation_types: Sequence[str] | None = None,
        direction: Direction = "both",
        as_of: datetime | None = None,
        namespaces: Sequence[str] | None = None,
        limit: int = 1000,
        skip_prefixes: Sequence[str] = (),
    ) -> Subgraph:
        """Breadth-first neighbourhood of `ids` up to `depth` hops. Only live relations (at `as_of`,
        or now) are followed, and only into entities of the allowed namespaces; entities whose id
        starts with one of `skip_prefixes` are neither reached nor walked through (seeds stay)."""
        ...

    def neighbor_links(
        self,
        ids: Sequence[str],
        depth: int = 1,
        relation_types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        namespaces: Sequence[str] | None = None,
        limit: int = 1000,
        skip_prefixes: Sequence[str] = (),
    ) -> Links:
        """What `neighbors` reaches (both directions), as ids, relation types and relation ids:
        for walks that need the shape of a neighbourhood, not its records."""
        ...

    def keyword_search(
        self,
        query: str,
        k: int = 10,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """BM25 over entity name and text; higher score is better. Query text is data, never syntax."""
        ...

    def name_lookup(
        self,
        names: Sequence[str],
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> dict[str, list[str]]:
        """Case-insensitive exact name matches: lower-cased name -> entity ids."""
        ...

    def iter_entities(
        self,
        batch_size: int = 1000,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> Iterator[list[Entity]]: ...

    def iter_texts(self, batch_size: int = 1000) -> Iterator[list[EntityText]]:
        """Pages of every entity's id, type, name, text ("" for none) and namespace, in id order:
        `iter_entities` without the columns a text index does not read."""
        ...

    def iter_relations(self, batch_size: int = 1000) -> Iterator[list[Relation]]: ...

    def iter_vectors(self, model: str, batch_size: int = 4096) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
        """(ids, namespaces, float32 matrix) batches of every stored vector of `model`."""
        ...

    def get_vectors(self, ids: Sequence[str], model: str) -> dict[str, np.ndarray]: ...

    def vector_hashes(self, ids: Sequence[str], model: str) -> dict[str, str]:
        """Content hash of the text each stored vector was computed from (to skip re-embedding)."""
        ...

    # change log and sync state -------------------------------------------------------------
    def last_seq(self) -> int: ...

    def changes_since(self, seq: int, limit: int = 100_000) -> list[Change]: ...

    def source_items(self, source: str) -> dict[str, SourceItemState]: ...

    def source_names(self) -> list[str]:
        """Every source that has sync state stored."""
        ...

    def vector_models(self) -> list[str]:
        """Every embedding model that has stored vectors."""
        ...

    def stats(self) -> StoreStats: ...

    # erasure ------------------------------------------------------------------------------
    def relations_of(self, ids: Sequence[str]) -> list[Relation]:
        """Every stored relation from or to these entities, expired ones included."""
        ...

    def erasure_pending(self) -> bool:
        """Whether an erasing write committed whose freed bytes `scrub_erased` has not yet removed."""
        ...

    def scrub_erased(self) -> bool:
        """Remove what committed erasures left in the store's files (freed pages, journals, stale
        index segments), as far as the backend allows; returns whether any erasure was pending."""
        ...

    def close(self) -> None: ...


class WriteShortcutsMixin:
    """The protocol's write shortcuts, each one atomic batch through the backend's `_write`."""

    def _write(self, batch: WriteBatch, expire_at: datetime | None = None) -> WriteResult:
        raise NotImplementedError

    def write(self, batch: WriteBatch) -> WriteResult:
        """Apply a batch atomically. Raises SchemaError (and writes nothing) if a relation's
        endpoint is neither stored nor in the batch."""
        return self._write(batch)

    def upsert(
        self,
        entities: Sequence[Entity] = (),
        relations: Sequence[Relation] = (),
        vectors: Mapping[str, tuple[str, np.ndarray]] | None = None,
        vector_model: str | None = None,
    ) -> WriteResult:
        return self._write(
            WriteBatch(entities=entities, relations=relations, vectors=vectors or {}, vector_model=vector_model)
        )

    def delete_entities(self, ids: Sequence[str]) -> int:
        """Delete entities, their vectors, their history and every relation touching them."""
        return self._write(WriteBatch(delete_entity_ids=list(ids))).entities_deleted

    def delete_relations(self, ids: Sequence[str]) -> int:
        return self._write(WriteBatch(delete_relation_ids=list(ids))).relations_deleted

    def expire_relations(self, ids: Sequence[str], at: datetime | None = None) -> int:
        """Retire relations (history kept): sets expired_at, and valid_to where it is unset."""
        return self._write(WriteBatch(expire_relation_ids=list(ids)), expire_at=at).relations_expired
