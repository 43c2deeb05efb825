"""The official memory server (`@modelcontextprotocol/server-memory`) as a source.

Its whole knowledge graph comes from one `read_graph` call (the server has no paging; the
connection's response size limit bounds it). Each entity and each relation is one record, so a
re-import maps only what changed: an entity whose observations grew, a new relation. Entities
come first, then placeholders for names that relations mention but no entity holds, then the
relations; a relation that is gone is sent once more as an empty record so that it is expired
(kept as history), and an entity that is gone is deleted. See `mappers/memory_server.py` for what
each becomes.

An item the graph cannot hold (a blank name, one longer than an entity name may be) is skipped
with its reason, together with the relations that name it; the rest is imported.

The server also lists its graph as the resource `memory://knowledge-graph` and sends updates for
it, so `aesop sources watch` re-imports whenever the graph changes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.errors import SourceError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.ingest.adapters.base import McpConnection, unchanged
from aesoperator.ingest.mappers.memory_server import (
    ENTITY_PREFIX,
    GRAPH_URI,
    RELATION_PREFIX,
    MemoryServerMapper,
    name_problem,
)
from aesoperator.ingest.records import SkippedRecord, SourceRecord
from aesoperator.ingest.sources import SourceDefinition

READ_TOOL = "read_graph"
# 2: ids carry the namespace outside `memory-graph`; a new version maps every item again once.
MAPPING_VERSION = 2


def entity_key(name: str) -> str:
    return ENTITY_PREFIX + name


def relation_key(from_: str, relation_type: str, to: str) -> str:
    return RELATION_PREFIX + json.dumps([from_, relation_type, to], ensure_ascii=False)


def _versioned(digest: str, order: int) -> str:
    """A content hash that also carries the item's order, so the next run can keep it."""
    return f"{digest}#{order}"


def _previous_order(state: SourceItemState | None) -> int | None:
    if state is None or "#" not in state.content_hash:
        return None
    tail = state.content_hash.rsplit("#", 1)[1]
    return int(tail) if tail.isdigit() else None


def assign_orders(keys: list[str], previous: Mapping[str, SourceItemState], prefix: str) -> dict[str, int]:
    """Positions that follow the server's list order and stay what they were for items already
    imported in that order. The server only appends and removes, so old items keep their order
    and new ones (also one deleted and created again) get orders after every earlier one."""
    known = {k: o for k in keys if (o := _previous_order(previous.get(k))) is not None}
    earlier = (_previous_order(s) for k, s in previous.items() if k.startswith(prefix))
    ceiling = max((o for o in earlier if o is not None), default=-1)
    out: dict[str, int] = {}
    last = -1
    for key in keys:
        order = known.get(key)
        if order is None or order <= last:
            ceiling += 1
            order = ceiling
        ceiling = max(ceiling, order)
        out[key] = last = order
    return out


def _graph(structured: Any, text: str, source: str) -> dict[str, Any]:
    data = structured if isinstance(structured, dict) and "entities" in structured else None
    if data is None:
        try:
            data = json.loads(text)
        except ValueError:
            raise SourceError(f"source {source!r}: {READ_TOOL} did not answer with a graph: {text[:200]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entities", []), list):
        raise SourceError(f"source {source!r}: {READ_TOOL} did not answer with a graph of entities and relations")
    if not isinstance(data.get("relations", []), list):
        raise SourceError(f"source {source!r}: {READ_TOOL} answered with relations that are not a list")
    return data


class MemoryServerAdapter:
    kind = "memory"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        self.mapper = MemoryServerMapper(definition.name, definition.namespace)
        self.skipped: list[SkippedRecord] = []

    def _skip(self, key: str, reason: str) -> None:
        self.skipped.append(SkippedRecord(key, reason))

    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        result = await conn.call_tool(READ_TOOL, {})
        graph = _graph(result.structured, result.text, self.definition.name)
        settings = {"v": MAPPING_VERSION, "namespace": self.definition.namespace}

        entities: dict[str, dict[str, Any]] = {}
        for raw in graph.get("entities", []):
            item: dict[str, Any] = raw if isinstance(raw, dict) else {}
            name = item.get("name")
            observations = item.get("observations")
            problem = name_problem(name)
            if problem is None and not isinstance(item.get("entityType"), str):
                problem = "its entityType is not text"
            if problem is None and (
                not isinstance(observations, list) or not all(isinstance(o, str) for o in observations)
            ):
                problem = "its observations are not a list of text"
            if not isinstance(name, str) or problem is not None:
                self._skip(entity_key(name if isinstance(name, str) else repr(name)), f"entity not imported: {problem}")
            elif name in entities:
                self._skip(entity_key(name) + "#duplicate", "a second entity with this name was not imported")
            else:
                entities[name] = item

        relations: dict[str, dict[str, Any]] = {}
        for raw in graph.get("relations", []):
            item = raw if isinstance(raw, dict) else {}
            from_, relation_type, to = item.get("from"), item.get("relationType"), item.get("to")
            if not (isinstance(from_, str) and isinstance(relation_type, str) and isinstance(to, str)):
                ends = (from_, relation_type, to)
                self._skip(
                    f"{RELATION_PREFIX}{ends!r}", "relation not imported: from, to and relationType must be text"
                )
                continue
            key = relation_key(from_, relation_type, to)
            problem = name_problem(from_) or name_problem(to)
            if problem is not None:
                self._skip(key, f"relation not imported: {problem}")
            elif key not in relations:
                relations[key] = {"from": from_, "to": to, "relationType": relation_type}

        entity_orders = assign_orders([entity_key(n) for n in entities], previous, ENTITY_PREFIX)
        relation_orders = assign_orders(list(relations), previous, RELATION_PREFIX)

        def emit(key: str, kind: str, payload: dict[str, Any], digest: str) -> SourceRecord:
            state = previous.get(key)
            if state is not None and state.content_hash == digest:
                return unchanged(state, GRAPH_URI)
            return SourceRecord(key=key, kind=kind, content_hash=digest, payload=payload, uri=GRAPH_URI)

        for name, raw in entities.items():
            key = entity_key(name)
            order = entity_orders[key]
            payload = {
                "name": name,
                "entityType": raw["entityType"],
                "observations": list(raw["observations"]),
                "order": order,
            }
            yield emit(key, "entity", payload, _versioned(content_hash(json.dumps([settings, payload])), order))

        wanted = dict.fromkeys(n for r in relations.values() for n in (r["from"], r["to"]) if n not in entities)
        for name in wanted:
            digest = "placeholder:" + content_hash(json.dumps([settings, name]))
            yield emit(entity_key(name), "placeholder", {"name": name}, digest)

        for key, payload in relations.items():
            order = relation_orders[key]
            payload = {**payload, "order": order}
            yield emit(key, "relation", payload, _versioned(content_hash(json.dumps([settings, payload])), order))

        for key, state in previous.items():
            if key.startswith(RELATION_PREFIX) and key not in relations and state.relation_ids:
                yield SourceRecord(key=key, kind="tombstone", content_hash="tombstone", payload={}, uri=GRAPH_URI)
