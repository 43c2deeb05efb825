"""A multi-session scenario through the engine's MCP server (the mcp SDK client over the SDK's
in-memory transport, the real server with a real call guard and audit log): moves, a job change and
a correction; recall answers with the current fact, `as_of` with the old one, history lists both
versions, `update_memory` needs write scope on the episode's namespace, and every call is audited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from aesoperator.security.principal import Principal

AGENT = "concierge"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def engine(tmp_path: Path, embedder: Any) -> Iterator[Any]:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    built = ContextEngine.open(settings=Settings(data_dir=tmp_path / "data"), embedder=embedder)
    yield built
    built.close()


def ok(result: Any) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def failure(result: Any) -> str:
    assert result.is_error
    return " ".join(getattr(c, "text", "") for c in result.content)


def moment() -> datetime:
    time.sleep(0.01)  # the calls below are stamped by the server's clock: keep them apart
    at = datetime.now(UTC)
    time.sleep(0.01)
    return at


@pytest.mark.anyio
async def test_moves_job_changes_and_a_correction_over_mcp(engine: Any, tmp_path: Path) -> None:
    from aesoperator.security.audit import AuditLog
    from aesoperator.security.guard import CallGuard
    from aesoperator.serve.server import build_server

    audit = AuditLog.in_data_dir(tmp_path / "audit")
    who = {"principal": Principal.from_scopes("owner", [f"write:agent:{AGENT}"])}
    server = build_server(engine, CallGuard(audit=audit), lambda: who["principal"], warm=False)

    async def remember(client: Client, session: str, content: str) -> str:
        args = {"content": content, "agent_id": AGENT, "session_id": session, "speaker": "Alice"}
        return str(ok(await client.call_tool("remember", args))["episode"]["id"])

    async def recall(client: Client, query: str, **extra: Any) -> list[dict[str, Any]]:
        found = ok(await client.call_tool("recall", {"query": query, "agent_id": AGENT, "k": 5, **extra}))
        return list(found["episodes"])

    async with Client(server) as client:
        paris = await remember(client, "s1", "I live in Paris and I work at Acme as a data analyst.")
        await remember(client, "s1", "The bakery on our street makes great croissants.")
        in_paris = moment()
        berlin = await remember(client, "s2", "Big news: I just moved to Berlin!")
        stripe = await remember(client, "s3", "I joined Stripe as a product manager.")
        before_fix = moment()
        fixed = ok(
            await client.call_tool(
                "update_memory", {"id": stripe, "new_content": "I joined Stripe as a senior product manager."}
            )
        )
        corrected = fixed["episode"]["id"]
        assert fixed["replaced"] == stripe and fixed["uri"].startswith("entity://")

        # now: the current home and job, not the old ones
        home = await recall(client, "Where does Alice live?")
        assert home[0]["episode"]["id"] == berlin and paris not in [e["episode"]["id"] for e in home]
        assert [(f["predicate"], f["object_name"], f["current"]) for f in home[0]["facts"]] == [
            ("LIVES_IN", "Berlin", True)
        ]
        job = [e["episode"]["id"] for e in await recall(client, "Where does Alice work and what is her role?")]
        assert corrected in job and stripe not in job and paris not in job

        # as of an earlier time: what held then, and what replaced it
        then = await recall(client, "Where does Alice live?", as_of=in_paris.isoformat())
        old = next(e for e in then if e["episode"]["id"] == paris)
        assert berlin not in [e["episode"]["id"] for e in then]
        assert old["retired_reason"] == "superseded" and old["superseded_by"] in {berlin, stripe}
        assert {(f["predicate"], f["object_name"]) for f in old["facts"] if f["current"]} == {
            ("LIVES_IN", "Paris"),
            ("WORKS_AT", "Acme"),
            ("HAS_ROLE", "data analyst"),
        }
        old_job = [
            e["episode"]["id"]
            for e in await recall(client, "Alice joined Stripe as a product manager", as_of=before_fix.isoformat())
        ]
        assert stripe in old_job and corrected not in old_job

        # history: both versions of the home, of the job, of the corrected episode
        history = ok(await client.call_tool("memory_history", {"target": "Alice"}))
        lines = [(e["predicate"], e["object_name"], e["current"]) for e in history["entries"]]
        assert [x for x in lines if x[0] == "LIVES_IN"] == [("LIVES_IN", "Paris", False), ("LIVES_IN", "Berlin", True)]
        assert [x for x in lines if x[0] == "WORKS_AT"] == [("WORKS_AT", "Acme", False), ("WORKS_AT", "Stripe", True)]
        assert [x for x in lines if x[0] == "HAS_ROLE"][-1] == ("HAS_ROLE", "senior product manager", True)
        paris_fact = next(e for e in history["entries"] if e["object_name"] == "Paris")
        assert [ev["episode_id"] for ev in paris_fact["evidence"]] == [paris] and paris_fact["valid_to"]
        versions = ok(await client.call_tool("memory_history", {"target": corrected}))
        episodes = [(e["id"], e["version"], e["current"]) for e in versions["entries"] if e["kind"] == "episode"]
        assert episodes == [(stripe, 1, False), (corrected, 2, True)]

        # scopes: reading is not enough to change, and neither is writing another namespace
        who["principal"] = Principal.from_scopes("reader", [f"read:agent:{AGENT}"])
        denied = failure(await client.call_tool("update_memory", {"id": berlin, "new_content": "I moved to Rome."}))
        assert "may not write" in denied
        who["principal"] = Principal.from_scopes("other", ["write:agent:someone-else"])
        hidden = failure(await client.call_tool("update_memory", {"id": berlin, "new_content": "I moved to Rome."}))
        assert "no episode" in hidden  # outside its namespaces: not found, not even named
        unseen = failure(await client.call_tool("memory_history", {"target": "Alice"}))
        assert "nothing called 'Alice'" in unseen and "Berlin" not in unseen

    records = audit.tail(50)
    calls = [(r["tool"], r["decision"]) for r in records]
    assert ("update_memory", "allow") in calls and calls.count(("remember", "allow")) == 4
    assert ("update_memory", "deny") in calls and ("memory_history", "allow") in calls
    assert audit.verify().ok
    audit.close()
    assert [h.id for h in engine.search("Alice Rome", k=5).hits if "Rome" in h.text] == []
