"""Applying one `WriteBatch` to Neo4j inside a single managed transaction.

Order inside the transaction: lock the change counter, validate, delete relations, delete
entities (with their relations, vectors and history), upsert entities, upsert relations, expire
relations, store vectors, record source items, append the change log. Any error rolls the whole
batch back; the driver may run the function again on a transient error, so it keeps no state
between attempts.

Lookups are kept to what can have changed: validation reads every stored entity the batch names
once (endpoints and upserts alike), and entities the transaction creates have no stored relations
or vectors to compare with, so relations with a derived id touching them and their vectors are
created without a lookup (the uniqueness constraints still guard against any writer that skips
the counter lock).

Every value is a query parameter. Labels and relationship types are the only names put into
query text, and only through `cypher_name`, which admits strict identifiers alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from neo4j import ManagedTransaction

from aesoperator.engine.stores.base import WriteBatch, WriteResult, namespace_conflict
from aesoperator.engine.stores.neo4j_autocommit import QueryRunner
from aesoperator.engine.stores.neo4j_erase import mark_erased
from aesoperator.engine.stores.neo4j_rows import (
    chunks,
    entity_key,
    entity_props,
    entity_version_json,
    fingerprint,
    relation_key,
    relation_props,
)
from aesoperator.engine.stores.neo4j_schema import cypher_name
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.ids import relation_id
from aesoperator.graph_schema.models import Entity, Relation, to_iso
from aesoperator.graph_schema.vocabulary import TYPE_NAME_PATTERN

ChangeRow = dict[str, Any]  # seq, kind, id, op, namespace
VECTOR_KEY_SEP = "\x1f"
# Relationship types per lookup query: a UNION of one index seek per type.
TYPES_PER_LOOKUP = 40
# Changes per `:_ChangeLog` node.
CHANGES_PER_NODE = 2000


# Creates of every type in one statement: the label or relationship type is dynamic (`$(…)`,
# Neo4j 5.26+), so one cached plan serves all types, and the properties are listed rather than
# `SET e = map`, which would put an Eager (the whole batch materialised) into the plan. A null
# property is not stored, as with `SET e = map`. Types were checked by `check_batch_names`.
_ENTITY_PROPS = (
    "id", "type", "name", "name_lower", "text", "properties", "source", "provenance", "namespace",
    "valid_from", "valid_to", "fp", "updated_at", "seq", "created_at",
)  # fmt: skip
_RELATION_PROPS = (
    "id", "properties", "source", "provenance", "namespace", "valid_from", "valid_to", "expired_at",
    "recorded_at", "seq",
)  # fmt: skip
CREATE_ENTITIES = (
    "UNWIND $rows AS r CREATE (e:Entity:$(r.type) {" + ", ".join(f"{k}: r.{k}" for k in _ENTITY_PROPS) + "})"
)
CREATE_RELATIONS = (
    "UNWIND $rows AS row MATCH (a:Entity {id: row.src}) MATCH (b:Entity {id: row.dst}) "
    "CREATE (a)-[r:$(row.type) {" + ", ".join(f"{k}: row.props.{k}" for k in _RELATION_PROPS) + "}]->(b)"
)


def vector_key(model: str, entity_id: str) -> str:
    return f"{model}{VECTOR_KEY_SEP}{entity_id}"


def source_item_uid(source: str, key: str) -> str:
    return f"{source}{VECTOR_KEY_SEP}{key}"


def check_batch_names(batch: WriteBatch) -> None:
    """Refuse, before any query, type names that could not safely become labels or types."""
    for ent in batch.entities:
        cypher_name(ent.type, f"entity {ent.id!r} type")
    for rel in batch.relations:
        cypher_name(rel.type, f"relation {rel.id!r} type")


def relation_types(tx: QueryRunner) -> list[str]:
    """Relationship types known to the database that could be the store's (safe names only)."""
    result = tx.run("CALL db.relationshipTypes() YIELD relationshipType RETURN relationshipType AS t")
    return sorted(r["t"] for r in result if TYPE_NAME_PATTERN.fullmatch(r["t"]))


