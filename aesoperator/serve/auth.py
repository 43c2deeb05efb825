"""Bearer-token authentication for the streamable HTTP transport.

Two kinds of credentials are accepted, both through the SDK's `TokenVerifier` protocol:

- **Static tokens** for local use (`aesop tokens add`). Only a salted HMAC-SHA256 digest of each
  token is kept, in `<data_dir>/tokens.json` (mode 0600), with its principal name, scopes,
  creation time, optional expiry and a revoked flag. The file is re-read when it changes on disk,
  so issuing, rotating and revoking take effect on the next request without a restart.
- **OAuth2 access tokens** (JWTs) from an authorization server, checked for signature (JWKS from a
  file or an HTTPS URL, or a shared HS256 secret), issuer, audience (this server's resource URL),
  expiry and not-before (with a small leeway); their `scope`/`scp` claim carries the scopes.

`build_http_app` puts a verifier in front of an `MCPServer`'s streamable HTTP app: it serves the
Protected Resource Metadata document (RFC 9728) at the well-known URIs the MCP authorization
spec names, answers a missing or bad token with 401 and a `WWW-Authenticate: Bearer ...,
resource_metadata="..."` challenge, and a token that lacks a scope the request needs with 403
`insufficient_scope` naming just that scope. The `Authorization` header is removed before the
request reaches the MCP server, and an `AccessToken` only ever holds a fingerprint of the token,
so a token can neither be logged nor handed on to a data source by anything downstream.

`current_principal()` turns the current request's access token into a `Principal` (for stdio,
where there is no token, a configured principal is used instead).
"""

from __future__ import annotations

import contextvars
import fcntl
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from mcp.server.auth.middleware.auth_context import auth_context_var, get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aesoperator.engine.data_dir import make_private_dir
from aesoperator.errors import AuthError, ConfigError, RateLimited
from aesoperator.serve.principal import Principal

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from aesoperator.config import Settings
    from aesoperator.serve.guard import CallGuard
    from aesoperator.serve.ratelimit import RateLimiter

log = logging.getLogger("aesoperator.serve.auth")

TOKENS_FILE = "tokens.json"
STATIC_PREFIX = "aesop_"
_ID_HEX = 12  # hex characters of a static token's public id
_TOKEN_RE = re.compile(r"^aesop_([0-9a-f]{12})_([A-Za-z0-9_-]{32,})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_SCOPE_RE = re.compile(r"^(read|write|source|tool):[A-Za-z0-9*._/@:-]{1,128}$")  # ":" allows agent:<id> namespaces
_B64TOKEN_RE = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token
_MAX_TOKEN_CHARS = 8192
_TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-/]{1,128}$")
WELL_KNOWN_PRM = "/.well-known/oauth-protected-resource"


# -- access tokens and principals ---------------------------------------------------------------
class AesopAccessToken(AccessToken):
    """An `AccessToken` that also says which principal it stands for.

    `token` holds a fingerprint (`sha256:<16 hex>`), never the bearer token itself."""

    principal_id: str
    principal_kind: Literal["static", "jwt"]


def token_fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, safe to keep in memory structures and logs."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def principal_from_token(token: AccessToken) -> Principal:
    """The principal an access token stands for, with the rights its scopes grant."""
    if isinstance(token, AesopAccessToken):
        return Principal.from_scopes(token.principal_id, token.scopes, token.principal_kind)
    return Principal.from_scopes(token.subject or token.client_id, token.scopes, "jwt")


# The token of the MCP message being handled. Set per message by a server middleware that reads the
# HTTP request the message came with; the SDK's own context variable is set per HTTP request, which
# on a long-lived (pre-2026) session is the request that opened the session, not the current one.
_message_token: contextvars.ContextVar[AccessToken | None] = contextvars.ContextVar("aesop_message_token", default=None)


def current_access_token() -> AccessToken | None:
    """The access token of the request being handled, or None (stdio, or no authentication)."""
    return _message_token.get() or get_access_token()


