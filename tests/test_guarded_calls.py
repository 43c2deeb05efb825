"""The guarded-call envelope both MCP servers share, and refusals that are counted, not written
one by one.

- Both the engine's server and a connector run their calls in one `GuardedCalls`.
- A connector over its rate limit answers like the engine's server: a tool error with
  `retry_after`, the refusal only counted (no audit write on the request path) and written later
  as one aggregate record.
- 403s at the HTTP gate (a token calling a tool its scopes do not allow) are counted the same way:
  a flood of forbidden calls writes nothing per request, and ends up as one record with its count.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.server.mcpserver import MCPServer

from aesoperator.connectors import filesystem
from aesoperator.connectors.base import ConnectorPolicy
from aesoperator.security.audit import AuditLog
from aesoperator.security.envelope import GuardedCalls
from aesoperator.security.failures import ERROR_META_KEY
from aesoperator.security.guard import CallGuard
from aesoperator.security.http.gate import build_http_app
from aesoperator.security.http.listener import HTTPServerThread, bind_socket, resource_url_for
from aesoperator.security.principal import Principal
from aesoperator.security.ratelimit import Limit, RateLimiter
from aesoperator.security.tokens import StaticTokenVerifier, TokenStore


def test_both_servers_run_their_calls_in_one_envelope(tmp_path: Path, make_engine: Any) -> None:
    from aesoperator.serve.server import build_server

    engine_server = build_server(make_engine(tmp_path / "engine"), warm=False)
    connector = filesystem.build_server(filesystem.FilesystemSource([str(tmp_path)]), ConnectorPolicy("files"))
    assert type(engine_server.calls) is GuardedCalls
    assert type(connector.calls) is GuardedCalls


def test_a_connector_over_its_rate_counts_refusals_and_writes_them_in_aggregate(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("alpha\n")
    audit = AuditLog.in_data_dir(tmp_path / "data")
    guard = CallGuard(audit, RateLimiter(Limit.parse("1/s:1")), refusal_interval=3600, refusal_hold=0.0)
    policy = ConnectorPolicy("files", guard=guard)
    server = filesystem.build_server(filesystem.FilesystemSource([str(root)]), policy)

    async def calls() -> list[Any]:
        return [await server.call_tool("list_allowed_directories", {}) for _ in range(6)]

    started = time.perf_counter()
    results = anyio.run(calls)
    assert time.perf_counter() - started < 5
    allowed = [r for r in results if not getattr(r, "is_error", False)]
    refused = [r for r in results if getattr(r, "is_error", False)]
    assert len(allowed) == 1 and len(refused) == 5
    details = refused[0].meta[ERROR_META_KEY]
    assert details["type"] == "rate_limited" and details["retry_after"] > 0
    assert "rate limited" in refused[0].content[0].text
    # only the allowed call is written at once; the refusals are counted
    assert [(r["tool"], r["decision"]) for r in audit.tail(10)] == [("list_allowed_directories", "allow")]
    assert guard.refusals is not None and guard.refusals.pending() == 5
    guard.flush()
    last = audit.tail(1)[0]
    assert (last["tool"], last["decision"], last["count"]) == ("list_allowed_directories", "rate_limited", 5)
    assert audit.verify().ok
    guard.close()


def test_a_refused_call_is_recorded_under_its_caller(tmp_path: Path) -> None:
    audit = AuditLog.in_data_dir(tmp_path / "data")
    stranger = Principal.from_scopes("mallory", ["source:elsewhere"], "stdio")
    policy = ConnectorPolicy("files", stdio_principal=stranger, guard=CallGuard(audit, None))
    server = filesystem.build_server(filesystem.FilesystemSource([str(tmp_path)]), policy)
    result = anyio.run(server.call_tool, "list_allowed_directories", {})
    assert result.is_error and result.meta[ERROR_META_KEY]["type"] == "permission_denied"
    (record,) = audit.tail(5)
    assert (record["principal"], record["decision"]) == ("mallory", "deny")
    policy.guard.close()  # type: ignore[union-attr]


def _forbidden_server() -> MCPServer:
    server = MCPServer("forbidden-test")

    @server.tool()
    def secret() -> str:
        return "never"

    @server.tool()
    def echo(text: str) -> str:
        return text

    return server


@pytest.mark.timeout(120)
def test_403s_at_the_http_gate_are_counted_and_written_in_aggregate(tmp_path: Path) -> None:
    issued = TokenStore.in_data_dir(tmp_path).add("carol", ["read:default", "tool:echo"])
    audit = AuditLog.in_data_dir(tmp_path / "audit")
    guard = CallGuard(audit, None, refusal_interval=3600)
    sock = bind_socket()
    url = resource_url_for(sock)
    app = build_http_app(_forbidden_server(), StaticTokenVerifier.in_data_dir(tmp_path, resource=url), url, guard=guard)
    headers = {
        "Authorization": f"Bearer {issued.token}",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "secret",
        "Mcp-Protocol-Version": "2026-07-28",
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "secret", "arguments": {}}}
    flood = 200
    with HTTPServerThread(app, sock), httpx2.Client(timeout=30) as http:
        size_before = audit.path.stat().st_size if audit.path.exists() else 0
        statuses = [http.post(url, json=body, headers=headers).status_code for _ in range(flood)]
        assert statuses == [403] * flood
        # nothing is written per forbidden call: they are only counted
        size_after = audit.path.stat().st_size if audit.path.exists() else 0
        assert size_after == size_before
        assert guard.refusals is not None and guard.refusals.pending() == flood
    records = audit.tail(10)  # written when the server stopped
    assert len(records) == 1
    (record,) = records
    assert (record["principal"], record["tool"], record["decision"], record["count"]) == (
        "carol",
        "secret",
        "deny",
        flood,
    )
    assert audit.verify().ok
    guard.close()
