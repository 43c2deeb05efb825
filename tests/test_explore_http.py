"""The explorer over HTTP, against a real uvicorn server on loopback: security headers, the
same tokens and scopes as the MCP server, no state change on GET, cross-site requests refused,
every call in the audit log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aesoperator.explore.mount import ExplorerMount
from aesoperator.explore.web_security import CONTENT_SECURITY_POLICY
from tests.explore_support import XSS_ID, RunningExplorer, running_explorer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Iterator[RunningExplorer]:
    with running_explorer(tmp_path_factory.mktemp("explore-http"), embedder) as running:  # type: ignore[arg-type]
        yield running


@pytest.fixture
def client(app: RunningExplorer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.base, timeout=30) as c:
        yield c


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_records(app: RunningExplorer) -> list[dict[str, object]]:
    app.guard.flush()
    lines = (app.data_dir / "audit.log").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.parametrize("path", ["", "static/app.js", "static/app.css", "api/me", "api/search?q=atlas", "nothing"])
def test_every_response_carries_the_security_headers(client: httpx.Client, app: RunningExplorer, path: str) -> None:
    response = client.get(path, headers=auth(app.full_token))
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_the_page_has_no_inline_script_or_style(client: httpx.Client) -> None:
    page = client.get("").text
    assert "<script>" not in page and "<style" not in page and "style=" not in page and "onclick" not in page
    assert '<script src="static/app.js" defer></script>' in page


def test_no_token_wrong_token_and_malformed_header_are_refused(client: httpx.Client) -> None:
    missing = client.get("api/search", params={"q": "atlas"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    wrong = client.get("api/search", params={"q": "atlas"}, headers=auth("aesop_not_a_real_token"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_token"
    basic = client.get("api/me", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert basic.status_code == 401


def test_a_narrow_token_reads_only_its_namespace(client: httpx.Client, app: RunningExplorer) -> None:
    me = client.get("api/me", headers=auth(app.narrow_token)).json()
    assert me["namespaces"] == ["partners"] and me["entity_types"] == [] and me["sources"] == []
    hits = client.get("api/search", params={"q": "Atlas billing audit Kim Lee"}, headers=auth(app.narrow_token)).json()
    assert hits["hits"] and {h["namespace"] for h in hits["hits"]} == {"partners"}
    # an entity of another namespace looks exactly like an unknown one
    hidden = client.get("api/entity", params={"id": XSS_ID}, headers=auth(app.narrow_token))
    unknown = client.get("api/entity", params={"id": "no:such:entity"}, headers=auth(app.narrow_token))
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["message"].replace(XSS_ID, "X") == unknown.json()["message"].replace("no:such:entity", "X")
    # asking for a namespace outside the token is refused, not silently emptied
    asked = client.get("api/search", params={"q": "atlas", "namespace": "default"}, headers=auth(app.narrow_token))
    assert asked.status_code == 403
    # a tool scope the token lacks (recall) refuses the memory view
    assert client.get("api/agents", headers=auth(app.narrow_token)).status_code == 403
    # the graph of a readable entity never reaches into another namespace
    partner_doc = hits["hits"][0]["id"]
    graph = client.get("api/graph", params={"id": partner_doc}, headers=auth(app.narrow_token)).json()
    assert {n["namespace"] for n in graph["nodes"]} == {"partners"}


def test_gets_change_nothing(client: httpx.Client, app: RunningExplorer) -> None:
    before = app.engine.store.last_seq()
    for path, params in [
        ("api/me", {}),
        ("api/search", {"q": "password"}),
        ("api/entity", {"id": "Kim Lee"}),
        ("api/graph", {"id": "Kim Lee"}),
        ("api/agents", {}),
        ("api/memory", {"agent": "ops"}),
        ("api/sources", {}),
        ("api/sources/resync", {"source": app.demo.source}),
    ]:
        response = client.get(path, params=params, headers=auth(app.full_token))
        assert response.status_code == (405 if path.endswith("resync") else 200), (path, response.text)
    assert app.engine.store.last_seq() == before
    sources = client.get("api/sources", headers=auth(app.full_token)).json()["sources"]
    assert all(s["job"] is None for s in sources)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "application/x-www-form-urlencoded"}, "source=team-notes", 415),
        ({"Content-Type": "text/plain"}, '{"source": "team-notes"}', 415),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, '{"source": "team-notes"}', 403),
        ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, '{"source": "team-notes"}', 403),
    ],
)
def test_cross_site_requests_cannot_resync(
    client: httpx.Client, app: RunningExplorer, headers: dict[str, str], body: str, status: int
) -> None:
    response = client.post("api/sources/resync", content=body, headers={**headers, **auth(app.full_token)})
    assert response.status_code == status, response.text
    sources = client.get("api/sources", headers=auth(app.full_token)).json()["sources"]
    assert all(s["job"] is None for s in sources)


def test_a_post_without_a_token_is_refused(client: httpx.Client, app: RunningExplorer) -> None:
    response = client.post("api/sources/resync", json={"source": app.demo.source})
    assert response.status_code == 401


def test_resync_needs_the_source_scope_and_write_access(client: httpx.Client, app: RunningExplorer) -> None:
    narrow = client.post("api/sources/resync", json={"source": app.demo.source}, headers=auth(app.narrow_token))
    assert narrow.status_code == 403
    other_ns = client.post("api/sources/resync", json={"source": "partner-docs"}, headers=auth(app.full_token))
    assert other_ns.status_code == 403 and "write:partners" in other_ns.json()["message"]


def test_a_same_origin_resync_runs_and_is_audited(client: httpx.Client, app: RunningExplorer) -> None:
    started = client.post(
        "api/sources/resync",
        json={"source": app.demo.source},
        headers={**auth(app.full_token), "Origin": app.origin, "Sec-Fetch-Site": "same-origin"},
    )
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 60
    job = started.json()
    while job["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = client.get("api/sources", headers=auth(app.full_token)).json()["sources"]
        job = next(s["job"] for s in rows if s["name"] == app.demo.source)
    assert job["state"] == "ok", job
    row = next(
        s
        for s in client.get("api/sources", headers=auth(app.full_token)).json()["sources"]
        if s["name"] == app.demo.source
    )
    assert row["status"] == "ok" and row["last_ok_at"] is not None
    records = audit_records(app)
    resyncs = [r for r in records if r["tool"] == "explore.resync"]
    assert any(r["principal"] == "analyst" and r["decision"] == "allow" for r in resyncs)
    assert any(r["principal"] == "partner" and r["decision"] == "deny" for r in resyncs)


def test_every_read_is_audited_under_its_caller(client: httpx.Client, app: RunningExplorer) -> None:
    client.get("api/search", params={"q": "who approved the release"}, headers=auth(app.full_token))
    last = [r for r in audit_records(app) if r["tool"] == "explore.search"][-1]
    assert last["principal"] == "analyst" and last["decision"] == "allow" and int(last["result_count"]) > 0  # type: ignore[call-overload]


def test_a_foreign_host_header_is_refused(client: httpx.Client, app: RunningExplorer) -> None:
    response = client.get("api/me", headers={**auth(app.full_token), "Host": "attacker.example:80"})
    assert response.status_code == 421


def test_bad_input_is_a_clear_400(client: httpx.Client, app: RunningExplorer) -> None:
    response = client.get("api/search", params={"q": "x", "k": "5000"}, headers=auth(app.full_token))
    assert response.status_code == 400 and "k" in response.json()["message"]


def test_the_memory_view_marks_corrected_and_forgotten_episodes(client: httpx.Client, app: RunningExplorer) -> None:
    memory = client.get("api/memory", params={"agent": "ops"}, headers=auth(app.full_token)).json()
    status = {e["id"]: e["status"] for s in memory["sessions"] for e in s["episodes"]}
    assert status[app.demo.corrected_episode] == "superseded"
    assert status[app.demo.forgotten_episode] == "forgotten"
    assert list(status.values()).count("current") >= 3


def test_the_mount_leaves_other_paths_to_the_mcp_app(app: RunningExplorer) -> None:
    from starlette.testclient import TestClient

    lifespans: list[str] = []

    async def mcp_app(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] == "lifespan":  # the lifespan belongs to the MCP app (its session manager)
            while True:
                message = await receive()  # type: ignore[operator]
                lifespans.append(message["type"])
                await send({"type": message["type"] + ".complete"})  # type: ignore[operator]
                if message["type"] == "lifespan.shutdown":
                    return
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    from aesoperator.explore.app import ExplorerApp
    from aesoperator.explore.web_security import CallerAuth

    explorer = ExplorerApp(app.engine, CallerAuth(None, fixed=None))
    with TestClient(ExplorerMount(mcp_app, explorer), base_url="http://127.0.0.1") as mounted:  # type: ignore[arg-type]
        assert mounted.get("/mcp").status_code == 204
        assert mounted.get("/explorer-not").status_code == 204
        page = mounted.get("/explore/")
        assert page.status_code == 200 and "aesop explore" in page.text
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert mounted.get("/explore", follow_redirects=False).status_code == 308
    assert lifespans == ["lifespan.startup", "lifespan.shutdown"]


def test_static_assets_are_only_the_shipped_files(client: httpx.Client) -> None:
    assert client.get("static/..%2F..%2Fapp.py").status_code == 404
    assert client.get("static/app.py").status_code == 404
    js = client.get("static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in js.text and "innerHTML" not in client.get("static/graph.js").text


def test_package_data_lists_the_assets() -> None:
    import tomllib
    from fnmatch import fnmatch

    root = Path(__file__).resolve().parent.parent
    package_data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"
    ]
    patterns = [*package_data.get("aesoperator.explore", []), *package_data.get("*", [])]
    assets = sorted((root / "aesoperator" / "explore" / "static").iterdir())
    assert assets
    unshipped = [a.name for a in assets if not any(fnmatch(f"static/{a.name}", p) for p in patterns)]
    assert unshipped == []


def test_a_big_neighbourhood_is_sampled_and_says_so(client: httpx.Client, app: RunningExplorer) -> None:
    from aesoperator.explore.queries import GRAPH_NODES
    from aesoperator.graph_schema.models import Entity, Relation

    hub = Entity(id="bench:hub", type="Concept", name="Hub", text="a hub", namespace="hubs")
    spokes = [
        Entity(id=f"bench:spoke:{i}", type="Document", name=f"Spoke {i}", text=f"spoke {i}", namespace="hubs")
        for i in range(GRAPH_NODES + 80)
    ]
    kinds = ("MENTIONS", "REFERENCES", "PART_OF")
    relations = [Relation(type=kinds[i % 3], src=s.id, dst=hub.id, namespace="hubs") for i, s in enumerate(spokes)]
    app.engine.upsert([hub, *spokes], relations, embed=False)
    first = client.get("api/graph", params={"id": hub.id}, headers=auth(app.full_token)).json()
    again = client.get("api/graph", params={"id": hub.id}, headers=auth(app.full_token)).json()
    assert first["sampled"] and first["total_neighbours"] == len(spokes)
    assert len(first["nodes"]) == GRAPH_NODES + 1 and len(first["edges"]) == GRAPH_NODES
    assert first["nodes"] == again["nodes"]  # the same sample each time
    shown = {e["type"] for e in first["edges"]}
    assert shown == set(kinds)  # every relation type is represented
    only = client.get(
        "api/graph", params={"id": hub.id, "relation_type": "PART_OF"}, headers=auth(app.full_token)
    ).json()
    assert not only["sampled"] and {e["type"] for e in only["edges"]} == {"PART_OF"}
    # the narrow token cannot reach the hub at all
    assert client.get("api/graph", params={"id": hub.id}, headers=auth(app.narrow_token)).status_code == 404
