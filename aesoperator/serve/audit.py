"""Append-only, hash-chained audit log of tool calls.

One JSON line per call in `<data_dir>/audit.log`:

    {"args_sha256": "...", "decision": "allow", "hash": "...", "kind": "static", "latency_ms": 12.5,
     "prev": "...", "principal": "alice", "result_count": 3, "seq": 42, "time": "2026-...Z",
     "tool": "search"}

- `args_sha256` is the SHA-256 of the call's arguments as canonical JSON; the arguments themselves
  are never written. (A digest of a short, guessable argument can be confirmed by trying
  candidates; the log proves what was called, it does not hide it from someone who can guess.)
- `hash` is the SHA-256 of the record's canonical JSON without `hash`; `prev` is the previous
  record's hash (64 zeros for the first) and `seq` counts from 1. Changing, inserting, reordering
  or removing a record breaks the chain at that record.
- Removing records at the end leaves a shorter, still consistent chain, so every append also
  rewrites `audit.checkpoint` (last seq, hash and file size, with an HMAC under `audit.key`);
  `verify()` reports a log that ends before its checkpoint as truncated.

The file is opened with O_APPEND, each record is one write followed by fsync, and appends hold a
thread lock and an exclusive `flock` on the log, so several threads and several processes can
write one log. Anyone who can rewrite the log, the checkpoint and the key can forge all three;
keep the key outside the data dir (`key_path`) for stronger evidence.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from aesoperator.errors import AesopError

log = logging.getLogger("aesoperator.serve.audit")

AUDIT_FILE = "audit.log"
CHECKPOINT_FILE = "audit.checkpoint"
KEY_FILE = "audit.key"
GENESIS = "0" * 64

Decision = Literal["allow", "deny", "error", "rate_limited"]
DECISIONS: frozenset[str] = frozenset(get_args(Decision))
_FIELDS: dict[str, type | tuple[type, ...]] = {
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


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text: the same value always gives the same string."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def arguments_digest(arguments: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of a call's arguments."""
    return hashlib.sha256(canonical_json(arguments).encode("utf-8")).hexdigest()


