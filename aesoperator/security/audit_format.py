"""What the audit log's files hold: records, the signing key and the checkpoint.

Shared by the writer (`audit.py`) and the verifier (`audit_verify.py`); no file is written here
except the key and the checkpoint, which are small and replaced whole.

Record (one JSON line, format 2):

    {"args_sha256": "...", "decision": "allow", "hash": "...", "kind": "static", "latency_ms": 12.5,
     "mac": "...", "prev": "...", "principal": "alice", "result_count": 3, "seq": 42,
     "time": "2026-...Z", "tool": "search"}

- `hash` is the SHA-256 of the record's canonical JSON without `hash` and `mac`; `prev` is the
  previous record's hash (64 zeros for the first); `seq` counts from 1.
- `mac` is an HMAC-SHA256 of `hash` under the audit key, so only a key holder can write a record
  that verifies. Format 1 records (before signing) have no `mac`.
- `request_id` (optional; records written before it have none) is the id the call's log lines
  and trace carry too.
- An aggregate record stands for `count` refused calls between `since` and `time` (refusals and
  failed authentications are recorded that way, so a flood cannot fill the disk).

Checkpoint (`audit.checkpoint`, rewritten after every group of appends): the last record's seq and hash,
the log's size, the seq of the first signed record (`signed_from`) and `format`, under an HMAC with
the same key. Format 1 checkpoints have neither `format` nor `signed_from`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from aesoperator.errors import ConfigError

AUDIT_FILE = "audit.log"
CHECKPOINT_FILE = "audit.checkpoint"
KEY_FILE = "audit.key"
GENESIS = "0" * 64
FORMAT = 2

# Records the log writes about itself (principal SYSTEM_PRINCIPAL, kind "system").
SYSTEM_PRINCIPAL = "aesop"
SYSTEM_KIND = "system"
UPGRADE_TOOL = "audit.upgrade"  # the records before it are format 1 (unsigned), sealed by this one
RESTART_TOOL = "audit.restart"  # the writer could not confirm where the chain ended: evidence of tampering

Decision = Literal["allow", "deny", "error", "rate_limited"]
DECISIONS: frozenset[str] = frozenset(get_args(Decision))
FIELDS: dict[str, type | tuple[type, ...]] = {
    "seq": int,
    "time": str,
    "principal": str,
    "kind": str,
    "tool": str,
    "args_sha256": str,
    "decision": str,
    "result_count": int,
    "latency_ms": (int, float),
    "prev": str,
    "hash": str,
}
SIGNED_FIELDS: dict[str, type | tuple[type, ...]] = {"mac": str}
AGGREGATE_FIELDS: dict[str, type | tuple[type, ...]] = {"count": int, "since": str}
# The id that the call's log lines and trace carry too (records written before it have none; it is
# hashed and signed like every other field, so old and new records verify alike).
CONTEXT_FIELDS: dict[str, type | tuple[type, ...]] = {"request_id": str}
_RECORD_CONTEXT = b"aesop-audit-record\x00"
_FINGERPRINT_CONTEXT = b"aesop-audit-fingerprint\x00"
_ARGUMENT_CONTEXT = b"aesop-audit-argument\x00"
# Tools whose arguments carry what agents remember (content, the text a memory is looked up or
# forgotten by, memory-graph names and observations). Their `args_sha256` is the SHA-256 of the
# arguments with every string replaced by its HMAC under the audit key (`keyed_arguments`), so a
# record cannot be tested against guesses of the text without the key, and a purge that erases a
# memory leaves nothing in the log that a guess of its (possibly short) text could be checked
# against. Records are never rewritten, so the chain and the signatures keep verifying.
# `forget.purge` is the record a purge adds: who erased in which namespace, when, and how many
# items (its `result_count`), with no content.
MEMORY_CONTENT_TOOLS: frozenset[str] = frozenset(
    {
        "remember",
        "recall",
        "forget",
        "forget.purge",
        "update_memory",
        "memory_history",
        "create_entities",
        "create_relations",
        "add_observations",
        "delete_entities",
        "delete_observations",
        "delete_relations",
        "search_nodes",
        "open_nodes",
    }
)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text: the same value always gives the same string."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def arguments_digest(arguments: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of a call's arguments."""
    return hashlib.sha256(canonical_json(arguments).encode("utf-8")).hexdigest()


def keyed_arguments(key: bytes, arguments: Any) -> Any:
    """`arguments` with every string value (at any depth) replaced by `hmac:` and its
    HMAC-SHA256 under the audit key; keys, numbers, booleans and the structure are kept."""
    if isinstance(arguments, str):
        mac = hmac.new(key, _ARGUMENT_CONTEXT + arguments.encode("utf-8", "surrogateescape"), hashlib.sha256)
        return "hmac:" + mac.hexdigest()
    if isinstance(arguments, Mapping):
        return {str(k): keyed_arguments(key, v) for k, v in arguments.items()}
    if isinstance(arguments, list | tuple):
        return [keyed_arguments(key, v) for v in arguments]
    return arguments


def record_hash(record: Mapping[str, Any]) -> str:
    """The chain hash of a record: SHA-256 of its canonical JSON without `hash` and `mac`."""
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def record_mac(key: bytes, chain_hash: str) -> str:
    """The signature of a record: HMAC-SHA256 of its chain hash under the audit key."""
    return hmac.new(key, _RECORD_CONTEXT + chain_hash.encode("ascii"), hashlib.sha256).hexdigest()


