"""The brief's Python API against real servers: a PostgreSQL per session, git repositories and
folders made here, the GitHub connector on recorded API responses, HTTP on 127.0.0.1 with bearer
tokens and OAuth2 client credentials. The rules are checked where they are enforced: at the
connectors, whatever path a request takes (query, ingest, task context)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import aesoperator as aesop
from aesoperator import MCPClient, MCPServer
from aesoperator.errors import AesopError, PermissionDenied, SchemaError, SourceError
from tests.postgres_support import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "tests" / "fixtures" / "recorded" / "github"
SECRET_VALUE = "hunter2-do-not-leak"

SCHEMA = f"""
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, signup_at timestamptz NOT NULL);
CREATE TABLE events (id bigserial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), kind text, at timestamptz);
CREATE TABLE secrets (id int PRIMARY KEY, user_id int REFERENCES users(id), value text);
INSERT INTO users (name, signup_at) VALUES ('ann', now() - interval '50 days'), ('bob', now() - interval '5 days');
INSERT INTO events (user_id, kind, at) VALUES (1, 'login', now() - interval '2 days'), (2, 'login', now()),
    (1, 'report_viewed', now() - interval '1 day');
INSERT INTO secrets VALUES (1, 1, '{SECRET_VALUE}');
"""


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    yield
    for name in list(aesop.api.registry._registry):
        aesop.unregister_server(name)


@pytest.fixture(scope="module")
def analytics(postgres_server: PostgresServer) -> tuple[PostgresServer, str]:
    db = postgres_server.create_database("api")
    postgres_server.sql(SCHEMA, db)
    return postgres_server, db


def git(repo: Path, *args: str, when: str = "2025-01-01T10:00:00+00:00", who: str = "Ann Example") -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": who,
        "GIT_AUTHOR_EMAIL": "ann@example.com",
        "GIT_AUTHOR_DATE": when,
        "GIT_COMMITTER_NAME": who,
        "GIT_COMMITTER_EMAIL": "ann@example.com",
        "GIT_COMMITTER_DATE": when,
    }
    subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, check=True, capture_output=True, env=env)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("print('hello')\n")
    git(path, "add", "app.py")
    git(path, "commit", "-q", "-m", "First version of the app")
    (path / "app.py").write_text("print('hello, world')\n")
    (path / "README.md").write_text("# App\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Greet the world", when="2025-02-01T10:00:00+00:00", who="Bo Example")
    return path


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


# -- configuration ---------------------------------------------------------------------------------
def test_server_kinds_are_inferred_and_minimal_by_default(repo: Path, tmp_path: Path) -> None:
    assert MCPServer(name="r", repo=str(repo)).kind == "git"
    assert MCPServer(name="gh", repo="acme/widgets").kind == "github"
    assert MCPServer(name="f", roots=[str(tmp_path)]).kind == "filesystem"
    assert MCPServer(name="m", command="some-mcp-server").kind == "mcp"
    db = MCPServer(name="d", connection_string="postgresql://u:pa55word@127.0.0.1/x", allowed_tables=["t"])
    assert db.kind == "postgres" and db.read_only
    assert "pa55word" not in repr(db) and "pa55word" not in json.dumps(db.public_view(), default=str)
    with pytest.raises(ValidationError, match="allowed_tables"):
        MCPServer(name="d", connection_string="postgresql://127.0.0.1/x")
    with pytest.raises(ValidationError, match="data_sources"):
        MCPServer(name="gh", repo="acme/widgets", data_sources=["wiki"])


def test_unknown_servers_operations_and_events_raise_clear_errors(make_engine: Callable[..., Any], repo: Path) -> None:
    with pytest.raises(aesop.UnknownServer, match="no server named 'nope'"):
        aesop.mcp_query("nope", "anything")
    aesop.register_server(name="kb", engine=make_engine())
    with pytest.raises(aesop.UnknownOperation, match="drop_everything"):
        aesop.mcp_update("kb", "drop_everything", {})
    with pytest.raises(aesop.UnknownEventType, match=r"table\.truncated"):
        aesop.mcp_subscribe("kb", "table.truncated", print)
    aesop.register_server(MCPServer(name="code", repo=str(repo), data_dir=repo.parent / "d"))
    with pytest.raises(aesop.UnknownOperation, match="rebase"):
        aesop.mcp_query("code", "rebase")
    with pytest.raises(PermissionDenied, match="read-only"):
        aesop.mcp_update("code", "git_commit", {"message": "x"})
    with pytest.raises(aesop.UnknownEventType):
        aesop.mcp_subscribe("code", "entity.updated", print)


def test_servers_declared_in_aesop_toml(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "aesop.toml"
    config.write_text(f'[servers.code]\nrepo = "{repo}"\ndata_dir = "{tmp_path / "d"}"\n')
    monkeypatch.setenv("AESOP_CONFIG", str(config))
    assert "code" in aesop.registered_servers()
    out = aesop.mcp_query("code", "log", {"max_count": 5})
    assert out["tool"] == "git_log" and "Greet the world" in out["text"]
    assert aesop.health("code")["ok"] is True


# -- PostgreSQL ------------------------------------------------------------------------------------
def test_disallowed_table_is_unreachable_through_every_path(
    analytics: tuple[PostgresServer, str], make_engine: Callable[..., Any], tmp_path: Path
) -> None:
    pg, db = analytics
    server = MCPServer(
        name="analytics_db", connection_string=pg.reader_url(db), allowed_tables=["users", "events"], data_dir=tmp_path
    )
    aesop.register_server(server)
    # query: by name, as SQL, as an aggregate, through a filter, through the raw tools and resources
    with pytest.raises(PermissionDenied, match="secrets"):
        aesop.mcp_query("analytics_db", "secrets")
    with pytest.raises(PermissionDenied, match="takes no SQL"):
        aesop.mcp_query("analytics_db", "SELECT value FROM secrets")
    with pytest.raises(PermissionDenied):
        aesop.mcp_query("analytics_db", "secrets", {"metrics": [{"fn": "count"}]})
    with pytest.raises(SchemaError, match="no column"):
        aesop.mcp_query("analytics_db", "users", {"columns": ["(SELECT value FROM secrets)"]})
    link = server.link()
    for tool, args in (("read_rows", {"table": "secrets"}), ("query", {"table": "public.secrets"})):
        with pytest.raises(PermissionDenied):
            link.call_tool(tool, args)
    with pytest.raises(SourceError, match="no allowed table"):
        link.read_resource("postgres://tables/secrets")
    tables = aesop.mcp_query("analytics_db", "describe")["tables"]
    assert [t["name"] for t in tables] == ["users", "events"]
    # values are parameters: text that reads like SQL is only a value
    assert aesop.mcp_query("analytics_db", "users", {"filters": {"name": "x'; DROP TABLE users; --"}})["rows"] == []
    assert len(aesop.mcp_query("analytics_db", "users")["rows"]) == 2
    # writes: the connector is read-only
    with pytest.raises(PermissionDenied, match="read-only"):
        aesop.mcp_update("analytics_db", "insert_rows", {"table": "users", "rows": [{"name": "eve"}]})

    # ingest: the engine's sync through the connector process never names the table
    engine = make_engine()
    aesop.register_server(name="engine", engine=engine)
    position = pg.log_position()
    report = engine.ingest_source(server.source_definition())
    assert report.records_changed > 0
    names = {e.name for batch in engine.store.iter_entities() for e in batch}
    assert {"users", "events"} <= names and "secrets" not in names
    texts = " ".join(e.text for batch in engine.store.iter_entities() for e in batch)
    assert SECRET_VALUE not in texts
    log = pg.statements_since(position)
    assert "users" in log and "secrets" not in log and SECRET_VALUE not in log

    # task context: only the allowed tables, and nothing of the secret
    result = aesop.execute_task(
        aesop.Task(name="user_analysis", mcp_context=["analytics_db"], inputs={"metric": "secrets value retention"}),
        engine=engine,
    )
    dumped = result.model_dump_json()
    assert SECRET_VALUE not in dumped and '"secrets"' not in dumped
    assert [t["name"] for t in result.live["analytics_db"]["tables"]] == ["users", "events"]
    assert result.context and all(i.namespace in ("analytics_db",) for i in result.context)
    assert "secrets" not in pg.statements_since(position)


def test_postgres_aggregates_and_writes_when_allowed(analytics: tuple[PostgresServer, str], tmp_path: Path) -> None:
    pg, db = analytics
    reader = MCPServer(name="ro", connection_string=pg.reader_url(db), allowed_tables=["events"], data_dir=tmp_path)
    counts = aesop.mcp_query(
        reader, "events", {"metrics": [{"fn": "count", "alias": "n"}], "group_by": [{"column": "kind"}]}
    )
    assert {r["kind"]: r["n"] for r in counts["rows"]} == {"login": 2, "report_viewed": 1}
    writer = MCPServer(
        name="rw", connection_string=pg.url(db), allowed_tables=["events"], read_only=False, data_dir=tmp_path
    )
    aesop.mcp_update(writer, "insert_rows", {"table": "events", "rows": [{"user_id": 2, "kind": "export"}]})
    assert len(aesop.mcp_query(reader, "events", {"filters": {"kind": "export"}})["rows"]) == 1
    with pytest.raises(PermissionDenied):
        aesop.mcp_update(writer, "insert_rows", {"table": "secrets", "rows": [{"id": 9, "value": "x"}]})
    with pytest.raises(aesop.UnknownOperation):
        aesop.mcp_update(writer, "query", {"table": "events"})
    pg.sql("DELETE FROM events WHERE kind = 'export'", db)
    reader.close()
    writer.close()


# -- HTTP: bearer tokens and OAuth2 ----------------------------------------------------------------
def test_http_tokens_rotate_and_revoke_without_restart(repo: Path, tmp_path: Path) -> None:
    from aesoperator.security.audit import AuditLog
    from aesoperator.security.tokens import TokenStore

    data = tmp_path / "data"
    server = MCPServer(name="code", repo=str(repo), data_dir=data, auth_config={"type": "static"})
    tokens = TokenStore.in_data_dir(data)
    first = tokens.add("alice", ["source:code"]).token
    other = tokens.add("mallory", ["source:elsewhere"]).token
    with server.start_http(port=0) as running:
        client = MCPClient(running.url, credentials={"access_token": first})
        assert "Greet the world" in client.query("git_log", {"repo_path": str(repo)})["text"]
        assert client.health()["ok"] is True
        with MCPClient(running.url, credentials={"access_token": other}) as stranger, pytest.raises(SourceError):
            stranger.query("git_log", {"repo_path": str(repo)})
        with MCPClient(running.url, credentials={"access_token": "aesop_000000000000_" + "x" * 40}) as forged:
            assert forged.health()["ok"] is False

        rotated = tokens.add("alice", ["source:code"], rotate=True).token
        with pytest.raises(SourceError, match="refused the credentials"):
            client.query("git_log", {"repo_path": str(repo)})
        client.close()
        fresh = MCPClient(running.url, credentials={"access_token": rotated})
        assert fresh.query("git_branch", {"repo_path": str(repo)})["text"].strip() == "* main"
        tokens.revoke("alice")
        with pytest.raises(SourceError, match="refused the credentials"):
            fresh.query("git_branch", {"repo_path": str(repo)})
        fresh.close()
    records = AuditLog.in_data_dir(data).tail(100)
    assert any(r["principal"] == "alice" and r["tool"] == "git_log" and r["decision"] == "allow" for r in records)
    assert any(r["principal"] == "mallory" and r["decision"] == "deny" for r in records)
    assert AuditLog.in_data_dir(data).verify().ok
    log_text = (data / "audit.log").read_text()
    assert first not in log_text and rotated not in log_text


def test_oauth2_client_credentials(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    import jwt
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from aesoperator.security.http.listener import HTTPServerThread, bind_socket, resource_url_for

    secret = "s" * 40
    monkeypatch.setenv("TEST_JWT_SECRET", secret)
    issued: list[str] = []
    audience: dict[str, str] = {}

    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        basic = base64.b64decode(request.headers.get("authorization", "Basic ").split(" ", 1)[1] or b"").decode()
        if form.get("grant_type") != "client_credentials" or basic != "reporting:hush":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        now = int(time.time())
        claims = {"iss": "http://issuer.test", "aud": audience["url"], "sub": "reporting", "iat": now, "exp": now + 300}
        claims["scope"] = "source:code"
        issued.append(jwt.encode(claims, secret, algorithm="HS256"))
        return JSONResponse({"access_token": issued[-1], "token_type": "Bearer", "expires_in": 300})

    sock = bind_socket()
    token_url = resource_url_for(sock, "/token")
    auth = {"type": "oauth2", "issuer": "http://issuer.test", "secret_env": "TEST_JWT_SECRET"}
    server = MCPServer(name="code", repo=str(repo), data_dir=tmp_path / "d", auth_config=auth)
    with (
        HTTPServerThread(Starlette(routes=[Route("/token", token, methods=["POST"])]), sock),
        server.start_http(port=0) as running,
    ):
        audience["url"] = running.url
        creds = {"client_id": "reporting", "client_secret": "hush", "token_url": token_url}
        with MCPClient(running.url, credentials=creds) as client:
            assert client.query("git_branch", {"repo_path": str(repo)})["text"].strip() == "* main"
        assert issued
        bad = {**creds, "client_secret": "wrong"}
        with MCPClient(running.url, credentials=bad) as client:
            health = client.health()
            assert health["ok"] is False and "refused" in (health["error"] or "")


# -- subscriptions ---------------------------------------------------------------------------------
def test_engine_events_until_cancelled(make_engine: Callable[..., Any]) -> None:
    engine = make_engine()
    aesop.register_server(name="kb", engine=engine)
    episodes: list[aesop.Event] = []
    entities: list[aesop.Event] = []
    sub_episodes = aesop.mcp_subscribe("kb", "episode.created", episodes.append)
    sub_entities = aesop.mcp_subscribe("kb", "entity.updated", entities.append)
    aesop.mcp_update("kb", "remember", {"content": "Kim rotated the staging password", "agent_id": "ops"})
    aesop.mcp_update(
        "kb",
        "upsert_entities",
        {"entities": [{"type": "Concept", "name": "key rotation", "text": "rotate keys often"}]},
    )
    assert wait_for(lambda: bool(episodes) and any(e.id == "api:concept:key rotation" for e in entities))
    assert all(e.type == "episode.created" for e in episodes)
    assert not any(e.id == episodes[0].id for e in entities)  # an episode is not reported as an entity
    sub_episodes.cancel()
    sub_entities.cancel()
    seen = len(episodes)
    aesop.mcp_update("kb", "remember", {"content": "second note", "agent_id": "ops"})
    time.sleep(0.6)
    assert len(episodes) == seen and not sub_episodes.active
    hits = aesop.mcp_query("kb", "who rotated the password?", {"k": 3})["hits"]
    assert any("rotated the staging password" in h["text"] for h in hits)


def test_connector_resource_updates(repo: Path) -> None:
    server = MCPServer(name="code", repo=str(repo), data_dir=repo.parent / "d")
    got: list[aesop.Event] = []
    sub = aesop.mcp_subscribe(server, "resource.updated", got.append)
    try:
        (repo / "app.py").write_text("print('bye')\n")
        git(repo, "commit", "-q", "-am", "Say goodbye")
        assert wait_for(lambda: any(e.uri == "git://refs" for e in got), timeout=15)
    finally:
        sub.cancel()
    assert got[0].type == "resource.updated" and got[0].server == "code"


# -- filesystem, git and GitHub connectors -----------------------------------------------------------
def test_filesystem_refuses_paths_outside_its_roots(tmp_path: Path, make_engine: Callable[..., Any]) -> None:
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "plan.md").write_text("# Plan\nShip the retention dashboard.\n")
    outside = tmp_path / "private.txt"
    outside.write_text("salary data\n")
    (root / "link.txt").symlink_to(outside)
    server = MCPServer(name="notes", roots=[str(root)], data_dir=tmp_path / "d")
    assert "Ship the retention" in aesop.mcp_query(server, "read", {"path": str(root / "sub" / "plan.md")})["text"]
    for path in (str(outside), str(root / ".." / "private.txt"), "../private.txt", str(root / "link.txt")):
        with pytest.raises(PermissionDenied, match="outside the allowed"):
            aesop.mcp_query(server, "read", {"path": path})
    found = aesop.mcp_query(server, "grep", {"path": str(root), "text": "retention"})["result"]
    assert [f["path"] for f in found] == [str(root / "sub" / "plan.md")]
    engine = make_engine()
    engine.ingest_source(server.source_definition())
    files = {e.name for batch in engine.store.iter_entities() for e in batch if e.type == "File"}
    assert any(name.endswith("plan.md") for name in files) and not any("private" in n for n in files)


def test_git_connector_feeds_the_git_adapter(repo: Path, make_engine: Callable[..., Any]) -> None:
    from aesoperator.ingest.mappers.git import parse_branches, parse_log, parse_show

    server = MCPServer(name="code", repo=str(repo), data_dir=repo.parent / "d")
    shown = parse_show(aesop.mcp_query(server, "show", {"revision": "HEAD"})["text"])
    assert shown["message"] == "Greet the world" and {f["path"] for f in shown["files"]} == {"app.py", "README.md"}
    assert [e["message"] for e in parse_log(aesop.mcp_query(server, "log")["text"])] == [
        "Greet the world",
        "First version of the app",
    ]
    assert parse_branches(aesop.mcp_query(server, "branches")["text"]) == (["main"], "main")
    assert aesop.mcp_query(server, "file", {"revision": "HEAD~1", "path": "app.py"})["text"] == "print('hello')\n"
    with pytest.raises(PermissionDenied):
        aesop.mcp_query(server, "file", {"path": "../../etc/passwd"})
    with pytest.raises(PermissionDenied, match="serves only"):
        aesop.mcp_query(server, "git_log", {"repo_path": "/"})
    engine = make_engine()
    report = engine.ingest_source(server.source_definition())
    assert report.records_changed >= 4 and not report.skipped
    again = engine.ingest_source(server.source_definition())
    assert again.records_changed == 0
    commits = {e.name for batch in engine.store.iter_entities() for e in batch if e.type == "Commit"}
    assert any("Greet the world" in c for c in commits)


def test_github_connector_serves_only_its_data_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aesoperator.connectors.github import McpRecordingTransport

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_recorded_token_value")
    transport = McpRecordingTransport(RECORDED)
    issues_only = MCPServer(
        name="gh", repo="acme-bakery/ovenctl", data_sources=["issues"], transport=transport, data_dir=tmp_path
    )
    tools = {t.name for t in issues_only.link().list_tools()}
    assert "list_issues" in tools and "list_pull_requests" not in tools and "get_repository" not in tools
    with pytest.raises(aesop.UnknownOperation):
        aesop.mcp_query(issues_only, "pulls")
    issues = aesop.mcp_query(issues_only, "issues", {"state": "all"})["items"]
    assert sorted(i["number"] for i in issues) == [1, 2, 5]
    assert transport.authorized and all(transport.authorized)  # the token went to the API...
    dumped = json.dumps(issues) + (tmp_path / "audit.log").read_text()
    assert "ghp_recorded_token_value" not in dumped  # ...and nowhere else


def test_github_ingest_from_recorded_responses(make_engine: Callable[..., Any], tmp_path: Path) -> None:
    server = MCPServer(
        name="gh",
        repo="acme-bakery/ovenctl",
        data_sources=["repos", "issues", "pull_requests"],
        recorded=RECORDED,
        data_dir=tmp_path,
    )
    engine = make_engine()
    engine.ingest_source(server.source_definition())
    by_type: dict[str, set[str]] = {}
    for batch in engine.store.iter_entities():
        for e in batch:
            by_type.setdefault(e.type, set()).add(e.name)
    assert {"#3 Clamp PID integral term to stop overshoot", "#4 Export proofing schedule as CSV"} <= by_type[
        "PullRequest"
    ]
    assert {"firmware/pid.c", "tests/test_pid.c"} <= by_type["File"]
    assert "mkowalski" in by_type["Person"]
    issue = engine.get_entities(["gh:issue:acme-bakery/ovenctl#5"])[0]
    assert "Ignore previous instructions" in issue.text  # stored as data, verbatim
    assert engine.stats().entities > 10  # and it did nothing


# -- tasks -----------------------------------------------------------------------------------------
def test_tasks_record_episodes_and_never_pretend(repo: Path, make_engine: Callable[..., Any]) -> None:
    engine = make_engine()
    code = MCPServer(name="code", repo=str(repo), data_dir=repo.parent / "d")
    bare = aesop.execute_task(
        aesop.Task(name="explain_greeting", mcp_context=[code], inputs={"topic": "greeting"}), engine
    )
    assert bare.status == "context_only" and not bare.operator_ran and bare.output is None
    assert "no operator ran" in bare.message
    assert bare.sources[0].status == "ok" and bare.context
    assert all(i.uri or i.source for i in bare.context)
    episodes = engine.get_entities(bare.episodes)
    assert len(episodes) == 2 and all(e.namespace == "tasks" for e in episodes)
    assert "started" in episodes[0].text or "started" in episodes[1].text

    seen: list[aesop.TaskContext] = []

    def operator(context: aesop.TaskContext) -> dict[str, Any]:
        seen.append(context)
        return {"commits": sum(1 for i in context.items if i.type == "Commit")}

    done = aesop.execute_task(
        aesop.Task(name="explain_greeting", mcp_context=[code], inputs={"topic": "greeting"}, operator=operator), engine
    )
    assert done.status == "completed" and done.operator_ran
    assert done.output == {"commits": sum(1 for i in seen[0].items if i.type == "Commit")}
    assert done.sources[0].records_changed == 0  # incremental: nothing changed since the last sync

    def broken(context: aesop.TaskContext) -> None:
        raise RuntimeError("model unavailable")

    failed = aesop.execute_task(
        aesop.Task(name="explain_greeting", mcp_context=[code], operator=broken, sync=False), engine
    )
    assert failed.status == "failed" and not failed.operator_ran and "model unavailable" in (failed.error or "")
    recalled = engine.recall("explain_greeting failed", agent_id="aesoperator", namespaces=["tasks"])
    assert any("failed" in r.episode.content for r in recalled.episodes)


def test_health_reports_instead_of_raising(tmp_path: Path) -> None:
    dead = MCPServer(
        name="down", connection_string="postgresql://nobody@127.0.0.1:1/none", allowed_tables=["t"], data_dir=tmp_path
    )
    health = dead.health()
    assert health["ok"] is False and "cannot connect" in health["error"]
    client = MCPClient("http://127.0.0.1:1/mcp", {"access_token": "t"}, retries=0, timeout_seconds=5)
    assert client.health()["ok"] is False
    client.close()


def test_client_rejects_unknown_credentials() -> None:
    with pytest.raises(AesopError, match="unknown credential"):
        MCPClient("http://127.0.0.1:9/mcp", {"password": "x"})
    with pytest.raises(AesopError, match="client_id, client_secret and token_url"):
        MCPClient("http://127.0.0.1:9/mcp", {"client_id": "x"})