def relations_by_id(
    tx: QueryRunner, ids: Sequence[str], types: Sequence[str], size: int, live_only: bool = False
) -> dict[str, dict[str, Any]]:
    """Rows `{r, type, src, dst}` of the relations with these ids, found through the per-type
    id constraints (one index seek per type and id)."""
    found: dict[str, dict[str, Any]] = {}
    if not ids or not types:
        return found
    extra = " AND r.expired_at IS NULL" if live_only else ""
    for type_group in chunks(list(types), TYPES_PER_LOOKUP):
        query = " UNION ALL ".join(
            f"MATCH (a:Entity)-[r:{cypher_name(t)}]->(b:Entity) WHERE r.id IN $ids{extra} "
            "RETURN r {.*} AS r, type(r) AS type, a.id AS src, b.id AS dst"
            for t in type_group
        )
        for part in chunks(list(ids), size):
            for record in tx.run(query, ids=part):
                row = dict(record)
                found[row["r"]["id"]] = row
    return found


def _last_wins(items: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        out.pop(item.id, None)
        out[item.id] = item
    return out


def _group(rows: Iterable[tuple[str, Any]]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for key, row in rows:
        groups.setdefault(key, []).append(row)
    return groups


@dataclass(slots=True)
class CypherBatch:
    """Writes one batch in `tx`; create one per transaction attempt."""

    tx: ManagedTransaction
    now: str
    size: int
    seq: int = 0
    changes: list[ChangeRow] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    _types: list[str] | None = None
    # Entities this transaction created (absent when it began): they have no stored relations
    # or vectors yet, so those need no lookup.
    created: dict[str, str] = field(default_factory=dict)  # id -> namespace
    # Stored entities among the batch's entities and endpoints, read once by `prepare` (the
    # batch's deletes left out): id -> {type, fp, created_at, namespace}.
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)

    # plumbing -----------------------------------------------------------------------------
    def _count(self, key: str, n: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def _change(self, kind: str, item_id: str, op: str, namespace: str) -> int:
        self.seq += 1
        self.changes.append({"seq": self.seq, "kind": kind, "id": item_id, "op": op, "namespace": namespace})
        return self.seq

    def _unwind(self, query: str, rows: Sequence[Any], **params: Any) -> None:
        for part in chunks(rows, self.size):
            self.tx.run(query, rows=part, **params).consume()

    def _fetch(self, query: str, ids: Sequence[str], **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for part in chunks(ids, self.size):
            out.extend(dict(r) for r in self.tx.run(query, ids=part, **params))
        return out

    def _relation_types(self) -> list[str]:
        if self._types is None:
            self._types = relation_types(self.tx)
        return self._types

    def lock(self) -> None:
        """Lock the change counter: writers queue here, so `seq` follows commit order and every
        read below sees what earlier writers committed."""
        record = self.tx.run(
            "MERGE (k:_Counter {name: 'changes'}) ON CREATE SET k.seq = 0 SET k.locked_at = $now RETURN k.seq AS seq",
            now=self.now,
        ).single()
        self.seq = 0 if record is None else int(record["seq"])

    # validation ---------------------------------------------------------------------------
    def prepare(
        self, batch: WriteBatch
    ) -> tuple[dict[str, Entity], dict[str, Relation], dict[str, tuple[str, bytes, int]]]:
        entities: dict[str, Entity] = _last_wins(batch.entities)
        relations: dict[str, Relation] = _last_wins(batch.relations)
        deleted = set(batch.delete_entity_ids)
        needed: set[str] = set()
        for rel in relations.values():
            needed.add(rel.src)
            needed.add(rel.dst)
        needed.update(batch.vectors)
        needed -= entities.keys()
        lookup = sorted((needed | entities.keys()) - deleted)
        self.stored = {
            r["id"]: r
            for r in self._fetch(
                "UNWIND $ids AS id MATCH (e:Entity {id: id}) "
                "RETURN id, e.type AS type, e.fp AS fp, e.created_at AS created_at, e.namespace AS namespace",
                lookup,
            )
        }
        stored = needed & self.stored.keys()
        for rel in relations.values():
            for end in (rel.src, rel.dst):
                if end in entities or end in stored:
                    continue
                why = "is deleted in the same batch" if end in deleted else "is not stored"
                raise SchemaError(
                    f"relation {rel.id} ({rel.type} {rel.src} -> {rel.dst}) points to entity {end!r}, "
                    f"which {why}: write the entity first or in the same batch"
                )
        vectors = self._prepare_vectors(batch, entities, stored) if batch.vectors else {}
        return entities, relations, vectors

    def _prepare_vectors(
        self, batch: WriteBatch, entities: dict[str, Entity], stored: set[str]
    ) -> dict[str, tuple[str, bytes, int]]:
        model = batch.vector_model
        if not model:
            raise SchemaError("a batch with vectors needs vector_model (the embedding model name)")
        record = self.tx.run("MATCH (v:_Vector {model: $model}) RETURN v.dim AS dim LIMIT 1", model=model).single()
        dim: int | None = None if record is None else int(record["dim"])
        out: dict[str, tuple[str, bytes, int]] = {}
        for entity_id, (digest, vector) in batch.vectors.items():
            if entity_id not in entities and entity_id not in stored:
                raise SchemaError(
                    f"vector for entity {entity_id!r} has no entity: write the entity first or in the same batch"
                )
            array = np.ascontiguousarray(vector, dtype="<f4")
            if array.ndim != 1 or array.size == 0:
                raise SchemaError(
                    f"vector for entity {entity_id!r} has shape {array.shape}; expected one non-empty row"
                )
            if not np.isfinite(array).all():
                raise SchemaError(f"vector for entity {entity_id!r} holds NaN or infinite values")
            if dim is None:
                dim = int(array.size)
            elif array.size != dim:
                raise SchemaError(
                    f"vector for entity {entity_id!r} has {array.size} dimensions but model {model!r} "
                    f"vectors have {dim}"
                )
            out[entity_id] = (digest, array.tobytes(), dim)
        return out

    # deletes ------------------------------------------------------------------------------
    def delete_relations(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        rows = relations_by_id(self.tx, list(dict.fromkeys(ids)), self._relation_types(), self.size)
        self._drop_relations(rows)

    def _drop_relations(self, rows: dict[str, dict[str, Any]]) -> None:
        if not rows:
            return
        for rel_type, ids in _group((row["type"], rid) for rid, row in rows.items()).items():
            self._unwind(f"UNWIND $rows AS id MATCH ()-[r:{cypher_name(rel_type)} {{id: id}}]->() DELETE r", ids)
        for rid, row in rows.items():
            self._change("relation", rid, "delete", row["r"]["namespace"])
        self._count("relations_deleted", len(rows))

    def delete_entities(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        targets = {
            r["id"]: r["ns"]
            for r in self._fetch(
                "UNWIND $ids AS id MATCH (e:Entity {id: id}) RETURN e.id AS id, e.namespace AS ns",
                list(dict.fromkeys(ids)),
            )
        }
        if not targets:
            return
        keys = list(targets)
        touching: dict[str, str] = {}
        for r in self._fetch(
            "UNWIND $ids AS id MATCH (:Entity {id: id})-[r]-(:Entity) RETURN DISTINCT r.id AS id, r.namespace AS ns",
            keys,
        ):
            touching[r["id"]] = r["ns"]
        with_vectors = list(
            dict.fromkeys(
                r["id"]
                for r in self._fetch("UNWIND $ids AS id MATCH (v:_Vector {entity_id: id}) RETURN DISTINCT id", keys)
            )
        )
        for rid, ns in touching.items():
            self._change("relation", rid, "delete", ns)
        self._count("relations_deleted", len(touching))
        if with_vectors:
            self._unwind("UNWIND $rows AS id MATCH (v:_Vector {entity_id: id}) DELETE v", with_vectors)
            for eid in with_vectors:
                self._change("vector", eid, "delete", targets[eid])
        self._unwind("UNWIND $rows AS id MATCH (v:_EntityVersion {entity_id: id}) DELETE v", keys)
        self._unwind("UNWIND $rows AS id MATCH (e:Entity {id: id}) DETACH DELETE e", keys)
        for eid, ns in targets.items():
            self._change("entity", eid, "delete", ns)
        self._count("entities_deleted", len(targets))

    # upserts ------------------------------------------------------------------------------
    def upsert_entities(self, entities: dict[str, Entity], may_move: Callable[[str], bool]) -> None:
        """New entities are created, changed ones updated in place (the old version kept as an
        `:_EntityVersion`), unchanged ones (same fingerprint) left alone. A stored entity is not
        moved to another namespace unless `may_move(id)`."""
        if not entities:
            return
        existing = self.stored  # read by `prepare`; the deletes since then were left out of it
        for eid, ent in entities.items():
            old_row = existing.get(eid)
            if old_row is not None and old_row["namespace"] != ent.namespace and not may_move(eid):
                raise namespace_conflict("entity", eid, ent.namespace)
        creates: list[tuple[str, dict[str, Any]]] = []
        updates: list[tuple[str, dict[str, Any]]] = []
        relabel: list[tuple[str, str]] = []
        for eid, ent in entities.items():
            props = entity_props(ent)
            props["fp"] = fingerprint(entity_key(props))
            old = existing.get(eid)
            if old is not None and old["fp"] == props["fp"]:
                continue
            props["updated_at"] = to_iso(ent.updated_at) or self.now
            props["seq"] = self._change("entity", eid, "upsert", ent.namespace)
            if old is None:
                props["created_at"] = to_iso(ent.created_at) or self.now
                creates.append((ent.type, props))
                self.created[eid] = ent.namespace
                continue
            props["created_at"] = old["created_at"] or self.now
            if old["type"] != ent.type and old["type"] != "Entity":
                relabel.append((old["type"], eid))
            updates.append((ent.type, props))
        if updates:
            self._keep_history([props for _t, props in updates])
        for old_type, ids in _group(relabel).items():
            self._unwind(f"UNWIND $rows AS id MATCH (e:Entity {{id: id}}) REMOVE e:{cypher_name(old_type)}", ids)
        for ent_type, rows in _group(updates).items():
            self._unwind(f"UNWIND $rows AS r MATCH (e:Entity {{id: r.id}}) SET e = r, e:{cypher_name(ent_type)}", rows)
        # New ids were checked absent under the counter lock, so CREATE is safe; the uniqueness
        # constraint on :Entity(id) still guards against any writer that skips the lock.
        self._unwind(CREATE_ENTITIES, [props for _t, props in creates])
        self._count("entities_written", len(creates) + len(updates))

    def _keep_history(self, updates: list[dict[str, Any]]) -> None:
        seqs = {props["id"]: props["seq"] for props in updates}
        history = [
            {"id": r["e"]["id"], "version": entity_version_json(r["e"]), "seq": seqs[r["e"]["id"]]}
            for r in self._fetch("UNWIND $ids AS id MATCH (e:Entity {id: id}) RETURN e {.*} AS e", list(seqs))
        ]
        self._unwind(
            "UNWIND $rows AS r CREATE (:_EntityVersion "
            "{entity_id: r.id, version: r.version, replaced_at: $now, seq: r.seq})",
            history,
            now=self.now,
        )

    def _existing_relations(self, relations: dict[str, Relation]) -> dict[str, dict[str, Any]]:
        """Stored relations with the ids of `relations`. An id derived from type and endpoints
        (the default) can only exist under its own type, so it is looked up there alone, and not
        at all when an endpoint was created by this transaction (no stored relation touches it);
        other ids are looked up under every type."""
        own: dict[str, list[str]] = {}
        anywhere: list[str] = []
        for rid, rel in relations.items():
            if rid == relation_id(rel.type, rel.src, rel.dst):
                if rel.src in self.created or rel.dst in self.created:
                    continue
                own.setdefault(rel.type, []).append(rid)
            else:
                anywhere.append(rid)
        found: dict[str, dict[str, Any]] = {}
        if not own and not anywhere:
            return found
        known = set(self._relation_types())
        for rel_type, ids in own.items():
            if rel_type in known:
                found.update(relations_by_id(self.tx, ids, [rel_type], self.size))
        if anywhere:
            types = sorted(known | {r.type for r in relations.values()})
            found.update(relations_by_id(self.tx, anywhere, types, self.size))
        return found

    def upsert_relations(self, relations: dict[str, Relation], may_move: Callable[[str], bool]) -> None:
        if not relations:
            return
        existing = self._existing_relations(relations)
        for rid, old_row in existing.items():
            if old_row["r"].get("namespace") != relations[rid].namespace and not may_move(rid):
                raise namespace_conflict("relation", rid, relations[rid].namespace)
        creates: list[tuple[str, dict[str, Any]]] = []
        updates: list[tuple[str, dict[str, Any]]] = []
        moved: dict[str, dict[str, Any]] = {}
        for rid, rel in relations.items():
            props = relation_props(rel)
            old = existing.get(rid)
            if old is None:
                props["recorded_at"] = to_iso(rel.recorded_at) or self.now
            else:
                old_props = {**old["r"], "type": old["type"], "src": old["src"], "dst": old["dst"]}
                new_key = relation_key({**props, "type": rel.type, "src": rel.src, "dst": rel.dst})
                if new_key == relation_key(old_props):
                    continue
                props["recorded_at"] = old["r"].get("recorded_at") or self.now
            props["seq"] = self._change("relation", rid, "upsert", rel.namespace)
            row = {"src": rel.src, "dst": rel.dst, "props": props}
            if old is not None and (old["type"], old["src"], old["dst"]) == (rel.type, rel.src, rel.dst):
                updates.append((rel.type, row))
            else:
                if old is not None:
                    moved[rid] = old
                creates.append((rel.type, row))
        for old_type, ids in _group((row["type"], rid) for rid, row in moved.items()).items():
            self._unwind(f"UNWIND $rows AS id MATCH ()-[r:{cypher_name(old_type)} {{id: id}}]->() DELETE r", ids)
        for rel_type, rows in _group(updates).items():
            self._unwind(
                f"UNWIND $rows AS row MATCH ()-[r:{cypher_name(rel_type)} {{id: row.props.id}}]->() SET r = row.props",
                rows,
            )
        # As for entities: absent ids were checked under the lock, and the per-type uniqueness
        # constraint on `id` still guards.
        self._unwind(CREATE_RELATIONS, [{**row, "type": rel_type} for rel_type, row in creates])
        self._count("relations_written", len(creates) + len(updates))

    def expire_relations(self, ids: Sequence[str], at: str) -> None:
        if not ids:
            return
        live = relations_by_id(self.tx, list(dict.fromkeys(ids)), self._relation_types(), self.size, live_only=True)
        if not live:
            return
        rows: list[tuple[str, dict[str, Any]]] = []
        for rid, row in live.items():
            seq = self._change("relation", rid, "upsert", row["r"]["namespace"])
            rows.append((row["type"], {"id": rid, "seq": seq}))
        for rel_type, group in _group(rows).items():
            self._unwind(
                f"UNWIND $rows AS row MATCH ()-[r:{cypher_name(rel_type)} {{id: row.id}}]->() "
                "SET r.expired_at = $at, r.valid_to = coalesce(r.valid_to, $at), r.seq = row.seq",
                group,
                at=at,
            )
        self._count("relations_expired", len(live))

    def delete_vectors(self, ids: Sequence[str]) -> None:
        """Drop the stored vectors (every model) of `ids`; the entities stay."""
        if not ids:
            return
        with_vectors: dict[str, str] = {}
        for r in self._fetch(
            "UNWIND $ids AS id MATCH (v:_Vector {entity_id: id}) MATCH (e:Entity {id: id}) "
            "RETURN DISTINCT id, e.namespace AS ns",
            list(dict.fromkeys(ids)),
        ):
            with_vectors[r["id"]] = r["ns"]
        if not with_vectors:
            return
        self._unwind("UNWIND $rows AS id MATCH (v:_Vector {entity_id: id}) DELETE v", list(with_vectors))
        for eid, ns in with_vectors.items():
            self._change("vector", eid, "delete", ns)
        self._count("vectors_deleted", len(with_vectors))

    def store_vectors(self, model: str, vectors: dict[str, tuple[str, bytes, int]]) -> None:
        if not vectors:
            return
        # Entities created by this transaction have no stored vector; for the others one query
        # returns the entity's namespace and the stored vector, if any.
        namespaces = {eid: self.created[eid] for eid in vectors if eid in self.created}
        existing: dict[str, tuple[str, bytes]] = {}
        for r in self._fetch(
            "UNWIND $ids AS id MATCH (e:Entity {id: id}) OPTIONAL MATCH (v:_Vector {key: $model + $sep + id}) "
            "RETURN id, e.namespace AS ns, v.hash AS hash, v.values AS values",
            [eid for eid in vectors if eid not in namespaces],
            model=model,
            sep=VECTOR_KEY_SEP,
        ):
            namespaces[r["id"]] = r["ns"]
            if r["hash"] is not None:
                existing[r["id"]] = (r["hash"], bytes(r["values"]))
        creates: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for eid, (digest, blob, dim) in vectors.items():
            old = existing.get(eid)
            if old is not None and old[0] == digest and old[1] == blob:
                continue
            seq = self._change("vector", eid, "upsert", namespaces[eid])
            (creates if old is None else updates).append(
                {"key": vector_key(model, eid), "entity_id": eid, "model": model, "hash": digest,
                 "dim": dim, "values": blob, "seq": seq}
            )  # fmt: skip
        self._unwind("UNWIND $rows AS r MATCH (v:_Vector {key: r.key}) SET v = r", updates)
        # Absent keys were checked under the counter lock; the uniqueness constraint still guards.
        self._unwind("UNWIND $rows AS r CREATE (v:_Vector) SET v = r", creates)
        self._count("vectors_written", len(creates) + len(updates))

    def source_items(self, batch: WriteBatch) -> None:
        if batch.delete_source_items:
            self._unwind(
                "UNWIND $rows AS uid MATCH (s:_SourceItem {uid: uid}) DELETE s",
                [source_item_uid(source, key) for source, key in batch.delete_source_items],
            )
        if batch.source_items:
            rows = [
                {"uid": source_item_uid(s.source, s.key), "source": s.source, "key": s.key,
                 "content_hash": s.content_hash, "entity_ids": json.dumps(list(s.entity_ids)),
                 "relation_ids": json.dumps(list(s.relation_ids)), "cursor": s.cursor}
                for s in batch.source_items
            ]  # fmt: skip
            self._unwind("UNWIND $rows AS r MERGE (s:_SourceItem {uid: r.uid}) SET s = r", rows)

    def log_changes(self) -> int:
        """Append this write's changes as `:_ChangeLog` nodes of parallel lists, and move the
        counter."""
        if self.changes:
            nodes = [
                {"first": part[0]["seq"], "last": part[-1]["seq"],
                 "kinds": [c["kind"] for c in part], "ids": [c["id"] for c in part],
                 "ops": [c["op"] for c in part], "namespaces": [c["namespace"] for c in part]}
                for part in chunks(self.changes, CHANGES_PER_NODE)
            ]  # fmt: skip
            # The counter moves in the statement that writes the last log node.
            *head, tail = list(chunks(nodes, self.size))
            for part in head:
                self.tx.run("UNWIND $rows AS c CREATE (n:_ChangeLog) SET n = c", rows=part).consume()
            self.tx.run(
                "UNWIND $rows AS c CREATE (n:_ChangeLog) SET n = c "
                "WITH count(*) AS written MATCH (k:_Counter {name: 'changes'}) SET k.seq = $seq",
                rows=tail,
                seq=self.seq,
            ).consume()
        return self.seq

    def result(self, seq: int) -> WriteResult:
        return WriteResult(seq=seq, **self.counts)


def apply_batch(tx: ManagedTransaction, batch: WriteBatch, now: str, expire_at: str, size: int) -> WriteResult:
    """Validate and apply `batch` in `tx` (a managed write transaction)."""
    writer = CypherBatch(tx, now, size)
    writer.lock()
    entities, relations, vectors = writer.prepare(batch)
    writer.delete_relations(batch.delete_relation_ids)
    writer.delete_entities(batch.delete_entity_ids)
    writer.upsert_entities(entities, batch.may_move)
    writer.upsert_relations(relations, batch.may_move)
    writer.expire_relations(batch.expire_relation_ids, expire_at)
    writer.delete_vectors(batch.delete_vector_ids)
    if vectors and batch.vector_model:
        writer.store_vectors(batch.vector_model, vectors)
    writer.source_items(batch)
    if batch.erase:
        marker = mark_erased(tx, writer.changes, entities, now)
        if marker is not None:
            writer._change(marker["kind"], marker["id"], marker["op"], marker["namespace"])
    return writer.result(writer.log_changes())
