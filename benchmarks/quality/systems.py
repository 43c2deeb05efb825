"""The systems compared on the same data in the same run.

`bm25`, `vector`, `hybrid` (no graph) and `engine` (full pipeline) all run on one ContextEngine
over one ingest; `memory-server` is the reference MCP memory server loaded with the same content
and queried with its `search_nodes` tool.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aesoperator import ContextEngine
from aesoperator.engine.memory import agent_namespace
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


def ranker(
    engine: ContextEngine, ds: Dataset, system: str, kwargs: dict[str, Any] | None = None
) -> Callable[[Question], list[str]]:
    """Rank one question's items with a system (its search arguments, or `kwargs` when given)."""
    kwargs = ENGINE_SYSTEMS[system] if kwargs is None else kwargs
    if ds.kind == "documents":

        def rank_docs(q: Question) -> list[str]:
            result = engine.search(q.text, k=K, token_budget=10**7, **kwargs)
            return [doc_key(h.id, ds.name) for h in result.hits if h.id.startswith(f"{ds.name}:doc:")]

        return rank_docs

    def rank_turns(q: Question) -> list[str]:
        ns = [agent_namespace(f"locomo-{q.scope}")]
        result = engine.search(q.text, k=K, namespaces=ns, types=["Episode"], token_budget=10**7, **kwargs)
        return [episode_key(h.id) for h in result.hits]

    return rank_turns


class MemoryServerBaseline:
    """`@modelcontextprotocol/server-memory` over stdio, loaded with the dataset's content."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.workdir = Path(tempfile.mkdtemp(prefix="aesop-memsrv-"))

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

        if ds.kind == "documents":
            items = [(d.key, "document", f"{d.title}. {d.text}") for d in ds.docs]
        else:
            items = [(f"{t.conversation}/{t.key}", "turn", f"{t.speaker}: {t.text}") for t in ds.turns]
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
                names = [e["name"] for e in payload.get("entities", [])]
                if ds.kind == "conversation":
                    names = [n.split("/", 1)[1] for n in names if n.startswith(f"{q.scope}/")]
                rankings[q.qid] = names[:K]
                progress()
        return rankings
