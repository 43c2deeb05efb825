"""The systems compared on the same data in the same run.

`bm25`, `vector`, `hybrid` (no graph) and `engine` (full pipeline) all run on one ContextEngine
over one ingest; `memory-server` is the reference MCP memory server loaded with the same content
and queried with its `search_nodes` tool.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aesoperator import ContextEngine
from aesoperator.engine.memory import agent_namespace
from aesoperator.engine.results import SearchResult
from aesoperator.engine.search_settings import SearchSettings
from benchmarks.quality.datasets import Dataset, Question

K = 20

# name -> keyword arguments of ContextEngine.search
# The baselines are the plain channels: no graph and no conversation windows.
_PLAIN = SearchSettings(window_weight=0.0)
ENGINE_SYSTEMS: dict[str, dict[str, Any]] = {
    "bm25": {"channels": ("keyword",), "hops": 0, "mmr_lambda": 1.0, "preset": _PLAIN},
    "vector": {"channels": ("vector",), "hops": 0, "mmr_lambda": 1.0, "preset": _PLAIN},
    # the first stage alone: no walk or bridge channel, no graph expansion, no windows
    "hybrid": {"channels": ("vector", "keyword", "name"), "hops": 0, "mmr_lambda": 1.0, "preset": _PLAIN},
    # the full pipeline: bridge channel, two-hop graph expansion, conversation windows
    "engine": {"hops": 2},
}


def doc_key(entity_id_: str, source: str) -> str:
    prefix = f"{source}:doc:"
    return entity_id_[len(prefix) :] if entity_id_.startswith(prefix) else entity_id_


def episode_key(entity_id_: str) -> str:
    # memory:episode:<conversation>/<dia id>
    return entity_id_.rsplit("/", 1)[-1]


def searcher(
    engine: ContextEngine, ds: Dataset, system: str, kwargs: dict[str, Any] | None = None
) -> Callable[[Question, int], SearchResult]:
    """Search one question with a system (its search arguments, or `kwargs` when given) within a
    token budget: k=20, and for conversations only the episodes of the question's conversation."""
    kwargs = ENGINE_SYSTEMS[system] if kwargs is None else kwargs
    if ds.kind == "documents":
        return lambda q, budget: engine.search(q.text, k=K, token_budget=budget, **kwargs)

    def search_turns(q: Question, budget: int) -> SearchResult:
        ns = [agent_namespace(f"locomo-{q.scope}")]
        return engine.search(q.text, k=K, namespaces=ns, types=["Episode"], token_budget=budget, **kwargs)

    return search_turns


def ranked_keys(result: SearchResult, ds: Dataset) -> list[str]:
    """The dataset's item keys of a search's hits, best first."""
    if ds.kind == "documents":
        return [doc_key(h.id, ds.name) for h in result.hits if h.id.startswith(f"{ds.name}:doc:")]
    return [episode_key(h.id) for h in result.hits]


def ranker(
    engine: ContextEngine, ds: Dataset, system: str, kwargs: dict[str, Any] | None = None
) -> Callable[[Question], list[str]]:
    """Rank one question's items with a system (its search arguments, or `kwargs` when given)."""
    search = searcher(engine, ds, system, kwargs)
    return lambda q: ranked_keys(search(q, 10**7), ds)


def keyword(question: str) -> str:
    """The word of a question an agent would give `search_nodes` (a substring search): its longest."""
    words = sorted(re.findall(r"[A-Za-z]{4,}", question), key=lambda w: (-len(w), w))
    return words[0].lower() if words else question


def memory_items(ds: Dataset) -> list[tuple[str, str, str]]:
    """(name, entityType, observation) of each item, as the memory-server baseline stores it."""
    if ds.kind == "documents":
        return [(d.key, "document", f"{d.title}. {d.text}") for d in ds.docs]
    return [(f"{t.conversation}/{t.key}", "turn", f"{t.speaker}: {t.text}") for t in ds.turns]


class MemoryServerBaseline:
    """`@modelcontextprotocol/server-memory` over stdio, loaded with the dataset's content.

    Besides the rankings, `run` keeps the entities each question's `search_nodes` returned
    (`found`, to pack them like the engine's hits) and the text of its answers per request
    (`answers`: `search_nodes` with the question, with its longest word, and `read_graph`)."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.workdir = Path(tempfile.mkdtemp(prefix="aesop-memsrv-"))
        self.found: dict[str, list[dict[str, Any]]] = {}
        self.answers: dict[str, list[str]] = {}

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _definition(self, name: str) -> Any:
        from aesoperator.ingest.sources import SourceDefinition

        return SourceDefinition(
            name=f"memsrv-{name}",
            kind="memory",
            command=self.command[0],
            args=self.command[1:],
            env={"MEMORY_FILE_PATH": str(self.workdir / f"{name}.jsonl"), "PATH": os.environ.get("PATH", "")},
            timeout_seconds=600,
            max_response_bytes=200_000_000,
        )

    def run(self, ds: Dataset, questions: Sequence[Question], progress: Callable[[], None]) -> dict[str, list[str]]:
        return asyncio.run(self._run(ds, questions, progress))

    async def _run(
        self, ds: Dataset, questions: Sequence[Question], progress: Callable[[], None]
    ) -> dict[str, list[str]]:
        from aesoperator.ingest.client import open_connection

        items = memory_items(ds)
        rankings: dict[str, list[str]] = {}
        async with open_connection(self._definition(ds.name)) as conn:
            for start in range(0, len(items), 200):
                batch = [
                    {"name": name, "entityType": etype, "observations": [text]}
                    for name, etype, text in items[start : start + 200]
                ]
                await conn.call_tool("create_entities", {"entities": batch})
            for q in questions:
                result = await conn.call_tool("search_nodes", {"query": q.text})
                payload = result.structured if isinstance(result.structured, dict) else json.loads(result.text or "{}")
                entities = payload.get("entities", [])
                if ds.kind == "conversation":
                    entities = [e for e in entities if e["name"].startswith(f"{q.scope}/")]
                names = [e["name"] for e in entities]
                if ds.kind == "conversation":
                    names = [n.split("/", 1)[1] for n in names]
                rankings[q.qid] = names[:K]
                self.found[q.qid] = entities[:K]
                self.answers.setdefault("search_nodes (question)", []).append(result.text or "")
                by_word = await conn.call_tool("search_nodes", {"query": keyword(q.text)})
                self.answers.setdefault("search_nodes (longest word)", []).append(by_word.text or "")
                progress()
            whole = await conn.call_tool("read_graph", {})
            self.answers["read_graph"] = [whole.text or ""]
        return rankings
