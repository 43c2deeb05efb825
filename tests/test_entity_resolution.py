"""Entity resolution across sources: the git author and the GitHub user who are one person become
one Person through a recorded, reversible decision; nothing merges across namespaces; the
memory server's entity and a document's mention meet; the MCP tools are scoped."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from aesoperator.graph_schema.models import Entity
from aesoperator.ingest.extract.resolve import candidate_pairs
from aesoperator.ingest.mcp_ingest import ingest_source
from aesoperator.ingest.sources import SourceDefinition
from aesoperator.security.principal import Principal
from tests.test_adapter_github import FULL, replay_source
from tests.test_serve_tools import error_text, structured

AUTHORS = [
    ("Grace H.", "4711+grace-h@users.noreply.github.com", "Proofing: clamp the PID integral"),
    ("priya-n", "priya@acme-bakery.example", "Docs: oven calibration"),
    ("Tomas Reyes", "tomas@acme-bakery.example", "App: weekly schedule view"),
]


def make_git_repo(path: Path) -> Path:
    path.mkdir()

    def git(*args: str, env: dict[str, str] | None = None) -> None:
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, env={**os.environ, **(env or {})})

    git("init", "-q", "-b", "main")
    for i, (name, email, message) in enumerate(AUTHORS):
        (path / f"f{i}.txt").write_text(message)
        git("add", f"f{i}.txt")
        who = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name}
        who["GIT_COMMITTER_EMAIL"] = email
        git("-c", "commit.gpgsign=false", "commit", "-q", "-m", message, env=who)
    return path


def git_source(repo: Path, name: str, namespace: str) -> SourceDefinition:
    import sys

    return SourceDefinition(
        name=name,
        kind="git",
        command=sys.executable,
        args=["-m", "mcp_server_git", "--repository", str(repo)],
        namespace=namespace,
    )


@pytest.fixture
def resolved(tmp_path: Path, make_engine: Callable[..., Any]) -> Any:
    engine = make_engine()
    repo = make_git_repo(tmp_path / "repo")
    ingest_source(engine, git_source(repo, "code", "eng"))
    options = {"repositories": [FULL], "page_size": 2}
    ingest_source(
        engine, replay_source("github", "github", tmp_path / "log", name="gh", namespace="eng", options=options)
    )
    # the same GitHub data in another namespace: never merged with the first
    ingest_source(
        engine, replay_source("github", "github", tmp_path / "log2", name="gh2", namespace="ops", options=options)
    )
    return engine


def _person(engine: Any, name: str, namespace: str) -> Any:
    return next(s for s in engine.entities(name, types=["Person"], namespaces=[namespace]) if name in s.names)


def test_git_author_and_github_user_become_one_person(resolved: Any) -> None:
    engine = resolved
    grace = _person(engine, "grace-h", "eng")
    assert set(grace.sources) >= {"code", "gh"} and grace.id.startswith("code:person:")
    assert "grace-h" in grace.names and any(n.startswith("Grace H") for n in grace.names)
    priya = _person(engine, "priya-n", "eng")
    assert {"code", "gh"} <= set(priya.sources)
    tomas = _person(engine, "tomas-r", "eng")  # the login follows a convention for "Tomas Reyes"
    assert {"code", "gh"} <= set(tomas.sources) and "Tomas Reyes" in tomas.names
    mkowalski = _person(engine, "mkowalski", "eng")  # no commits: nobody to merge with
    assert "code" not in mkowalski.sources
    merges = {(m.rule, frozenset((m.a_name, m.b_name))) for m in engine.merges(["eng"])}
    assert any(rule == "exact-key" and "grace-h" in pair for rule, pair in merges)
    assert any(rule in ("alias", "name-type") and pair == frozenset(("priya-n",)) for rule, pair in merges)
    # never across namespaces
    for m in engine.merges():
        a, b = engine.get_entities([m.a, m.b])
        assert a.namespace == b.namespace
    ops_grace = _person(engine, "grace-h", "ops")
    assert not set(ops_grace.members) & set(grace.members)
    profile = engine.entity(grace.id, namespaces=["eng"])
    assert {"code", "gh"} <= set(profile.entity.sources)
    assert any(r.type == "AUTHORED" for r in profile.relations)
    assert profile.merges and profile.merges[0].evidence


def test_unmerge_is_recorded_and_respected(resolved: Any) -> None:
    engine = resolved
    grace = _person(engine, "grace-h", "eng")
    decision = next(m for m in engine.merges(["eng"]) if m.a in grace.members and m.b in grace.members)
    undone = engine.unmerge(decision.id, ["eng"])
    assert not undone.live
    assert len(_person(engine, "grace-h", "eng").members) == len(grace.members) - 1
    assert engine.knowledge.resolve(["eng"]) == 0  # the refusal holds
    kinds = {
        (m.kind, m.live)
        for m in engine.merges(["eng"], include_undone=True)
        if m.id == decision.id or m.kind == "NOT_SAME_AS"
    }
    assert ("SAME_AS", False) in kinds and ("NOT_SAME_AS", True) in kinds
    with pytest.raises(Exception, match="already undone"):
        engine.unmerge(decision.id)


def test_memory_entity_and_document_mention_meet(make_engine: Callable[..., Any]) -> None:
    from aesoperator.ingest.documents import DocumentInput

    engine = make_engine()
    memory_entity = Entity(
        id="memory-graph:entity:Grace Hopper",
        type="person",
        name="Grace Hopper",
        text="Grace Hopper\nperson\nwrote the first compiler",
        source="memory-graph",
    )
    engine.upsert([memory_entity])
    engine.add_documents([DocumentInput(title="COBOL", text="COBOL was designed after Grace Hopper's FLOW-MATIC.")])
    about = engine.search_about("Grace Hopper")
    assert "docs:doc:COBOL" in {h.id for h in about.hits}
    sub = engine.neighbors(["docs:doc:COBOL"], relation_types=["MENTIONS"], direction="out")
    assert memory_entity.id in sub.entities


def test_cascade_rules_on_plain_entities() -> None:
    def person(i: str, name: str, **props: Any) -> Entity:
        return Entity(id=i, type="Person", name=name, text=name, properties=props)

    entities = [
        person("a", "Kim Lee", email="kim@x.example"),
        person("b", "kim@x.example", key="email:kim@x.example"),
        Entity(id="c", type="Organization", name="North Atlantic Treaty Organization", text="x"),
        Entity(id="d", type="Organization", name="NATO", text="x"),
        person("e", "Jonathan Smithson"),
        person("f", "Jonathon Smithson"),
        Entity(id="g", type="Place", name="Kim Lee", text="a place with a person's name"),
    ]
    rules = {(d.rule, d.a, d.b) for d in candidate_pairs(entities)}
    assert ("exact-key", "a", "b") in rules
    assert ("acronym", "c", "d") in rules
    assert ("fuzzy", "e", "f") in rules
    assert not any({d_a, d_b} == {"a", "g"} for _, d_a, d_b in rules)  # a name alone does not cross types


@pytest.mark.anyio
async def test_knowledge_tools_are_scoped(resolved: Any) -> None:
    from aesoperator.serve.server import build_server

    engine = resolved
    server = build_server(engine, None, lambda: Principal.from_scopes("r", ["read:eng"]), warm=False)
    async with Client(server) as client:
        listed = structured(await client.call_tool("entities", {"types": ["Person"], "limit": 100}))
        assert listed["entities"] and all(e["namespace"] == "eng" for e in listed["entities"])
        profile = structured(await client.call_tool("entity", {"name": "grace-h"}))
        assert profile["entity"]["namespace"] == "eng"
        merges = structured(await client.call_tool("entity_merges", {}))["merges"]
        assert merges and all(engine.store.get_relations([m["id"]])[0].namespace == "eng" for m in merges)
        denied = await client.call_tool("entities", {"namespaces": ["ops"]})
        assert "ops" in error_text(denied)
        refused = await client.call_tool("unmerge_entities", {"decision_id": merges[0]["id"]})
        assert "write" in error_text(refused).lower()
        about = structured(await client.call_tool("search_about", {"name": "grace-h"}))
        assert about["entity"]["namespace"] == "eng"
