"""Choosing and combining token verifiers: static tokens, JWTs, or both.

`build_verifier` gives the usual verifier from a data dir (static tokens) and the JWT settings;
`CompositeVerifier` tries several in turn; `token_leeway` is the clock-skew allowance the HTTP
gate re-checks expiry with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.auth.provider import AccessToken, TokenVerifier

from aesoperator.errors import ConfigError
from aesoperator.security.jwt_verifier import JWTVerifier
from aesoperator.security.tokens import StaticTokenVerifier

if TYPE_CHECKING:
    from aesoperator.config import Settings


def token_leeway(verifier: Any) -> float:
    """Seconds past `exp` a verifier still accepts a token (its `leeway`, 0 if it has none)."""
    value = getattr(verifier, "leeway", 0.0)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) and value > 0 else 0.0


class CompositeVerifier:
    """Tries each verifier in turn; the first that accepts the token wins."""

    def __init__(self, *verifiers: TokenVerifier) -> None:
        if not verifiers:
            raise ConfigError("a composite verifier needs at least one verifier")
        self.verifiers = verifiers

    @property
    def leeway(self) -> float:
        """The clock-skew allowance of its verifiers (the HTTP gate re-checks expiry with it)."""
        return max(token_leeway(v) for v in self.verifiers)

    async def verify_token(self, token: str) -> AccessToken | None:
        for verifier in self.verifiers:
            result = await verifier.verify_token(token)
            if result is not None:
                return result
        return None


def jwt_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """`build_verifier` keyword arguments for JWTs from the settings (`AESOP_JWT_ISSUER`,
    `AESOP_JWT_AUDIENCE`, `AESOP_JWKS_URL`, `AESOP_JWKS_FILE`, `AESOP_JWT_ALGORITHMS`,
    `AESOP_JWT_LEEWAY` or aesop.toml), each replaced by an override that is not None (the flags of
    `aesop serve`)."""
    options: dict[str, Any] = {
        "jwt_issuer": settings.jwt_issuer,
        "jwt_audience": settings.jwt_audience,
        "jwks_url": settings.jwks_url,
        "jwks_file": settings.jwks_file,
        "jwt_algorithms": settings.jwt_algorithms,
        "leeway": settings.jwt_leeway,
    }
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise ConfigError(f"unknown JWT option(s) {unknown}; use {sorted(options)}")
    options.update({k: v for k, v in overrides.items() if v is not None and v != []})
    if options["jwks_file"] is not None:
        options["jwks_file"] = Path(options["jwks_file"]).expanduser()
    if options["jwt_issuer"] and not (options["jwks_url"] or options["jwks_file"]):
        raise ConfigError(
            f"JWT issuer {options['jwt_issuer']!r} needs its keys: set AESOP_JWKS_URL or AESOP_JWKS_FILE "
            "(aesop serve --jwks-url / --jwks-file)"
        )
    if (options["jwks_url"] or options["jwks_file"]) and not options["jwt_issuer"]:
        raise ConfigError("a JWKS is configured but no JWT issuer: set AESOP_JWT_ISSUER (aesop serve --jwt-issuer)")
    return options


def build_verifier(
    data_dir: Path | None = None,
    *,
    resource_url: str | None = None,
    jwt_issuer: str | None = None,
    jwt_audience: str | Sequence[str] | None = None,
    jwks_url: str | None = None,
    jwks_file: Path | None = None,
    jwt_secret: str | bytes | None = None,
    jwt_algorithms: Sequence[str] | None = None,
    leeway: float = 30.0,
) -> TokenVerifier:
    """The usual verifier: static tokens from `data_dir` (if given) and, when an issuer is
    configured, JWTs whose audience defaults to `resource_url`."""
    verifiers: list[TokenVerifier] = []
    if data_dir is not None:
        verifiers.append(StaticTokenVerifier.in_data_dir(data_dir, resource=resource_url))
    if jwt_issuer or jwks_url or jwks_file or jwt_secret:
        audience = jwt_audience or resource_url
        if not jwt_issuer or not audience:
            raise ConfigError("JWT verification needs an issuer and an audience (the server's resource URL)")
        verifiers.append(
            JWTVerifier(
                issuer=jwt_issuer,
                audience=audience,
                jwks_url=jwks_url,
                jwks_file=jwks_file,
                shared_secret=jwt_secret,
                algorithms=jwt_algorithms,
                leeway=leeway,
            )
        )
    if not verifiers:
        raise ConfigError("no token verifier configured: give a data dir (static tokens) and/or a JWT issuer")
    return verifiers[0] if len(verifiers) == 1 else CompositeVerifier(*verifiers)
