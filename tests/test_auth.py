"""Bearer-token authentication: static tokens, JWTs, the HTTP gate and metadata (over real HTTP on
127.0.0.1)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError

from aesoperator.errors import AuthError, ConfigError, PermissionDenied
from aesoperator.security.http.gate import build_http_app
from aesoperator.security.http.listener import HTTPServerThread, bind_socket, resource_url_for
from aesoperator.security.http.resource_metadata import protected_resource_metadata_path
from aesoperator.security.jwt_verifier import JWTVerifier
from aesoperator.security.principal import Principal
from aesoperator.security.request_principal import (
    current_principal,
    http_principal_resolver,
    principal_from_token,
    stdio_principal_resolver,
)
from aesoperator.security.tokens import StaticTokenVerifier, TokenStore, parse_duration
from aesoperator.security.verifiers import CompositeVerifier, build_verifier

pytestmark = pytest.mark.timeout(120)

RESOURCE = "http://127.0.0.1:8765/mcp"
ISSUER = "https://issuer.test"
SECRET = "s" * 40


# -- static tokens ------------------------------------------------------------------------------
def _verify(verifier: Any, token: str) -> Any:
    return anyio.run(verifier.verify_token, token)


def test_static_tokens_are_hashed_at_rest(tmp_path: Path) -> None:
    store = TokenStore.in_data_dir(tmp_path)
    issued = store.add("alice", ["read:default", "tool:search"])
    secret_part = issued.token.split("_", 2)[2]
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert issued.token.encode() not in data
        assert secret_part.encode() not in data
    raw = json.loads((tmp_path / "tokens.json").read_text())
    row = raw["tokens"][0]
    assert row["hash"] == "hmac-sha256" and len(row["digest"]) == 64 and len(row["salt"]) == 32
    assert row["name"] == "alice" and row["scopes"] == ["read:default", "tool:search"] and row["revoked"] is False
    assert (tmp_path / "tokens.json").stat().st_mode & 0o777 == 0o600

    access = _verify(StaticTokenVerifier.in_data_dir(tmp_path, resource=RESOURCE), issued.token)
    assert access is not None and access.principal_id == "alice" and access.scopes == ["read:default", "tool:search"]
    assert issued.token not in access.model_dump_json()  # only a fingerprint is kept in memory
    principal = principal_from_token(access)
    assert principal.id == "alice" and principal.kind == "static"
    assert principal.can_call("search") and not principal.can_call("remember")


def test_static_token_wrong_secret_or_unknown_id_is_refused(tmp_path: Path) -> None:
    store = TokenStore.in_data_dir(tmp_path)
    issued = store.add("alice", ["read:*"])
    verifier = StaticTokenVerifier.in_data_dir(tmp_path)
    prefix, key_id, secret = issued.token.split("_", 2)
    forged = f"{prefix}_{key_id}_{'A' * len(secret)}"
    assert _verify(verifier, forged) is None
    assert _verify(verifier, f"{prefix}_{'0' * 12}_{secret}") is None
    assert _verify(verifier, "not-a-token") is None
    assert _verify(verifier, issued.token) is not None


def test_rotation_and_revocation_without_restart(tmp_path: Path) -> None:
    store = TokenStore.in_data_dir(tmp_path)
    verifier = StaticTokenVerifier.in_data_dir(tmp_path)
    first = store.add("alice", ["read:default"])
    assert _verify(verifier, first.token) is not None

    with pytest.raises(ConfigError, match="already has an active token"):
        store.add("alice", ["read:default"])
    second = store.add("alice", ["read:default", "write:default"], rotate=True)
    assert _verify(verifier, first.token) is None  # same verifier object: the file was re-read
    access = _verify(verifier, second.token)
    assert access is not None and "write:default" in access.scopes

    revoked = store.revoke("alice")
    assert [t.id for t in revoked] == [second.record.id]
    assert _verify(verifier, second.token) is None
    statuses = {t.id: t.status() for t in store.tokens()}
    assert statuses == {first.record.id: "revoked", second.record.id: "revoked"}
    with pytest.raises(ConfigError, match="no unrevoked token"):
        store.revoke("alice")


def test_expired_static_token_is_refused(tmp_path: Path) -> None:
    store = TokenStore.in_data_dir(tmp_path)
    issued = store.add("temp", ["read:default"], parse_duration("1h"))
    now = datetime.now(UTC)
    assert _verify(StaticTokenVerifier.in_data_dir(tmp_path, clock=lambda: now), issued.token) is not None
    later = now + timedelta(hours=2)
    assert _verify(StaticTokenVerifier.in_data_dir(tmp_path, clock=lambda: later), issued.token) is None
    assert parse_duration("30d") == timedelta(days=30)
    with pytest.raises(ConfigError):
        parse_duration("soon")


def test_corrupt_token_file_fails_closed_until_fixed(tmp_path: Path) -> None:
    store = TokenStore.in_data_dir(tmp_path)
    issued = store.add("alice", ["read:default"])
    verifier = StaticTokenVerifier.in_data_dir(tmp_path)
    assert _verify(verifier, issued.token) is not None
    path = tmp_path / "tokens.json"
    good = path.read_text()
    path.write_text(good[:-20])
    assert _verify(verifier, issued.token) is None
    path.write_text(good)
    assert _verify(verifier, issued.token) is not None


def test_scope_validation(tmp_path: Path) -> None:
    store = TokenStore.in_data_dir(tmp_path)
    with pytest.raises(ConfigError, match="invalid scope"):
        store.add("alice", ["read"])
    with pytest.raises(ConfigError, match="at least one"):
        store.add("alice", [])
    with pytest.raises(ConfigError, match="token name"):
        store.add("bad name", ["read:*"])


# -- JWTs ---------------------------------------------------------------------------------------
def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": RESOURCE,
        "sub": "user-1",
        "client_id": "agent-app",
        "iat": now,
        "exp": now + 300,
        "scope": "read:default tool:search",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs_token(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), secret, algorithm="HS256")


def _hs_verifier(**kwargs: Any) -> JWTVerifier:
    return JWTVerifier(issuer=ISSUER, audience=RESOURCE, shared_secret=SECRET, **kwargs)


def test_jwt_valid_token_maps_to_principal() -> None:
    access = _verify(_hs_verifier(), _hs_token())
    assert access is not None
    assert access.subject == "user-1" and access.client_id == "agent-app" and access.resource == RESOURCE
    assert access.scopes == ["read:default", "tool:search"]
    principal = principal_from_token(access)
    assert principal.id == "user-1" and principal.kind == "jwt"
    assert principal.read_namespaces() == ["default"] and principal.can_call("search")
    # `scp` as a list works as well, and is merged with `scope`
    access = _verify(_hs_verifier(), _hs_token(scope=None, scp=["read:a", "write:b"]))
    assert access is not None and access.scopes == ["read:a", "write:b"]


@pytest.mark.parametrize(
    ("overrides", "secret"),
    [
        ({"exp": int(time.time()) - 120}, SECRET),  # expired beyond the leeway
        ({"nbf": int(time.time()) + 600}, SECRET),  # not valid yet
        ({"iss": "https://evil.test"}, SECRET),  # wrong issuer
        ({"aud": "http://127.0.0.1:9999/mcp"}, SECRET),  # issued for another resource
        ({"exp": None}, SECRET),  # no expiry at all
        ({}, "x" * 40),  # signed with another key
        ({"sub": None, "client_id": None}, SECRET),  # nobody to be
    ],
    ids=["expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "no-exp", "bad-signature", "no-subject"],
)
def test_jwt_refusals(overrides: dict[str, Any], secret: str) -> None:
    assert _verify(_hs_verifier(), _hs_token(secret, **overrides)) is None


def test_jwt_leeway_and_alg_none() -> None:
    just_expired = _hs_token(exp=int(time.time()) - 5)
    assert _verify(_hs_verifier(leeway=30), just_expired) is not None
    assert _verify(_hs_verifier(leeway=0), just_expired) is None
    unsigned = jwt.encode(_claims(), key=None, algorithm="none")  # type: ignore[arg-type]
    assert _verify(_hs_verifier(), unsigned) is None


def _rsa_jwk(kid: str) -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, use="sig", alg="RS256")
    return key, jwk


def _ec_jwk(kid: str) -> tuple[Any, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, use="sig")
    return key, jwk


def test_jwt_rs256_from_jwks_file_and_algorithm_confusion(tmp_path: Path) -> None:
    key, jwk = _rsa_jwk("k1")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    verifier = JWTVerifier(issuer=ISSUER, audience=RESOURCE, jwks_file=jwks)
    good = jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": "k1"})
    assert _verify(verifier, good) is not None
    other, _ = _rsa_jwk("k1")
    assert _verify(verifier, jwt.encode(_claims(), other, algorithm="RS256", headers={"kid": "k1"})) is None
    assert _verify(verifier, jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": "nope"})) is None
    # an HS256 token "signed" with the public key must not pass a public-key verifier
    assert _verify(verifier, _hs_token()) is None

    # key rotation: the file is re-read when it changes
    key2, jwk2 = _rsa_jwk("k2")
    jwks.write_text(json.dumps({"keys": [jwk2]}))
    os.utime(jwks, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert _verify(verifier, jwt.encode(_claims(), key2, algorithm="RS256", headers={"kid": "k2"})) is not None
    assert _verify(verifier, good) is None


@contextmanager
def _jwks_server(document: dict[str, Any]) -> Iterator[tuple[str, list[int]]]:
    hits: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(1)
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_jwt_es256_from_jwks_url_with_refresh_on_unknown_kid() -> None:
    key, jwk = _ec_jwk("e1")
    document: dict[str, Any] = {"keys": [jwk]}
    with _jwks_server(document) as (url, hits):
        verifier = JWTVerifier(issuer=ISSUER, audience=RESOURCE, jwks_url=url, jwks_min_refresh_seconds=0)

        async def run() -> None:
            token = jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": "e1"})
            assert await verifier.verify_token(token) is not None
            assert await verifier.verify_token(token) is not None
            assert len(hits) == 1  # cached
            key2, jwk2 = _ec_jwk("e2")
            document["keys"] = [jwk, jwk2]
            token2 = jwt.encode(_claims(), key2, algorithm="ES256", headers={"kid": "e2"})
            assert await verifier.verify_token(token2) is not None  # unknown kid → re-fetched
            assert len(hits) == 2

        anyio.run(run)
    with pytest.raises(ConfigError, match="https"):
        JWTVerifier(issuer=ISSUER, audience=RESOURCE, jwks_url="http://example.com/jwks.json")


def test_composite_and_build_verifier(tmp_path: Path) -> None:
    issued = TokenStore.in_data_dir(tmp_path).add("alice", ["read:default"])
    verifier = build_verifier(tmp_path, resource_url=RESOURCE, jwt_issuer=ISSUER, jwt_secret=SECRET)
    assert isinstance(verifier, CompositeVerifier)
    static = _verify(verifier, issued.token)
    assert static is not None and static.principal_kind == "static"
    jwt_access = _verify(verifier, _hs_token())
    assert jwt_access is not None and jwt_access.principal_kind == "jwt"
    assert _verify(verifier, "aesop_000000000000_" + "x" * 43) is None
    with pytest.raises(ConfigError):
        build_verifier(None)


def test_current_principal_outside_a_request() -> None:
    with pytest.raises(AuthError):
        current_principal()
    with pytest.raises(AuthError):
        http_principal_resolver()()
    local = stdio_principal_resolver()()
    assert local.kind == "stdio" and local.can_call("anything") and local.read_namespaces() is None
    narrow = stdio_principal_resolver(["read:team", "tool:search"], "cli")()
    assert narrow.id == "cli" and narrow.read_namespaces() == ["team"] and not narrow.can_call("remember")
    with pytest.raises(PermissionDenied):
        narrow.read_namespaces(["other"])


# -- over HTTP ----------------------------------------------------------------------------------
def _test_server() -> MCPServer:
    server = MCPServer("auth-test")
    resolve = http_principal_resolver()

    @server.tool()
    def whoami(ctx: Context) -> dict[str, Any]:
        principal = resolve()
        headers = sorted((ctx.headers or {}).keys())
        return {"id": principal.id, "kind": principal.kind, "scopes": list(principal.scopes), "headers": headers}

    @server.tool()
    def echo(text: str) -> str:
        return f"{resolve().id}: {text}"

    return server


@contextmanager
def _serving(data_dir: Path, **kwargs: Any) -> Iterator[Any]:
    sock = bind_socket()
    url = resource_url_for(sock)
    verifier = build_verifier(data_dir, resource_url=url, jwt_issuer=ISSUER, jwt_secret=SECRET)
    app = build_http_app(_test_server(), verifier, url, [ISSUER], **kwargs)
    with HTTPServerThread(app, sock):
        yield app


@asynccontextmanager
async def _client(url: str, token: str | None, mode: str = "auto") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


def _tool_json(result: Any) -> Any:
    assert not result.is_error, result
    return result.structured_content


def test_protected_resource_metadata_is_served(tmp_path: Path) -> None:
    with _serving(tmp_path, scopes_supported=["read:default", "tool:search"]) as app:
        origin = app.resource_url.rsplit("/mcp", 1)[0]
        for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
            response = httpx2.get(origin + path)
            assert response.status_code == 200, path
            assert response.json() == {
                "resource": app.resource_url,
                "authorization_servers": [ISSUER],
                "scopes_supported": ["read:default", "tool:search"],
                "bearer_methods_supported": ["header"],
                "resource_name": "aesoperator",
            }
        assert app.metadata_url == origin + protected_resource_metadata_path(app.resource_url)


def test_missing_and_bad_tokens_get_401_with_challenge(tmp_path: Path) -> None:
    with _serving(tmp_path) as app:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        missing = httpx2.post(app.resource_url, json=body)
        assert missing.status_code == 401
        challenge = missing.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert f'resource_metadata="{app.metadata_url}"' in challenge
        assert "error=" not in challenge  # RFC 6750 §3.1: no error code when no credentials were sent

        bad = httpx2.post(app.resource_url, json=body, headers={"Authorization": "Bearer aesop_0123456789ab_nope"})
        assert bad.status_code == 401
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]
        assert f'resource_metadata="{app.metadata_url}"' in bad.headers["www-authenticate"]
        assert bad.json()["error"]["data"]["error"] == "invalid_token"

        basic = httpx2.post(app.resource_url, json=body, headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.status_code == 401
        expired = _hs_token(aud=app.resource_url, exp=int(time.time()) - 600)
        assert (
            httpx2.post(app.resource_url, json=body, headers={"Authorization": f"Bearer {expired}"}).status_code == 401
        )
        other_audience = _hs_token(aud="http://127.0.0.1:1/mcp")
        response = httpx2.post(app.resource_url, json=body, headers={"Authorization": f"Bearer {other_audience}"})
        assert response.status_code == 401


def test_authenticated_calls_static_and_jwt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    issued = TokenStore.in_data_dir(tmp_path).add("alice", ["read:default", "tool:*"])
    with _serving(tmp_path) as app:
        jwt_token = _hs_token(aud=app.resource_url, sub="bob", scope="read:team tool:whoami")

        async def run() -> None:
            async with _client(app.resource_url, issued.token) as client:
                me = _tool_json(await client.call_tool("whoami", {}))
                assert me["id"] == "alice" and me["kind"] == "static"
                assert "authorization" not in me["headers"]  # the token never reaches the server's code
                echo = await client.call_tool("echo", {"text": "hi"})
                assert echo.content[0].text == "alice: hi"  # type: ignore[union-attr]
            async with _client(app.resource_url, jwt_token) as client:
                me = _tool_json(await client.call_tool("whoami", {}))
                assert me["id"] == "bob" and me["kind"] == "jwt" and me["scopes"] == ["read:team", "tool:whoami"]

        anyio.run(run)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert issued.token not in logged and jwt_token not in logged


def test_legacy_session_uses_each_request_token(tmp_path: Path) -> None:
    """On a handshake-era session the principal comes from each request, so rotating a token
    mid-session takes effect on the next call."""
    store = TokenStore.in_data_dir(tmp_path)
    first = store.add("alice", ["read:default", "tool:*"])
    with _serving(tmp_path) as app:

        async def run() -> None:
            async with _client(app.resource_url, first.token, mode="legacy") as client:
                assert client.protocol_version != "2026-07-28"
                assert _tool_json(await client.call_tool("whoami", {}))["id"] == "alice"
                store.revoke("alice")
                with pytest.raises(MCPError):
                    await client.call_tool("whoami", {})

        anyio.run(run)


def test_insufficient_scope_gets_403_with_the_needed_scope(tmp_path: Path) -> None:
    issued = TokenStore.in_data_dir(tmp_path).add("carol", ["read:default", "tool:echo"])
    with _serving(tmp_path) as app:

        async def run() -> None:
            async with _client(app.resource_url, issued.token) as client:
                assert (await client.call_tool("echo", {"text": "ok"})).is_error is False
                with pytest.raises(MCPError, match="tool:whoami"):
                    await client.call_tool("whoami", {})

        anyio.run(run)

        headers = {
            "Authorization": f"Bearer {issued.token}",
            "Mcp-Method": "tools/call",
            "Mcp-Name": "whoami",
            "Mcp-Protocol-Version": "2026-07-28",
        }
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
        response = httpx2.post(app.resource_url, json=body, headers=headers)
        assert response.status_code == 403
        challenge = response.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge and 'scope="tool:whoami"' in challenge
        assert f'resource_metadata="{app.metadata_url}"' in challenge


def test_required_scopes_get_403(tmp_path: Path) -> None:
    issued = TokenStore.in_data_dir(tmp_path).add("dave", ["read:default"])
    with _serving(tmp_path, required_scopes=["read:default", "tool:search"]) as app:
        response = httpx2.post(
            app.resource_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Authorization": f"Bearer {issued.token}"},
        )
        assert response.status_code == 403
        assert 'scope="tool:search"' in response.headers["www-authenticate"]
        missing = httpx2.post(app.resource_url, json={})
        assert 'scope="read:default tool:search"' in missing.headers["www-authenticate"]


def test_build_http_app_refuses_remote_plain_http(tmp_path: Path) -> None:
    verifier = StaticTokenVerifier.in_data_dir(tmp_path)
    with pytest.raises(ConfigError, match="loopback"):
        build_http_app(MCPServer("x"), verifier, "http://example.com/mcp")
    with pytest.raises(ConfigError, match="loopback"):
        bind_socket("0.0.0.0")


def test_principal_from_foreign_access_token() -> None:
    from mcp.server.auth.provider import AccessToken

    token = AccessToken(token="fp", client_id="app", scopes=["read:x"], subject="u9")
    principal = principal_from_token(token)
    assert principal == Principal.from_scopes("u9", ["read:x"], "jwt")


# -- the engine's server ------------------------------------------------------------------------
def test_engine_server_over_authenticated_http(tmp_path: Path, make_engine: Any) -> None:
    server_module = pytest.importorskip("aesoperator.serve.server")
    from aesoperator.security.audit import AuditLog
    from aesoperator.security.guard import CallGuard

    engine = make_engine(tmp_path / "data")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.md").write_text("# Falcon\nProject Falcon ships the telemetry pipeline in March.\n")
    engine.ingest_path(docs, name="docs", namespace="team")
    reader = TokenStore.in_data_dir(tmp_path).add("reader", ["read:team", "tool:search"])
    outsider = TokenStore.in_data_dir(tmp_path).add("outsider", ["read:other", "tool:search"])
    audit = AuditLog.in_data_dir(tmp_path)
    guard = CallGuard(audit, None)
    server = server_module.build_server(engine, guard, http_principal_resolver())
    sock = bind_socket()
    url = resource_url_for(sock)
    app = build_http_app(server, StaticTokenVerifier.in_data_dir(tmp_path, resource=url), url, guard=guard)
    with HTTPServerThread(app, sock):

        async def run() -> None:
            async with _client(url, reader.token) as client:
                found = await client.call_tool("search", {"query": "Falcon telemetry"})
                assert not found.is_error
                assert any("Falcon" in hit["name"] + hit["text"] for hit in found.structured_content["hits"])
                with pytest.raises(MCPError, match="tool:remember"):
                    await client.call_tool("remember", {"content": "x", "agent_id": "a"})
            async with _client(url, outsider.token) as client:
                hidden = await client.call_tool("search", {"query": "Falcon telemetry"})
                assert not hidden.is_error and hidden.structured_content["hits"] == []

        anyio.run(run)
        assert httpx2.post(url, json={}).status_code == 401
    records = audit.tail(10)
    assert {r["principal"] for r in records} >= {"reader", "outsider"}
    assert any(r["decision"] == "deny" and r["tool"] == "remember" for r in records)
    assert audit.verify().ok


# -- failed authentications in the audit log ------------------------------------------------------
def test_failed_authentications_are_audited_in_aggregate_without_the_token(tmp_path: Path) -> None:
    import hashlib

    from aesoperator.security.audit import AuditLog
    from aesoperator.security.guard import CallGuard

    audit = AuditLog.in_data_dir(tmp_path / "audit")
    guard = CallGuard(audit, None, refusal_interval=3600)
    bad = "aesop_0123456789ab_" + "q" * 40
    distinct = [f"aesop_{i:012x}_{'z' * 40}" for i in range(60)]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    with _serving(tmp_path, guard=guard) as app, httpx2.Client(timeout=30) as http:

        def status(authorization: str | None) -> int:
            headers = {"Authorization": authorization} if authorization else {}
            return http.post(app.resource_url, json=body, headers=headers).status_code

        expired = _hs_token(aud=app.resource_url, exp=int(time.time()) - 600)
        assert status(f"Bearer {expired}") == 401
        assert status("Basic dXNlcjpwYXNz") == 401
        assert status(None) == 401  # no credentials: the start of discovery, not counted
        assert all(status(f"Bearer {token}") == 401 for token in [bad] * 40 + distinct)
        assert audit.tail(10) == []  # nothing is written per request
        assert guard.refusals is not None and guard.refusals.pending() == 40 + 60 + 1 + 1
    records = audit.tail(200)  # written at shutdown
    assert sum(r["count"] for r in records) == 102
    assert len(records) <= guard.refusals.max_keys + 1  # distinct tokens cannot multiply the records
    assert all(r["decision"] == "deny" and r["kind"] == "unauthenticated" for r in records)
    repeated = [r for r in records if r["count"] == 40]
    assert len(repeated) == 1 and repeated[0]["principal"] == f"token:{audit.fingerprint(bad)}"
    assert repeated[0]["tool"] == "authenticate:invalid_token"
    assert any(r["tool"] == "authenticate:not_bearer" and r["principal"] == "-" for r in records)
    text = audit.path.read_text()
    assert bad not in text and not any(t in text for t in distinct) and expired not in text
    assert hashlib.sha256(bad.encode()).hexdigest()[:12] not in text  # the fingerprint is keyed
    guard.close()
    assert audit.verify().ok


# -- JWT expiry at the gate, and JWT from settings and `aesop serve` ------------------------------
def _rs256_token(key: Any, kid: str = "k1", **overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), key, algorithm="RS256", headers={"kid": kid})


def test_gate_and_verifier_agree_on_expiry(tmp_path: Path) -> None:
    key, jwk = _rsa_jwk("k1")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    sock = bind_socket()
    url = resource_url_for(sock)
    verifier = build_verifier(tmp_path, resource_url=url, jwt_issuer=ISSUER, jwks_file=jwks, leeway=30)
    app = build_http_app(_test_server(), verifier, url, [ISSUER])
    assert app.leeway == 30
    just_expired = _rs256_token(key, aud=url, sub="erin", scope="tool:*", exp=int(time.time()) - 10)
    long_expired = _rs256_token(key, aud=url, sub="erin", scope="tool:*", exp=int(time.time()) - 120)
    with HTTPServerThread(app, sock):

        async def run() -> None:
            async with _client(url, just_expired) as client:  # within the verifier's leeway: accepted
                assert _tool_json(await client.call_tool("whoami", {}))["id"] == "erin"

        anyio.run(run)
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        refused = httpx2.post(url, json=body, headers={"Authorization": f"Bearer {long_expired}"})
        assert refused.status_code == 401


def test_jwt_settings_build_the_verifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aesoperator.config import load_settings
    from aesoperator.security.verifiers import jwt_options

    ec_key, ec_jwk = _ec_jwk("e1")
    rsa_key, rsa_jwk = _rsa_jwk("k1")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [ec_jwk, rsa_jwk]}))
    monkeypatch.setenv("AESOP_CONFIG", os.devnull)
    monkeypatch.setenv("AESOP_JWT_ISSUER", ISSUER)
    monkeypatch.setenv("AESOP_JWKS_FILE", str(jwks))
    monkeypatch.setenv("AESOP_JWT_AUDIENCE", RESOURCE)
    monkeypatch.setenv("AESOP_JWT_ALGORITHMS", '["ES256"]')
    monkeypatch.setenv("AESOP_JWT_LEEWAY", "5")
    options = jwt_options(load_settings())
    assert options["leeway"] == 5 and options["jwt_algorithms"] == ["ES256"]
    verifier = build_verifier(None, resource_url="http://127.0.0.1:1/other", **options)
    es256 = jwt.encode(_claims(), ec_key, algorithm="ES256", headers={"kid": "e1"})
    access = _verify(verifier, es256)
    assert access is not None and principal_from_token(access).id == "user-1"
    assert _verify(verifier, _rs256_token(rsa_key)) is None  # RS256 is not among the allowed algorithms
    widened = build_verifier(None, resource_url=RESOURCE, **jwt_options(load_settings(), jwt_algorithms=["RS256"]))
    assert _verify(widened, _rs256_token(rsa_key)) is not None  # a flag overrides the setting

    monkeypatch.delenv("AESOP_JWKS_FILE")
    with pytest.raises(ConfigError, match="AESOP_JWKS_URL or AESOP_JWKS_FILE"):
        jwt_options(load_settings())
    monkeypatch.delenv("AESOP_JWT_ISSUER")
    with pytest.raises(ConfigError, match="no JWT issuer"):
        jwt_options(load_settings(), jwks_url="https://issuer.test/jwks.json")


def test_aesop_serve_accepts_jwts_from_its_flags(tmp_path: Path) -> None:
    from tests.test_serve_tools import ServerProcess, aesop_command

    rsa_key, rsa_jwk = _rsa_jwk("k1")
    ec_key, ec_jwk = _ec_jwk("e1")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa_jwk, ec_jwk]}))
    data = tmp_path / "data"
    data.mkdir()
    command = aesop_command(
        data, "serve", "--http", "--port", "0", "--no-warm", "--jwt-issuer", ISSUER, "--jwks-file", str(jwks)
    )
    server = ServerProcess(command, cwd=data)
    try:
        url = server.url
        metadata = httpx2.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")).json()
        assert metadata["authorization_servers"] == [ISSUER]
        rs256 = _rs256_token(rsa_key, aud=url, sub="ivy", scope="read:default tool:search")
        es256 = jwt.encode(_claims(aud=url, sub="jo", scope="tool:sources"), ec_key, "ES256", headers={"kid": "e1"})
        stranger, _ = _ec_jwk("e1")
        forged = jwt.encode(_claims(aud=url), stranger, algorithm="ES256", headers={"kid": "e1"})

        async def run() -> None:
            for token in (rs256, es256):
                async with _client(url, token) as client:
                    assert (await client.list_tools()).tools

        anyio.run(run)
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        assert httpx2.post(url, json=body, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    finally:
        server.stop()