def current_principal(fallback: Principal | None = None) -> Principal:
    """The principal of the request being handled.

    Over authenticated HTTP it comes from the request's access token. Without a token (stdio) it
    is `fallback`; with neither, AuthError is raised, so a server that was started without
    authentication by mistake refuses calls instead of granting everything."""
    token = current_access_token()
    if token is not None:
        return principal_from_token(token)
    if fallback is not None:
        return fallback
    raise AuthError("no authenticated principal for this request (HTTP needs a bearer token)")


def stdio_principal(scopes: Sequence[str] | None = None, principal_id: str = "local") -> Principal:
    """The principal of a stdio session: full access unless `scopes` narrows it.

    Over stdio the client is whoever started the process, so full access is the default; give
    scopes (e.g. `["read:default", "tool:search"]`) to run a narrower server."""
    if scopes is None:
        return Principal.full_access(principal_id, "stdio")
    return Principal.from_scopes(principal_id, validate_scopes(scopes), "stdio")


@dataclass(frozen=True)
class PrincipalResolver:
    """`principal_resolver()` for `build_server`: the current request's principal.

    `fallback` is used when the request carries no token (stdio); leave it None for HTTP."""

    fallback: Principal | None = None

    def __call__(self) -> Principal:
        return current_principal(self.fallback)


def http_principal_resolver() -> PrincipalResolver:
    """Resolver for HTTP: every call must come with a verified token."""
    return PrincipalResolver(None)


def stdio_principal_resolver(scopes: Sequence[str] | None = None, principal_id: str = "local") -> PrincipalResolver:
    """Resolver for stdio: the configured principal (full access unless scopes are given)."""
    return PrincipalResolver(stdio_principal(scopes, principal_id))


def validate_scopes(scopes: Sequence[str]) -> list[str]:
    """Check scope strings against the grammar (`read:`, `write:`, `source:`, `tool:`)."""
    bad = [s for s in scopes if not _SCOPE_RE.match(s)]
    if bad:
        raise ConfigError(
            f"invalid scope(s) {bad}: write read:<namespace>, write:<namespace>, source:<name> or tool:<name> "
            "(use * for all)"
        )
    return list(dict.fromkeys(scopes))


