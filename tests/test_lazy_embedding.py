"""The memory-server tools never load the embedding model, and what they write is embedded off the
write path: found by keyword search at once, by the vector channel after the background catch-up,
and caught up by the next process when the writer is killed first."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import psutil
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult

from aesoperator.engine.lazy_embedder import LazyEmbedder, QueryVectorCache

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "onnxruntime", "sentence_transformers", "transformers", "spacy", "thinc")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESOP_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", AESOP_CONFIG=os.devnull)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def test_memory_tools_import_no_model_until_something_embeds(tmp_path: Path) -> None:
    """In a fresh interpreter (this one may hold torch already): every memory-server operation,
    then the modules loaded; then `wait_for_index`, after which the entity is a vector hit."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from aesoperator import ContextEngine
        from aesoperator.serve.server import build_server
        from aesoperator.serve.memory_graph import MemoryGraph
        from aesoperator.serve.schemas import (MemoryEntity, MemoryRelation, ObservationAddition,
            ObservationDeletion)
        heavy = {HEAVY!r}
        engine = ContextEngine.open(data_dir={str(tmp_path / "data")!r})
        build_server(engine, warm=False)
        graph = MemoryGraph(engine)
        graph.create_entities([MemoryEntity(name="Ada Lovelace", entityType="person",
            observations=["wrote the first program for the Analytical Engine"]),
            MemoryEntity(name="Charles Babbage", entityType="person", observations=["designed engines"])])
        graph.create_relations([MemoryRelation.model_validate(
            {{"from": "Ada Lovelace", "to": "Charles Babbage", "relationType": "worked with"}})])
        graph.add_observations([ObservationAddition(entityName="Charles Babbage", contents=["lived in London"])])
        graph.delete_observations([ObservationDeletion(entityName="Charles Babbage", observations=["designed engines"])])
        found = [e.name for e in graph.search_nodes("analytical").entities]
        opened = [e.name for e in graph.open_nodes(["Ada Lovelace"]).entities]
        listed = len(graph.read_graph().entities)
        graph.delete_relations([MemoryRelation.model_validate(
            {{"from": "Ada Lovelace", "to": "Charles Babbage", "relationType": "worked with"}})])
        before = sorted(m for m in heavy if m in sys.modules)
        caught_up = engine.wait_for_index(300)
        hits = [h.name for h in engine.search("the first computer program", channels=("vector",), k=1).hits]
        after = sorted(m for m in heavy if m in sys.modules)
        graph.delete_entities(["Charles Babbage"])
        engine.close()
        print(json.dumps(dict(found=found, opened=opened, listed=listed, before=before,
            caught_up=caught_up, hits=hits, after=after)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["found"] == ["Ada Lovelace"]  # keyword match at once, before any vector exists
    assert out["opened"] == ["Ada Lovelace"] and out["listed"] == 2
    assert out["before"] == [], f"memory-server tools imported {out['before']}"
    assert out["caught_up"] is True
    assert out["hits"] == ["Ada Lovelace"]
    # The model did load once something embedded: on ONNX Runtime (the default) or torch.
    assert {"onnxruntime", "torch"} & set(out["after"])


def test_lazy_embedder_builds_once_and_caches_queries(embedder: Any) -> None:
    builds: list[int] = []

    def build() -> Any:
        builds.append(1)
        return embedder

    lazy = LazyEmbedder(build, query_cache_size=2)
    assert not lazy.built and not lazy.loaded
    first = lazy.embed_query("where is the harbour ferry?")
    again = lazy.embed_query("where is the harbour ferry?")
    assert builds == [1]
    np.testing.assert_array_equal(first, again)
    assert lazy.query_cache.hits == 1 and lazy.query_cache.misses == 1
    again[0] = 42.0  # a caller's copy: the cached row stays as it was
    np.testing.assert_array_equal(lazy.embed_query("where is the harbour ferry?"), first)
    lazy.embed_query("a second question")
    lazy.embed_query("a third question")
    assert len(lazy.query_cache) == 2  # bounded: the oldest went
    assert lazy.model_name == embedder.model_name and lazy.dim == embedder.dim


def test_query_cache_keys_on_the_model() -> None:
    cache = QueryVectorCache(4)
    cache.put("model-a", "q", np.ones(3, dtype=np.float32))
    assert cache.get("model-b", "q") is None
    got = cache.get("model-a", "q")
    assert got is not None and got.tolist() == [1.0, 1.0, 1.0]


def _structured(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def _client(data_dir: Path, warm: bool = True) -> Client:
    # Without warm-up the server syncs no index at start, which would embed what is missing.
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "aesoperator.cli",
            "--data-dir",
            str(data_dir),
            "serve",
            "--stdio",
            *([] if warm else ["--no-warm"]),
        ],
        env=_env(),
        cwd=str(data_dir),
    )
    return Client(params, read_timeout_seconds=300)


ENTITIES = [
    {"name": f"Ferry {i}", "entityType": "vessel", "observations": [f"sails from harbour {i} at dawn"]}
    for i in range(40)
]


@pytest.mark.slow
@pytest.mark.anyio
async def test_killed_server_leaves_the_embedding_to_the_next_one(tmp_path: Path, embedder: Any) -> None:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    data = tmp_path / "data"
    data.mkdir()
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with contextlib.suppress(Exception):
        async with _client(data, warm=False) as client:
            servers = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
            # The client's first result costs it a second (the MCP SDK imports jsonschema to check
            # it): paid before the write, so the kill below does come before the worker's pause ends.
            await client.call_tool("read_graph", {})
            created = _structured(await client.call_tool("create_entities", {"entities": ENTITIES}))
            # Killed at once, before the background worker starts (it waits for a 1 s pause in writes).
            for server in servers:
                os.kill(server.pid, signal.SIGKILL)
            assert len(created["entities"]) == len(ENTITIES)
    with ContextEngine.open(settings=Settings(data_dir=data), embedder=embedder) as engine:
        assert engine.stats().entities == len(ENTITIES)  # committed before the answer
        assert engine.stats().vectors == 0
    async with _client(data) as client:  # the next server catches up from the change log
        deadline = time.monotonic() + 300
        vectors = 0
        while time.monotonic() < deadline:
            vectors = int(_structured(await client.call_tool("sources", {}))["stats"]["vectors"] or 0)
            if vectors == len(ENTITIES):
                break
            await anyio.sleep(0.5)
        assert vectors == len(ENTITIES)
    with ContextEngine.open(settings=Settings(data_dir=data), embedder=embedder) as engine:
        hits = engine.search("which ferry leaves harbour 12 at dawn", channels=("vector",), k=3).hits
        assert "Ferry 12" in [h.name for h in hits]
