"""The OAuth 2.0 Protected Resource Metadata document (RFC 9728) of an MCP endpoint.

Served without authentication at the well-known URIs the MCP authorization spec names: the
well-known path with the resource's path appended (`/.well-known/oauth-protected-resource/mcp`)
and the root variant. It names the resource (this server's URL), the authorization servers to get
tokens from, the supported scopes and that tokens go in the `Authorization` header.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.types import Scope, Send

from aesoperator.errors import ConfigError
from aesoperator.security.http.responses import send_json
from aesoperator.security.jwt_verifier import is_loopback_url

WELL_KNOWN_PRM = "/.well-known/oauth-protected-resource"


def protected_resource_metadata_path(resource_url: str) -> str:
    """RFC 9728 §3.1: the well-known path with the resource's path appended."""
    path = urlsplit(resource_url).path.rstrip("/")
    return WELL_KNOWN_PRM + path


class ProtectedResourceMetadata:
    """The metadata document of `resource_url`, where it is served, and serving it."""

    def __init__(
        self,
        resource_url: str,
        *,
        authorization_servers: Sequence[str] = (),
        scopes_supported: Sequence[str] = (),
        resource_name: str | None = "aesoperator",
        resource_documentation: str | None = None,
    ) -> None:
        parts = urlsplit(resource_url)
        self.url = f"{parts.scheme}://{parts.netloc}" + protected_resource_metadata_path(resource_url)
        self.paths = {protected_resource_metadata_path(resource_url), WELL_KNOWN_PRM}
        document: dict[str, Any] = {"resource": resource_url}
        servers = [str(s) for s in authorization_servers]
        for server in servers:
            if not (server.startswith("https://") or is_loopback_url(server)):
                raise ConfigError(f"authorization server {server!r} must use https")
        if servers:
            document["authorization_servers"] = servers
        if scopes_supported:
            document["scopes_supported"] = list(scopes_supported)
        document["bearer_methods_supported"] = ["header"]
        if resource_name:
            document["resource_name"] = resource_name
        if resource_documentation:
            document["resource_documentation"] = resource_documentation
        self.document = document
        self._body = json.dumps(document, separators=(",", ":")).encode()

    async def serve(self, scope: Scope, send: Send) -> None:
        """Answer a request for the document (GET, HEAD, and CORS preflight)."""
        method = scope.get("method", "GET")
        cors = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", b"GET, OPTIONS"),
            (b"access-control-allow-headers", b"mcp-protocol-version"),
        ]
        if method == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": cors})
            await send({"type": "http.response.body", "body": b""})
            return
        if method not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": "method_not_allowed"}, [(b"allow", b"GET, OPTIONS")])
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode()),
            (b"cache-control", b"public, max-age=3600"),
            *cors,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else self._body})
