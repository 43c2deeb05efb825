"""What both MCP servers (the engine's `serve/` and the data-source `connectors/`) need to decide
who is calling and what they may do, and to keep a record of it.

- `principal.py`: principals and the scope grammar; `request_principal.py`: the caller of the
  request being handled (from its access token, or the stdio principal).
- `tokens.py`: static bearer tokens (issue, revoke, verify); `jwt_verifier.py`: OAuth2 JWTs;
  `verifiers.py`: choosing and combining verifiers.
- `http/`: the bearer-token gate in front of a streamable HTTP app, the protected resource
  metadata it serves, and listening sockets with a uvicorn runner.
- `guard.py`: admission (tool scope, rate limit) and audit of calls; `ratelimit.py`: token
  buckets; `refusals.py`: refusals counted and written in aggregate.
- `audit.py`, `audit_format.py`, `audit_verify.py`: the hash-chained, signed audit log.
- `envelope.py`: the guarded call both servers run every tool call and resource read in;
  `failures.py`: how a failed call is told to the client.

The names below are the package's public API, loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "AuditLog": "audit",
    "AuthenticatedHTTPApp": "http.gate",
    "CallGuard": "guard",
    "GuardedCalls": "envelope",
    "HTTPServerThread": "http.listener",
    "JWTVerifier": "jwt_verifier",
    "Limit": "ratelimit",
    "Principal": "principal",
    "RateLimiter": "ratelimit",
    "StaticTokenVerifier": "tokens",
    "TokenStore": "tokens",
    "bind_socket": "http.listener",
    "build_http_app": "http.gate",
    "build_verifier": "verifiers",
    "classify": "failures",
    "current_principal": "request_principal",
    "error_result": "failures",
    "http_principal_resolver": "request_principal",
    "is_loopback_host": "http.listener",
    "jwt_options": "verifiers",
    "parse_duration": "tokens",
    "resource_url_for": "http.listener",
    "serve_authenticated_http": "http.listener",
    "serve_http": "http.listener",
    "stdio_principal_resolver": "request_principal",
    "validate_scopes": "principal",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'aesoperator.security' has no attribute {name!r}")
    return getattr(importlib.import_module(f"aesoperator.security.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


__all__ = sorted(_PUBLIC)
