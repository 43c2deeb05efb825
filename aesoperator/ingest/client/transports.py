"""How a connection reaches its server: credentials checked, stdio or streamable HTTP."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Final, cast
from urllib.parse import urlsplit

import httpx2
from mcp.client import Transport
from mcp.client.stdio import get_default_environment
from mcp.client.streamable_http import streamable_http_client

from aesoperator.config import resolve_env_values
from aesoperator.errors import ConfigError, SourceError
from aesoperator.ingest.client.credentials import BearerAuth, ClientCredentials
from aesoperator.ingest.client.state import ConnectionState
from aesoperator.ingest.client.stdio import ServerProcess, stdio_transport
from aesoperator.ingest.sources import SourceDefinition

_SAFE_ENV: Final = ("LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class ConnectionTransports(ConnectionState):
    """Credentials and transports of a connection."""

    def __init__(self, definition: SourceDefinition) -> None:
        super().__init__(definition)
        self._check_credentials()

    # -- credentials and transports -------------------------------------------------------------
    def _check_credentials(self) -> None:
        d = self.definition
        bearer = d.secret("bearer_token")
        client_id, client_secret = d.secret("client_id"), d.secret("client_secret")
        if (client_id is None) != (client_secret is None):
            raise ConfigError(self._label("OAuth client credentials need both client_id and client_secret"))
        if client_id is not None and client_secret is not None:
            if "token_url" not in d.options:
                raise ConfigError(self._label("OAuth client credentials need options.token_url"))
            self._require_secure(str(d.options["token_url"]))
            self._credentials = ClientCredentials(d, client_id, client_secret)
        self._bearer = bearer
        if (bearer or self._credentials) and d.url is None:
            raise ConfigError(
                self._label(
                    "bearer tokens and OAuth apply to url sources; pass secrets to a "
                    "stdio server through env with ${VAR} references"
                )
            )
        if (bearer or self._credentials) and d.url:
            self._require_secure(d.url)

    def _require_secure(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.hostname or "") in _LOOPBACK:
            return
        if self.definition.options.get("allow_insecure_http") is True:
            return
        raise ConfigError(
            self._label(
                f"refusing to send credentials over plain http to {parts.hostname}; use https "
                "(or set options.allow_insecure_http = true on a trusted network)"
            )
        )

    def _stdio_argv_env(self) -> tuple[list[str], dict[str, str]]:
        d = self.definition
        env = get_default_environment()
        env.update({k: os.environ[k] for k in _SAFE_ENV if k in os.environ})
        env.update(d.resolved_env())
        command = d.command or ""
        resolved = command if os.sep in command else shutil.which(command, path=env.get("PATH"))
        if resolved is None or not os.path.exists(resolved):
            raise SourceError(self._label(f"cannot start the server: command {command!r} was not found"))
        return [resolved, *d.args], env

    async def _observe_response(self, response: httpx2.Response) -> None:
        if response.status_code < 400:
            self._http_refusal = None
        elif response.status_code in (401, 403):
            challenge = response.headers.get("www-authenticate", "")
            detail = re.search(r'error="([^"]{1,100})"', challenge)
            self._http_refusal = f"HTTP {response.status_code} {response.reason_phrase}" + (
                f" ({detail.group(1)})" if detail else ""
            )

    async def _http_transport(self, stack: AsyncExitStack) -> Transport:
        d = self.definition
        headers = resolve_env_values(d.headers, f"source {d.name!r}")
        auth: httpx2.Auth | None = None
        if self._credentials is not None:
            auth = BearerAuth(d.url or "", self._credentials.token, refreshable=True)
        elif self._bearer is not None:
            secret = self._bearer

            async def static(_refresh: bool) -> str:
                return secret

            auth = BearerAuth(d.url or "", static, refreshable=False)
        http = httpx2.AsyncClient(
            headers=headers,
            timeout=httpx2.Timeout(self._timeout, read=max(300.0, self._timeout)),
            auth=auth,
            event_hooks={"response": [self._observe_response]},
        )
        await stack.enter_async_context(http)
        return streamable_http_client(d.url or "", http_client=http, max_sse_event_size=self._max_message_bytes)

    def _make_transport_factory(self) -> Callable[[AsyncExitStack], Awaitable[Transport]]:
        if self.definition.url:
            self._process = None
            return self._http_transport
        argv, env = self._stdio_argv_env()
        process = self._process = ServerProcess()

        async def stdio(_stack: AsyncExitStack) -> Transport:
            return cast(
                Transport,
                stdio_transport(argv, env, self.definition.cwd, self._max_message_bytes, process, self.server_name),
            )

        return stdio
