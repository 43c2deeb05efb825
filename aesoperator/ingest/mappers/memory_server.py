"""The official memory server's knowledge graph to graph items, losslessly.

`@modelcontextprotocol/server-memory` keeps entities (`name`, `entityType`, `observations`) and
relations (`from`, `to`, `relationType`). They are mapped exactly as the engine's own
memory-compatible tools (`aesoperator/serve/memory_graph.py`) store them, so a graph
imported from a memory server and one written through those tools agree id for id:

- an entity's id is `memory-graph:entity:<name>` in the namespace `memory-graph` and
  `memory-graph:entity@<namespace>:<name>` in any other (`memory_entity_id`); its type is the entityType
  made a safe type name (`normalize_type_name`: "person" -> `person`, "work place" -> `work_place`);
  its text is "<name> (<entityType>)" followed by one "- <observation>" line per observation; its
  properties keep the original `entityType`, the `observations` as a list, and `order`;
- a relation's type is the relationType made an upper-case safe name ("works at" -> `WORKS_AT`);
  its id includes the original relationType (`memory_relation_id`), so relationTypes that
  normalise alike never collide; its properties keep `relationType`, `from`, `to` and `order`;
- a relation may name an entity that does not exist (the memory server allows it): that name is
  held by a `MemoryPlaceholder` entity with the same id, which becomes the real entity once it
  is created and is removed when no relation names it any more;
- `order` is the item's position in the memory server's lists, kept stable across re-imports, so
  the graph can be written back in the server's own order (`export_memory_graph`).

Nothing else is dropped: names, types, observations and relation types are kept verbatim.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aesoperator.errors import MappingError
from aesoperator.graph_schema.ids import MEMORY_GRAPH_HOME, memory_graph_entity_id, relation_id
from aesoperator.graph_schema.models import MAX_NAME_CHARS, Entity, Provenance, Relation
from aesoperator.graph_schema.vocabulary import normalize_type_name
from aesoperator.ingest.records import MappedItem, SourceRecord, required

PLACEHOLDER_TYPE = "MemoryPlaceholder"
ENTITY_PREFIX = "entity:"
RELATION_PREFIX = "relation:"
GRAPH_URI = "memory://knowledge-graph"


def memory_entity_id(name: str, namespace: str = MEMORY_GRAPH_HOME) -> str:
    return memory_graph_entity_id(name, namespace)


def memory_relation_type(relation_type: str) -> str:
    return normalize_type_name(relation_type, upper=True)


def memory_relation_id(from_: str, relation_type: str, to: str, namespace: str = MEMORY_GRAPH_HOME) -> str:
    kind = memory_relation_type(relation_type)
    return relation_id(kind, memory_entity_id(from_, namespace), memory_entity_id(to, namespace), key=relation_type)


def entity_text(name: str, entity_type: str, observations: Sequence[str]) -> str:
    lines = [f"{name} ({entity_type})" if entity_type else name, *(f"- {o}" for o in observations)]
    return "\n".join(lines)


def name_problem(name: Any) -> str | None:
    """Why a name cannot be an entity of the graph, or None."""
    if not isinstance(name, str):
        return f"names are text, got {type(name).__name__}"
    if not name.strip():
        return "the name is blank"
    if len(name) > MAX_NAME_CHARS:
        return f"the name is {len(name)} characters; the limit is {MAX_NAME_CHARS}"
    return None


class MemoryServerMapper:
    """Pure: one memory-server record to graph items.

    kinds: "entity" {"name", "entityType", "observations", "order"}; "placeholder" {"name"};
    "relation" {"from", "to", "relationType", "order"}; "tombstone" {} (maps to nothing: the
    record's relation is expired).
    """

    kind = "memory"

    def __init__(self, source: str, namespace: str) -> None:
        self.source = source
        self.namespace = namespace

    def map(self, record: SourceRecord) -> MappedItem:
        p = record.payload
        provenance = Provenance(uri=record.uri, version=record.content_hash)
        if record.kind == "entity":
            name, entity_type = required(p, "name", str), required(p, "entityType", str)
            observations = list(required(p, "observations", list))
            entity = Entity(
                id=memory_entity_id(name, self.namespace),
                type=normalize_type_name(entity_type),
                name=name,
                text=entity_text(name, entity_type, observations),
                properties={"entityType": entity_type, "observations": observations, "order": p["order"]},
                source=self.source,
                provenance=provenance,
                namespace=self.namespace,
            )
            return MappedItem(entities=[entity])
        if record.kind == "placeholder":
            entity = Entity(
                id=memory_entity_id(p["name"], self.namespace),
                type=PLACEHOLDER_TYPE,
                name=p["name"],
                text=p["name"],
                properties={"placeholder": True, "order": 0},
                source=self.source,
                provenance=provenance,
                namespace=self.namespace,
            )
            return MappedItem(entities=[entity])
        if record.kind == "relation":
            for name in ("from", "relationType", "to"):
                required(p, name, str)
            relation = Relation(
                id=memory_relation_id(p["from"], p["relationType"], p["to"], self.namespace),
                type=memory_relation_type(p["relationType"]),
                src=memory_entity_id(p["from"], self.namespace),
                dst=memory_entity_id(p["to"], self.namespace),
                properties={"relationType": p["relationType"], "from": p["from"], "to": p["to"], "order": p["order"]},
                source=self.source,
                provenance=provenance,
                namespace=self.namespace,
            )
            return MappedItem(relations=[relation])
        if record.kind == "tombstone":
            return MappedItem()
        raise MappingError(f"unknown memory record kind {record.kind!r}")


def _order(item: Entity | Relation) -> tuple[int, str]:
    value = item.properties.get("order", 0)
    return (value if isinstance(value, int) else 0, item.id)


def export_memory_graph(entities: Iterable[Entity], relations: Iterable[Relation]) -> dict[str, list[dict[str, Any]]]:
    """Memory entities and live memory relations of our graph, in the memory server's shape and
    order (what its `read_graph` returns). Placeholders are not entities of that graph."""
    real = sorted(
        (e for e in entities if "entityType" in e.properties and not e.properties.get("placeholder")), key=_order
    )
    live = sorted((r for r in relations if r.expired_at is None and "relationType" in r.properties), key=_order)
    return {
        "entities": [
            {
                "name": e.name,
                "entityType": e.properties["entityType"],
                "observations": list(e.properties["observations"]),
            }
            for e in real
        ],
        "relations": [
            {"from": r.properties["from"], "to": r.properties["to"], "relationType": r.properties["relationType"]}
            for r in live
        ],
    }
