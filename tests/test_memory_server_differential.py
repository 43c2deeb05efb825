"""`aesop serve` as a drop-in for the official memory server.

The same sequence of memory-tool calls goes to `@modelcontextprotocol/server-memory` (from npm,
over stdio, its graph in a temporary MEMORY_FILE_PATH) and to `aesop serve --stdio`; after every
call the answers (structured content, the JSON text, error or not) and the whole graph
(`read_graph`) must be the same, and so must `search_nodes` and `open_nodes` results.

Known, documented differences are kept out of the sequence: a name repeated inside one
`create_entities` call (the memory server stores it twice) and blank names (rejected here).
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult

from tests.mcp_servers import npm_server_bin
from tests.test_serve_tools import server_env

pytestmark = [pytest.mark.slow]

MEMORY_PACKAGE = "@modelcontextprotocol/server-memory"
PAGED_TOOLS = {"read_graph", "search_nodes", "open_nodes"}
PAGING_ARGUMENTS = {"offset", "limit", "token_budget"}


def ent(name: str, kind: str, *observations: str) -> dict[str, Any]:
    return {"name": name, "entityType": kind, "observations": list(observations)}


def rel(src: str, dst: str, kind: str) -> dict[str, str]:
    return {"from": src, "to": dst, "relationType": kind}


SEQUENCE: list[tuple[str, dict[str, Any]]] = [
    ("read_graph", {}),
    ("create_entities", {"entities": [ent("Alice", "person", "likes tea", "works remotely"), ent("Acme", "company")]}),
    ("create_entities", {"entities": [ent("Bob", "person", "plays chess")]}),
    ("create_entities", {"entities": [ent("Alice", "robot", "other"), ent("Carol", "person", "new hire")]}),
    (
        "create_relations",
        {
            "relations": [
                rel("Alice", "Acme", "works at"),
                rel("Bob", "Acme", "works at"),
                rel("Alice", "Bob", "knows"),
                rel("Alice", "Dave", "mentors"),  # Dave does not exist (yet)
            ]
        },
    ),
    ("create_relations", {"relations": [rel("Alice", "Acme", "works at"), rel("Bob", "Alice", "knows")]}),
    ("create_relations", {"relations": [rel("Alice", "Acme", "works_at"), rel("Carol", "Erin", "reports to")]}),
    (
        "add_observations",
        {
            "observations": [
                {"entityName": "Alice", "contents": ["likes tea", "speaks French"]},
                {"entityName": "Carol", "contents": ["sits near Bob"]},
                {"entityName": "Alice", "contents": ["speaks French", "rides bikes"]},
            ]
        },
    ),
    (
        "add_observations",
        {"observations": [{"entityName": "Acme", "contents": ["x"]}, {"entityName": "Nobody", "contents": ["y"]}]},
    ),
    ("add_observations", {"observations": [{"entityName": "Dave", "contents": ["only named in a relation"]}]}),
    ("search_nodes", {"query": "alice"}),
    ("search_nodes", {"query": "PERSON"}),
    ("search_nodes", {"query": "french"}),
    ("search_nodes", {"query": "works"}),
    ("search_nodes", {"query": "dave"}),
    ("search_nodes", {"query": "zzz"}),
    ("search_nodes", {"query": ""}),
    ("open_nodes", {"names": ["Alice", "Dave", "Nobody"]}),
    ("open_nodes", {"names": ["Dave"]}),
    ("open_nodes", {"names": ["Carol", "Acme"]}),
    ("open_nodes", {"names": []}),
    ("create_entities", {"entities": [ent("Erin", "person", "joined later")]}),
    (
        "delete_observations",
        {
            "deletions": [
                {"entityName": "Alice", "observations": ["likes tea", "nope"]},
                {"entityName": "Nobody", "observations": ["x"]},
            ]
        },
    ),
    (
        "delete_relations",
        {"relations": [rel("Bob", "Alice", "knows"), rel("Alice", "Dave", "mentors"), rel("X", "Y", "z")]},
    ),
    ("create_relations", {"relations": [rel("Carol", "Frank", "calls"), rel("Bob", "Alice", "knows")]}),
    ("delete_entities", {"entityNames": ["Frank", "Nobody"]}),
    ("delete_entities", {"entityNames": ["Bob"]}),
    (
        "create_entities",
        {
            "entities": [
                ent("Zoë 🚀", "émoji type", "naïve café", "line\nbreak", 'quote " and \\ backslash', "tab\there"),
                ent("<script>alert(1)</script>", "'; DROP TABLE entities; --", "MATCH (n) DETACH DELETE n"),
            ]
        },
    ),
    ("create_relations", {"relations": [rel("Zoë 🚀", "<script>alert(1)</script>", "ünïcödé relation!")]}),
    ("search_nodes", {"query": "CAFÉ"}),
    ("search_nodes", {"query": "drop table"}),
    ("open_nodes", {"names": ["Zoë 🚀"]}),
    ("delete_entities", {"entityNames": []}),
    ("create_entities", {"entities": []}),
    ("read_graph", {}),
]


def text_of(result: CallToolResult) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def compare(reference: Client, ours: Client) -> None:
    for step, (tool, args) in enumerate(SEQUENCE):
        expected = await reference.call_tool(tool, args)
        got = await ours.call_tool(tool, args)
        where = f"step {step}: {tool}({args})"
        assert got.is_error == expected.is_error, (
            f"{where}: error {got.is_error} vs {expected.is_error}: {text_of(got)}"
        )
        if not expected.is_error:
            assert got.structured_content == expected.structured_content, where
            assert text_of(got) == text_of(expected), where
        graph_expected = (await reference.call_tool("read_graph", {})).structured_content
        graph_got = (await ours.call_tool("read_graph", {})).structured_content
        assert graph_got == graph_expected, f"after {where}"
        for probe in ("", "a"):  # searches after every write: no stale answer survives a change
            found_expected = (await reference.call_tool("search_nodes", {"query": probe})).structured_content
            found_got = (await ours.call_tool("search_nodes", {"query": probe})).structured_content
            assert found_got == found_expected, f"search_nodes({probe!r}) after {where}"


def test_memory_tools_match_the_official_server(tmp_path: Path) -> None:
    reference_command = npm_server_bin(MEMORY_PACKAGE)
    reference = StdioServerParameters(
        command=reference_command[0],
        args=reference_command[1:],
        env={"MEMORY_FILE_PATH": str(tmp_path / "memory.jsonl")},
    )
    data = tmp_path / "aesop"
    data.mkdir()
    ours = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aesoperator.cli", "--data-dir", str(data), "serve", "--stdio"],
        env=server_env(),
        cwd=str(data),
    )

    async def run() -> None:
        async with AsyncExitStack() as stack:
            ref_client = await stack.enter_async_context(Client(reference, read_timeout_seconds=120))
            our_client = await stack.enter_async_context(Client(ours, read_timeout_seconds=120))
            ref_tools = {t.name: t for t in (await ref_client.list_tools()).tools}
            our_tools = {t.name: t for t in (await our_client.list_tools()).tools}
            assert set(ref_tools) <= set(our_tools)
            for name, tool in ref_tools.items():
                ref_props = tool.input_schema.get("properties", {})
                our_props = our_tools[name].input_schema.get("properties", {})
                # the reads also take optional paging arguments (never required, so old calls are unchanged)
                extra = PAGING_ARGUMENTS if name in PAGED_TOOLS else set()
                assert set(our_props) == set(ref_props) | extra, name
                assert set(our_tools[name].input_schema.get("required", [])) == set(
                    tool.input_schema.get("required", [])
                ), name
                assert tool.output_schema is not None and our_tools[name].output_schema is not None
                assert set(our_tools[name].output_schema["properties"]) == set(tool.output_schema["properties"]), name
            await compare(ref_client, our_client)

    anyio.run(run)
