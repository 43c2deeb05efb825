"""The LLM extractor over MCP sampling: the engine's MCP server asks the model of the client that
calls it (`extractor = "llm"`, `llm_transport = "sampling"`).

The client is the real MCP SDK client with a `sampling_callback` that plays the host's model: it
answers with recorded `CreateMessageResult`s (tests/fixtures/llm/sampling_answers.json), in the
order a test queues them, and keeps the requests it got. The server runs in-process (the SDK client
connected to the `MCPServer` object) and, once, as `aesop serve --stdio` in a subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult, CreateMessageRequestParams, CreateMessageResult, ErrorData, Implementation

from aesoperator.ingest.documents import DocumentInput
from aesoperator.ingest.extract.llm import ANSWER_TOKENS
from aesoperator.ingest.extract.llm_schema import SYSTEM_PROMPT

RECORDED: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "llm" / "sampling_answers.json").read_text()
)
HOST_MODEL = "claude-sonnet-4-5"
SAMPLED_BY = f"llm:sampling:{HOST_MODEL}"
TEXT = "Kim Lee works for Acme Bakery in Lisbon. The bakery opened in 2019."
OTHER_TEXT = "Kim Lee works for Acme Bakery in Lisbon, and has done so for years."
TIMEOUT_S = 1.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordedHost:
    """The host's model: recorded answers in the order queued (`default` when the queue is empty)."""

    def __init__(self) -> None:
        self.queue: list[str] = []
        self.default = "ok"
        self.requests: list[CreateMessageRequestParams] = []

    async def __call__(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult | ErrorData:
        self.requests.append(params)
        answer = RECORDED[self.queue.pop(0) if self.queue else self.default]
        await anyio.sleep(float(answer.get("delay_s", 0)))
        if "error" in answer:
            return ErrorData.model_validate(answer["error"])
        content = getattr(params.messages[0].content, "text", "")
        item_id = json.loads(content)[0]["id"]  # a model names the items it was given
        return CreateMessageResult.model_validate_json(json.dumps(answer["result"]).replace("$ITEM_ID", item_id))


def sampling_engine(make_engine: Callable[..., Any], **overrides: Any) -> Any:
    settings: dict[str, Any] = {
        "extractor": "llm",
        "llm_transport": "sampling",
        "llm_model": HOST_MODEL,
        "llm_timeout_s": TIMEOUT_S,
    }
    return make_engine(**{**settings, **overrides})


def served(engine: Any) -> Any:
    from aesoperator.serve.server import build_server

    return build_server(engine, warm=False)


def named(who: str) -> Implementation:
    return Implementation(name=f"{who}-{uuid.uuid4().hex[:8]}", version="1.0")


def structured(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


async def remember(client: Client, content: str = TEXT) -> dict[str, Any]:
    out: dict[str, Any] = structured(await client.call_tool("remember", {"content": content, "agent_id": "ops"}))
    return out


async def profile(client: Client, name: str) -> dict[str, Any] | None:
    result = await client.call_tool("entity", {"name": name})
    return None if result.is_error else result.structured_content


async def known_names(client: Client) -> set[str]:
    found = structured(await client.call_tool("entities", {"limit": 500}))
    return {e["name"] for e in found["entities"]}


# -- a host that samples -----------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_remember_extracts_with_the_clients_model_and_caches_it(make_engine: Callable[..., Any]) -> None:
    host = RecordedHost()
    async with Client(served(sampling_engine(make_engine)), mode="legacy", sampling_callback=host) as client:
        first = await remember(client)
        assert first["warnings"] == []
        assert len(host.requests) == 1
        asked = host.requests[0]
        assert asked.system_prompt is not None and asked.system_prompt.startswith(SYSTEM_PROMPT)
        assert "JSON schema of the answer" in asked.system_prompt
        assert TEXT in getattr(asked.messages[0].content, "text", "")
        assert asked.max_tokens == ANSWER_TOKENS and asked.include_context == "none"
        assert asked.model_preferences is not None and asked.model_preferences.hints is not None
        assert asked.model_preferences.hints[0].name == HOST_MODEL

        kim = await profile(client, "Kim Lee")
        assert kim is not None and kim["entity"]["type"] == "Person"
        assert {m["extractor"] for m in kim["mentions"]} == {SAMPLED_BY}
        # the model's WORKS_FOR is remembered as the fact WORKS_AT (graph_schema.facts)
        works = [r for r in kim["relations"] if r["type"] == "WORKS_AT"]
        assert works and works[0]["other_name"] == "Acme Bakery" and "works for" in works[0]["evidence"]
        names = await known_names(client)
        assert {"Acme Bakery", "Lisbon"} <= names
        assert "Atlantis" not in names  # named by the model, absent from the text: not kept

        again = await remember(client)  # the same text once more: the cache answers
        assert again["warnings"] == [] and len(host.requests) == 1
        assert kim["entity"]["id"] in again["episode"]["mentions"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answers", "asked", "complaint"),
    [
        (["malformed", "malformed"], 2, "does not fit the schema"),
        (["refusal_text", "refusal_text"], 2, "does not fit the schema: Invalid JSON"),
        (["refusal_stop"], 1, "refused: I can't help with that request."),
        (["image"], 1, "answered with image, not text"),
        (["rejected"], 1, "the client declined the request: User rejected sampling request"),
        (["slow"], 1, f"no answer from the client's model within {TIMEOUT_S}s"),
    ],
)
async def test_bad_answers_warn_and_keep_the_event(
    make_engine: Callable[..., Any], answers: list[str], asked: int, complaint: str
) -> None:
    host = RecordedHost()
    host.queue.extend(answers)
    async with Client(served(sampling_engine(make_engine)), mode="legacy", sampling_callback=host) as client:
        started = time.monotonic()
        out = await remember(client)
        elapsed = time.monotonic() - started
        assert len(host.requests) == asked
        assert any(complaint in w and "not extracted through MCP sampling" in w for w in out["warnings"]), out
        assert elapsed < RECORDED["slow"]["delay_s"] - 1  # a slow host costs the timeout, not its delay
        stored = structured(await client.call_tool("get_entities", {"ids": [out["episode"]["id"]]}))
        assert stored["entities"][0]["text"] == TEXT
        assert "Kim Lee" not in await known_names(client)

        retry = await remember(client)  # a failure is not cached: the next call asks again
        assert retry["warnings"] == [] and len(host.requests) == asked + 1
        assert "Kim Lee" in await known_names(client)


@pytest.mark.anyio
async def test_token_budget_is_per_call_and_stops_cleanly(make_engine: Callable[..., Any]) -> None:
    host = RecordedHost()
    engine = sampling_engine(make_engine, llm_token_budget=100)
    async with Client(served(engine), mode="legacy", sampling_callback=host) as client:
        out = await remember(client)
        assert host.requests == []
        assert any("token budget of 100 spent" in w for w in out["warnings"])
        stored = structured(await client.call_tool("get_entities", {"ids": [out["episode"]["id"]]}))
        assert stored["entities"][0]["text"] == TEXT

    roomy = sampling_engine(make_engine, llm_token_budget=ANSWER_TOKENS + 600, data_dir=engine.settings.data_dir / "b")
    async with Client(served(roomy), mode="legacy", sampling_callback=host) as client:
        # each call fits the budget on its own; together they would not
        assert (await remember(client))["warnings"] == []
        assert (await remember(client, OTHER_TEXT))["warnings"] == []
        assert len(host.requests) == 2


# -- no sampling: the offline extractor ----------------------------------------------------------------------
@pytest.mark.anyio
async def test_without_sampling_the_offline_extractor_runs_and_says_why(
    make_engine: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    engine = sampling_engine(make_engine)
    server = served(engine)
    plain = named("no-sampling")
    caplog.set_level(logging.WARNING, logger="aesoperator.ingest.extract.llm_sampling")
    async with Client(server, mode="legacy", client_info=plain) as client:
        outs = [await remember(client), await remember(client, OTHER_TEXT)]
        for out in outs:
            assert any(f"{plain.name!r} does not offer sampling" in w for w in out["warnings"]), out
            assert any("the default offline extractor ran instead" in w for w in out["warnings"])
        kim = await profile(client, "Kim Lee")
        assert kim is not None and not any(m["extractor"].startswith("llm") for m in kim["mentions"])
    logged = [r for r in caplog.records if f"{plain.name!r} does not offer sampling" in r.getMessage()]
    assert len(logged) == 1  # said once in the log, in every call's warnings

    host = RecordedHost()
    async with Client(server, sampling_callback=host) as client:  # protocol 2026-07-28: no server requests
        out = await remember(client, "Ada Byrne runs the night shift at Acme Bakery.")
        assert any("protocol 2026-07-28" in w for w in out["warnings"]) and host.requests == []

    direct = await server.call_tool("remember", {"content": OTHER_TEXT + " Really.", "agent_id": "ops"})
    assert any("did not come from an MCP client session" in w for w in structured(direct)["warnings"])

    # what the offline extractor found for TEXT is not taken for the model's answer
    async with Client(server, mode="legacy", sampling_callback=host) as client:
        out = await remember(client)
        assert out["warnings"] == [] and len(host.requests) == 1
        kim = await profile(client, "Kim Lee")
        assert kim is not None and SAMPLED_BY in {m["extractor"] for m in kim["mentions"]}


def test_ingest_outside_a_server_uses_the_offline_extractor(make_engine: Callable[..., Any]) -> None:
    engine = sampling_engine(make_engine)
    report = engine.add_documents([DocumentInput(title="Kim", text=TEXT)], source="docs")
    assert report.knowledge_items == 1 and report.quarantined == 0
    assert any("no MCP client is calling" in n for n in report.knowledge_notes)
    assert "Kim Lee" in {e.name for e in engine.entities()}


# -- over stdio ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.anyio
async def test_stdio_server_samples_the_hosts_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESOP_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        AESOP_CONFIG=os.devnull,
        AESOP_EXTRACTOR="llm",
        AESOP_LLM_TRANSPORT="sampling",
        AESOP_LLM_TIMEOUT_S="30",
    )
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aesoperator.cli", "--data-dir", str(tmp_path / "data"), "serve", "--stdio"],
        env=env,
        cwd=str(tmp_path),
    )
    host = RecordedHost()
    host.default = "ok_fenced"
    async with Client(params, mode="legacy", sampling_callback=host, read_timeout_seconds=120) as client:
        out = await remember(client)
        assert out["warnings"] == [] and len(host.requests) == 1
        assert host.requests[0].model_preferences is None  # no llm_model: the host picks
        kim = await profile(client, "Kim Lee")
        assert kim is not None and {m["extractor"] for m in kim["mentions"]} == {SAMPLED_BY}
        assert (await remember(client))["warnings"] == [] and len(host.requests) == 1
