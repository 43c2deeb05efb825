"""HTTP credentials: a static bearer token or OAuth2 client credentials, sent to one origin only."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import httpx2

from aesoperator.errors import SourceError
from aesoperator.ingest.client.errors import (
    clip,
)
from aesoperator.ingest.sources import SourceDefinition


def strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def origin_of(url: str | httpx2.URL) -> tuple[str, str, int | None]:
    parsed = httpx2.URL(str(url))
    return parsed.scheme, parsed.host, parsed.port


_token_cache: dict[str, tuple[str, float]] = {}
_token_lock = threading.Lock()


class ClientCredentials:
    """OAuth2 client-credentials grant against `options.token_url`; tokens cached until they expire."""

    def __init__(self, definition: SourceDefinition, client_id: str, client_secret: str) -> None:
        self.source = definition.name
        self.token_url = str(definition.options["token_url"])
        self.scope = definition.options.get("scope")
        self.auth_method = str(definition.options.get("token_endpoint_auth_method", "client_secret_basic"))
        self.timeout = definition.timeout_seconds
        self._client_id = client_id
        self._client_secret = client_secret
        material = "\x1f".join((self.token_url, client_id, client_secret, str(self.scope)))
        self._key = hashlib.blake2b(material.encode(), digest_size=16).hexdigest()

    async def token(self, refresh: bool = False) -> str:
        now = time.time()
        with _token_lock:
            cached = _token_cache.get(self._key)
        if cached is not None and not refresh and cached[1] > now:
            return cached[0]
        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = str(self.scope)
        auth: httpx2.Auth | None = httpx2.BasicAuth(self._client_id, self._client_secret)
        if self.auth_method == "client_secret_post":
            data.update(client_id=self._client_id, client_secret=self._client_secret)
            auth = None
        try:
            async with httpx2.AsyncClient(timeout=self.timeout) as http:
                response = await http.post(
                    self.token_url,
                    data=data,
                    auth=auth or httpx2.USE_CLIENT_DEFAULT,
                    headers={"Accept": "application/json"},
                )
        except httpx2.HTTPError as exc:
            raise SourceError(f"source {self.source!r}: token request to {self.token_url} failed: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            reason = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            raise SourceError(
                f"source {self.source!r}: token request to {self.token_url} was refused "
                f"(HTTP {response.status_code}{': ' + clip(str(reason), 200) if reason else ''}); "
                "check the client_id and client_secret credentials"
            )
        token = str(body["access_token"])
        lifetime = float(body.get("expires_in") or 3600)
        expires = now + max(lifetime - min(30.0, lifetime / 5), 0.0)
        with _token_lock:
            _token_cache[self._key] = (token, expires)
        return token


class BearerAuth(httpx2.Auth):
    """Adds `Authorization: Bearer …` to requests for the server's own origin, and only those.
    A 401 with a refreshable token fetches a new token and sends the request once more."""

    def __init__(self, url: str, token: Callable[[bool], Awaitable[str]], refreshable: bool) -> None:
        self._origin = origin_of(url)
        self._token = token
        self._refreshable = refreshable

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if origin_of(request.url) != self._origin:
            yield request
            return
        request.headers["Authorization"] = f"Bearer {await self._token(False)}"
        response = yield request
        if response.status_code == 401 and self._refreshable:
            request.headers["Authorization"] = f"Bearer {await self._token(True)}"
            yield request
