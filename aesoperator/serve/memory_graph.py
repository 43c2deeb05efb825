"""The official memory server's knowledge graph, kept on the engine's graph (`MemoryGraph`); its
tools are in `tools_memory_compat.py`.

`create_entities`, `create_relations`, `add_observations`, `delete_entities`,
`delete_observations`, `delete_relations`, `read_graph`, `search_nodes` and `open_nodes` take and
return exactly what `@modelcontextprotocol/server-memory` takes and returns, so an agent set up for
that server can use this one instead. Behind them the knowledge graph is stored as ordinary
entities and relations in one namespace (default `memory-graph`) under the source `memory-graph`:

- a memory entity is an Entity whose id is derived from its name and namespace
  (`memory-graph:entity:<name>` in `memory-graph`, `memory-graph:entity@<namespace>:<name>` in any
  other, so two servers with their own `--memory-namespace` never write each other's entities),
  whose type is the entityType made a safe type name, and whose text is the name, type and
  observations (so `search` finds it); the original entityType and the observations are kept in
  its properties;
- a memory relation is a Relation whose type is the relationType made a safe type name
  (`works at` -> `WORKS_AT`) and whose properties keep the original relationType and endpoint
  names, so nothing is lost and distinct relationTypes never collide;
- a relation may name an entity that does not exist yet, as the memory server allows: the name is
  held by a placeholder entity that none of these tools list, which becomes a real entity when it is
  created and is removed when no relation needs it any more;
- deleted relations are expired (kept as history for `as_of` questions), deleted entities are
  deleted.

A memory graph kept in another namespace before ids carried the namespace is moved to the scoped
ids (with its relations and vectors) the first time a `MemoryGraph` on that namespace is used.

Entities are embedded off the write path (setting `embed_writes`, default "background"): a write
answers once the store commits, and an `EmbeddingBacklog` on this namespace embeds the new and
changed entities from the change log a moment later (see `aesoperator.engine.embed_backlog`).

Differences, all on input the memory server accepts but cannot represent well: a name repeated
within one `create_entities` (or a relation within one `create_relations`) call is created once;
names must not be blank; sizes are bounded (see `schemas.py`). Writes made by one server process
are serialized; separate processes writing the same memory graph at once may interleave.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from aesoperator.engine.embed_backlog import EmbeddingBacklog
from aesoperator.engine.embeddings import embedding_text
from aesoperator.engine.stores.base import WriteBatch
from aesoperator.engine.vector_policy import has_vector, without_vectors
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.ids import (
    MEMORY_GRAPH_HOME,
    MEMORY_GRAPH_SOURCE,
    content_hash,
    entity_id,
    memory_graph_entity_id,
    relation_id,
)
from aesoperator.graph_schema.models import Entity, Relation, utcnow
from aesoperator.graph_schema.vocabulary import normalize_type_name
from aesoperator.serve.memory_listing import _Listed, _ListedRelation, _Listing
from aesoperator.serve.schemas import (
    MAX_MEMORY_NAME_CHARS,
    AddedObservations,
    MemoryEntity,
    MemoryGraphOutput,
    MemoryRelation,
    ObservationAddition,
    ObservationDeletion,
)

if TYPE_CHECKING:
    from aesoperator.context import ContextEngine

DEFAULT_MEMORY_NAMESPACE = MEMORY_GRAPH_HOME
PLACEHOLDER_TYPE = "MemoryPlaceholder"
_NEIGHBOR_LIMIT = 10_000_000
# Change-log rows replayed into the search listing before rebuilding it is cheaper.
LISTING_REPLAY_MAX = 20_000


class MemoryGraph:
    """The memory server's knowledge graph kept in the engine's store (synchronous core)."""

    def __init__(self, engine: ContextEngine, namespace: str = DEFAULT_MEMORY_NAMESPACE, embed: bool = True) -> None:
        self.engine = engine
        self.namespace = namespace
        self.embed = embed and engine.settings.embed_writes != "off"
        self._lock = threading.RLock()
        self._last_order = 0
        self._adopted = namespace == MEMORY_GRAPH_HOME  # the home namespace never had other ids
        # (change-log position, listing): search_nodes scans this instead of reading the graph.
        self._listing: tuple[int, _Listing] | None = None
        # Embedding off the write path (setting `embed_writes`): writes commit without vectors and
        # the backlog embeds them; it starts now, to catch up with what an earlier process left.
        self._backlog: EmbeddingBacklog | None = None
        if self.embed and engine.settings.embed_writes == "background":
            self._backlog = engine.embedding_backlog(namespace, self._embeddable)

    # -- mapping ------------------------------------------------------------------------------------
    def entity_id(self, name: str) -> str:
        return memory_graph_entity_id(name, self.namespace)

    def _order(self) -> int:
        self._last_order = max(time.time_ns(), self._last_order + 1)
        return self._last_order

    @staticmethod
    def _check_name(name: str, what: str = "entity name") -> None:
        if not name.strip():
            raise SchemaError(f"{what} must not be blank")
        if len(name) > MAX_MEMORY_NAME_CHARS:
            raise SchemaError(f"{what} is {len(name)} characters; the limit is {MAX_MEMORY_NAME_CHARS}")

    def _entity(
        self, name: str, entity_type: str, observations: Sequence[str], order: int, placeholder: bool = False
    ) -> Entity:
        self._check_name(name)
        if placeholder:
            text = name
            props: dict[str, Any] = {"placeholder": True, "order": order}
            kind = PLACEHOLDER_TYPE
        else:
            lines = [f"{name} ({entity_type})" if entity_type else name, *(f"- {o}" for o in observations)]
            text = "\n".join(lines)
            props = {"entityType": entity_type, "observations": list(observations), "order": order}
            kind = normalize_type_name(entity_type)
        try:
            return Entity(
                id=self.entity_id(name),
                type=kind,
                name=name,
                text=text,
                properties=props,
                source=MEMORY_GRAPH_SOURCE,
                namespace=self.namespace,
            )
        except ValueError as exc:
            raise SchemaError(f"entity {name[:80]!r} cannot be stored: {_first_error(exc)}") from None

    def _relation(self, rel: MemoryRelation, order: int) -> Relation:
        kind = normalize_type_name(rel.relationType, upper=True)
        src, dst = self.entity_id(rel.from_), self.entity_id(rel.to)
        return Relation(
            id=relation_id(kind, src, dst, key=rel.relationType),
            type=kind,
            src=src,
            dst=dst,
            properties={"relationType": rel.relationType, "from": rel.from_, "to": rel.to, "order": order},
            source=MEMORY_GRAPH_SOURCE,
            namespace=self.namespace,
        )

    def _relation_id(self, rel: MemoryRelation) -> str:
        kind = normalize_type_name(rel.relationType, upper=True)
        return relation_id(kind, self.entity_id(rel.from_), self.entity_id(rel.to), key=rel.relationType)

    @staticmethod
    def _is_placeholder(entity: Entity) -> bool:
        return bool(entity.properties.get("placeholder"))

    @classmethod
    def _embeddable(cls, entity: Entity) -> bool:
        """Memory entities get vectors; placeholders (names only relations hold) do not."""
        return entity.source == MEMORY_GRAPH_SOURCE and not cls._is_placeholder(entity)

    @staticmethod
    def _as_memory_entity(entity: Entity) -> MemoryEntity:
        props = entity.properties
        return MemoryEntity(
            name=entity.name,
            entityType=str(props.get("entityType", entity.type)),
            observations=[str(o) for o in props.get("observations", [])],
        )

    @staticmethod
    def _as_memory_relation(relation: Relation) -> MemoryRelation:
        props = relation.properties
        return MemoryRelation.model_validate(
            {
                "from": str(props.get("from", "")),
                "to": str(props.get("to", "")),
                "relationType": str(props.get("relationType", relation.type)),
            }
        )

    # -- store access -------------------------------------------------------------------------------
    def _load(self, names: Iterable[str]) -> dict[str, Entity]:
        """Stored memory entities (placeholders included) by name."""
        ids = list(dict.fromkeys(self.entity_id(n) for n in names if n.strip()))
        found = self.engine.store.get_entities(ids, [self.namespace])
        return {e.name: e for e in found if e.source == MEMORY_GRAPH_SOURCE}

    def _all(self) -> list[Entity]:
        out: list[Entity] = []
        for batch in self.engine.store.iter_entities(batch_size=5000, namespaces=[self.namespace]):
            out.extend(e for e in batch if e.source == MEMORY_GRAPH_SOURCE)
        return out

    def _live_relations(self, ids: Sequence[str]) -> list[Relation]:
        """Live memory relations with at least one end among `ids`, in creation order."""
        if not ids:
            return []
        sub = self.engine.store.neighbors(list(ids), depth=1, namespaces=[self.namespace], limit=_NEIGHBOR_LIMIT)
        wanted = set(ids)
        unique = {
            r.id: r for r in sub.relations if r.source == MEMORY_GRAPH_SOURCE and (r.src in wanted or r.dst in wanted)
        }
        return sorted(unique.values(), key=lambda r: (int(r.properties.get("order", 0)), r.id))

    def _listed(self) -> _Listing:
        """Every real memory entity in creation order with its lower-cased searchable fields, and
        the live memory relations touching each entity.

        Kept until the store's change log moves (so writes by any process are seen), then
        brought up to date from the log: only the entities and relations it names are read
        again. A long gap, or a log that no longer reaches back, rebuilds the listing."""
        seq = self.engine.store.last_seq()
        with self._lock:
            cached = self._listing
        if cached is not None and cached[0] == seq:
            return cached[1]
        listing = self._caught_up(cached[1], cached[0]) if cached is not None else None
        if listing is None:
            # Read after taking `seq`: a write in between is replayed (again) by the next call.
            listing = self._full_listing()
            # The listing is long-lived and large (objects per entity and relation): move what is
            # alive now out of the collector's reach, so full collections do not walk it again
            # and again between calls (they were the tail of search_nodes latency).
            gc.freeze()
        with self._lock:
            self._listing = (seq, listing)
        return listing

    def _listed_row(self, entity: Entity) -> _Listed:
        memory = self._as_memory_entity(entity)
        fields = (memory.name.lower(), memory.entityType.lower(), *(o.lower() for o in memory.observations))
        return _Listed(memory, entity.id, fields, (int(entity.properties.get("order", 0)), entity.id))

    def _listed_relation(self, relation: Relation) -> _ListedRelation:
        return _ListedRelation(
            (int(relation.properties.get("order", 0)), relation.id),
            relation.src,
            relation.dst,
            relation.valid_to,
            self._as_memory_relation(relation),
        )

    def _full_listing(self) -> _Listing:
        everything = self._all()
        rows = {e.id: self._listed_row(e) for e in everything if not self._is_placeholder(e)}
        relations = {r.id: self._listed_relation(r) for r in self._live_relations([e.id for e in everything])}
        return _Listing(rows, relations)

    def _caught_up(self, listing: _Listing, since: int) -> _Listing | None:
        """`listing` with the changes logged after `since` applied, or None to rebuild."""
        store = self.engine.store
        log_start = getattr(store, "change_log_start", None)
        if callable(log_start) and int(log_start()) > since:
            return None
        changes = store.changes_since(since, limit=LISTING_REPLAY_MAX + 1)
        if len(changes) > LISTING_REPLAY_MAX:
            return None
        entity_ids = sorted({c.id for c in changes if c.kind == "entity" and c.namespace == self.namespace})
        relation_ids = sorted({c.id for c in changes if c.kind == "relation" and c.namespace == self.namespace})
        if not entity_ids and not relation_ids:
            return listing
        rows = dict(listing.rows)
        relations = dict(listing.relations)
        found = {e.id: e for e in store.get_entities(entity_ids, [self.namespace])}
        for eid in entity_ids:
            entity = found.get(eid)
            rows.pop(eid, None)
            if entity is not None and entity.source == MEMORY_GRAPH_SOURCE and not self._is_placeholder(entity):
                rows[eid] = self._listed_row(entity)
        gone = {eid for eid in entity_ids if eid not in found}
        for rid in relation_ids:
            relations.pop(rid, None)
        for relation in store.get_relations(relation_ids):
            if relation.source == MEMORY_GRAPH_SOURCE and relation.namespace == self.namespace and relation.is_live():
                relations[relation.id] = self._listed_relation(relation)
        if gone:  # a relation never outlives its ends
            relations = {rid: r for rid, r in relations.items() if r.src not in gone and r.dst not in gone}
        return _Listing(rows, relations)

    def _real_in_order(self, entities: Iterable[Entity]) -> list[Entity]:
        return sorted(
            (e for e in entities if not self._is_placeholder(e)),
            key=lambda e: (int(e.properties.get("order", 0)), e.id),
        )

    def _with_relations(self, entities: list[MemoryEntity], ids: Sequence[str]) -> MemoryGraphOutput:
        relations = self._live_relations(ids)
        return MemoryGraphOutput(entities=entities, relations=[self._as_memory_relation(r) for r in relations])

    def _write(
        self,
        entities: Sequence[Entity] = (),
        relations: Sequence[Relation] = (),
        delete_entity_ids: Sequence[str] = (),
        expire_relation_ids: Sequence[str] = (),
    ) -> None:
        vectors: dict[str, Any] = {}
        model: str | None = None
        embeddable = [e for e in entities if has_vector(e)]  # placeholders get none
        if self.embed and embeddable and self._backlog is None:
            texts = [embedding_text(e) for e in embeddable]
            matrix = self.engine.embedder.embed(texts)
            vectors = {
                e.id: (content_hash(t), matrix[i]) for i, (e, t) in enumerate(zip(embeddable, texts, strict=True))
            }
            model = self.engine.embedder.model_name
        batch = WriteBatch(
            entities=list(entities),
            relations=list(relations),
            vectors=vectors,
            vector_model=model,
            delete_vector_ids=without_vectors(entities),
            delete_entity_ids=list(delete_entity_ids),
            expire_relation_ids=list(expire_relation_ids),
        )
        if not batch.is_empty():
            result = self.engine.store.write(batch)
            if self._backlog is not None:  # every write, so a burst of relations also defers it
                # Only this write's entities: another replica's backlog embeds its own writes.
                self._backlog.notify(result.seq, [e.id for e in entities])

    def _orphaned_placeholders(self, candidates: Iterable[Entity], leaving: set[str], gone: set[str]) -> list[str]:
        """Placeholders among `candidates` whose every live relation is in `leaving` or touches `gone`."""
        holders = [e for e in candidates if self._is_placeholder(e) and e.id not in gone]
        if not holders:
            return []
        sub = self.engine.store.neighbors(
            [e.id for e in holders], depth=1, namespaces=[self.namespace], limit=_NEIGHBOR_LIMIT
        )
        needed: set[str] = set()
        for rel in sub.relations:
            if rel.id in leaving or rel.src in gone or rel.dst in gone:
                continue
            needed.update((rel.src, rel.dst))
        return [e.id for e in holders if e.id not in needed]

    def _ready(self) -> None:
        """Adopt the unscoped ids of an older version once, before the first operation."""
        if self._adopted:
            return
        with self._lock:
            if not self._adopted:
                self._adopt_unscoped_ids()
                self._adopted = True

    def _adopt_unscoped_ids(self) -> None:
        """Move memory entities stored in this namespace under the ids they had before ids carried
        the namespace (`memory-graph:entity:<name>`) to their scoped ids, in one write: the
        entities keep their content and creation time, the relations touching them (history too)
        are re-pointed, and their vectors are carried over."""
        store = self.engine.store
        old = {
            e.id: e
            for e in self._all()
            if e.id != self.entity_id(e.name) and e.id == entity_id(MEMORY_GRAPH_SOURCE, "entity", e.name)
        }
        if not old:
            return
        renamed = {i: self.entity_id(e.name) for i, e in old.items()}
        relations: list[Relation] = []
        for page in store.iter_relations(batch_size=5000):
            for rel in page:
                if rel.src not in renamed and rel.dst not in renamed:
                    continue
                src, dst = renamed.get(rel.src, rel.src), renamed.get(rel.dst, rel.dst)
                key = str(rel.properties.get("relationType", "")) if rel.source == MEMORY_GRAPH_SOURCE else ""
                derived = rel.id == relation_id(rel.type, rel.src, rel.dst, key=key)
                new_id = relation_id(rel.type, src, dst, key=key) if derived else rel.id
                relations.append(rel.model_copy(update={"id": new_id, "src": src, "dst": dst}))
        entities = [e.model_copy(update={"id": renamed[i]}) for i, e in old.items()]
        finder = getattr(store, "vector_models", None)
        models = [str(m) for m in finder()] if callable(finder) else []
        batches = [WriteBatch(entities=entities, relations=relations, delete_entity_ids=sorted(old))]
        for model in models:
            hashes = store.vector_hashes(sorted(old), model)
            stored = store.get_vectors(sorted(hashes), model)
            vectors = {renamed[i]: (hashes[i], v) for i, v in stored.items()}
            if vectors:
                batches.append(WriteBatch(vectors=vectors, vector_model=model))
        if len(batches) > 1:  # the first model's vectors go with the entities, in the same write
            first = batches.pop(1)
            batches[0].vectors, batches[0].vector_model = first.vectors, first.vector_model
        for batch in batches:
            store.write(batch)

    # -- the memory server's operations -------------------------------------------------------------
    def create_entities(self, entities: Sequence[MemoryEntity]) -> list[MemoryEntity]:
        self._ready()
        with self._lock:
            for e in entities:
                self._check_name(e.name)
            stored = self._load(e.name for e in entities)
            created: list[MemoryEntity] = []
            rows: list[Entity] = []
            seen: set[str] = set()
            for e in entities:
                existing = stored.get(e.name)
                if e.name in seen or (existing is not None and not self._is_placeholder(existing)):
                    continue
                seen.add(e.name)
                rows.append(self._entity(e.name, e.entityType, e.observations, self._order()))
                created.append(e)
            self._write(rows)
            return created

    def create_relations(self, relations: Sequence[MemoryRelation]) -> list[MemoryRelation]:
        self._ready()
        with self._lock:
            for r in relations:
                self._check_name(r.from_, "relation 'from'")
                self._check_name(r.to, "relation 'to'")
            ids = [self._relation_id(r) for r in relations]
            live = {
                rel.id
                for rel in self.engine.store.get_relations(ids)
                if rel.expired_at is None and rel.namespace == self.namespace
            }
            new: list[MemoryRelation] = []
            rows: list[Relation] = []
            seen: set[str] = set()
            for rel, rid in zip(relations, ids, strict=True):
                if rid in live or rid in seen:
                    continue
                seen.add(rid)
                new.append(rel)
                rows.append(self._relation(rel, self._order()))
            ends = list(dict.fromkeys(n for r in new for n in (r.from_, r.to)))
            stored = self._load(ends)
            holders = [self._entity(n, "", (), self._order(), placeholder=True) for n in ends if n not in stored]
            self._write(holders, rows)
            return new

    def add_observations(self, additions: Sequence[ObservationAddition]) -> list[AddedObservations]:
        self._ready()
        with self._lock:
            stored = self._load(a.entityName for a in additions)
            state: dict[str, tuple[Entity, list[str]]] = {}
            results: list[AddedObservations] = []
            for a in additions:
                entity = stored.get(a.entityName)
                if entity is None or self._is_placeholder(entity):
                    raise SchemaError(f"Entity with name {a.entityName} not found")
                if a.entityName not in state:
                    state[a.entityName] = (entity, [str(o) for o in entity.properties.get("observations", [])])
                observations = state[a.entityName][1]
                added = [c for c in a.contents if c not in observations]
                observations.extend(added)
                results.append(AddedObservations(entityName=a.entityName, addedObservations=added))
            rows = [
                self._entity(e.name, str(e.properties.get("entityType", "")), obs, int(e.properties.get("order", 0)))
                for e, obs in state.values()
            ]
            self._write(rows)
            return results

    def delete_entities(self, names: Sequence[str]) -> None:
        self._ready()
        with self._lock:
            stored = self._load(names)
            gone = {e.id for e in stored.values()}
            if not gone:
                return
            around = self.engine.store.neighbors(
                sorted(gone), depth=1, namespaces=[self.namespace], limit=_NEIGHBOR_LIMIT
            )
            orphans = self._orphaned_placeholders(around.entities.values(), set(), gone)
            self._write(delete_entity_ids=sorted(gone | set(orphans)))

    def delete_observations(self, deletions: Sequence[ObservationDeletion]) -> None:
        self._ready()
        with self._lock:
            stored = self._load(d.entityName for d in deletions)
            state: dict[str, tuple[Entity, list[str]]] = {}
            for d in deletions:
                entity = stored.get(d.entityName)
                if entity is None or self._is_placeholder(entity):
                    continue
                if d.entityName not in state:
                    state[d.entityName] = (entity, [str(o) for o in entity.properties.get("observations", [])])
                entity, observations = state[d.entityName]
                drop = set(d.observations)
                state[d.entityName] = (entity, [o for o in observations if o not in drop])
            rows = [
                self._entity(e.name, str(e.properties.get("entityType", "")), obs, int(e.properties.get("order", 0)))
                for e, obs in state.values()
            ]
            self._write(rows)

    def delete_relations(self, relations: Sequence[MemoryRelation]) -> None:
        self._ready()
        with self._lock:
            ids = list(dict.fromkeys(self._relation_id(r) for r in relations))
            live = [
                rel
                for rel in self.engine.store.get_relations(ids)
                if rel.expired_at is None and rel.namespace == self.namespace
            ]
            if not live:
                return
            leaving = {r.id for r in live}
            ends = self.engine.store.get_entities(sorted({i for r in live for i in (r.src, r.dst)}), [self.namespace])
            orphans = self._orphaned_placeholders(ends, leaving, set())
            self._write(delete_entity_ids=orphans, expire_relation_ids=sorted(leaving))

    def read_graph(self) -> MemoryGraphOutput:
        self._ready()
        everything = self._all()
        real = self._real_in_order(everything)
        return self._with_relations([self._as_memory_entity(e) for e in real], [e.id for e in everything])

    def search_nodes(self, query: str) -> MemoryGraphOutput:
        """Entities whose name, type or an observation contains `query` (case-insensitive), and
        the relations touching them: the memory server's matching, over a cached listing."""
        self._ready()
        listing = self._listed()
        hits = listing.matching(query.lower())
        return MemoryGraphOutput(
            entities=[row.memory for row in hits],
            relations=listing.relations_touching((row.id for row in hits), utcnow()),
        )

    def open_nodes(self, names: Sequence[str]) -> MemoryGraphOutput:
        self._ready()
        real = self._real_in_order(self._load(names).values())
        return self._with_relations([self._as_memory_entity(e) for e in real], [e.id for e in real])


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg', '')}".strip(": ")
        except Exception:
            pass
    return str(exc).splitlines()[0]


__all__ = ["DEFAULT_MEMORY_NAMESPACE", "MEMORY_GRAPH_SOURCE", "MemoryGraph"]