# -- static tokens ------------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _parse_iso(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _digest(salt_hex: str, token: str) -> str:
    return hmac.new(bytes.fromhex(salt_hex), token.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `12h`, `30d`, `2w` → timedelta."""
    match = _DURATION_RE.match(text.lower())
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"duration {text!r}: write a positive number with s, m, h, d or w (e.g. 30d)")
    return timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])


@dataclass(frozen=True)
class StaticToken:
    """One issued static token as it is kept at rest: no token, only its salted digest."""

    name: str
    id: str
    scopes: tuple[str, ...]
    created: datetime
    salt: str
    digest: str
    expires: datetime | None = None
    revoked: bool = False
    revoked_at: datetime | None = None

    def status(self, now: datetime | None = None) -> Literal["active", "expired", "revoked"]:
        if self.revoked:
            return "revoked"
        if self.expires is not None and self.expires <= (now or _now()):
            return "expired"
        return "active"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "scopes": list(self.scopes),
            "created": _iso(self.created),
            "expires": _iso(self.expires),
            "revoked": self.revoked,
            "revoked_at": _iso(self.revoked_at),
            "hash": "hmac-sha256",
            "salt": self.salt,
            "digest": self.digest,
        }

    def public_view(self, now: datetime | None = None) -> dict[str, Any]:
        """What `aesop tokens list` shows: everything but the salt and digest."""
        view = {k: v for k, v in self.to_json().items() if k not in ("salt", "digest", "hash")}
        view["status"] = self.status(now)
        return view

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> StaticToken:
        if row.get("hash", "hmac-sha256") != "hmac-sha256":
            raise ValueError(f"unknown hash {row.get('hash')!r}")
        created = _parse_iso(row["created"])
        if created is None:
            raise ValueError("created is empty")
        return cls(
            name=str(row["name"]),
            id=str(row["id"]),
            scopes=tuple(str(s) for s in row.get("scopes", ())),
            created=created,
            salt=str(row["salt"]),
            digest=str(row["digest"]),
            expires=_parse_iso(row.get("expires")),
            revoked=bool(row.get("revoked", False)),
            revoked_at=_parse_iso(row.get("revoked_at")),
        )


def _read_tokens(path: Path) -> list[StaticToken]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("tokens"), list):
        raise ValueError("expected {'version': 1, 'tokens': [...]}")
    return [StaticToken.from_json(row) for row in data["tokens"]]


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by the owner only, atomically (temp file, fsync, rename)."""
    make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass
class IssuedToken:
    """A freshly issued token: `token` is shown once and never stored."""

    token: str
    record: StaticToken


class TokenStore:
    """Issue, list and revoke static tokens in `<data_dir>/tokens.json`.

    Changes take an exclusive lock on `tokens.json.lock` and replace the file atomically, so
    concurrent `aesop tokens` commands and a running server never see a half-written file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> TokenStore:
        return cls(Path(data_dir) / TOKENS_FILE)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        make_private_dir(self.path.parent)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _load(self) -> list[StaticToken]:
        try:
            return _read_tokens(self.path)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.path} is not a valid token file: {exc}") from None

    def _save(self, tokens: list[StaticToken]) -> None:
        payload = {"version": 1, "tokens": [t.to_json() for t in tokens]}
        _write_private(self.path, json.dumps(payload, indent=2) + "\n")

    def tokens(self) -> list[StaticToken]:
        """Every token ever issued (revoked and expired ones included)."""
        return self._load()

    def add(
        self,
        name: str,
        scopes: Sequence[str],
        expires_in: timedelta | None = None,
        *,
        rotate: bool = False,
        now: datetime | None = None,
    ) -> IssuedToken:
        """Issue a token for principal `name`. With `rotate`, the name's active tokens are revoked
        in the same change; without it, a name that still has an active token is refused."""
        if not _NAME_RE.match(name):
            raise ConfigError(f"token name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
        if not scopes:
            raise ConfigError("give at least one --scope (e.g. --scope read:default --scope tool:search)")
        checked = validate_scopes(scopes)
        moment = now or _now()
        with self._locked():
            tokens = self._load()
            active = [t for t in tokens if t.name == name and t.status(moment) == "active"]
            if active and not rotate:
                raise ConfigError(
                    f"{name!r} already has an active token; revoke it first (aesop tokens revoke {name}) "
                    "or issue with --rotate"
                )
            taken = {t.id for t in tokens}
            key_id = secrets.token_hex(_ID_HEX // 2)
            while key_id in taken:
                key_id = secrets.token_hex(_ID_HEX // 2)
            token = f"{STATIC_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            salt = secrets.token_hex(16)
            record = StaticToken(
                name=name,
                id=key_id,
                scopes=tuple(checked),
                created=moment,
                salt=salt,
                digest=_digest(salt, token),
                expires=moment + expires_in if expires_in else None,
            )
            if rotate:
                tokens = [
                    replace(t, revoked=True, revoked_at=moment) if t.name == name and not t.revoked else t
                    for t in tokens
                ]
            self._save([*tokens, record])
        return IssuedToken(token=token, record=record)

    def revoke(self, name: str, now: datetime | None = None) -> list[StaticToken]:
        """Revoke every unrevoked token of `name` (or the one whose id is `name`); returns them."""
        moment = now or _now()
        with self._locked():
            tokens = self._load()
            hits = [t for t in tokens if (t.name == name or t.id == name) and not t.revoked]
            if not hits:
                known = any(t.name == name or t.id == name for t in tokens)
                raise ConfigError(
                    f"{name!r} has no unrevoked token" if known else f"no token named {name!r} (see aesop tokens list)"
                )
            ids = {t.id for t in hits}
            self._save([replace(t, revoked=True, revoked_at=moment) if t.id in ids else t for t in tokens])
        return [replace(t, revoked=True, revoked_at=moment) for t in hits]


class StaticTokenVerifier:
    """Verifies static tokens against the digests in a token file, re-reading it when it changes.

    The file's identity (inode, mtime, size) is checked on every call (one `stat`), so a token
    issued, rotated or revoked with `aesop tokens` counts from the next request. A file that
    cannot be read or parsed refuses every token until it is fixed (fail closed): a revocation
    must never be lost to a typo."""

    def __init__(self, path: Path, *, resource: str | None = None, clock: Callable[[], datetime] = _now) -> None:
        self.path = Path(path)
        self.resource = resource
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._loaded = False
        self._by_id: dict[str, StaticToken] = {}
        self._dummy_salt = secrets.token_hex(16)
        self._dummy_digest = _digest(self._dummy_salt, "x")

    @classmethod
    def in_data_dir(cls, data_dir: Path, **kwargs: Any) -> StaticTokenVerifier:
        return cls(Path(data_dir) / TOKENS_FILE, **kwargs)

    def _tokens(self) -> dict[str, StaticToken]:
        try:
            st = os.stat(self.path)
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if self._loaded and stamp == self._stamp:
                return self._by_id
            try:
                tokens = _read_tokens(self.path) if stamp is not None else []
                self._by_id = {t.id: t for t in tokens}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error(
                    "token file %s cannot be read (%s); refusing all static tokens until it is fixed",
                    self.path,
                    type(exc).__name__,
                )
                self._by_id = {}
            self._stamp = stamp
            self._loaded = True
            return self._by_id

    def verify(self, token: str) -> AesopAccessToken | None:
        match = _TOKEN_RE.match(token)
        if match is None:
            return None
        record = self._tokens().get(match.group(1))
        salt, expected = (record.salt, record.digest) if record else (self._dummy_salt, self._dummy_digest)
        matches = hmac.compare_digest(_digest(salt, token), expected)
        if record is None or not matches:
            log.info("static token %s refused: unknown", match.group(1))
            return None
        status = record.status(self._clock())
        if status != "active":
            log.info("static token %s of %r refused: %s", record.id, record.name, status)
            return None
        return AesopAccessToken(
            token=token_fingerprint(token),
            client_id=record.name,
            subject=record.name,
            scopes=list(record.scopes),
            expires_at=int(record.expires.timestamp()) if record.expires else None,
            resource=self.resource,
            claims={"token_id": record.id},
            principal_id=record.name,
            principal_kind="static",
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        return self.verify(token)


# -- JWT access tokens --------------------------------------------------------------------------
_KTY_FOR_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_KEPT_CLAIMS = ("iss", "sub", "aud", "azp", "client_id", "exp", "nbf", "iat", "jti")


def _is_loopback_url(url: str) -> bool:
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
        import jwt  # noqa: F401  (fail early when PyJWT is missing)

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
        if jwks_url and not (jwks_url.startswith("https://") or _is_loopback_url(jwks_url)):
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
        from jwt import PyJWK
        from jwt.exceptions import PyJWKError

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
        import anyio
        import httpx2

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
        import jwt

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


# -- the HTTP gate ------------------------------------------------------------------------------
def protected_resource_metadata_path(resource_url: str) -> str:
    """RFC 9728 §3.1: the well-known path with the resource's path appended."""
    path = urlsplit(resource_url).path.rstrip("/")
    return WELL_KNOWN_PRM + path


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# JSON-RPC error codes (implementation-defined server error range) for requests refused before they
# reach the MCP server; the error body lets MCP clients show the reason instead of a bare status.
AUTH_ERROR_CODE = -32001
FORBIDDEN_ERROR_CODE = -32003
RATE_LIMITED_ERROR_CODE = -32029
_STATUS_TEXT = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden"}


def _jsonrpc_error(code: int, message: str, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message, "data": dict(data)}}


