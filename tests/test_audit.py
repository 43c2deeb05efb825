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
from aesoperator.security.audit import GENESIS, AuditLog, arguments_digest, canonical_json, record_hash
from aesoperator.security.guard import CallGuard
from aesoperator.security.principal import Principal

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
    log.settle()  # the last checkpoint is on disk: the tests below change the files after the writer is done


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
            "mac",  # format 2: each record is signed with the audit key
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


# -- signatures, deletion, forgery, the key's place, the previous format ---------------------------
FORMAT_1_FIXTURE = Path(__file__).parent / "fixtures" / "audit_format1"  # written by the format 1 writer


def _verify_cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, ["-d", str(data_dir), "--json", "audit", "verify", *args], env=env)


def _forge_next(log: AuditLog, mac: str | None, **changes: Any) -> None:
    """Append a correctly chained record, as someone who can write the log but not read the key."""
    last = json.loads(_lines(log)[-1])
    forged = {k: v for k, v in last.items() if k != "mac"}
    forged.update(seq=last["seq"] + 1, prev=last["hash"], tool="remember", **changes)
    forged["hash"] = record_hash(forged)
    if mac is not None:
        forged["mac"] = mac
    with log.path.open("a") as handle:
        handle.write(canonical_json(forged) + "\n")


def test_deleting_log_and_checkpoint_is_detected_and_stays_detected(tmp_path: Path) -> None:
    log = AuditLog.in_data_dir(tmp_path)
    _fill(log, 4)
    log.close()
    log.path.unlink()
    log.checkpoint_path.unlink()
    report = AuditLog.in_data_dir(tmp_path).verify()
    assert not report.ok and report.status == "broken" and "deleted" in (report.problem or "")
    assert _verify_cli(tmp_path).exit_code == 1

    after = AuditLog.in_data_dir(tmp_path)  # the next server start writes a genuine record
    _fill(after, 2)
    report = after.verify()
    assert not report.ok and report.bad_seq == 1 and "restart" in (report.problem or "")
    restart = after.tail(3)[0]
    assert restart["tool"] == "audit.restart" and restart["principal"] == "aesop" and restart["decision"] == "error"


def test_removing_the_checkpoint_and_the_tail_stays_detected_after_a_write(audit: AuditLog) -> None:
    _write(audit, _lines(audit)[:3])
    audit.checkpoint_path.unlink()
    assert "missing" in (audit.verify().problem or "")
    fresh = AuditLog(audit.path)
    _fill(fresh, 1)
    report = fresh.verify()
    assert not report.ok and report.bad_seq == 4 and "restart" in (report.problem or "")


@pytest.mark.parametrize("mac", [None, "copied", "f" * 64], ids=["unsigned", "copied-signature", "made-up"])
def test_record_forged_without_the_key_fails_and_keeps_failing(audit: AuditLog, mac: str | None) -> None:
    copied = json.loads(_lines(audit)[-1])["mac"]
    _forge_next(audit, copied if mac == "copied" else mac)
    report = audit.verify()
    assert not report.ok and report.status == "broken" and report.bad_seq == 7, report
    assert "signature" in (report.problem or "") or "signed" in (report.problem or "")

    genuine = AuditLog(audit.path)  # a later genuine write does not confirm the forged record
    _fill(genuine, 2)
    report = genuine.verify()
    assert not report.ok and report.bad_line == 8, report


def test_signed_tail_left_by_a_stopped_writer_is_accepted(audit: AuditLog) -> None:
    before = audit.checkpoint_path.read_text()
    _fill(audit, 1)
    audit.checkpoint_path.write_text(before)  # the writer stopped between its record and its checkpoint
    report = AuditLog(audit.path).verify()
    assert report.ok and report.records == 7 and "after the checkpoint" in report.warnings[0]
    next_writer = AuditLog(audit.path)
    _fill(next_writer, 1)
    report = next_writer.verify()
    assert report.ok and report.records == 8 and not report.warnings


