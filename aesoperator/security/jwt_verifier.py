"""OAuth2 access tokens that are JWTs, checked against the authorization server's keys.

The signature is checked with keys from a JWKS (a file, re-read when it changes, or an HTTPS URL,
cached and re-fetched for an unknown `kid`) or a shared HS256 secret; then issuer, audience (this
server's resource URL), expiry and not-before (with a small leeway). The `scope`/`scp` claim
carries the scopes.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel
import httpx2
import jwt
from jwt import PyJWK
from jwt.exceptions import PyJWKError
from mcp.server.auth.provider import AccessToken

from aesoperator.errors import ConfigError
from aesoperator.security.request_principal import AesopAccessToken, token_fingerprint
from aesoperator.security.tokens import STATIC_PREFIX

log = logging.getLogger("aesoperator.security.jwt_verifier")

_KTY_FOR_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_KEPT_CLAIMS = ("iss", "sub", "aud", "azp", "client_id", "exp", "nbf", "iat", "jti")


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class _JWK:
    key: Any  # jwt.PyJWK
    alg: str | None  # the algorithm the JWK itself pins, if any


class JWTVerifier:
    """Verifies OAuth2 access tokens that are JWTs.

    Exactly one key source: `jwks_file` (re-read when it changes), `jwks_url` (HTTPS, or HTTP on
    loopback; cached for `jwks_cache_seconds` and re-fetched, at most every
    `jwks_min_refresh_seconds`, when a token names an unknown key) or `shared_secret` (HS256, for
    tests and single-host setups). Asymmetric keys allow RS256 and ES256 by default; the algorithm
    list never mixes HMAC with public keys.

    Checked: signature, `iss` == `issuer`, `aud` contains one of `audience` (this server's resource
    URL), `exp` (required) and `nbf` with `leeway` seconds, and `sub` or a client id present.
    Scopes come from `scope` (space-separated) and/or `scp` (list or string)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Sequence[str],
        jwks_url: str | None = None,
        jwks_file: Path | None = None,
        shared_secret: str | bytes | None = None,
        algorithms: Sequence[str] | None = None,
        leeway: float = 30.0,
        jwks_cache_seconds: float = 600.0,
        jwks_min_refresh_seconds: float = 30.0,
        jwks_timeout: float = 5.0,
    ) -> None:
        sources = [s for s in (jwks_url, jwks_file, shared_secret) if s]
        if len(sources) != 1:
            raise ConfigError("a JWT verifier needs exactly one of jwks_url, jwks_file or shared_secret")
        if not issuer:
            raise ConfigError("a JWT verifier needs the expected issuer")
        self.issuer = issuer
        self.audience = [audience] if isinstance(audience, str) else list(audience)
        if not self.audience or not all(self.audience):
            raise ConfigError("a JWT verifier needs the expected audience (this server's resource URL)")
        self.leeway = float(leeway)
        if shared_secret:
            secret = shared_secret.encode() if isinstance(shared_secret, str) else shared_secret
            if len(secret) < 32:
                raise ConfigError("the shared JWT secret must be at least 32 bytes")
            self._secret: bytes | None = secret
            allowed = list(algorithms or ["HS256"])
            if any(not a.startswith("HS") for a in allowed):
                raise ConfigError("a shared secret verifies HS256/HS384/HS512 only")
        else:
            self._secret = None
            allowed = list(algorithms or ["RS256", "ES256"])
            if any(a[:2] not in _KTY_FOR_ALG for a in allowed):
                raise ConfigError(f"public-key algorithms only (RS*, PS*, ES*, EdDSA), got {allowed}")
        self.algorithms = allowed
        if jwks_url and not (jwks_url.startswith("https://") or is_loopback_url(jwks_url)):
            raise ConfigError(f"jwks_url {jwks_url!r} must use https (plain http only on loopback)")
        self.jwks_url = jwks_url
        self.jwks_file = Path(jwks_file) if jwks_file else None
        self._cache_seconds = jwks_cache_seconds
        self._min_refresh = jwks_min_refresh_seconds
        self._timeout = jwks_timeout
        self._keys: list[_JWK] = []
        self._fetched_at = float("-inf")
        self._file_stamp: tuple[int, int, int] | None = None
        self._fetch_lock: Any = None  # anyio.Lock of the event loop in `_lock_loop`
        self._lock_loop: object = None

    # -- keys ----------------------------------------------------------------------------------
    @staticmethod
    def _parse_jwks(data: Any) -> list[_JWK]:
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("a JWKS is an object with a 'keys' list")
        keys = []
        for entry in data["keys"]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
                continue
            try:
                keys.append(_JWK(PyJWK(entry), entry.get("alg") if isinstance(entry.get("alg"), str) else None))
            except (PyJWKError, ValueError, TypeError):  # unsupported kty/crv: skip that key
                continue
        return keys

    def _file_keys(self) -> list[_JWK]:
        assert self.jwks_file is not None
        try:
            st = os.stat(self.jwks_file)
        except FileNotFoundError:
            log.error("JWKS file %s does not exist", self.jwks_file)
            return []
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._file_stamp:
            try:
                self._keys = self._parse_jwks(json.loads(self.jwks_file.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                log.error("JWKS file %s cannot be used: %s", self.jwks_file, exc)
                self._keys = []
            self._file_stamp = stamp
        return self._keys

    async def _url_keys(self, *, refresh: bool) -> list[_JWK]:
        assert self.jwks_url is not None
        age = time.monotonic() - self._fetched_at
        if age < self._cache_seconds and not (refresh and age >= self._min_refresh):
            return self._keys
        loop = anyio.lowlevel.current_token()
        if self._fetch_lock is None or self._lock_loop is not loop:
            self._fetch_lock, self._lock_loop = anyio.Lock(), loop
        async with self._fetch_lock:
            if time.monotonic() - self._fetched_at < min(self._min_refresh, self._cache_seconds):
                return self._keys  # another request fetched meanwhile
            try:
                async with httpx2.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                    response = await client.get(self.jwks_url, headers={"Accept": "application/json"})
                if response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}")
                if len(response.content) > 1_000_000:
                    raise ValueError("JWKS larger than 1 MB")
                self._keys = self._parse_jwks(response.json())
                self._fetched_at = time.monotonic()
            except Exception as exc:
                log.warning(
                    "JWKS %s could not be fetched (%s); keeping %d cached keys", self.jwks_url, exc, len(self._keys)
                )
                # try again after the minimum refresh interval, not after the whole cache lifetime
                self._fetched_at = time.monotonic() - self._cache_seconds + self._min_refresh
        return self._keys

    async def _candidates(self, kid: str | None, alg: str) -> list[Any]:
        def pick(keys: list[_JWK]) -> list[Any]:
            family = _KTY_FOR_ALG.get(alg[:2])
            return [
                k.key
                for k in keys
                if (kid is None or k.key.key_id == kid) and k.key.key_type == family and k.alg in (None, alg)
            ]

        if self.jwks_file is not None:
            return pick(self._file_keys())
        found = pick(await self._url_keys(refresh=False))
        if not found and kid is not None:
            found = pick(await self._url_keys(refresh=True))
        return found

    # -- verification --------------------------------------------------------------------------
    async def verify_token(self, token: str) -> AccessToken | None:
        if token.count(".") != 2 or token.startswith(STATIC_PREFIX):
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            log.info("JWT refused: algorithm %r is not allowed", alg)
            return None
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        keys: list[Any] = (
            [self._secret] if self._secret is not None else [k.key for k in await self._candidates(kid, alg)]
        )
        if not keys:
            log.info("JWT refused: no key for kid %r and algorithm %s", kid, alg)
            return None
        claims: dict[str, Any] | None = None
        reason = "bad signature"
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=[alg],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options={"require": ["exp", "iss", "aud"]},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                reason = type(exc).__name__
                break
        if claims is None:
            log.info("JWT refused: %s", reason)
            return None
        return self._access_token(token, claims)

    def _access_token(self, token: str, claims: dict[str, Any]) -> AccessToken | None:
        subject = claims.get("sub")
        client_id = claims.get("client_id") or claims.get("azp") or subject
        principal_id = subject or client_id
        if not isinstance(principal_id, str) or not principal_id:
            log.info("JWT refused: neither sub nor client_id")
            return None
        scopes: list[str] = []
        scope_claim = claims.get("scope")
        if isinstance(scope_claim, str):
            scopes.extend(scope_claim.split())
        scp = claims.get("scp")
        if isinstance(scp, str):
            scopes.extend(scp.split())
        elif isinstance(scp, list):
            scopes.extend(str(s) for s in scp)
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        resource = next((a for a in audiences if a in self.audience), None)
        exp = claims.get("exp")
        return AesopAccessToken(
            token=token_fingerprint(token),
            client_id=str(client_id),
            subject=str(subject) if subject is not None else None,
            scopes=list(dict.fromkeys(scopes)),
            expires_at=int(exp) if isinstance(exp, int | float) else None,
            resource=resource,
            claims={k: claims[k] for k in _KEPT_CLAIMS if k in claims},
            principal_id=principal_id,
            principal_kind="jwt",
        )