@dataclass
class _Challenge:
    status: int
    error: str | None
    description: str
    scope: str | None = None


class AuthenticatedHTTPApp:
    """ASGI app: bearer-token authentication in front of an MCP streamable HTTP app.

    - `GET /.well-known/oauth-protected-resource<path>` (and the root variant) serve the
      Protected Resource Metadata document, without authentication.
    - Requests to the MCP endpoint need `Authorization: Bearer <token>`. Missing → 401 with a
      challenge naming `resource_metadata` (and `scope` when scopes are required); invalid, expired
      or revoked → 401 `invalid_token`; lacking a required scope → 403 `insufficient_scope`.
    - A `tools/call` whose `Mcp-Name` header names a tool the token's scopes do not allow → 403
      `insufficient_scope` with `scope="tool:<name>"` (the one scope that operation needs), so a
      client can step up. The tool itself still checks (the guard), so this is a courtesy, not the
      enforcement.
    - Refused credentials (invalid, expired, revoked, malformed, not Bearer) are reported to
      `guard`, which counts them and writes them to the audit log in aggregate; a request without
      any credentials is the start of discovery and is not counted.
    - Expiry is re-checked here (for third-party verifiers) with the verifier's own `leeway`, so
      the gate and the verifier agree on when a token expires.
    - Everything else (other paths, ASGI lifespan) passes through unchanged; at lifespan shutdown
      the guard's counted refusals are written.

    The verifiers check a JWT's audience themselves. `check_token_resource` additionally refuses
    any token whose `AccessToken.resource` is not `resource_url` (for third-party verifiers that
    report the RFC 8707 resource but do not check it).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        resource_url: str,
        authorization_servers: Sequence[str] = (),
        required_scopes: Sequence[str] = (),
        scopes_supported: Sequence[str] | None = None,
        resource_name: str | None = "aesoperator",
        resource_documentation: str | None = None,
        scope_challenge: bool = True,
        guard: CallGuard | None = None,
        request_limiter: RateLimiter | None = None,
        check_token_resource: bool = False,
    ) -> None:
        parts = urlsplit(resource_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"resource URL {resource_url!r} must be an absolute http(s) URL without query/fragment")
        if parts.scheme == "http" and not _is_loopback_url(resource_url):
            raise ConfigError(f"resource URL {resource_url!r}: plain http is only allowed on loopback; use https")
        self.app = app
        self.verifier = verifier
        self.resource_url = resource_url
        self.mcp_path = parts.path.rstrip("/") or "/"
        origin = f"{parts.scheme}://{parts.netloc}"
        self.metadata_url = origin + protected_resource_metadata_path(resource_url)
        self.metadata_paths = {protected_resource_metadata_path(resource_url), WELL_KNOWN_PRM}
        self.required_scopes = validate_scopes(list(required_scopes)) if required_scopes else []
        self.scope_challenge = scope_challenge
        self.check_token_resource = check_token_resource
        self.guard = guard
        self.request_limiter = request_limiter
        self.leeway = token_leeway(verifier)
        document: dict[str, Any] = {"resource": resource_url}
        servers = [str(s) for s in authorization_servers]
        for server in servers:
            if not (server.startswith("https://") or _is_loopback_url(server)):
                raise ConfigError(f"authorization server {server!r} must use https")
        if servers:
            document["authorization_servers"] = servers
        supported = list(scopes_supported) if scopes_supported is not None else list(self.required_scopes)
        if supported:
            document["scopes_supported"] = supported
        document["bearer_methods_supported"] = ["header"]
        if resource_name:
            document["resource_name"] = resource_name
        if resource_documentation:
            document["resource_documentation"] = resource_documentation
        self.metadata = document
        self._metadata_body = json.dumps(document, separators=(",", ":")).encode()

    # -- ASGI ------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self.guard is not None:
            await self.app(scope, self._flushing_at_shutdown(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in self.metadata_paths:
            await self._serve_metadata(scope, send)
            return
        if (path.rstrip("/") or "/") != self.mcp_path:
            await self.app(scope, receive, send)
            return
        await self._authenticate(scope, receive, send)

    async def _authenticate(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        authorization = [v for k, v in headers if k == b"authorization"]
        if not authorization:  # no credentials: the usual first step of discovery, not a failed attempt
            await self._refuse(send, _Challenge(401, None, "Authentication required", self._required_scope_param()))
            return
        if len(authorization) > 1:
            self._authentication_failed(None, "several_headers")
            await self._refuse(send, _Challenge(400, "invalid_request", "More than one Authorization header"))
            return
        scheme, _, token = authorization[0].decode("latin-1").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            self._authentication_failed(None, "not_bearer")
            await self._refuse(send, _Challenge(401, None, "Bearer token required", self._required_scope_param()))
            return
        if not token or len(token) > _MAX_TOKEN_CHARS or not _B64TOKEN_RE.match(token):
            self._authentication_failed(token if len(token) <= _MAX_TOKEN_CHARS else None, "malformed_token")
            await self._refuse(send, _Challenge(401, "invalid_token", "The access token is malformed"))
            return
        try:
            access = await self.verifier.verify_token(token)
        except Exception as exc:  # a verifier bug must not turn into a 500 that echoes anything
            log.error("token verifier failed: %s", type(exc).__name__)
            access = None
        reason = "invalid_token"
        # Third-party verifiers may not check expiry: re-check it with the leeway the verifier allows.
        if access is not None and access.expires_at is not None and access.expires_at + self.leeway < time.time():
            access = None
        if (
            self.check_token_resource
            and access is not None
            and not _same_resource(access.resource or "", self.resource_url)
        ):
            log.info("token refused: issued for another resource")
            access, reason = None, "wrong_resource"
        if access is None:
            self._authentication_failed(token, reason)
            del token
            await self._refuse(
                send, _Challenge(401, "invalid_token", "The access token is invalid, expired or revoked")
            )
            return
        del token
        missing = [s for s in self.required_scopes if s not in access.scopes]
        if missing:
            await self._refuse(
                send, _Challenge(403, "insufficient_scope", "Additional scope required", " ".join(missing))
            )
            return
        principal = principal_from_token(access)
        tool = self._called_tool(headers)
        if tool is not None and self.scope_challenge and not principal.can_call(tool):
            if self.guard is not None:
                self.guard.record(principal, tool, None, "deny", 0, 0.0)
            await self._refuse(
                send, _Challenge(403, "insufficient_scope", f"Calling {tool} needs scope tool:{tool}", f"tool:{tool}")
            )
            return
        if self.request_limiter is not None:
            try:
                self.request_limiter.acquire(principal.id, scopes=principal.scopes)
            except RateLimited as exc:
                if self.guard is not None:
                    self.guard.refused(principal, "http_request")
                data = {"error": "rate_limited", "retry_after": round(exc.retry_after, 3)}
                message = f"{exc}: retry after {exc.retry_after:.2f} s"
                await _send_json(
                    send,
                    429,
                    _jsonrpc_error(RATE_LIMITED_ERROR_CODE, message, data),
                    [(b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode())],
                )
                return
        inner = dict(scope)
        inner["headers"] = [(k, v) for k, v in headers if k != b"authorization"]  # never passed on
        user = AuthenticatedUser(access)
        inner["user"] = user
        inner["auth"] = AuthCredentials(access.scopes)
        reset_sdk = auth_context_var.set(user)
        reset_ours = _message_token.set(access)
        try:
            await self.app(inner, receive, send)
        finally:
            _message_token.reset(reset_ours)
            auth_context_var.reset(reset_sdk)

    def _authentication_failed(self, token: str | None, reason: str) -> None:
        """Count a refused credential for the audit log (in aggregate; the token only as a keyed
        fingerprint). An audit problem must not turn a 401 into a 500."""
        if self.guard is None:
            return
        try:
            self.guard.authentication_failed(token, reason)
        except Exception as exc:
            log.error("could not count a failed authentication: %s", type(exc).__name__)

    def _flushing_at_shutdown(self, receive: Receive) -> Receive:
        """`receive` for the lifespan scope that writes counted refusals when the server stops."""
        guard = self.guard

        async def receive_and_flush() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.shutdown" and guard is not None:
                import anyio.to_thread

                await anyio.to_thread.run_sync(guard.flush)
            return message

        return receive_and_flush

    @staticmethod
    def _called_tool(headers: list[tuple[bytes, bytes]]) -> str | None:
        from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_NAME_HEADER, decode_header_value

        values = {k: v for k, v in headers if k in (MCP_METHOD_HEADER.encode(), MCP_NAME_HEADER.encode())}
        if values.get(MCP_METHOD_HEADER.encode()) != b"tools/call":
            return None
        raw = values.get(MCP_NAME_HEADER.encode())
        name = decode_header_value(raw.decode("latin-1")) if raw is not None else None
        return name if name is not None and _TOOL_NAME_RE.match(name) else None

    def _required_scope_param(self) -> str | None:
        return " ".join(self.required_scopes) or None

    async def _refuse(self, send: Send, challenge: _Challenge) -> None:
        params: list[str] = []
        if challenge.error:
            params.append(f"error={_quote(challenge.error)}")
            params.append(f"error_description={_quote(challenge.description)}")
        if challenge.scope:
            params.append(f"scope={_quote(challenge.scope)}")
        params.append(f"resource_metadata={_quote(self.metadata_url)}")
        data: dict[str, Any] = {"error": challenge.error or "unauthorized", "error_description": challenge.description}
        if challenge.scope:
            data["scope"] = challenge.scope
        data["resource_metadata"] = self.metadata_url
        header = ("Bearer " + ", ".join(params)).encode("latin-1")
        code = AUTH_ERROR_CODE if challenge.status in (400, 401) else FORBIDDEN_ERROR_CODE
        message = f"{_STATUS_TEXT.get(challenge.status, 'Refused')}: {challenge.description}"
        await _send_json(send, challenge.status, _jsonrpc_error(code, message, data), [(b"www-authenticate", header)])

    async def _serve_metadata(self, scope: Scope, send: Send) -> None:
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
            await _send_json(send, 405, {"error": "method_not_allowed"}, [(b"allow", b"GET, OPTIONS")])
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._metadata_body)).encode()),
            (b"cache-control", b"public, max-age=3600"),
            *cors,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else self._metadata_body})


def _same_resource(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


async def _send_json(
    send: Send, status: int, payload: Mapping[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *extra,
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})


async def _bind_message_token(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Server middleware: make the token of the HTTP request this message came with current
    while the message is handled (see `_message_token`)."""
    request = getattr(ctx, "request", None)
    user = getattr(request, "scope", {}).get("user") if request is not None else None
    if not isinstance(user, AuthenticatedUser):
        return await call_next(ctx)
    reset = _message_token.set(user.access_token)
    try:
        return await call_next(ctx)
    finally:
        _message_token.reset(reset)


