"""MCP sources end to end, against real server processes: small misbehaving servers written for
these tests (tests/fixtures/mcp_servers), an HTTP server that checks bearer tokens, and the
protocol's reference server `@modelcontextprotocol/server-everything` from npm."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from aesoperator.errors import ConfigError, SourceError
from aesoperator.ingest.client import ResponseTooLarge, ToolCallError, open_connection
from aesoperator.ingest.mcp_ingest import WatchEvent, ingest_source, last_run, watch_source
from aesoperator.ingest.pipeline import quarantined
from aesoperator.ingest.sources import SourceDefinition
from tests.mcp_servers import npm_server_bin

FIXTURES = Path(__file__).parent / "fixtures" / "mcp_servers"
EVERYTHING = "@modelcontextprotocol/server-everything"


# -- helpers -----------------------------------------------------------------------------------
def server(script: str, name: str | None = None, **fields: Any) -> SourceDefinition:
    """A source that runs one of the fixture servers with this Python."""
    fields.setdefault("timeout_seconds", 20)
    return SourceDefinition(
        name=name or script.removesuffix("_server.py"),
        kind="everything",
        command=sys.executable,
        args=[str(FIXTURES / script)],
        **fields,
    )


def pids_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def assert_stopped(pids: list[int], within: float = 5.0) -> None:
    assert pids, "the server recorded no pid"
    deadline = time.monotonic() + within
    for pid in pids:
        while True:
            try:
                alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                alive = False
            if not alive:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"server process {pid} is still running")
            time.sleep(0.05)


def doc_ids(engine: Any, source: str) -> set[str]:
    return {k for k in engine.store.source_items(source) if k.startswith("doc://")}


@pytest.fixture
def engine(make_engine: Callable[..., Any]) -> Any:
    """An engine that commits every record in its own batch and does not embed (fast)."""
    return make_engine(embed_on_ingest=False, write_batch_size=1)


# -- the happy path ------------------------------------------------------------------------------
def test_ingest_follows_pages_maps_documents_and_is_incremental(make_engine: Callable[..., Any]) -> None:
    engine = make_engine()  # embeds, so the ingested documents are searchable by meaning
    definition = server("big_server.py", name="handbook", env={"FIXTURE_PAGE_SIZE": "2"}, exclude=["*big*"])
    report = ingest_source(engine, definition)
    assert report.records_seen == 6 and report.records_changed == 6 and not report.skipped
    assert doc_ids(engine, "handbook") == {f"doc://docs/{i}" for i in range(6)}  # three pages followed
    stats = engine.stats()
    assert stats.entity_types == {"Document": 6, "Chunk": 6} and stats.vectors == 12

    hits = engine.search("butter folded into laminated dough", k=3).hits
    assert hits and any("laminated" in h.text for h in hits)
    assert hits[0].provenance is not None and hits[0].provenance.uri.startswith("doc://docs/")

    again = ingest_source(engine, definition)
    assert again.records_unchanged == 6 and again.records_changed == 0 and again.texts_embedded == 0
    run = last_run(engine.store, "handbook")
    assert run is not None and run["status"] == "ok" and run["records_unchanged"] == 6
    assert "big_server.py" in run["transport"]

    other = server("dying_server.py", name="handbook", env={"FIXTURE_STATE": "/nonexistent"})
    with pytest.raises(SourceError, match="already holds"):
        ingest_source(engine, other)  # the name stands for the first server


# -- misbehaving servers -------------------------------------------------------------------------
def test_server_that_dies_mid_ingest_fails_clearly_and_keeps_what_was_committed(engine: Any, tmp_path: Path) -> None:
    pid_file, state = tmp_path / "pids", tmp_path / "reads"
    env = {"FIXTURE_STATE": str(state), "FIXTURE_DIE_AFTER": "3", "FIXTURE_PID_FILE": str(pid_file)}
    definition = server("dying_server.py", env=env, retries=1)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        ingest_source(engine, definition)
    message = str(caught.value)
    assert message.startswith("source 'dying': read_resource doc://docs/3")
    assert "exited with code 3" in message and "simulated crash" in message and "2 attempts" in message
    assert time.monotonic() - started < 30
    assert doc_ids(engine, "dying") == {"doc://docs/0", "doc://docs/1", "doc://docs/2"}  # committed batches stay
    run = last_run(engine.store, "dying")
    assert run is not None and run["status"] == "failed" and "exited with code 3" in run["error"]
    assert len(pids_in(pid_file)) == 2  # the first start and one restart
    assert_stopped(pids_in(pid_file))

    # Once the server behaves, the next run picks up where this one stopped.
    healed = server("dying_server.py", env={**env, "FIXTURE_DIE_AFTER": "1000"}, retries=1)
    report = ingest_source(engine, healed)
    assert report.records_unchanged == 3 and report.records_changed == 3
    assert len(doc_ids(engine, "dying")) == 6


def test_server_that_dies_once_is_restarted_and_the_call_retried(engine: Any, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    env = {
        "FIXTURE_STATE": str(tmp_path / "reads"),
        "FIXTURE_DIE_AFTER": "2",
        "FIXTURE_DIE_MODE": "once",
        "FIXTURE_PID_FILE": str(pid_file),
    }
    report = ingest_source(engine, server("dying_server.py", env=env, retries=2))
    assert report.records_changed == 6 and len(doc_ids(engine, "dying")) == 6
    assert len(pids_in(pid_file)) == 2
    assert_stopped(pids_in(pid_file))


def test_malformed_json_rpc_surfaces_as_a_source_error_well_within_the_timeout(engine: Any, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    definition = server("malformed_server.py", env={"FIXTURE_PID_FILE": str(pid_file)}, retries=1, timeout_seconds=30)
    started = time.monotonic()
    with pytest.raises(SourceError, match="malformed JSON-RPC") as caught:
        ingest_source(engine, definition)
    assert time.monotonic() - started < 20  # not the 30 s timeout per attempt
    assert "read_resource doc://docs/2" in str(caught.value)
    assert doc_ids(engine, "malformed") == {"doc://docs/0", "doc://docs/1"}
    assert_stopped(pids_in(pid_file))


# Each oversize answer is this large, so keeping even one of them would add far more to peak memory
# than the limit below, while the client's own buffers and allocator noise stay well under it.
BIG_ANSWER_MB = 150


def test_an_oversize_answer_is_refused_without_being_kept_and_the_item_quarantined(engine: Any) -> None:
    definition = server(
        "big_server.py",
        options={"tools": ["small_text", "big_text", "failing_tool"]},
        env={"FIXTURE_BIG_MB": str(BIG_ANSWER_MB)},
    )
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = ingest_source(engine, definition)
    peak_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert peak_growth_mb < 100, f"the client held the oversize answers ({peak_growth_mb:.0f} MB more peak memory)"

    assert report.records_changed == 7  # six documents and the small tool result
    reasons = {key: reason for key, reason, _ in quarantined(engine.store.source_items("big"))}
    assert set(reasons) == {"doc://docs/big", "tool:big_text", "tool:failing_tool"}
    assert "over max_response_bytes 20000000" in reasons["tool:big_text"]
    assert "discarded" in reasons["doc://docs/big"]
    assert "call_tool failing_tool failed" in reasons["tool:failing_tool"]
    assert report.quarantined == 3
    assert len(doc_ids(engine, "big")) == 6

    async def direct() -> None:
        async with open_connection(definition) as conn:
            with pytest.raises(ResponseTooLarge, match=r"^source 'big': call_tool big_text: .*max_response_bytes"):
                await conn.call_tool("big_text")
            with pytest.raises(ToolCallError, match="call_tool failing_tool failed"):
                await conn.call_tool("failing_tool")
            assert (await conn.call_tool("small_text")).text == "a short answer about rye bread"  # still usable

    anyio.run(direct)


def test_a_hanging_server_times_out_and_is_killed_even_if_it_ignores_sigterm(engine: Any, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    env = {"FIXTURE_PID_FILE": str(pid_file), "FIXTURE_IGNORE_SIGTERM": "1"}
    definition = server("hanging_server.py", env=env, timeout_seconds=2)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"^source 'hanging': read_resource doc://docs/3 timed out after 2s$"):
        ingest_source(engine, definition)
    assert time.monotonic() - started < 12
    assert doc_ids(engine, "hanging") == {"doc://docs/0", "doc://docs/1", "doc://docs/2"}
    assert_stopped(pids_in(pid_file))


def test_a_failure_on_the_consuming_side_propagates_and_stops_the_server(engine: Any, tmp_path: Path) -> None:
    class Exploding:
        seen = 0

        def start(self, description: str, total: int | None) -> None:
            pass

        def advance(self, n: int = 1) -> None:
            self.seen += n
            if self.seen == 2:
                raise RuntimeError("the store went away")

        def finish(self) -> None:
            pass

    pid_file = tmp_path / "pids"
    definition = server("big_server.py", env={"FIXTURE_PID_FILE": str(pid_file)}, exclude=["*big*"])
    with pytest.raises(RuntimeError, match="the store went away"):
        ingest_source(engine, definition, progress=Exploding())
    assert_stopped(pids_in(pid_file))
    run = last_run(engine.store, "big")
    assert run is not None and run["status"] == "failed" and "store went away" in run["error"]


def test_a_missing_command_is_a_clear_error() -> None:
    async def go() -> None:
        definition = SourceDefinition(name="ghost", kind="everything", command="no-such-mcp-server-here")
        async with open_connection(definition):
            pass

    with pytest.raises(SourceError, match="source 'ghost': cannot start the server: command 'no-such-mcp-server"):
        anyio.run(go)


# -- HTTP with credentials -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "FIXTURE_TOKEN": "right-token",
        "FIXTURE_CLIENT_ID": "aesop-test",
        "FIXTURE_CLIENT_SECRET": "client-secret-value",
    }
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES / "http_server.py"), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the HTTP MCP test server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def http_source(base: str, **fields: Any) -> SourceDefinition:
    return SourceDefinition(name="web", kind="everything", url=f"{base}/mcp", timeout_seconds=10, retries=1, **fields)


def test_http_with_the_right_bearer_token_ingests(
    engine: Any, http_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AESOP_TEST_TOKEN", "right-token")
    report = ingest_source(engine, http_source(http_server, credentials={"bearer_token": "AESOP_TEST_TOKEN"}))
    assert report.records_changed == 6
    assert (last_run(engine.store, "web") or {}).get("transport") == f"{http_server}/mcp"


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_http_with_a_wrong_or_missing_token_is_a_clear_401(
    engine: Any, http_server: str, monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    credentials = {}
    if token is not None:
        monkeypatch.setenv("AESOP_TEST_TOKEN", token)
        credentials = {"bearer_token": "AESOP_TEST_TOKEN"}
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        ingest_source(engine, http_source(http_server, credentials=credentials))
    message = str(caught.value)
    assert message.startswith("source 'web': connect: the server refused the credentials (HTTP 401")
    assert "wrong-token" not in message  # the token itself is never printed
    assert ("$AESOP_TEST_TOKEN" in message) == (token is not None)
    assert time.monotonic() - started < 5  # no retries for a refusal


def test_oauth_client_credentials_are_fetched_once_and_cached(
    engine: Any, http_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AESOP_TEST_CLIENT_ID", "aesop-test")
    monkeypatch.setenv("AESOP_TEST_CLIENT_SECRET", "client-secret-value")
    definition = http_source(
        http_server,
        credentials={"client_id": "AESOP_TEST_CLIENT_ID", "client_secret": "AESOP_TEST_CLIENT_SECRET"},
        options={"token_url": f"{http_server}/token"},
    )
    ingest_source(engine, definition)
    ingest_source(engine, definition)

    async def fetches() -> int:
        async with open_connection(definition) as conn:
            return int((await conn.call_tool("token_fetches")).text)

    assert anyio.run(fetches) == 1

    monkeypatch.setenv("AESOP_TEST_CLIENT_SECRET", "not-the-secret")
    with pytest.raises(SourceError, match=r"token request to .*/token was refused \(HTTP 401: invalid_client\)"):
        ingest_source(engine, definition)


def test_credentials_never_travel_over_plain_http_to_another_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AESOP_TEST_TOKEN", "t")
    definition = SourceDefinition(
        name="far",
        kind="everything",
        url="http://mcp.example.com/mcp",
        credentials={"bearer_token": "AESOP_TEST_TOKEN"},
    )

    async def go() -> None:
        async with open_connection(definition):
            pass

    with pytest.raises(ConfigError, match=r"refusing to send credentials over plain http to mcp\.example\.com"):
        anyio.run(go)


# -- watching --------------------------------------------------------------------------------------
def run_watch(
    engine: Any, definition: SourceDefinition, until: Callable[[WatchEvent, list[WatchEvent]], bool], limit: float = 90
) -> list[WatchEvent]:
    """Watch in a thread until `until(event, events)` says so; return the events seen."""
    stop = threading.Event()
    events: list[WatchEvent] = []
    failure: list[BaseException] = []

    def on_event(event: WatchEvent) -> None:
        events.append(event)
        if until(event, events):
            stop.set()

    def target() -> None:
        try:
            watch_source(engine, definition, stop=stop, on_event=on_event)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    stop.set()
    thread.join(30)
    assert not thread.is_alive(), "watch_source did not stop"
    if failure:
        raise failure[0]
    return events


@pytest.mark.slow
def test_watch_server_everything_reingests_on_resource_updates(engine: Any) -> None:
    command = npm_server_bin(EVERYTHING)
    definition = SourceDefinition(
        name="everything", kind="everything", command=command[0], args=[*command[1:], "stdio"], timeout_seconds=60
    )
    events = run_watch(engine, definition, lambda event, seen: event.kind == "updated")
    kinds = [e.kind for e in events]
    assert kinds[:3] == ["ingested", "subscribed", "updated"], kinds
    first, subscribed, updated = events[:3]
    assert first.report is not None and first.report.records_changed >= 5  # its bundled documents
    documents = set(doc_ids_any(engine, "everything"))
    assert set(subscribed.uris) == documents
    assert updated.uris and set(updated.uris) <= documents
    assert updated.report is not None and updated.report.records_changed == 0  # incremental: nothing changed
    assert updated.report.records_unchanged == len(updated.uris)
    assert engine.stats().entity_types["Document"] == len(documents)


def doc_ids_any(engine: Any, source: str) -> list[str]:
    return [k for k in engine.store.source_items(source) if not k.startswith("__")]


def test_watch_picks_up_an_edited_resource(engine: Any, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# Alpha\n\nThe first note is about rye.\n")
    (notes / "b.md").write_text("# Beta\n\nThe second note is about spelt.\n")
    definition = server("notes_server.py", env={"FIXTURE_NOTES_DIR": str(notes)})

    def until(event: WatchEvent, seen: list[WatchEvent]) -> bool:
        if event.kind == "subscribed":
            (notes / "a.md").write_text("# Alpha\n\nNow it is about emmer and einkorn.\n")
        return event.kind == "updated"

    events = run_watch(engine, definition, until)
    assert [e.kind for e in events] == ["ingested", "subscribed", "updated"]
    update = events[-1]
    assert update.uris == ["note://a.md"]
    assert update.report is not None and update.report.records_seen == 1 and update.report.records_changed == 1
    hits = {eid for eid, _ in engine.store.keyword_search("einkorn", 5)}
    assert "notes:doc:note://a.md" in hits
    assert not engine.store.keyword_search("rye", 5)  # the old text is gone
    assert {k for k in doc_ids_any(engine, "notes")} == {"note://a.md", "note://b.md"}  # partial run removed nothing


def test_watch_reconnects_when_the_server_dies(engine: Any, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# Alpha\n\nAbout rye.\n")
    pid_file = tmp_path / "pids"
    definition = server("notes_server.py", env={"FIXTURE_NOTES_DIR": str(notes), "FIXTURE_PID_FILE": str(pid_file)})

    def until(event: WatchEvent, seen: list[WatchEvent]) -> bool:
        if event.kind == "subscribed" and len(pids_in(pid_file)) == 1:
            os.kill(pids_in(pid_file)[0], signal.SIGKILL)
        return event.kind == "subscribed" and len(pids_in(pid_file)) == 2

    events = run_watch(engine, definition, until)
    assert [e.kind for e in events] == ["ingested", "subscribed", "reconnecting", "ingested", "subscribed"]
    assert "killed by SIGKILL" in events[2].message
    assert events[3].report is not None and events[3].report.records_unchanged == 1  # caught up incrementally
    assert_stopped(pids_in(pid_file))


def test_watch_refuses_a_server_without_subscriptions(engine: Any) -> None:
    with pytest.raises(SourceError, match="does not offer resource subscriptions"):
        definition = server("big_server.py", env={"FIXTURE_NO_SUBSCRIPTIONS": "1"}, exclude=["*big*"])
        run_watch(engine, definition, lambda event, seen: False, limit=60)


# -- registry and CLI ---------------------------------------------------------------------------
def aesop(*args: str, data: Path, cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "aesoperator.cli", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(Path.cwd()), **env},
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"aesop {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_registry_keeps_definitions_faithfully_and_refuses_secrets(tmp_path: Path) -> None:
    from aesoperator.ingest.registry import SourceRegistry

    config = tmp_path / "aesop.toml"
    config.write_text('[sources.shared]\nkind = "memory"\ncommand = "mcp-memory"\ntype = "stdio"\n')
    registry = SourceRegistry(tmp_path / "data", config_path=config)
    tricky = SourceDefinition(
        name="web.docs",
        kind="web",
        url="https://mcp.example.com/mcp?x=1",
        headers={"Authorization": "Bearer ${DOCS_TOKEN}", "X-Team": 'bakers "night" shift'},
        credentials={"client_id": "DOCS_CLIENT_ID", "client_secret": "DOCS_CLIENT_SECRET"},
        options={"token_url": "https://auth.example.com/token", "depth": 2, "roots": ["/a", "/b"], "on": True,
                 "nested": {"ratio": 0.5, "name": "crème brûlée"}},
        include=["docs/**"],
        timeout_seconds=12.5,
    )  # fmt: skip
    registry.add(tricky)
    assert registry.get("web.docs") == tricky
    assert registry.entries()["shared"].origin == "aesop.toml"
    with pytest.raises(ConfigError, match="declared in"):
        registry.add(SourceDefinition(name="shared", kind="memory", command="x"))
    for leaky in (
        {"headers": {"Authorization": "Bearer abc"}},
        {"env": {"GITHUB_TOKEN": "ghp_123"}},
        {"options": {"password": "hunter2"}},
        {"credentials": {"bearer_token": "ghp-abc-123"}},
    ):
        with pytest.raises(ConfigError, match=r"secret|environment variable"):
            registry.add(SourceDefinition(name="leaky", kind="web", url="https://x/mcp", **leaky), replace=True)
    assert "leaky" not in registry.entries()
    config.write_text('[sources.bad]\nkind = "memory"\ncomand = "typo"\n')
    with pytest.raises(ConfigError, match="unknown keys \\['comand'\\]"):
        registry.entries()


@pytest.mark.slow
def test_sources_registry_and_cli_round_trip(tmp_path: Path) -> None:
    import tomllib

    data, cwd = tmp_path / "data", tmp_path / "project"
    cwd.mkdir()
    big = str(FIXTURES / "big_server.py")
    aesop(
        "sources", "add", "handbook", "--kind", "everything", "--command", sys.executable, "--arg", big,
        "--option", "tools=[\"big_text\"]", "--option", "chunk_chars=600", "--exclude", "doc://docs/big",
        "--env", "API_TOKEN=${HANDBOOK_TOKEN}", "--timeout", "30",
        data=data, cwd=cwd,
    )  # fmt: skip
    stored = tomllib.loads((data / "sources.toml").read_text())["sources"]["handbook"]
    assert stored["command"] == sys.executable and stored["args"] == [big]
    assert stored["options"] == {"tools": ["big_text"], "chunk_chars": 600}
    assert stored["env"] == {"API_TOKEN": "${HANDBOOK_TOKEN}"}  # a reference, never a value

    refused = aesop(
        "sources", "add", "leaky", "--kind", "everything", "--command", "x", "--env", "API_TOKEN=abc123",
        data=data, cwd=cwd, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "looks like a secret" in refused.stderr and "Traceback" not in refused.stderr
    again = aesop(
        "sources", "add", "handbook", "--kind", "git", "--url", "https://x/mcp", data=data, cwd=cwd, check=False
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    bad_kind = aesop("sources", "add", "nope", "--kind", "ftp", "--url", "https://x", data=data, cwd=cwd, check=False)
    assert bad_kind.returncode == 1 and "kind" in bad_kind.stderr and "Traceback" not in bad_kind.stderr

    # A source declared in the project's aesop.toml sits next to the added ones.
    (cwd / "aesop.toml").write_text(
        f'[sources.notes]\nkind = "everything"\ncommand = {json.dumps(sys.executable)}\n'
        f'args = [{json.dumps(str(FIXTURES / "notes_server.py"))}]\nenv = {{ FIXTURE_NOTES_DIR = "{tmp_path}" }}\n'
    )
    listed = {row["name"]: row for row in json.loads(aesop("--json", "sources", "list", data=data, cwd=cwd).stdout)}
    assert set(listed) == {"handbook", "notes"}
    assert listed["notes"]["declared_in"].endswith("aesop.toml") and listed["handbook"]["last_run"] is None

    ingested = aesop("ingest", "handbook", "--no-embed", data=data, cwd=cwd, HANDBOOK_TOKEN="t")
    assert "ingested handbook: 6 items" in ingested.stdout
    assert "skipped tool:big_text" in ingested.stdout

    status = json.loads(aesop("--json", "sources", "status", "handbook", data=data, cwd=cwd).stdout)
    assert status["last_run"]["status"] == "ok" and status["last_run"]["records_seen"] == 6
    assert status["items"] == 6 and status["entities"] >= 12
    assert [q["key"] for q in status["quarantined"]] == ["tool:big_text"]
    assert "max_response_bytes" in status["quarantined"][0]["reason"]
    text_status = aesop("sources", "status", "handbook", data=data, cwd=cwd).stdout
    assert "quarantined (1)" in text_status and "tool:big_text" in text_status

    kept = aesop("sources", "remove", "notes", data=data, cwd=cwd, check=False)
    assert kept.returncode == 1 and "declared in" in kept.stderr and "aesop.toml" in kept.stderr
    removed = json.loads(aesop("--json", "sources", "remove", "handbook", "--purge", data=data, cwd=cwd).stdout)
    assert removed["entities_deleted"] >= 12
    assert json.loads(aesop("--json", "stats", data=data, cwd=cwd).stdout)["entities"] == 0
    assert "handbook" not in tomllib.loads((data / "sources.toml").read_text()).get("sources", {})

    missing = aesop("ingest", "/definitely/not/here", data=data, cwd=cwd, check=False)  # folders still work
    assert missing.returncode == 1 and "does not exist" in missing.stderr


@pytest.mark.slow
def test_cli_watch_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    data, cwd = tmp_path / "data", tmp_path
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# Alpha\n\nAbout rye.\n")
    aesop(
        "sources", "add", "notes", "--kind", "everything", "--command", sys.executable,
        "--arg", str(FIXTURES / "notes_server.py"), "--env", f"FIXTURE_NOTES_DIR={notes}",
        data=data, cwd=cwd,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "aesoperator.cli", "--data-dir", str(data), "--json", "watch", "notes", "--no-embed"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    try:
        assert proc.stdout is not None
        events = []
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "subscribed":
                (notes / "a.md").write_text("# Alpha\n\nAbout einkorn now.\n")
            if events[-1]["event"] == "updated":
                break
        assert [e["event"] for e in events] == ["ingested", "subscribed", "updated"]
        servers = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "stopped watching" in (proc.stderr.read() if proc.stderr else "")
        assert_stopped(servers)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_npm_helper_installs_once_under_concurrent_callers(tmp_path: Path) -> None:
    """Two processes asking for the same npm server at once share one install."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from tests.mcp_servers import npm_server_bin; "
        "print(json.dumps(npm_server_bin('@modelcontextprotocol/server-everything')))"
    )
    env = {**os.environ, "AESOP_NPM_MCP_PREFIX": str(tmp_path / "npm")}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(Path.cwd())], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    assert outputs[0] == outputs[1] and Path(outputs[0][1]).is_file()
    assert str(tmp_path / "npm") in outputs[0][1]
    lock = json.loads((tmp_path / "npm" / "package-lock.json").read_text())
    assert list(lock["packages"][""]["dependencies"]) == [EVERYTHING]