def mac_matches(key: bytes, record: Mapping[str, Any]) -> bool:
    mac = record.get("mac")
    return isinstance(mac, str) and hmac.compare_digest(mac, record_mac(key, str(record.get("hash", ""))))


def keyed_fingerprint(key: bytes, secret: str, length: int = 12) -> str:
    """A short name for a secret (a rejected token) that cannot be reversed or tested against
    guesses without the audit key, so the log never helps anyone recover the secret."""
    digest = hmac.new(key, _FINGERPRINT_CONTEXT + secret.encode("utf-8", "surrogateescape"), hashlib.sha256)
    return digest.hexdigest()[:length]


def shape_problem(record: Any) -> str | None:
    """Why `record` is not a well-formed record (format 1 or 2), or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for name, kind in FIELDS.items():
        value = record.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, kind):
            return f"field {name!r} is missing or has the wrong type"
    optional = {**SIGNED_FIELDS, **AGGREGATE_FIELDS, **CONTEXT_FIELDS}
    for name, kind in optional.items():
        if name in record and (isinstance(record[name], bool) or not isinstance(record[name], kind)):
            return f"field {name!r} has the wrong type"
    if ("count" in record) != ("since" in record):
        return "an aggregate record needs both 'count' and 'since'"
    extra = set(record) - set(FIELDS) - set(optional)
    if extra:
        return f"unexpected field(s) {sorted(extra)}"
    if record["decision"] not in DECISIONS:
        return f"unknown decision {record['decision']!r}"
    return None


# -- the key ------------------------------------------------------------------------------------
def read_key(path: Path) -> bytes | None:
    """The audit key at `path` (hex text), or None when there is none."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"audit key {path} cannot be read ({exc}); fix its permissions or restore it") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"audit key {path} is not hex text; restore the original key file") from None
    if len(key) < 16:
        raise ConfigError(f"audit key {path} is too short ({len(key)} bytes); restore the original key file")
    return key


def create_key(path: Path) -> bytes:
    """Create a new random key at `path` (mode 0600; its folder 0700 when created). If another
    process created it first, that key is returned."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = read_key(path)
        if key is None:
            raise ConfigError(f"audit key {path} vanished while it was being created") from None
        return key
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    key = read_key(path)
    assert key is not None
    return key


# -- the checkpoint -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """Where the chain ends: the last record's `seq` and `hash` and the log's `size` then."""

    seq: int
    hash: str
    size: int
    format: int = FORMAT
    signed_from: int = 1  # the first record that must carry a signature

    def body(self) -> dict[str, Any]:
        if self.format == 1:
            return {"seq": self.seq, "hash": self.hash, "size": self.size}
        return {
            "format": self.format,
            "seq": self.seq,
            "hash": self.hash,
            "size": self.size,
            "signed_from": self.signed_from,
        }

    def mac(self, key: bytes) -> str:
        return hmac.new(key, canonical_json(self.body()).encode("utf-8"), hashlib.sha256).hexdigest()


CheckpointState = Literal["ok", "missing", "unreadable", "no-key", "bad-mac"]


def read_checkpoint(path: Path, key: bytes | None) -> tuple[CheckpointState, Checkpoint | None]:
    """The checkpoint at `path` and whether it can be trusted ("ok": its HMAC is right)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fmt = int(data.get("format", 1))
        checkpoint = Checkpoint(
            seq=int(data["seq"]),
            hash=str(data["hash"]),
            size=int(data["size"]),
            format=fmt,
            signed_from=int(data["signed_from"]) if fmt >= 2 else int(data["seq"]) + 1,
        )
        mac = str(data["mac"])
    except FileNotFoundError:
        return "missing", None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "unreadable", None
    if checkpoint.format not in (1, FORMAT):
        return "unreadable", None
    if key is None:
        return "no-key", checkpoint
    if not hmac.compare_digest(mac, checkpoint.mac(key)):
        return "bad-mac", checkpoint
    return "ok", checkpoint


def write_checkpoint(path: Path, checkpoint: Checkpoint, key: bytes, *, fsync: bool = True) -> None:
    """Replace the checkpoint atomically (temp file, fsync, rename)."""
    payload = {**checkpoint.body(), "mac": checkpoint.mac(key)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview((canonical_json(payload) + "\n").encode("utf-8"))
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written checkpoint never replaces the good one
        raise


# -- reading the log's end ----------------------------------------------------------------------
def last_lines(fd: int, n: int, block: int = 65536) -> list[bytes]:
    """The last `n` complete lines of the file behind `fd`."""
    end = os.fstat(fd).st_size
    data = b""
    pos = end
    while pos > 0 and data.count(b"\n") <= n:
        step = min(block, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # an incomplete last line is not a record
    if pos > 0 and lines:
        lines = lines[1:]  # the first piece may be a partial line
    return lines[-n:]


def parse_record(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if shape_problem(record) is None else None


def tail_records(path: Path, n: int) -> list[dict[str, Any] | None]:
    """The last `n` lines of the log as records (None for a line that is not a record)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    try:
        return [parse_record(raw) for raw in last_lines(fd, n)]
    finally:
        os.close(fd)
