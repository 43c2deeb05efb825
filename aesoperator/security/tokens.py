"""Static bearer tokens for local use (`aesop tokens add`): issuing, listing, revoking, verifying.

Only a salted HMAC-SHA256 digest of each token is kept, in `<data_dir>/tokens.json` (mode 0600),
with its principal name, scopes, creation time, optional expiry and a revoked flag. The file is
re-read when it changes on disk, so issuing, rotating and revoking take effect on the next request
without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from mcp.server.auth.provider import AccessToken

from aesoperator.engine.data_dir import make_private_dir
from aesoperator.errors import ConfigError
from aesoperator.security.principal import validate_scopes
from aesoperator.security.request_principal import AesopAccessToken, token_fingerprint

log = logging.getLogger("aesoperator.security.tokens")

TOKENS_FILE = "tokens.json"
STATIC_PREFIX = "aesop_"
_ID_HEX = 12  # hex characters of a static token's public id
_TOKEN_RE = re.compile(r"^aesop_([0-9a-f]{12})_([A-Za-z0-9_-]{32,})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


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
