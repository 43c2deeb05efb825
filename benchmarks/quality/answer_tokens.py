"""Tokens per answer: how many cl100k tokens each MCP tool's answer costs on the benchmark's
questions, ours next to the reference memory server's `search_nodes` and `read_graph`.

Our server runs in process (`build_server` over the engine the quality run ingested), its memory
graph loaded with the same items the reference server holds. Every question is asked of
`search` (and `recall` for conversations), the top hits are opened with `get_entities` and
`neighbors`, and the memory-server tools are called with and without a budget. For each request
the text part (what a model reads) and the structured content (compact JSON, what a program reads)
are counted apart.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from statistics import mean, median
from typing import Any

from aesoperator.engine.memory import agent_namespace
from benchmarks.quality.datasets import Dataset, Question
from benchmarks.quality.systems import keyword, memory_items

BUDGET = 1500


def _stats(values: Sequence[int]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "mean": round(mean(ordered), 1),
        "median": float(median(ordered)),
        "max": float(ordered[-1]),
    }


def load_memory_graph(engine: Any, ds: Dataset) -> None:
    """The dataset's items in the engine's memory graph, as the reference server is loaded (an
    observation longer than the server's limit of 10,000 characters is stored as consecutive
    pieces; a handful of SciFact abstracts are)."""
    from aesoperator.serve.memory_graph import MemoryGraph
    from aesoperator.serve.schemas import MAX_OBSERVATION_CHARS, MemoryEntity

    graph = MemoryGraph(engine, embed=False)  # substring search and reads: no vectors needed
    items = memory_items(ds)
    for start in range(0, len(items), 500):
        graph.create_entities(
            [
                MemoryEntity(
                    name=n,
                    entityType=t,
                    observations=[o[i : i + MAX_OBSERVATION_CHARS] for i in range(0, len(o), MAX_OBSERVATION_CHARS)],
                )
                for n, t, o in items[start : start + 500]
            ]
        )


async def measure_ours(
    engine: Any, ds: Dataset, questions: Sequence[Question], count: Callable[[str], int]
) -> dict[str, dict[str, dict[str, float]]]:
    """Text and structured tokens of each of our tools' answers (see the module docstring)."""
    from mcp import Client

    from aesoperator.serve.server import build_server

    texts: dict[str, list[int]] = defaultdict(list)
    structured: dict[str, list[int]] = defaultdict(list)
    server = build_server(engine, warm=False)

    async def ask(label: str, tool: str, args: dict[str, Any]) -> Any:
        result = await client.call_tool(tool, args)
        if result.is_error:
            raise AssertionError(f"{tool}({args}) failed: {result.content}")
        texts[label].append(count("".join(getattr(c, "text", "") for c in result.content)))
        structured[label].append(count(json.dumps(result.structured_content, ensure_ascii=False)))
        return result.structured_content

    async with Client(server) as client:
        for q in questions:
            scope = (
                [engine.settings.default_namespace]
                if ds.kind == "documents"
                else [agent_namespace(f"locomo-{q.scope}")]
            )
            found = await ask("search", "search", {"query": q.text, "namespaces": scope})
            ids = [h["id"] for h in found["hits"][:5]]
            if ds.kind == "conversation":
                await ask("recall", "recall", {"query": q.text, "agent_id": f"locomo-{q.scope}"})
            if ids:
                await ask("get_entities (top 5 hits)", "get_entities", {"ids": ids})
                await ask("neighbors (top hit)", "neighbors", {"ids": ids[:1]})
            await ask("search_nodes (question)", "search_nodes", {"query": q.text})
            word = keyword(q.text)
            listed = await ask("search_nodes (longest word)", "search_nodes", {"query": word})
            await ask(
                f"search_nodes (longest word, token_budget={BUDGET})",
                "search_nodes",
                {"query": word, "token_budget": BUDGET},
            )
            names = [e["name"] for e in listed["entities"][:5]]
            if names:
                await ask("open_nodes (5 names)", "open_nodes", {"names": names})
        await ask("read_graph", "read_graph", {})
        await ask(f"read_graph (token_budget={BUDGET})", "read_graph", {"token_budget": BUDGET})
        await ask("read_graph (limit=20)", "read_graph", {"limit": 20})
    return {label: {"text": _stats(texts[label]), "structured": _stats(structured[label])} for label in texts}


def reference_stats(answers: dict[str, list[str]], count: Callable[[str], int]) -> dict[str, dict[str, float]]:
    """Tokens of the reference server's answers (its text part is its JSON)."""
    return {label: _stats([count(t) for t in values]) for label, values in answers.items() if values}


def markdown(name: str, ours: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    lines = [
        f"Tokens per answer ({name}, cl100k): the text part a model reads, and the structured content (compact JSON)"
        " a program reads; the reference memory server answers with its JSON as text.",
        "",
        "| server | request | text mean | text median | text max | structured mean |",
        "|---|---|---|---|---|---|",
    ]
    for label, stats in ours.items():
        t, s = stats["text"], stats["structured"]
        lines.append(f"| ours | {label} | {t['mean']:.0f} | {t['median']:.0f} | {t['max']:.0f} | {s['mean']:.0f} |")
    for label, t in reference.items():
        lines.append(f"| reference | {label} | {t['mean']:.0f} | {t['median']:.0f} | {t['max']:.0f} | (same JSON) |")
    lines.append("")
    return lines


__all__ = ["BUDGET", "load_memory_graph", "markdown", "measure_ours", "reference_stats"]
