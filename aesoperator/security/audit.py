"""Append-only, hash-chained, signed audit log of tool calls.

One JSON line per call in `<data_dir>/audit.log` (the format is described in `audit_format.py`):

    {"args_sha256": "...", "decision": "allow", "hash": "...", "kind": "static", "latency_ms": 12.5,
     "mac": "...", "prev": "...", "principal": "alice", "result_count": 3, "seq": 42,
     "time": "2026-...Z", "tool": "search"}

- `args_sha256` is the SHA-256 of the call's arguments as canonical JSON; the arguments themselves
  are never written. (A digest of a short, guessable argument can be confirmed by trying
  candidates; the log proves what was called, it does not hide it from someone who can guess.)
  For the memory tools (`MEMORY_CONTENT_TOOLS`) every string of the arguments is first replaced
  by its HMAC under the audit key, so without the key nothing in the log can be tested against a
  guess of what an agent remembered or erased.
- `hash` chains the records (`prev` is the previous record's hash), so changing, inserting,
  reordering or removing a record breaks the chain at that record.
- `mac` signs each record with the audit key, so a record appended by someone who can write the
  log but not read the key does not verify.
- Every group of appends also rewrites `audit.checkpoint` (last seq and hash, signed with the key),
  so records removed at the end, or the whole log and checkpoint removed while the key remains, show.

The key is `<data_dir>/audit.key` unless the `audit_key_file` setting (`AESOP_AUDIT_KEY_FILE`,
`aesop serve --audit-key-file`) puts it elsewhere: keep it where the serving user can read it but
whoever can write the data dir cannot, and a rewritten log cannot be re-signed. The key is made,
with the first checkpoint, by the first write (or `aesop audit init`); a writer refuses to start
a new key for a log that exists.

A record that cannot be written whole (a full disk, a quota, a file size limit, any I/O error
mid-write) is cut off again: the log is truncated back to its previous size, so no partial line
remains, and the append raises; once there is room the next record continues the chain.

The file is opened with O_APPEND and appends hold a thread lock and an exclusive `flock` on the log,
so several threads and processes can write one log. Records are written by group commit, as a
database writes its WAL: the first caller to arrive while no group is being written becomes the
leader, takes every record queued by the time it holds the `flock` (at most `max_group`), writes
them in one write and fsyncs once; then every caller of the group returns, each only once its own
record is on disk. `commits` counts the groups written (one fsync of the log each).

The group's checkpoint is written once per group and always fsynced, but behind the answer: a
thread of its own writes it while the leader's thread lock and `flock` stay held, and releases them
once it is on disk. So no other writer, here or in another process, and no `verify()` (which takes
a shared `flock`) ever sees the log ahead of its checkpoint, and the next group waits for it (while
it waits, more records queue and join that group). Not fsyncing the checkpoint, or writing it only
every few groups, would weaken what verification shows: records after the checkpoint on disk can be
cut off unnoticed. Writing it behind the answer does not: it names the records the group wrote
whatever happens to the file meanwhile, so a cut in between is still reported. What a crash in
between leaves (signed records after the checkpoint, which `verify()` accepts with a warning) is
what a crash between a record and its checkpoint always left; the difference is only that the call
was answered. `checkpoint_before_answer=True` makes callers wait for the checkpoint too (one more
fsync each); `settle()` waits for the last one.

A writer continues the chain from where the checkpoint says it ends: records that do not
match are left as a visible gap rather than papered over, and a writer that finds no valid
checkpoint first writes a signed `audit.restart` record, which `verify()` reports.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aesoperator.config import load_settings
from aesoperator.engine.data_dir import make_private_dir
from aesoperator.errors import AesopError, ConfigError
from aesoperator.security.audit_format import (
    AUDIT_FILE,
    CHECKPOINT_FILE,
    DECISIONS,
    FORMAT,
    GENESIS,
    KEY_FILE,
    MEMORY_CONTENT_TOOLS,
    RESTART_TOOL,
    SYSTEM_KIND,
    SYSTEM_PRINCIPAL,
    UPGRADE_TOOL,
    Checkpoint,
    Decision,
    arguments_digest,
    canonical_json,
    create_key,
    keyed_arguments,
    keyed_fingerprint,
    last_lines,
    mac_matches,
    parse_record,
    read_checkpoint,
    read_key,
    record_hash,
    record_mac,
    tail_records,
    write_checkpoint,
)
from aesoperator.security.audit_verify import VerifyReport, verify_log

log = logging.getLogger("aesoperator.security.audit")

__all__ = [
    "AUDIT_FILE",
    "CHECKPOINT_FILE",
    "DECISIONS",
    "GENESIS",
    "KEY_FILE",
    "MEMORY_CONTENT_TOOLS",
    "AuditLog",
    "Decision",
    "VerifyReport",
    "arguments_digest",
    "canonical_json",
    "default_key_path",
    "record_hash",
]

MAX_GROUP = 256  # records one group commit writes at most: bounds one write's size and a leader's work
_TAIL_WINDOW = 1000  # records after the checkpoint a writer will confirm by their signatures


def default_key_path(data_dir: Path) -> Path:
    """Where the audit key of `data_dir` is: the `audit_key_file` setting, else `<data_dir>/audit.key`."""
    configured = load_settings(data_dir=data_dir).audit_key_file
    return Path(configured).expanduser() if configured else Path(data_dir) / KEY_FILE


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class _Head:
    """Where the chain ends, and the log file state it was read from."""

    ino: int
    size: int
    seq: int
    hash: str
    signed_from: int


@dataclass
class _PendingRecord:
    """A record waiting for its group to be written: its fields, then the record or the error."""

    fields: dict[str, Any]
    record: dict[str, Any] | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Link:
    """What the next record chains to, and a record the writer must put first, if any."""

    seq: int
    hash: str
    signed_from: int
    preface: tuple[str, dict[str, Any], str] | None = None  # (tool, arguments, decision)


class AuditLog:
    """The audit log of one data dir (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        checkpoint_path: Path | None = None,
        key_path: Path | None = None,
        fsync: bool = True,
        max_group: int = MAX_GROUP,
        checkpoint_before_answer: bool = False,
    ) -> None:
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1, got {max_group}")
        self.path = Path(path)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else self.path.with_name(CHECKPOINT_FILE)
        self.key_path = Path(key_path) if key_path else self.path.with_name(KEY_FILE)
        self.fsync = fsync
        self.max_group = max_group  # records in one write at most (1: a write and fsyncs per record)
        # True: a caller also waits for the checkpoint that covers its record (one more fsync).
        self.checkpoint_before_answer = checkpoint_before_answer
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._head: _Head | None = None
        self._key: bytes | None = None
        # Group commit: records wait in `_queue`; the caller that sets `_leading` writes them all.
        self._queue: list[_PendingRecord] = []
        self._queue_changed = threading.Condition()
        self._leading = False
        self.commits = 0  # groups written: one write and one fsync of the log each
        self.records_committed = 0  # records written by those groups

    @classmethod
    def in_data_dir(cls, data_dir: Path, *, key_path: Path | None = None, **kwargs: Any) -> AuditLog:
        """The log of `data_dir`, with its key at `key_path` or where the settings say."""
        return cls(Path(data_dir) / AUDIT_FILE, key_path=key_path or default_key_path(Path(data_dir)), **kwargs)

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
        count: int | None = None,
        since: datetime | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Write one record (durably, before returning) and return it.

        `request_id` ties the record to the call's log lines and trace (see `aesoperator.telemetry`).

        With `count` (and `since`), the record stands for that many calls between `since` and
        `now` (an aggregate of refusals)."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {sorted(DECISIONS)}, got {decision!r}")
        if (count is None) != (since is None) or (count is not None and count < 1):
            raise ValueError("an aggregate record needs both count (at least 1) and since")
        latency = float(latency_ms)
        if not math.isfinite(latency) or latency < 0:
            latency = 0.0
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        if str(tool) in MEMORY_CONTENT_TOOLS:
            arguments = keyed_arguments(self._signing_key(), arguments)
        fields: dict[str, Any] = {
            "time": _iso(moment),
            "principal": str(principal),
            "kind": str(kind),
            "tool": str(tool),
            "args_sha256": arguments_digest(arguments),
            "decision": decision,
            "result_count": max(0, int(result_count or 0)),
            "latency_ms": round(latency, 3),
        }
        if request_id:
            fields["request_id"] = str(request_id)[:64]
        if count is not None and since is not None:
            fields["count"] = int(count)
            fields["since"] = _iso(since)
        return self._commit(fields)

    def open_for_writing(self) -> None:
        """Check, before serving, that records can be signed: creates the key and the first
        checkpoint for a new log, and raises ConfigError when the log exists but its key does not."""
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._writing_key(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def initialise(self) -> None:
        """Start a new, empty log here (`aesop audit init`): write its first checkpoint, and the
        key if there is none yet (an existing key, e.g. one shared by several data dirs, is used)."""
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size or self.checkpoint_path.exists():
                    raise ConfigError(f"the audit log {self.path} is already started; `aesop audit verify` checks it")
                key = read_key(self.key_path) or create_key(self.key_path)
                write_checkpoint(self.checkpoint_path, Checkpoint(0, GENESIS, 0), key, fsync=self.fsync)
                self._key = key
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def upgrade(self) -> dict[str, Any]:
        """Seal a format 1 log: check it, then append a signed `audit.upgrade` record that chains
        to its last record; every record after it is signed. Returns that record."""
        report = self.verify()
        if report.status == "intact":
            raise AesopError(f"the audit log {self.path} is already in format {FORMAT}; nothing to upgrade")
        if report.status != "upgrade_needed":
            raise AesopError(f"the audit log {self.path} cannot be upgraded: {report.problem}")
        record = self._append_locked(None)
        if record is None:
            raise AesopError(f"the audit log {self.path} changed while it was upgraded; run the upgrade again")
        return record

    def fingerprint(self, secret: str) -> str:
        """A short, keyed, non-reversible name for a secret such as a rejected bearer token."""
        return keyed_fingerprint(self._signing_key(), secret)

    def _signing_key(self) -> bytes:
        """The audit key (made with the first checkpoint of a new log, see `_writing_key`)."""
        key = self._key
        if key is None:
            with self._lock:
                fd = self._open()
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    key = self._writing_key(fd)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        return key

    def _commit(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Queue the record with `fields` and return it once it is on disk: written by this
        caller, if it becomes the leader of the next group, or by the leader of a group it joined."""
        entry = _PendingRecord(fields)
        with self._queue_changed:
            self._queue.append(entry)
        while True:
            with self._queue_changed:
                while self._leading and not entry.done:
                    self._queue_changed.wait()
                if entry.done:
                    break
                self._leading = True
            handed_over = False
            try:
                handed_over = self._lead_group()  # a full group may leave this caller's record for the next
            finally:
                if not handed_over:
                    self._end_lead()
        if entry.error is not None:
            raise entry.error
        assert entry.record is not None
        return entry.record

    def _lead_group(self) -> bool:
        """Write the queued records as one group: one write and one fsync of the log, after which
        each caller of the group is told its record (or, when nothing of the group could be
        written, the error). The group's checkpoint is then written by a thread of its own, which
        keeps the locks until it is on disk and then ends the lead (`_finish_group`); with
        `checkpoint_before_answer` it is written first, and a failure to write it fails the group.
        Returns whether the lead was handed to that thread."""
        batch: list[_PendingRecord] = []
        handed_over = False
        self._lock.acquire()
        try:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                batch = self._take_group()  # records that arrived while the flock was awaited join too
                key = self._writing_key(fd)
                link = self._next_link(fd, key)
                group = [entry.fields for entry in batch]
                if self.checkpoint_before_answer:
                    self._tell(batch, self._write_group(fd, key, link, group))
                else:
                    written, checkpoint = self._write_records(fd, key, link, group)
                    self._tell(batch, written)  # on disk: the group's callers may answer
                    finisher = threading.Thread(
                        target=self._finish_group, args=(fd, key, checkpoint), name="aesop-audit-checkpoint"
                    )
                    try:
                        finisher.start()  # not a daemon: an interpreter that exits waits for the checkpoint
                        handed_over = True
                    except RuntimeError:  # no thread to be had: the leader writes it
                        self._checkpoint_quietly(key, checkpoint)
            finally:
                if not handed_over:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException as exc:  # nothing of the group is on disk: each of its callers raises
            with self._queue_changed:
                if not batch:  # failed before the group was taken (no key, the log cannot be opened)
                    batch = self._take_group()  # the condition's lock is re-entrant
                for entry in batch:
                    if not entry.done:
                        entry.error, entry.done = exc, True
            return handed_over
        finally:
            if not handed_over:
                self._lock.release()
        return handed_over

    def _tell(self, batch: list[_PendingRecord], written: list[dict[str, Any]]) -> None:
        """Give each caller of the group its record and wake them."""
        with self._queue_changed:
            for entry, record in zip(batch, written[len(written) - len(batch) :], strict=True):
                entry.record, entry.done = record, True
            self._queue_changed.notify_all()

    def _finish_group(self, fd: int, key: bytes, checkpoint: Checkpoint) -> None:
        """Write the group's checkpoint, then release the flock and the thread lock taken by its
        leader and end the lead. Until then no other writer, here or in another process, and no
        `verify()` sees the log ahead of its checkpoint."""
        try:
            self._checkpoint_quietly(key, checkpoint)
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                self._lock.release()
                self._end_lead()

    def _checkpoint_quietly(self, key: bytes, checkpoint: Checkpoint) -> None:
        try:
            write_checkpoint(self.checkpoint_path, checkpoint, key, fsync=self.fsync)
        except OSError as exc:  # the records stand, signed; the next group's checkpoint covers them
            log.error("audit checkpoint %s could not be written: %s", self.checkpoint_path, exc)

    def settle(self) -> None:
        """Wait until the checkpoint of the last group written here is on disk (`close()` and
        every later append or `verify()` wait for it too)."""
        with self._lock:
            pass

    def _end_lead(self) -> None:
        with self._queue_changed:
            self._leading = False
            self._queue_changed.notify_all()

    def _take_group(self) -> list[_PendingRecord]:
        with self._queue_changed:
            batch, self._queue = self._queue[: self.max_group], self._queue[self.max_group :]
        return batch

    def _append_locked(self, fields: dict[str, Any] | None) -> dict[str, Any] | None:
        """Write the record with `fields` (after any record the writer must put first); with
        `fields` None, write only that first record. Returns the last record written."""
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                key = self._writing_key(fd)
                link = self._next_link(fd, key)
                written = self._write_group(fd, key, link, [] if fields is None else [fields])
                return written[-1] if written else None
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _write_group(self, fd: int, key: bytes, link: _Link, group: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`_write_records`, then the checkpoint, before returning; when the checkpoint cannot be
        written the records are cut off again and the error is raised."""
        before = os.fstat(fd).st_size
        records, checkpoint = self._write_records(fd, key, link, group)
        if records:
            try:
                write_checkpoint(self.checkpoint_path, checkpoint, key, fsync=self.fsync)
            except OSError:
                self._head = None
                self._cut_back(fd, before)
                raise
        return records

    def _write_records(
        self, fd: int, key: bytes, link: _Link, group: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], Checkpoint]:
        """Chain, sign and write the records with the fields in `group` (after any record the writer
        must put first) in one write, and fsync once. Call with the flock held. Returns the records
        written, the one put first included, and the checkpoint that covers them. On an I/O error
        the log is cut back to where it was, so none of them is left, and the error is raised."""
        fields_list = list(group)
        if link.preface is not None:
            fields_list.insert(0, _preface_fields(link.preface))
        if not fields_list:
            return [], Checkpoint(link.seq, link.hash, os.fstat(fd).st_size, signed_from=link.signed_from)
        records: list[dict[str, Any]] = []
        seq, prev = link.seq, link.hash
        for fields in fields_list:
            seq += 1
            record: dict[str, Any] = {"seq": seq, **fields, "prev": prev}
            record["hash"] = record_hash(record)
            record["mac"] = record_mac(key, record["hash"])
            records.append(record)
            prev = record["hash"]
        data = "".join(canonical_json(record) + "\n" for record in records).encode("utf-8")
        before = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
            st = os.fstat(fd)
        except OSError:
            self._cut_back(fd, before)
            raise
        last = records[-1]
        self._head = _Head(st.st_ino, st.st_size, last["seq"], last["hash"], link.signed_from)
        self.commits += 1
        self.records_committed += len(records)
        return records, Checkpoint(last["seq"], last["hash"], st.st_size, signed_from=link.signed_from)

    def _cut_back(self, fd: int, size: int) -> None:
        """Undo a record that could not be written whole (a full disk, a file size limit, an I/O
        error): the log goes back to `size` bytes, so no partial line is left and the checkpoint,
        which still names the previous record, matches it again."""
        try:
            os.ftruncate(fd, size)
            if self.fsync:
                os.fsync(fd)
        except OSError as exc:
            log.error("audit log %s could not be cut back to %d bytes after a failed write: %s", self.path, size, exc)

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
        make_private_dir(self.path.parent)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def _writing_key(self, fd: int) -> bytes:
        """The key to sign with. A new log gets a new key together with its first checkpoint, so
        later a key without a checkpoint means the checkpoint was removed. Call with the flock held."""
        if self._key is not None:
            return self._key
        key = read_key(self.key_path)
        if key is None:
            if os.fstat(fd).st_size or self.checkpoint_path.exists():
                raise ConfigError(
                    f"the audit key {self.key_path} is missing but the audit log {self.path} exists: restore the "
                    "key, or set AESOP_AUDIT_KEY_FILE (aesop serve --audit-key-file) to where it is kept; a new key "
                    "would leave every earlier record unverifiable"
                )
            key = create_key(self.key_path)
            if not self.checkpoint_path.exists():
                write_checkpoint(self.checkpoint_path, Checkpoint(0, GENESIS, 0), key, fsync=self.fsync)
        self._key = key
        return key

    def _next_link(self, fd: int, key: bytes) -> _Link:
        """Where the next record chains to.

        Normally the last record in the file. When the file disagrees with the checkpoint (records
        removed or changed at the end), the chain continues from the checkpoint instead, so the
        gap stays visible to `verify()`. Signed records after the checkpoint (a writer stopped
        before updating it) are accepted; unsigned ones are not."""
        st = os.fstat(fd)
        head = self._head
        if head is not None and head.ino == st.st_ino and head.size == st.st_size:
            return _Link(head.seq, head.hash, head.signed_from)
        state, checkpoint = read_checkpoint(self.checkpoint_path, key)
        last = _last_record(self.path)
        if state == "ok" and checkpoint is not None:
            at_checkpoint = last is not None and last["seq"] == checkpoint.seq and last["hash"] == checkpoint.hash
            if checkpoint.format == 1:
                if not at_checkpoint:
                    log.error("audit log %s does not match its checkpoint; sealing it at the checkpoint", self.path)
                upgrade = {"format": FORMAT, "legacy_records": checkpoint.seq}
                return _Link(checkpoint.seq, checkpoint.hash, checkpoint.seq + 1, (UPGRADE_TOOL, upgrade, "allow"))
            if at_checkpoint or (last is None and st.st_size == 0 and checkpoint.seq == 0):
                return _Link(checkpoint.seq, checkpoint.hash, checkpoint.signed_from)
            if last is not None and last["seq"] > checkpoint.seq and self._tail_is_signed(checkpoint, key):
                return _Link(last["seq"], last["hash"], checkpoint.signed_from)
            log.error(
                "audit log %s does not match its checkpoint (seq %d); continuing the chain from the checkpoint",
                self.path,
                checkpoint.seq,
            )
            return _Link(checkpoint.seq, checkpoint.hash, checkpoint.signed_from)
        reason = {"missing": "missing", "unreadable": "unreadable", "bad-mac": "altered"}.get(state, state)
        log.error(
            "audit checkpoint %s is %s although the key exists; writing a restart record", self.checkpoint_path, reason
        )
        if last is None:
            seq, prev, signed_from = 0, GENESIS, 1
        else:
            seq, prev = last["seq"], last["hash"]
            signed_from = 1 if "mac" in last else seq + 1
        restart = {"reason": f"checkpoint {reason}", "continued_from": seq}
        return _Link(seq, prev, signed_from, (RESTART_TOOL, restart, "error"))

    def _tail_is_signed(self, checkpoint: Checkpoint, key: bytes) -> bool:
        """Whether the records after the checkpoint's record chain from it and are all signed."""
        records = tail_records(self.path, _TAIL_WINDOW)
        start: int | None = None
        if checkpoint.seq == 0:
            if len(records) < _TAIL_WINDOW:
                start = 0  # the whole log is in view
        else:
            for i, record in enumerate(records):
                if record is not None and record["seq"] == checkpoint.seq and record["hash"] == checkpoint.hash:
                    start = i + 1
        if start is None or start >= len(records):
            return False
        prev, expected = checkpoint.hash, checkpoint.seq + 1
        for record in records[start:]:
            if (
                record is None
                or record["seq"] != expected
                or record["prev"] != prev
                or record_hash(record) != record["hash"]
                or not mac_matches(key, record)
            ):
                return False
            prev, expected = record["hash"], expected + 1
        return True

    # -- reading -------------------------------------------------------------------------------
    def verify(self) -> VerifyReport:
        """Check the chain, the checkpoint and the signatures; the report names the first problem."""
        return verify_log(self.path, self.checkpoint_path, self.key_path)

    def tail(self, n: int = 20) -> list[dict[str, Any]]:
        """The last `n` records, oldest first (lines that are not JSON records are skipped)."""
        if n <= 0:
            return []
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            lines = last_lines(fd, n)
        finally:
            os.close(fd)
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


def _preface_fields(preface: tuple[str, dict[str, Any], str]) -> dict[str, Any]:
    """The fields of a record the log writes about itself (an upgrade or restart record)."""
    tool, arguments, decision = preface
    return {
        "time": _iso(datetime.now(UTC)),
        "principal": SYSTEM_PRINCIPAL,
        "kind": SYSTEM_KIND,
        "tool": tool,
        "args_sha256": arguments_digest(arguments),
        "decision": decision,
        "result_count": int(arguments.get("legacy_records", 0)),
        "latency_ms": 0.0,
    }


def _last_record(path: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        lines = last_lines(fd, 1)
    finally:
        os.close(fd)
    return parse_record(lines[-1]) if lines else None
