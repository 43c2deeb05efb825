"""The memory adapter against the real `@modelcontextprotocol/server-memory` from npm.

The server is filled through its own tools, imported, compared item by item, exported back to
its own shape (which must equal its `read_graph`), changed through its tools and re-imported;
the import must also agree, id for id, with a graph written through the engine's own
memory-compatible tools."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from aesoperator.graph_schema.vocabulary import normalize_type_name
from aesoperator.ingest.client import open_connection
from aesoperator.ingest.mappers.memory_server import (
    PLACEHOLDER_TYPE,
    entity_text,
    export_memory_graph,
    memory_entity_id,
    memory_relation_id,
)
from aesoperator.ingest.mcp_ingest import ingest_source
from aesoperator.ingest.sources import SourceDefinition
from tests.mcp_servers import npm_server_bin
from tests.test_adapter_postgres import all_entities, all_relations, live

SERVER = "@modelcontextprotocol/server-memory"
NAMESPACE = "team-memory"  # not the memory graph's own namespace, so ids carry it

ENTITIES = [
    {
        "name": "Ada Lovelace",
        "entityType": "person",
        "observations": ["likes Earl Grey tea", "wrote the first program"],
    },
    {
        "name": "Analytical Engine",
        "entityType": "machine design",
        "observations": ["never finished", "used punch cards"],
    },
    {"name": "Acme Works", "entityType": "work place", "observations": []},
    {"name": "Zoë – ünïcode", "entityType": "Person", "observations": ["naïve café ☕", "line one\nline two"]},
]
RELATIONS = [
    {"from": "Ada Lovelace", "to": "Analytical Engine", "relationType": "wrote programs for"},
    {"from": "Ada Lovelace", "to": "Acme Works", "relationType": "works at"},
    {"from": "Ada Lovelace", "to": "Acme Works", "relationType": "works_at"},  # normalises alike: kept apart
    {"from": "Zoë – ünïcode", "to": "Ada Lovelace", "relationType": "admires"},
    {"from": "Ada Lovelace", "to": "Charles Babbage", "relationType": "corresponded with"},  # no such entity yet
]


def source(tmp_path: Path, name: str = "memory") -> SourceDefinition:
    command = npm_server_bin(SERVER)
    return SourceDefinition(
        name=name,
        kind="memory",
        command=command[0],
        args=command[1:],
        env={"MEMORY_FILE_PATH": str(tmp_path / "memory.jsonl")},
        namespace=NAMESPACE,
        timeout_seconds=30,
    )


def call(definition: SourceDefinition, *steps: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """Run tool calls on the memory server in one session; returns its graph afterwards."""

    async def run() -> dict[str, Any]:
        async with open_connection(definition) as conn:
            for tool, arguments in steps:
                await conn.call_tool(tool, arguments)
            graph = (await conn.call_tool("read_graph", {})).structured
            assert isinstance(graph, dict)
            return graph

    return anyio.run(run)


def exported(engine: Any, name: str) -> dict[str, list[dict[str, Any]]]:
    return export_memory_graph(all_entities(engine, name), all_relations(engine, name))


def check_against(engine: Any, graph: dict[str, Any]) -> None:
    """Each memory entity and relation is in the graph, with its original values kept."""
    for item in graph["entities"]:
        [entity] = engine.get_entities([memory_entity_id(item["name"], NAMESPACE)])
        assert entity.type == normalize_type_name(item["entityType"]) and entity.name == item["name"]
        assert entity.properties["entityType"] == item["entityType"]
        assert entity.properties["observations"] == item["observations"]
        assert entity.text == entity_text(item["name"], item["entityType"], item["observations"])
        assert entity.namespace == NAMESPACE
    for item in graph["relations"]:
        [relation] = engine.store.get_relations(
            [memory_relation_id(item["from"], item["relationType"], item["to"], NAMESPACE)]
        )
        assert relation.expired_at is None
        assert relation.type == normalize_type_name(item["relationType"], upper=True)
        assert (relation.src, relation.dst) == (
            memory_entity_id(item["from"], NAMESPACE),
            memory_entity_id(item["to"], NAMESPACE),
        )
        assert {k: relation.properties[k] for k in ("from", "to", "relationType")} == item


def test_memory_server_graph_is_imported_losslessly_and_incrementally(
    tmp_path: Path, make_engine: Callable[..., Any]
) -> None:
    definition = source(tmp_path)
    graph = call(
        definition,
        ("create_entities", {"entities": [{**e, "observations": e["observations"][:1]} for e in ENTITIES]}),
        ("create_relations", {"relations": RELATIONS}),
        (
            "add_observations",
            {"observations": [{"entityName": e["name"], "contents": e["observations"][1:]} for e in ENTITIES]},
        ),
    )
    assert [e["observations"] for e in graph["entities"]] == [e["observations"] for e in ENTITIES]

    engine = make_engine()
    report = ingest_source(engine, definition)
    assert not report.skipped
    check_against(engine, graph)
    assert engine.get_entities([memory_entity_id("Ada Lovelace", NAMESPACE)])[0].type == "person"
    assert engine.get_entities([memory_entity_id("Acme Works", NAMESPACE)])[0].type == "work_place"
    works = [memory_relation_id("Ada Lovelace", t, "Acme Works", NAMESPACE) for t in ("works at", "works_at")]
    assert len(set(works)) == 2 and {r.type for r in engine.store.get_relations(works)} == {"WORKS_AT"}
    [ghost] = engine.get_entities([memory_entity_id("Charles Babbage", NAMESPACE)])
    assert ghost.type == PLACEHOLDER_TYPE

    # the round trip: our graph, written back in the server's shape, is what the server holds
    assert exported(engine, "memory") == graph

    hits = engine.search("who likes Earl Grey tea?", k=5).hits
    assert hits[0].id == memory_entity_id("Ada Lovelace", NAMESPACE)

    # -- change it through the server's own tools
    seq = engine.store.last_seq()
    graph = call(
        definition,
        ("add_observations", {"observations": [{"entityName": "Ada Lovelace", "contents": ["born in 1815"]}]}),
        (
            "create_entities",
            {"entities": [{"name": "Charles Babbage", "entityType": "person", "observations": ["designed it"]}]},
        ),
        (
            "create_relations",
            {"relations": [{"from": "Charles Babbage", "to": "Analytical Engine", "relationType": "designed"}]},
        ),
        ("delete_relations", {"relations": [RELATIONS[3]]}),
        ("delete_entities", {"entityNames": ["Acme Works"]}),
    )
    again = ingest_source(engine, definition)
    changes = engine.store.changes_since(seq)
    ada, babbage, acme = (memory_entity_id(n, NAMESPACE) for n in ("Ada Lovelace", "Charles Babbage", "Acme Works"))
    assert {(c.id, c.op) for c in changes if c.kind == "entity"} == {
        (ada, "upsert"),
        (babbage, "upsert"),  # the placeholder became the entity, under the same id
        (acme, "delete"),
    }
    designed = memory_relation_id("Charles Babbage", "designed", "Analytical Engine", NAMESPACE)
    admires = memory_relation_id(*(RELATIONS[3][k] for k in ("from", "relationType", "to")), NAMESPACE)
    assert {(c.id, c.op) for c in changes if c.kind == "relation"} == {
        (designed, "upsert"),
        (admires, "upsert"),  # expired, kept as history
        *((w, op) for w in works for op in ("upsert", "delete")),  # expired, then gone with the deleted entity
    }
    [old] = engine.store.get_relations([admires])
    assert old.expired_at is not None
    # untouched: 2 entities and 2 relations; changed: Ada, Babbage, the new relation, 3 expired ones
    assert (again.records_unchanged, again.records_changed, again.records_removed) == (4, 6, 1)
    check_against(engine, graph)
    assert engine.get_entities([babbage])[0].type == "person"
    assert exported(engine, "memory") == graph  # the server's order is kept across re-imports

    seq = engine.store.last_seq()
    assert ingest_source(engine, definition).records_changed == 0 and engine.store.changes_since(seq) == []


def test_memory_import_agrees_with_the_engines_memory_compatible_tools(
    tmp_path: Path, make_engine: Callable[..., Any]
) -> None:
    compat = pytest.importorskip("aesoperator.serve.memory_graph")
    schemas = pytest.importorskip("aesoperator.serve.schemas")
    definition = source(tmp_path)
    graph = call(
        definition,
        ("create_entities", {"entities": ENTITIES}),
        ("create_relations", {"relations": RELATIONS}),
    )
    imported = make_engine(tmp_path / "imported")
    ingest_source(imported, definition, embed=False)

    written = make_engine(tmp_path / "written")
    tools = compat.MemoryGraph(written, namespace=NAMESPACE, embed=False)
    tools.create_entities([schemas.MemoryEntity(**e) for e in ENTITIES])
    tools.create_relations([schemas.MemoryRelation.model_validate(r) for r in RELATIONS])
    assert tools.read_graph().model_dump(mode="json", by_alias=True) == graph

    def shape(items: Sequence[Any]) -> dict[str, Any]:
        return {
            i.id: (
                i.type,
                getattr(i, "name", None),
                getattr(i, "text", None),
                getattr(i, "src", None),
                getattr(i, "dst", None),
                i.namespace,
                {k: v for k, v in i.properties.items() if k != "order"},
            )
            for i in items
        }

    ours = [e for b in imported.store.iter_entities() for e in b]
    theirs = [e for b in written.store.iter_entities() for e in b]
    assert shape(ours) == shape(theirs)
    assert shape(live(all_relations(imported, "memory"))) == shape(
        live([r for b in written.store.iter_relations() for r in b])
    )