def build_http_app(
    server: MCPServer[Any],
    verifier: TokenVerifier,
    resource_url: str,
    authorization_servers: Sequence[str] = (),
    *,
    required_scopes: Sequence[str] = (),
    scopes_supported: Sequence[str] | None = None,
    resource_name: str | None = "aesoperator",
    scope_challenge: bool = True,
    guard: CallGuard | None = None,
    request_limiter: RateLimiter | None = None,
    check_token_resource: bool = False,
    json_response: bool = True,
    stateless_http: bool = False,
    host: str = "127.0.0.1",
) -> AuthenticatedHTTPApp:
    """The ASGI app that serves `server` over streamable HTTP at `resource_url`'s path, behind
    bearer-token authentication. Run it with `serve_http` (or any ASGI server).

    `resource_url` is this server's canonical URL as clients reach it (e.g.
    `http://127.0.0.1:8765/mcp`); it is the audience JWTs must carry and the `resource` of the
    metadata document. `authorization_servers` are the issuers clients should get tokens from
    (none for static tokens only). `guard`, when given, audits calls refused here (403 on a tool
    the token may not call) and failed authentications (counted, written in aggregate, the token
    only as a keyed fingerprint). `request_limiter` limits HTTP requests per principal (429 with
    Retry-After) in addition to the guard's per-call limit.
    """
    if server.settings.auth is not None:
        raise ConfigError("build_http_app adds authentication itself: build the MCPServer without auth settings")
    if _bind_message_token not in server.middleware:
        server.middleware.insert(0, _bind_message_token)
    path = urlsplit(resource_url).path.rstrip("/") or "/"
    inner = server.streamable_http_app(
        streamable_http_path=path,
        json_response=json_response,
        stateless_http=stateless_http,
        host=host,
    )
    return AuthenticatedHTTPApp(
        inner,
        verifier=verifier,
        resource_url=resource_url,
        authorization_servers=authorization_servers,
        required_scopes=required_scopes,
        scopes_supported=scopes_supported,
        resource_name=resource_name,
        scope_challenge=scope_challenge,
        guard=guard,
        request_limiter=request_limiter,
        check_token_resource=check_token_resource,
    )


