"""Checking an audit log: the hash chain, the signed checkpoint and every record's signature.

What is checked, in the order problems are reported (the first one wins):

1. the hash chain, record by record: complete JSON lines, consecutive `seq`, each `hash` matching
   its record, each `prev` the hash before it (changes, insertions, removals, reordering);
2. that the key exists only together with a checkpoint, and the checkpoint's HMAC (a deleted log
   and checkpoint, or an altered checkpoint);
3. that the log reaches the checkpoint and the checkpoint's record is the one in the log
   (truncation, a rebuilt chain);
4. restart records: a writer that found no valid checkpoint says so in the log;
5. each record's signature (records forged without the key, or with their signature removed),
   records after the checkpoint included: an unsigned tail fails.

A log in the previous format (format 1, no signatures) is checked by its chain and checkpoint and
then reported as needing an upgrade.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aesoperator.security.audit_format import (
    GENESIS,
    RESTART_TOOL,
    SYSTEM_PRINCIPAL,
    Checkpoint,
    CheckpointState,
    mac_matches,
    read_checkpoint,
    read_key,
    record_hash,
    shape_problem,
)

Status = Literal["intact", "broken", "unverifiable", "upgrade_needed"]
KEY_HINT = "set AESOP_AUDIT_KEY_FILE (or pass --key-file) to where the key is kept"


@dataclass
class VerifyReport:
    """Outcome of `AuditLog.verify()`: `ok`, how many records were read, and the first problem
    (`problem`, with the record's `bad_seq` and file `bad_line` when it is one record).

    `status` says what kind of outcome it is: "intact", "broken" (evidence of tampering or
    damage), "unverifiable" (the key is missing) or "upgrade_needed" (a format 1 log whose chain
    and checkpoint verify but whose records are not signed)."""

    ok: bool
    records: int
    problem: str | None = None
    bad_seq: int | None = None
    bad_line: int | None = None
    warnings: list[str] = field(default_factory=list)
    status: Status | None = None

    def __post_init__(self) -> None:
        if self.status is None:
            self.status = "intact" if self.ok else "broken"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "records": self.records,
            "problem": self.problem,
            "bad_seq": self.bad_seq,
            "bad_line": self.bad_line,
            "warnings": list(self.warnings),
        }


@dataclass
class _Walk:
    """What one pass over the log found."""

    count: int = 0
    chain_problem: VerifyReport | None = None
    anchor: str | None = None  # hash of the record the checkpoint names
    legacy: int = 0  # unsigned records before the first signed one
    bad_signature: tuple[int, int] | None = None  # (seq, line)
    unsigned: tuple[int, int] | None = None  # unsigned record where a signature is required
    restart: tuple[int, int] | None = None


def verify_log(path: Path, checkpoint_path: Path, key_path: Path) -> VerifyReport:
    """Verify the log at `path` with its checkpoint and key (see the module docstring)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        key = read_key(key_path)
        state, checkpoint = read_checkpoint(checkpoint_path, key)
        if path.exists():
            # A first append created the log (it does so before the key and first checkpoint,
            # under its lock) while these were read without one: verify under the lock instead.
            return verify_log(path, checkpoint_path, key_path)
        return _without_log(key is not None, state, checkpoint, checkpoint_path.name, key_path)
    try:
        # Appends hold LOCK_EX: the checkpoint matches what is read, and the key (made by the first
        # append) is there if any record is; read before the lock, a first append could come between.
        fcntl.flock(fd, fcntl.LOCK_SH)
        key = read_key(key_path)
        state, checkpoint = read_checkpoint(checkpoint_path, key)
        walk = _walk(fd, key, checkpoint if state == "ok" else None)
    finally:
        os.close(fd)
    return _judge(walk, key is not None, state, checkpoint, checkpoint_path.name, key_path)


def _without_log(
    has_key: bool, state: CheckpointState, checkpoint: Checkpoint | None, name: str, key_path: Path
) -> VerifyReport:
    if checkpoint is not None and checkpoint.seq > 0 and state in ("ok", "no-key"):
        return VerifyReport(
            False, 0, f"the audit log is missing but its checkpoint records {checkpoint.seq} records", bad_seq=1
        )
    if not has_key:
        if state == "missing":
            return VerifyReport(True, 0)  # nothing was ever recorded here
        return VerifyReport(
            False,
            0,
            f"the audit key {key_path} is missing, so the checkpoint {name} cannot be checked; {KEY_HINT}",
            status="unverifiable",
        )
    if state == "missing":
        return VerifyReport(
            False,
            0,
            f"the audit key {key_path} exists but the log and its checkpoint {name} do not: they were deleted "
            "(a new log is started with `aesop audit init`, which writes its first checkpoint)",
        )
    if state != "ok":
        return _checkpoint_problem(state, 0, name)
    return VerifyReport(True, 0)


def _walk(fd: int, key: bytes | None, checkpoint: Checkpoint | None) -> _Walk:
    walk = _Walk()
    prev, expected = GENESIS, 1
    signed_seen = False
    required_from = checkpoint.signed_from if checkpoint is not None and checkpoint.format >= 2 else None

    def broken(text: str, seq: int | None, line: int) -> _Walk:
        walk.chain_problem = VerifyReport(False, walk.count, text, bad_seq=seq, bad_line=line)
        return walk

    with os.fdopen(os.dup(fd), "rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):
                return broken(f"line {lineno} is an incomplete record (cut off mid-write)", expected, lineno)
            try:
                record = json.loads(raw)
            except ValueError:
                return broken(f"line {lineno} is not a JSON record", expected, lineno)
            problem = shape_problem(record)
            if problem:
                return broken(f"line {lineno}: {problem}", expected, lineno)
            seq = record["seq"]
            if seq > expected:
                gap = f"record {expected}" if seq == expected + 1 else f"records {expected}-{seq - 1}"
                return broken(
                    f"record {seq} (line {lineno}) follows record {expected - 1}: {gap} removed or moved", seq, lineno
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
            _check_signature(walk, record, key, lineno, signed_seen, required_from)
            signed_seen = signed_seen or "mac" in record
            if checkpoint is not None and seq == checkpoint.seq:
                walk.anchor = record["hash"]
            prev, expected, walk.count = record["hash"], expected + 1, walk.count + 1
    return walk


def _check_signature(
    walk: _Walk, record: dict[str, Any], key: bytes | None, line: int, signed_seen: bool, required_from: int | None
) -> None:
    seq = record["seq"]
    if "mac" not in record:
        if signed_seen or (required_from is not None and seq >= required_from):
            walk.unsigned = walk.unsigned or (seq, line)
        else:
            walk.legacy += 1
        return
    if key is None:
        return
    if not mac_matches(key, record):
        walk.bad_signature = walk.bad_signature or (seq, line)
    elif record["tool"] == RESTART_TOOL and record["principal"] == SYSTEM_PRINCIPAL:
        walk.restart = walk.restart or (seq, line)


def _checkpoint_problem(state: CheckpointState, count: int, name: str) -> VerifyReport:
    if state == "missing":
        return VerifyReport(
            False,
            count,
            f"the checkpoint {name} is missing although the audit key exists, so removal of records "
            "(or of the whole log) cannot be ruled out",
        )
    if state == "bad-mac":
        return VerifyReport(False, count, "the checkpoint's signature does not match: it was altered")
    return VerifyReport(False, count, f"the checkpoint {name} is not readable")


def _judge(
    walk: _Walk,
    has_key: bool,
    state: CheckpointState,
    checkpoint: Checkpoint | None,
    name: str,
    key_path: Path,
) -> VerifyReport:
    count = walk.count
    if walk.chain_problem is not None:
        report = walk.chain_problem
        if walk.bad_signature is not None:
            report.warnings.append(f"record {walk.bad_signature[0]}'s signature does not match its content either")
        return report
    if not has_key:
        if count == 0 and state == "missing":
            return VerifyReport(True, 0)
        return VerifyReport(
            False,
            count,
            f"the audit key {key_path} is missing, so the checkpoint and the records' signatures cannot be "
            f"checked (the hash chain of {count} records is intact); {KEY_HINT}",
            status="unverifiable",
        )
    if state != "ok" or checkpoint is None:
        return _checkpoint_problem(state, count, name)
    if checkpoint.seq > count:
        return VerifyReport(
            False,
            count,
            f"the log was truncated: the checkpoint records {checkpoint.seq} records but the log ends at "
            f"record {count}; records {count + 1}-{checkpoint.seq} were removed",
            bad_seq=count + 1,
        )
    if checkpoint.seq and walk.anchor != checkpoint.hash:
        return VerifyReport(
            False,
            count,
            f"record {checkpoint.seq} does not match the checkpoint (it was replaced)",
            bad_seq=checkpoint.seq,
        )
    if walk.restart is not None:
        seq, line = walk.restart
        return VerifyReport(
            False,
            count,
            f"record {seq} (line {line}) is a restart record: a writer found no valid checkpoint (the log or its "
            "checkpoint had been removed or altered), so records lost before it cannot be ruled out",
            bad_seq=seq,
            bad_line=line,
        )
    if walk.bad_signature is not None:
        seq, line = walk.bad_signature
        return VerifyReport(
            False,
            count,
            f"record {seq} (line {line}) is not signed with the audit key: it was changed or written without the key",
            bad_seq=seq,
            bad_line=line,
        )
    if walk.unsigned is not None:
        seq, line = walk.unsigned
        return VerifyReport(
            False,
            count,
            f"record {seq} (line {line}) has no signature where one is required: it was written without the key",
            bad_seq=seq,
            bad_line=line,
        )
    if checkpoint.format == 1:
        return _judge_format_1(count, checkpoint)
    report = VerifyReport(True, count)
    if count > checkpoint.seq:
        report.warnings.append(
            f"{count - checkpoint.seq} signed record(s) after the checkpoint (a writer stopped before updating it)"
        )
    if walk.legacy:
        report.warnings.append(
            f"records 1-{walk.legacy} are in the previous, unsigned format; the signed record {walk.legacy + 1} "
            "seals them"
        )
    return report


def _judge_format_1(count: int, checkpoint: Checkpoint) -> VerifyReport:
    if count > checkpoint.seq:
        return VerifyReport(
            False,
            count,
            f"{count - checkpoint.seq} record(s) after the checkpoint are neither confirmed by it nor signed: they "
            "were added without the key (or a writer stopped before updating the checkpoint)",
            bad_seq=checkpoint.seq + 1,
        )
    return VerifyReport(
        False,
        count,
        f"the log is in the previous format (unsigned records): its chain and checkpoint verify for {count} "
        "records, but a record added without the key could not be told apart; run `aesop audit upgrade` to seal "
        "it and sign every record from here on (a serving process also upgrades it at its first record)",
        status="upgrade_needed",
    )
