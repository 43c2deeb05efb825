"""Tool output schemas are published without `$ref`s: equivalent to pydantic's (the same answers
validate, the same bad ones fail), cheaper for a client to check, and a recursive model keeps its
references."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from aesoperator.serve.schema_inline import inline_definitions
from aesoperator.serve.schemas import MemoryGraphOutput


class Node(BaseModel):
    name: str
    children: list[Node] = []


def refs_in(node: Any) -> int:
    if isinstance(node, dict):
        return int("$ref" in node) + sum(refs_in(v) for v in node.values())
    if isinstance(node, list):
        return sum(refs_in(v) for v in node)
    return 0


def test_a_nested_schema_is_written_out_and_judges_answers_alike() -> None:
    schema = MemoryGraphOutput.model_json_schema()
    assert refs_in(schema) > 0
    flat = inline_definitions(schema)
    assert refs_in(flat) == 0 and "$defs" not in flat
    good = {
        "entities": [{"name": "Ada", "entityType": "person", "observations": ["wrote notes"]}],
        "relations": [{"from": "Ada", "to": "Charles", "relationType": "knows"}],
    }
    bad = [
        {"entities": [{"name": "Ada", "entityType": "person"}], "relations": []},  # observations missing
        {"entities": [{"name": "A\x01", "entityType": "p", "observations": []}], "relations": []},  # control char
        {"entities": [], "relations": [{"from": "Ada", "to": 3, "relationType": "knows"}]},
    ]
    for candidate, ok in [(good, True), *((b, False) for b in bad)]:
        for published in (schema, flat):
            errors = list(jsonschema.Draft202012Validator(published).iter_errors(candidate))
            assert (not errors) == ok, (candidate, published is flat)


def test_a_recursive_model_keeps_its_references() -> None:
    schema = Node.model_json_schema()
    assert inline_definitions(schema) is schema


@pytest.mark.anyio
async def test_the_server_publishes_output_schemas_without_references(tmp_path: Any, embedder: Any) -> None:
    from mcp import Client

    from aesoperator import ContextEngine
    from aesoperator.config import Settings
    from aesoperator.security.principal import Principal
    from aesoperator.serve.server import build_server

    engine = ContextEngine.open(settings=Settings(data_dir=tmp_path / "data"), embedder=embedder)
    try:
        server = build_server(engine, None, lambda: Principal.full_access(), warm=False)
        async with Client(server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
        with_output = [t for t in tools.values() if t.output_schema is not None]
        assert {"search", "search_nodes", "read_graph", "recall"} <= {t.name for t in with_output}
        assert all(refs_in(t.output_schema) == 0 for t in with_output), [
            t.name for t in with_output if refs_in(t.output_schema)
        ]
    finally:
        engine.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