# -- running it ---------------------------------------------------------------------------------
def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str = "127.0.0.1", port: int = 0, *, allow_remote: bool = False) -> socket.socket:
    """A listening TCP socket (port 0 = any free port). Non-loopback hosts need `allow_remote`."""
    if not is_loopback_host(host) and not allow_remote:
        raise ConfigError(f"refusing to listen on {host!r}: only loopback unless remote access is enabled explicitly")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def resource_url_for(sock: socket.socket, path: str = "/mcp", host: str | None = None) -> str:
    """`http://<host>:<port><path>` for a bound socket."""
    bound_host, port = sock.getsockname()[:2]
    name = host or bound_host
    if ":" in name:
        name = f"[{name}]"
    return f"http://{name}:{port}{path}"


def _uvicorn_server(app: ASGIApp, log_level: str) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def serve_http(app: ASGIApp, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Serve `app` on an already bound socket until interrupted (blocking)."""
    _uvicorn_server(app, log_level).run(sockets=[sock])


def serve_authenticated_http(
    server: MCPServer[Any],
    verifier: TokenVerifier | Callable[[str], TokenVerifier],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    path: str = "/mcp",
    public_url: str | None = None,
    authorization_servers: Sequence[str] = (),
    allow_remote: bool = False,
    on_ready: Callable[[AuthenticatedHTTPApp], None] | None = None,
    log_level: str = "warning",
    **options: Any,
) -> None:
    """Bind host:port, put `server` behind `verifier` and serve until interrupted (blocking).

    `verifier` may also be a function of the resource URL (known only once the port is bound when
    `port` is 0), e.g. `lambda url: build_verifier(data_dir, resource_url=url, jwt_issuer=...)`.
    `public_url` is the resource URL clients use when it is not `http://host:port/path` (behind a
    TLS proxy); `options` go to `build_http_app` (guard, required_scopes, request_limiter, ...).
    `on_ready` is called with the app (its `resource_url`, `metadata_url`) once the socket is bound."""
    sock = bind_socket(host, port, allow_remote=allow_remote)
    try:
        url = public_url or resource_url_for(sock, "/" + path.strip("/"))
        if not hasattr(verifier, "verify_token"):
            verifier = verifier(url)
        app = build_http_app(server, verifier, url, authorization_servers, host=host, **options)
        if on_ready is not None:
            on_ready(app)
    except BaseException:
        sock.close()
        raise
    serve_http(app, sock, log_level=log_level)


class HTTPServerThread:
    """Runs an ASGI app with uvicorn in a background thread (tests, benchmarks).

    ```python
    sock = bind_socket()
    url = resource_url_for(sock)
    with HTTPServerThread(build_http_app(server, verifier, url), sock):
        ...  # talk to url
    ```
    """

    def __init__(self, app: ASGIApp, sock: socket.socket, *, log_level: str = "warning") -> None:
        self.sock = sock
        self._server = _uvicorn_server(app, log_level)
        self._thread = threading.Thread(target=self._run, name="aesop-http", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self.sock])
        except BaseException as exc:
            self._error = exc

    def start(self, timeout: float = 15.0) -> HTTPServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"HTTP server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("HTTP server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> HTTPServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