def record_hash(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


@dataclass
class VerifyReport:
    """Outcome of `AuditLog.verify()`: `ok`, how many records were read, and the first problem
    (`problem`, with the record's `bad_seq` and file `bad_line` when it is one record)."""

    ok: bool
    records: int
    problem: str | None = None
    bad_seq: int | None = None
    bad_line: int | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "problem": self.problem,
            "bad_seq": self.bad_seq,
            "bad_line": self.bad_line,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class _Checkpoint:
    seq: int
    hash: str
    size: int


@dataclass
class _Head:
    ino: int
    size: int
    seq: int
    hash: str


class AuditLog:
    """The audit log of one data dir (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        checkpoint_path: Path | None = None,
        key_path: Path | None = None,
        fsync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else self.path.with_name(CHECKPOINT_FILE)
        self.key_path = Path(key_path) if key_path else self.path.with_name(KEY_FILE)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._head: _Head | None = None
        self._key: bytes | None = None

    @classmethod
    def in_data_dir(cls, data_dir: Path, **kwargs: Any) -> AuditLog:
        return cls(Path(data_dir) / AUDIT_FILE, **kwargs)

    # -- writing -------------------------------------------------------------------------------
    def append(
        self,
        *,
        principal: str,
        tool: str,
        arguments: Any,
        decision: str,
        result_count: int = 0,
        latency_ms: float = 0.0,
        kind: str = "",
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Write one record (durably, before returning) and return it."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {sorted(DECISIONS)}, got {decision!r}")
        latency = float(latency_ms)
        if not math.isfinite(latency) or latency < 0:
            latency = 0.0
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                seq, prev = self._next_link(fd)
                record: dict[str, Any] = {
                    "seq": seq + 1,
                    "time": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                    "principal": str(principal),
                    "kind": str(kind),
                    "tool": str(tool),
                    "args_sha256": arguments_digest(arguments),
                    "decision": decision,
                    "result_count": max(0, int(result_count or 0)),
                    "latency_ms": round(latency, 3),
                    "prev": prev,
                }
                record["hash"] = record_hash(record)
                data = (canonical_json(record) + "\n").encode("utf-8")
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if self.fsync:
                    os.fsync(fd)
                st = os.fstat(fd)
                self._write_checkpoint(_Checkpoint(record["seq"], record["hash"], st.st_size))
                self._head = _Head(st.st_ino, st.st_size, record["seq"], record["hash"])
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        return record

    def _open(self) -> int:
        """The append descriptor, reopened if the file was replaced or removed meanwhile."""
        if self._fd is not None:
            try:
                same = os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return self._fd
            os.close(self._fd)
            self._fd = None
            self._head = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def _next_link(self, fd: int) -> tuple[int, str]:
        """(seq, hash) of the record the next one chains to.

        Normally the last record in the file. When the file disagrees with the checkpoint (records
        removed or changed at the end), the chain continues from the checkpoint instead, so the
        gap stays visible to `verify()` rather than being papered over by the new record."""
        st = os.fstat(fd)
        head = self._head
        if head is not None and head.ino == st.st_ino and head.size == st.st_size:
            return head.seq, head.hash
        checkpoint = self._read_checkpoint()
        last = _last_record(self.path)
        if checkpoint is None:
            if last is None:
                if st.st_size:
                    log.error("audit log %s has no readable last record; starting a new chain", self.path)
                return 0, GENESIS
            if last["seq"] > 1 and self.checkpoint_path.exists():
                log.error(
                    "audit checkpoint %s is not valid; continuing from the log's last record", self.checkpoint_path
                )
            return last["seq"], last["hash"]
        if last is not None and last["seq"] == checkpoint.seq and last["hash"] == checkpoint.hash:
            return last["seq"], last["hash"]
        if last is not None and last["seq"] > checkpoint.seq:
            # a writer stopped between its record and its checkpoint; accept the records after the
            # checkpoint only if the one the checkpoint names is still there, unchanged
            anchor = _find_record(self.path, checkpoint.seq, max_back=1000)
            if anchor is not None and anchor.get("hash") == checkpoint.hash:
                return last["seq"], last["hash"]
        log.error(
            "audit log %s does not match its checkpoint (seq %d); continuing the chain from the checkpoint",
            self.path,
            checkpoint.seq,
        )
        return checkpoint.seq, checkpoint.hash

    # -- checkpoint ----------------------------------------------------------------------------
    def _signing_key(self, create: bool) -> bytes | None:
        if self._key is not None:
            return self._key
        try:
            self._key = bytes.fromhex(self.key_path.read_text(encoding="ascii").strip())
        except FileNotFoundError:
            if not create:
                return None
            self.key_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process created it first
                return self._signing_key(create=False)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            return self._signing_key(create=False)
        except ValueError:
            raise AesopError(f"audit key {self.key_path} is not valid hex") from None
        return self._key

    def _mac(self, key: bytes, checkpoint: _Checkpoint) -> str:
        body = canonical_json({"seq": checkpoint.seq, "hash": checkpoint.hash, "size": checkpoint.size})
        return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()

    def _write_checkpoint(self, checkpoint: _Checkpoint) -> None:
        key = self._signing_key(create=True)
        assert key is not None
        payload = {
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "size": checkpoint.size,
            "mac": self._mac(key, checkpoint),
        }
        tmp = self.checkpoint_path.with_name(f".{self.checkpoint_path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (canonical_json(payload) + "\n").encode("utf-8"))
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.checkpoint_path)

    def _read_checkpoint(self) -> _Checkpoint | None:
        """The checkpoint if it exists and its HMAC is right, else None."""
        state, checkpoint = self._checkpoint_state()
        return checkpoint if state == "ok" else None

    def _checkpoint_state(self) -> tuple[str, _Checkpoint | None]:
        try:
            data = json.loads(self.checkpoint_path.read_text(encoding="utf-8"))
            checkpoint = _Checkpoint(int(data["seq"]), str(data["hash"]), int(data["size"]))
            mac = str(data["mac"])
        except FileNotFoundError:
            return "missing", None
        except (ValueError, KeyError, TypeError):
            return "unreadable", None
        key = self._signing_key(create=False)
        if key is None:
            return "no-key", checkpoint
        if not hmac.compare_digest(mac, self._mac(key, checkpoint)):
            return "bad-mac", checkpoint
        return "ok", checkpoint

    # -- reading -------------------------------------------------------------------------------
    @contextmanager
    def _shared(self) -> Iterator[int | None]:
        """A read descriptor holding a shared lock (None when there is no log yet)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield fd
        finally:
            os.close(fd)

    def verify(self) -> VerifyReport:
        """Check the whole chain and the checkpoint; the report names the first broken record."""
        with self._shared() as fd:
            checkpoint_state, checkpoint = self._checkpoint_state()
            if fd is None:
                if checkpoint is not None and checkpoint.seq > 0:
                    return VerifyReport(
                        False,
                        0,
                        f"the audit log is missing but its checkpoint records {checkpoint.seq} records",
                        bad_seq=1,
                    )
                return VerifyReport(True, 0)
            report, anchor = self._verify_chain(fd, checkpoint)
        if not report.ok:
            return report
        return self._verify_checkpoint(report, checkpoint_state, checkpoint, anchor)

    def _verify_chain(self, fd: int, checkpoint: _Checkpoint | None) -> tuple[VerifyReport, str | None]:
        """Walk the chain; also return the hash of the record the checkpoint names."""
        prev, expected, count = GENESIS, 1, 0
        anchor: str | None = None

        def broken(text: str, seq: int | None, line: int) -> tuple[VerifyReport, str | None]:
            return VerifyReport(False, count, text, bad_seq=seq, bad_line=line), anchor

        with os.fdopen(os.dup(fd), "rb") as handle:
            for lineno, raw in enumerate(handle, 1):
                if not raw.endswith(b"\n"):
                    return broken(f"line {lineno} is an incomplete record (cut off mid-write)", expected, lineno)
                try:
                    record = json.loads(raw)
                except ValueError:
                    return broken(f"line {lineno} is not a JSON record", expected, lineno)
                problem = _shape_problem(record)
                if problem:
                    return broken(f"line {lineno}: {problem}", expected, lineno)
                seq = record["seq"]
                if seq > expected:
                    gap = f"record {expected}" if seq == expected + 1 else f"records {expected}-{seq - 1}"
                    return broken(
                        f"record {seq} (line {lineno}) follows record {expected - 1}: {gap} removed or moved",
                        seq,
                        lineno,
                    )
                if seq < expected:
                    return broken(
                        f"record {seq} (line {lineno}) is out of order or inserted: record {expected} was expected",
                        seq,
                        lineno,
                    )
                if record_hash(record) != record["hash"]:
                    return broken(
                        f"record {seq} (line {lineno}) was changed: its hash does not match its content", seq, lineno
                    )
                if record["prev"] != prev:
                    return broken(
                        f"record {seq} (line {lineno}) does not chain to the record before it "
                        "(a record was changed, replaced or removed)",
                        seq,
                        lineno,
                    )
                if checkpoint is not None and seq == checkpoint.seq:
                    anchor = record["hash"]
                prev, expected, count = record["hash"], expected + 1, count + 1
        return VerifyReport(True, count), anchor

    def _verify_checkpoint(
        self, report: VerifyReport, state: str, checkpoint: _Checkpoint | None, anchor: str | None
    ) -> VerifyReport:
        count = report.records
        if state == "missing":
            if count:
                return VerifyReport(
                    False,
                    count,
                    f"the checkpoint {self.checkpoint_path.name} is missing, so removal of records at the end "
                    "cannot be ruled out",
                )
            return report
        if state == "unreadable" or checkpoint is None:
            return VerifyReport(False, count, f"the checkpoint {self.checkpoint_path.name} is not readable")
        if state == "no-key":
            return VerifyReport(
                False, count, f"the checkpoint key {self.key_path} is missing; the checkpoint cannot be checked"
            )
        if state == "bad-mac":
            return VerifyReport(False, count, "the checkpoint's signature does not match: it was altered")
        if checkpoint.seq > count:
            return VerifyReport(
                False,
                count,
                f"the log was truncated: the checkpoint records {checkpoint.seq} records but the log ends at "
                f"record {count}; records {count + 1}-{checkpoint.seq} were removed",
                bad_seq=count + 1,
            )
        if checkpoint.seq and anchor != checkpoint.hash:
            return VerifyReport(
                False,
                count,
                f"record {checkpoint.seq} does not match the checkpoint (it was replaced)",
                bad_seq=checkpoint.seq,
            )
        if count > checkpoint.seq:
            report.warnings.append(
                f"{count - checkpoint.seq} record(s) after the checkpoint (a writer stopped before updating it); "
                "the next append confirms them"
            )
        return report

    def tail(self, n: int = 20) -> list[dict[str, Any]]:
        """The last `n` records, oldest first (lines that are not JSON records are skipped)."""
        if n <= 0:
            return []
        with self._shared() as fd:
            if fd is None:
                return []
            lines = _last_lines(fd, n)
        records = []
        for raw in lines:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self._head = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shape_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    for name, kind in _FIELDS.items():
        value = record.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, kind):
            return f"field {name!r} is missing or has the wrong type"
    extra = set(record) - set(_FIELDS)
    if extra:
        return f"unexpected field(s) {sorted(extra)}"
    if record["decision"] not in DECISIONS:
        return f"unknown decision {record['decision']!r}"
    return None


def _last_lines(fd: int, n: int, block: int = 65536) -> list[bytes]:
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


def _last_record(path: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        lines = _last_lines(fd, 1)
    finally:
        os.close(fd)
    if not lines:
        return None
    try:
        record = json.loads(lines[-1])
    except ValueError:
        return None
    return record if _shape_problem(record) is None else None


def _find_record(path: Path, seq: int, max_back: int) -> dict[str, Any] | None:
    """The record with `seq` among the last `max_back` lines, if there."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        lines = _last_lines(fd, max_back)
    finally:
        os.close(fd)
    for raw in reversed(lines):
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("seq") == seq:
            return record
    return None
