"""Every MCP answer's text is packed context within a token budget, through a real in-process
client session: `search` (a property test: never over the budget under the engine's counter),
the same text as `SearchResult.context_text()` and `aesop search --context`, the other engine and
knowledge tools, the entity resource, and the memory-server tools' optional paging and budgets
(without which their answers stay the memory server's, see test_memory_server_differential.py)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp_types import CallToolResult
from typer.testing import CliRunner

from aesoperator.graph_schema.models import Entity, Relation

pytestmark = [pytest.mark.slow]

FIXTURE_DOCS = Path(__file__).resolve().parent / "fixtures" / "docs"
SECTIONS = [
    ("Ovens", "The station has four ovens; oven {n} bakes rye at {t} degrees and is cleaned after each shift."),
    ("Flour", "Flour arrives by cargo pod {n}; the quartermaster logs sack {t} before it reaches the mill."),
]
MEMORY_NAMES = [f"Baker {i:02d}" for i in range(30)]


def manual() -> str:
    """A long markdown file, so that its chunks overlap (chunks share their last lines)."""
    parts = []
    for heading, line in SECTIONS:
        parts.append(f"# {heading}")
        parts += [line.format(n=n, t=150 + n) for n in range(60)]
        parts.append("")
    return "\n".join(parts)


def text_of(result: CallToolResult) -> str:
    assert not result.is_error, result.content
    return "".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Any]:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings
    from aesoperator.serve.memory_graph import MemoryGraph
    from aesoperator.serve.schemas import MemoryEntity, MemoryRelation

    folder = tmp_path_factory.mktemp("docs")
    (folder / "manual.md").write_text(manual())
    (folder / "staff.md").write_text((FIXTURE_DOCS / "guide" / "staff.md").read_text())
    engine = ContextEngine.open(settings=Settings(data_dir=tmp_path_factory.mktemp("data")), embedder=embedder)
    engine.ingest_path(folder, name="docs")
    engine.upsert(
        [
            Entity(
                id="t:person:okafor", type="Person", name="Marguerite Okafor", text="Night-shift lead of the bakery."
            ),
            Entity(id="t:doc:ovens", type="Document", name="Oven rota", text="Okafor cleans oven 3 on Mondays."),
        ],
        [Relation(type="AUTHORED", src="t:person:okafor", dst="t:doc:ovens")],
    )
    for i in range(12):
        engine.memory.remember(f"Shift note {i}: oven {i % 4} ran hot during the night shift.", "baker", f"s{i % 3}")
    memory = MemoryGraph(engine)
    memory.create_entities(
        [
            MemoryEntity(name=n, entityType="person", observations=[f"{n} bakes bread", "works nights"])
            for n in MEMORY_NAMES
        ]
    )
    memory.create_relations(
        [MemoryRelation(from_=a, to=b, relationType="trains") for a, b in itertools.pairwise(MEMORY_NAMES)]
    )
    engine.refresh_index()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def portal_client(engine: Any) -> Iterator[tuple[Any, Client]]:
    from anyio.from_thread import start_blocking_portal

    from aesoperator.serve.server import build_server

    server = build_server(engine, warm=False)
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(Client(server)) as client:
        yield portal, client


def call(portal_client: tuple[Any, Client], tool: str, args: dict[str, Any]) -> CallToolResult:
    portal, client = portal_client
    result: CallToolResult = portal.call(client.call_tool, tool, args)
    return result


# -- search ------------------------------------------------------------------------------------------------
def test_search_answers_with_the_packed_context_and_keeps_the_data_structured(
    engine: Any, portal_client: tuple[Any, Client]
) -> None:
    args = {"query": "which oven bakes rye and who cleans it", "k": 12}
    result = call(portal_client, "search", args)
    text, data = text_of(result), result.structured_content
    assert data is not None
    assert text == data["context"] == engine.search(args["query"], k=12).context_text()
    assert data["token_budget"] == 1500 and engine.count_tokens(text) == data["tokens_used"] <= 1500
    assert text.startswith("[1] ") and data["hits"] and all(h["id"] and h["reasons"] for h in data["hits"])
    # the text says what and where, not the metadata: no ids, scores, reasons, hashes or JSON
    for hit in data["hits"]:
        assert hit["id"] not in text and "score" not in text and "{" not in text
    assert "manual.md#L" in text  # chunks carry a short line reference
    ranges: dict[str, list[tuple[int, int]]] = {}
    for path, start, end in re.findall(r"\((\S+?)#L(\d+)-L(\d+)", text):
        ranges.setdefault(path, []).append((int(start), int(end)))
    for spans in ranges.values():  # overlapping or touching chunks of a file were joined
        spans.sort()
        assert all(b[0] > a[1] + 1 for a, b in itertools.pairwise(spans)), spans


def test_a_small_budget_is_kept_and_says_what_was_left_out(engine: Any, portal_client: tuple[Any, Client]) -> None:
    result = call(portal_client, "search", {"query": "oven rye flour sack shift", "k": 20, "token_budget": 120})
    text, data = text_of(result), result.structured_content
    assert data is not None and engine.count_tokens(text) <= 120
    assert data["left_out"] > 0 and text.endswith(
        f"{data['left_out']} more hits left out by the token budget: ask with a larger token_budget or a narrower query."
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    query=st.lists(
        st.sampled_from(["oven", "rye", "flour", "Okafor", "night", "shift", "sack", "mill", "bread", "zz"]),
        min_size=1,
        max_size=6,
    ).map(" ".join),
    budget=st.integers(50, 2500),
    k=st.integers(1, 40),
    hops=st.integers(0, 2),
)
def test_search_text_never_exceeds_the_budget(
    engine: Any, portal_client: tuple[Any, Client], query: str, budget: int, k: int, hops: int
) -> None:
    result = call(portal_client, "search", {"query": query, "k": k, "hops": hops, "token_budget": budget})
    text = text_of(result)
    assert engine.count_tokens(text) <= budget
    data = result.structured_content
    assert data is not None and data["tokens_used"] <= budget


def test_a_budget_with_room_for_a_hit_but_not_the_note_keeps_the_hit(engine: Any) -> None:
    """Below the room a hit and the left-out note need together, the hit is kept and the note is
    not added afterwards: the text stays within every budget."""
    for budget in range(20, 120, 3):
        result = engine.search("oven night shift", k=5, hops=0, token_budget=budget)
        assert engine.count_tokens(result.context_text()) <= budget, budget


def test_cli_search_context_prints_the_same_packed_text(tmp_path: Path, embedder: Any) -> None:
    import anyio

    from aesoperator import ContextEngine
    from aesoperator.cli import app
    from aesoperator.config import Settings
    from aesoperator.serve.server import build_server

    data = tmp_path / "data"
    runner = CliRunner()
    assert runner.invoke(app, ["--data-dir", str(data), "ingest", str(FIXTURE_DOCS)]).exit_code == 0
    query = ["who runs the night shift", "-k", "6", "--budget", "200", "--context"]
    printed = runner.invoke(app, ["--data-dir", str(data), "--json", "search", *query])
    assert printed.exit_code == 0, printed.output
    from_cli = json.loads(printed.stdout)["context"]
    shown = runner.invoke(app, ["--data-dir", str(data), "search", *query])
    assert from_cli in shown.stdout  # the --context section prints it as it is

    engine = ContextEngine.open(settings=Settings(data_dir=data), embedder=embedder)
    try:

        async def over_mcp() -> str:
            async with Client(build_server(engine, warm=False)) as client:
                args = {"query": "who runs the night shift", "k": 6, "token_budget": 200}
                return text_of(await client.call_tool("search", args))

        assert (
            anyio.run(over_mcp)
            == from_cli
            == engine.search("who runs the night shift", k=6, token_budget=200).context_text()
        )
    finally:
        engine.close()


# -- the other tools ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tool", "args", "expect"),
    [
        ("recall", {"query": "oven ran hot", "agent_id": "baker"}, "[1] Episode (session s"),
        ("get_entities", {"ids": ["t:person:okafor", "t:doc:ovens", "t:none"]}, "Marguerite Okafor"),
        ("neighbors", {"ids": ["t:person:okafor"]}, "- Marguerite Okafor AUTHORED Oven rota"),
        ("entities", {}, None),
        ("search_about", {"name": "t:person:okafor"}, None),
        ("sources", {}, "- docs"),
    ],
)
def test_every_read_tool_answers_with_budgeted_text(
    engine: Any, portal_client: tuple[Any, Client], tool: str, args: dict[str, Any], expect: str | None
) -> None:
    full = call(portal_client, tool, args)
    text = text_of(full)
    assert text and engine.count_tokens(text) <= 1500 and not text.lstrip().startswith("{")
    if expect is not None:
        assert expect in text
    small = text_of(call(portal_client, tool, {**args, "token_budget": 50}))
    assert engine.count_tokens(small) <= 50


def test_recall_cut_to_a_budget_names_the_episodes_left_out(engine: Any, portal_client: tuple[Any, Client]) -> None:
    text = text_of(call(portal_client, "recall", {"query": "oven ran hot", "agent_id": "baker", "token_budget": 80}))
    assert engine.count_tokens(text) <= 80 and re.search(r"\d+ more episodes? left out by the token budget", text)


def test_entity_resource_has_its_json_then_the_packed_text(portal_client: tuple[Any, Client]) -> None:
    portal, client = portal_client
    read = portal.call(client.read_resource, "entity://t%3Aperson%3Aokafor")
    assert json.loads(read.contents[0].text)["name"] == "Marguerite Okafor"
    assert read.contents[1].mime_type == "text/plain"
    assert read.contents[1].text.startswith("[1] Person Marguerite Okafor")


# -- memory-server tools: optional paging and budgets ------------------------------------------------------
def page_meta(result: CallToolResult) -> dict[str, Any]:
    assert result.meta is not None
    meta: dict[str, Any] = result.meta["aesoperator/page"]
    return meta


def test_memory_tools_answer_as_the_memory_server_without_paging_arguments(portal_client: tuple[Any, Client]) -> None:
    whole = call(portal_client, "read_graph", {})
    assert whole.meta is None or "aesoperator/page" not in whole.meta
    assert json.loads(text_of(whole)) == whole.structured_content
    assert [e["name"] for e in whole.structured_content["entities"]] == MEMORY_NAMES  # type: ignore[index]


def test_read_graph_pages_by_offset_and_limit(portal_client: tuple[Any, Client]) -> None:
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        result = call(portal_client, "read_graph", {"offset": offset, "limit": 7})
        page = json.loads(text_of(result))
        assert page == result.structured_content and len(page["entities"]) <= 7
        names = {e["name"] for e in page["entities"]}
        assert all(r["from"] in names or r["to"] in names for r in page["relations"])
        seen += [e["name"] for e in page["entities"]]
        meta = page_meta(result)
        assert meta["total"] == len(MEMORY_NAMES) and meta["offset"] == offset
        offset = meta["next_offset"]
    assert seen == MEMORY_NAMES


def test_read_graph_within_a_budget_pages_by_what_fits(engine: Any, portal_client: tuple[Any, Client]) -> None:
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        result = call(portal_client, "read_graph", {"offset": offset, "token_budget": 120})
        text, page = text_of(result), result.structured_content
        assert page is not None and engine.count_tokens(text) <= 120
        shown = [e["name"] for e in page["entities"]]
        assert shown and all(name in text for name in shown)
        meta = page_meta(result)
        offset = meta["next_offset"]
        if offset is not None:
            assert text.endswith(f"ask with offset={offset} or a larger token_budget.")
        seen += shown
    assert seen == MEMORY_NAMES
    first = text_of(call(portal_client, "read_graph", {"token_budget": 120}))
    assert first.startswith("[1] person Baker 00\n- Baker 00 bakes bread\n- works nights\n- Baker 00 trains Baker 01")


def test_search_and_open_nodes_take_the_same_arguments(engine: Any, portal_client: tuple[Any, Client]) -> None:
    found = call(portal_client, "search_nodes", {"query": "baker 1", "limit": 3})
    assert [e["name"] for e in found.structured_content["entities"]] == ["Baker 10", "Baker 11", "Baker 12"]  # type: ignore[index]
    assert page_meta(found)["total"] == 10
    opened = call(portal_client, "open_nodes", {"names": MEMORY_NAMES[:5], "token_budget": 60})
    assert engine.count_tokens(text_of(opened)) <= 60 and page_meta(opened)["returned"] >= 1