def test_key_outside_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aesoperator.security.audit_format import Checkpoint, create_key, record_mac, write_checkpoint

    data, key_path = tmp_path / "data", tmp_path / "secrets" / "audit.key"
    monkeypatch.setenv("AESOP_AUDIT_KEY_FILE", str(key_path))
    log = AuditLog.in_data_dir(data)  # the setting names the key
    assert log.key_path == key_path
    _fill(log, 3)
    assert key_path.stat().st_mode & 0o777 == 0o600 and not (data / "audit.key").exists()
    assert log.verify().ok
    ok = _verify_cli(data, env={"AESOP_AUDIT_KEY_FILE": str(key_path)})
    assert ok.exit_code == 0 and json.loads(ok.stdout)["status"] == "intact"
    monkeypatch.delenv("AESOP_AUDIT_KEY_FILE")
    no_key = _verify_cli(data)
    assert no_key.exit_code == 2 and json.loads(no_key.stdout)["status"] == "unverifiable"
    assert _verify_cli(data, "--key-file", str(key_path)).exit_code == 0

    # Someone who can write the data dir rewrites a record and re-signs everything with a key of
    # their own: it verifies only against their key, never against the one kept outside.
    records = [json.loads(line) for line in _lines(log)]
    records[1]["principal"] = "someone-else"
    own_key = create_key(data / "audit.key")
    prev = GENESIS
    for r in records:
        r["prev"] = prev
        r["hash"] = record_hash(r)
        r["mac"] = record_mac(own_key, r["hash"])
        prev = r["hash"]
    _write(log, [canonical_json(r) + "\n" for r in records])
    write_checkpoint(log.checkpoint_path, Checkpoint(3, prev, log.path.stat().st_size), own_key)
    assert AuditLog.in_data_dir(data).verify().ok  # the forger's own key: the reason to keep it elsewhere
    report = AuditLog.in_data_dir(data, key_path=key_path).verify()
    assert not report.ok and "signature" in (report.problem or "")


def test_writer_refuses_a_new_key_for_an_existing_log(audit: AuditLog) -> None:
    from aesoperator.errors import ConfigError

    audit.close()
    audit.key_path.unlink()
    writer = AuditLog(audit.path)
    with pytest.raises(ConfigError, match="missing"):
        writer.open_for_writing()
    with pytest.raises(ConfigError, match="AESOP_AUDIT_KEY_FILE"):
        _fill(writer, 1)
    assert not audit.key_path.exists() and len(_lines(audit)) == 6
    report = writer.verify()
    assert report.status == "unverifiable" and "missing" in (report.problem or "")


def test_init_starts_a_log_and_refuses_to_restart_one(tmp_path: Path) -> None:
    shared_key = tmp_path / "keys" / "audit.key"
    runner = CliRunner()
    for name in ("one", "two"):  # one key can serve several data dirs
        started = runner.invoke(app, ["-d", str(tmp_path / name), "audit", "init", "--key-file", str(shared_key)])
        assert started.exit_code == 0, started.output
        assert _verify_cli(tmp_path / name, "--key-file", str(shared_key)).exit_code == 0
    again = runner.invoke(app, ["-d", str(tmp_path / "one"), "audit", "init", "--key-file", str(shared_key)])
    assert again.exit_code != 0 and "already started" in again.stderr
    assert AuditLog.in_data_dir(tmp_path / "empty").verify().ok  # nothing was ever recorded there


def _format_1_copy(tmp_path: Path) -> AuditLog:
    for name in ("audit.log", "audit.checkpoint", "audit.key"):
        (tmp_path / name).write_bytes((FORMAT_1_FIXTURE / name).read_bytes())
    return AuditLog.in_data_dir(tmp_path)


def test_format_1_log_verifies_and_is_upgraded(tmp_path: Path) -> None:
    log = _format_1_copy(tmp_path)
    legacy = log.path.read_bytes()
    report = log.verify()
    assert not report.ok and report.status == "upgrade_needed" and report.records == 5
    assert "aesop audit upgrade" in (report.problem or "")
    assert _verify_cli(tmp_path).exit_code == 3

    upgraded = CliRunner().invoke(app, ["-d", str(tmp_path), "audit", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert log.path.read_bytes().startswith(legacy)  # the old records are kept as they were
    report = log.verify()
    assert report.ok and report.records == 6 and "unsigned format" in report.warnings[0]
    assert log.tail(1)[0]["tool"] == "audit.upgrade" and log.tail(1)[0]["result_count"] == 5
    _fill(log, 1)
    assert log.verify().ok

    lines = _lines(log)  # the sealed, unsigned records still cannot be changed
    record = json.loads(lines[1])
    record["principal"] = "mallory"
    record["hash"] = record_hash(record)
    lines[1] = canonical_json(record) + "\n"
    _write(log, lines)
    assert log.verify().bad_seq == 3


def test_format_1_log_is_upgraded_by_the_first_new_record(tmp_path: Path) -> None:
    log = _format_1_copy(tmp_path)
    _fill(log, 1)
    first, call = log.tail(2)
    assert first["tool"] == "audit.upgrade" and first["seq"] == 6 and call["seq"] == 7
    assert log.verify().ok


def test_format_1_log_with_a_forged_tail_is_not_sealed(tmp_path: Path) -> None:
    from aesoperator.errors import AesopError

    log = _format_1_copy(tmp_path)
    _forge_next(log, None)
    report = log.verify()
    assert not report.ok and report.status == "broken" and report.bad_seq == 6
    assert "neither confirmed" in (report.problem or "")
    with pytest.raises(AesopError, match="cannot be upgraded"):
        log.upgrade()
    _fill(log, 1)  # a writer seals the log at its checkpoint, leaving the forged record out of the chain
    assert not log.verify().ok
