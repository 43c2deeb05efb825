"""The hash-chained audit log: appends, verification, tamper detection (also via the CLI)."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aesoperator.cli import app
from aesoperator.serve.audit import GENESIS, AuditLog, arguments_digest, canonical_json, record_hash
from aesoperator.serve.guard import CallGuard
from aesoperator.serve.principal import Principal

pytestmark = pytest.mark.timeout(120)


def _fill(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append(
            principal=f"user{i % 3}",
            kind="static",
            tool="search",
            arguments={"query": f"question {i}", "k": 5},
            decision="allow" if i % 4 else "deny",
            result_count=i,
            latency_ms=1.5 * i,
        )


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines(keepends=True)


def _write(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("".join(lines))


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    log = AuditLog.in_data_dir(tmp_path)
    _fill(log, 6)
    return log


def test_records_chain_and_verify(audit: AuditLog) -> None:
    records = [json.loads(line) for line in _lines(audit)]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(records):
        assert after["prev"] == before["hash"]
    for r in records:
        assert r["hash"] == record_hash(r)
        assert set(r) == {
            "seq",
            "time",
            "principal",
            "kind",
            "tool",
            "args_sha256",
            "decision",
            "result_count",
            "latency_ms",
            "prev",
            "hash",
        }
    assert records[1]["args_sha256"] == arguments_digest({"k": 5, "query": "question 1"})  # key order irrelevant
    assert "question" not in audit.path.read_text()  # arguments only as a digest
    report = audit.verify()
    assert report.ok and report.records == 6 and report.problem is None and not report.warnings
    assert audit.path.stat().st_mode & 0o777 == 0o600


def test_tail(audit: AuditLog) -> None:
    assert [r["seq"] for r in audit.tail(2)] == [5, 6]
    assert [r["seq"] for r in audit.tail(100)] == [1, 2, 3, 4, 5, 6]
    assert audit.tail(0) == []
    assert AuditLog(audit.path.with_name("none.log")).tail(5) == []


def test_changed_record_is_detected(audit: AuditLog) -> None:
    lines = _lines(audit)
    record = json.loads(lines[2])
    record["decision"] = "allow" if record["decision"] != "allow" else "deny"
    lines[2] = canonical_json(record) + "\n"
    _write(audit, lines)
    report = audit.verify()
    assert not report.ok and report.bad_seq == 3 and "changed" in (report.problem or "")


def test_changed_record_with_recomputed_hash_is_detected(audit: AuditLog) -> None:
    lines = _lines(audit)
    record = json.loads(lines[2])
    record["principal"] = "someone-else"
    record["hash"] = record_hash(record)
    lines[2] = canonical_json(record) + "\n"
    _write(audit, lines)
    report = audit.verify()
    assert not report.ok and report.bad_seq == 4 and "does not chain" in (report.problem or "")


def test_removed_record_is_detected(audit: AuditLog) -> None:
    lines = _lines(audit)
    del lines[3]
    _write(audit, lines)
    report = audit.verify()
    assert not report.ok and report.bad_seq == 5 and "record 4" in (report.problem or "")


def test_inserted_record_is_detected(audit: AuditLog) -> None:
    lines = _lines(audit)
    forged = json.loads(lines[1])
    forged["tool"] = "remember"
    forged["hash"] = record_hash(forged)
    lines.insert(2, canonical_json(forged) + "\n")
    _write(audit, lines)
    report = audit.verify()
    assert not report.ok and report.bad_line == 3 and "inserted" in (report.problem or "")


def test_inserted_and_renumbered_chain_is_caught_by_the_checkpoint(audit: AuditLog) -> None:
    """A forger who inserts a record and rebuilds every later hash still cannot match the
    signed checkpoint."""
    records = [json.loads(line) for line in _lines(audit)]
    forged = dict(records[1], tool="remember")
    rebuilt: list[dict[str, Any]] = []
    prev = GENESIS
    for i, r in enumerate([*records[:2], forged, *records[2:]], 1):
        r = dict(r, seq=i, prev=prev)
        r["hash"] = record_hash(r)
        prev = r["hash"]
        rebuilt.append(r)
    _write(audit, [canonical_json(r) + "\n" for r in rebuilt])
    report = audit.verify()
    assert not report.ok and report.bad_seq == 6 and "checkpoint" in (report.problem or "")


def test_reordered_records_are_detected(audit: AuditLog) -> None:
    lines = _lines(audit)
    lines[2], lines[3] = lines[3], lines[2]
    _write(audit, lines)
    report = audit.verify()
    assert not report.ok and report.bad_line == 3


def test_truncation_at_the_end_is_detected(audit: AuditLog) -> None:
    lines = _lines(audit)
    _write(audit, lines[:4])
    report = audit.verify()
    assert not report.ok and report.bad_seq == 5 and "truncated" in (report.problem or "")
    assert report.records == 4


def test_append_after_truncation_keeps_the_gap_visible(audit: AuditLog) -> None:
    _write(audit, _lines(audit)[:4])
    fresh = AuditLog(audit.path)  # another process, say
    _fill(fresh, 1)
    report = fresh.verify()
    assert not report.ok and report.bad_seq == 7 and "records 5-6" in (report.problem or "")


def test_checkpoint_tampering_and_loss_are_detected(audit: AuditLog) -> None:
    checkpoint = json.loads(audit.checkpoint_path.read_text())
    checkpoint["seq"] = 4
    audit.checkpoint_path.write_text(json.dumps(checkpoint))
    report = audit.verify()
    assert not report.ok and "signature" in (report.problem or "")
    audit.checkpoint_path.unlink()
    report = audit.verify()
    assert not report.ok and "missing" in (report.problem or "")


def test_torn_last_line_is_reported(audit: AuditLog) -> None:
    with audit.path.open("a") as handle:
        handle.write('{"seq": 7, "time"')
    report = audit.verify()
    assert not report.ok and report.bad_line == 7 and "incomplete" in (report.problem or "")


def test_concurrent_writers_threads_and_processes(tmp_path: Path) -> None:
    log = AuditLog.in_data_dir(tmp_path)
    threads = [threading.Thread(target=_fill, args=(log, 25, i * 25)) for i in range(4)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child_append, args=(str(tmp_path), 25)) for _ in range(2)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    report = AuditLog.in_data_dir(tmp_path).verify()
    assert report.ok and report.records == 150, report


def _child_append(data_dir: str, n: int) -> None:
    _fill(AuditLog.in_data_dir(Path(data_dir)), n)


def test_guard_records_through_the_audit_log(tmp_path: Path) -> None:
    log = AuditLog.in_data_dir(tmp_path)
    guard = CallGuard(log, None)
    alice = Principal.from_scopes("alice", ["read:default", "tool:search"])
    guard.admit(alice, "search")
    record = guard.record(alice, "search", {"query": "x"}, "allow", 3, 12.345)
    assert record is not None and record["principal"] == "alice" and record["kind"] == "static"
    assert record["result_count"] == 3 and record["latency_ms"] == 12.345
    with pytest.raises(ValueError, match="decision"):
        guard.record(alice, "search", {}, "maybe", 0, 0)
    assert CallGuard(None, None).record(alice, "search", {}, "allow", 0, 0) is None


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_verify_and_tail(tmp_path: Path) -> None:
    log = AuditLog.in_data_dir(tmp_path)
    _fill(log, 5)
    runner = CliRunner()
    ok = runner.invoke(app, ["-d", str(tmp_path), "audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "intact" in ok.output and "5 records" in ok.output

    tail = runner.invoke(app, ["-d", str(tmp_path), "--json", "audit", "tail", "-n", "2"])
    assert tail.exit_code == 0
    assert [r["seq"] for r in json.loads(tail.stdout)] == [4, 5]

    lines = _lines(log)
    record = json.loads(lines[1])
    record["result_count"] = 999
    lines[1] = canonical_json(record) + "\n"
    _write(log, lines)
    broken = runner.invoke(app, ["-d", str(tmp_path), "audit", "verify"])
    assert broken.exit_code == 1
    assert "record 2" in broken.output and "changed" in broken.output

    _write(log, lines[:1])
    as_json = runner.invoke(app, ["-d", str(tmp_path), "--json", "audit", "verify"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["bad_seq"] == 2


def test_cli_tokens(tmp_path: Path) -> None:
    runner = CliRunner()
    added = runner.invoke(
        app,
        [
            "-d",
            str(tmp_path),
            "--json",
            "tokens",
            "add",
            "ci",
            "--scope",
            "read:default",
            "--scope",
            "tool:search",
            "--expires-in",
            "30d",
        ],
    )
    assert added.exit_code == 0, added.output
    issued = json.loads(added.stdout)
    assert issued["token"].startswith("aesop_") and issued["expires"]
    assert issued["token"] not in (tmp_path / "tokens.json").read_text()
    listed = runner.invoke(app, ["-d", str(tmp_path), "--json", "tokens", "list"])
    assert [r["name"] for r in json.loads(listed.stdout)] == ["ci"]
    assert issued["token"] not in listed.stdout
    assert runner.invoke(app, ["-d", str(tmp_path), "tokens", "revoke", "ci"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["-d", str(tmp_path), "--json", "tokens", "list"]).stdout) == []
    every = json.loads(runner.invoke(app, ["-d", str(tmp_path), "--json", "tokens", "list", "--all"]).stdout)
    assert every[0]["status"] == "revoked"
