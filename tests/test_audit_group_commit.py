"""Group commit of audit records: callers that arrive together share one write and fsync of the log
(and one checkpoint), each still returns only once its own record is on disk, and the chain stays
whole with many threads, with two processes, and when a writing process is killed mid-burst."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from aesoperator.security.audit import AuditLog
from aesoperator.security.audit_format import read_checkpoint, read_key
from aesoperator.security.guard import CallGuard
from aesoperator.security.principal import Principal

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
THREADS = 16
PER_THREAD = 12

# A writer of its own: `threads` threads append until the process is killed (or `per_thread` each).
WRITER = """
import sys, threading
from pathlib import Path
from aesoperator.security.audit import AuditLog

data_dir, name, threads, per_thread = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
log = AuditLog.in_data_dir(data_dir)

def run(t: int) -> None:
    i = 0
    while per_thread == 0 or i < per_thread:
        log.append(principal=f"{name}-{t}", tool="search_nodes", arguments={"i": i}, decision="allow", result_count=i)
        i += 1

workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
"""


def _records(log: AuditLog) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.path.read_text().splitlines()]


def _on_disk(log: AuditLog, record: dict[str, Any]) -> bool:
    """Whether the log file holds `record` and the group that wrote it was fsynced (`records_committed`
    counts records after their fsync; the log is fresh and written by `log` alone)."""
    line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return log.records_committed >= record["seq"] and line in log.path.read_bytes()


def _checkpoint_reaches(log: AuditLog, record: dict[str, Any]) -> bool:
    state, checkpoint = read_checkpoint(log.checkpoint_path, read_key(log.key_path))
    return state == "ok" and checkpoint is not None and checkpoint.seq >= record["seq"]


def _writer(data_dir: Path, name: str, threads: int, per_thread: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", WRITER, str(data_dir), name, str(threads), str(per_thread)]
    return subprocess.Popen(args, env=env, stderr=subprocess.PIPE)


def test_concurrent_callers_share_fsyncs_and_each_returns_with_its_record_on_disk(tmp_path: Path) -> None:
    log = AuditLog.in_data_dir(tmp_path)
    start = threading.Barrier(THREADS)
    mine: dict[int, list[dict[str, Any]]] = {t: [] for t in range(THREADS - 1)}
    not_on_disk: list[int] = []

    def caller(t: int) -> None:
        start.wait()
        for i in range(PER_THREAD):
            record = log.append(principal=f"caller{t}", tool="search", arguments={"i": i}, decision="allow")
            if not _on_disk(log, record):
                not_on_disk.append(record["seq"])
            mine[t].append(record)

    reports: list[Any] = []

    def verifier() -> None:  # verify() never sees the log ahead of its checkpoint, even mid-burst
        start.wait()
        for _ in range(5):
            reports.append(log.verify())

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(THREADS - 1)]
    threads.append(threading.Thread(target=verifier))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total = (THREADS - 1) * PER_THREAD
    assert not not_on_disk, f"records {not_on_disk} were returned before they were on disk"
    assert all(r.ok and not r.warnings for r in reports), [r for r in reports if not r.ok or r.warnings]
    report = log.verify()
    assert report.ok and report.records == total and not report.warnings, report
    on_disk = _records(log)
    assert [r["seq"] for r in on_disk] == list(range(1, total + 1))
    for t, records in mine.items():  # every caller's records, each once, in the order it wrote them
        assert [r["principal"] for r in records] == [f"caller{t}"] * PER_THREAD
        assert [r["args_sha256"] for r in records] == [
            r["args_sha256"] for r in on_disk if r["principal"] == f"caller{t}"
        ]
        assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    assert log.records_committed == total
    assert log.commits < total, "concurrent callers never shared a write"


@pytest.mark.parametrize("max_group", [1, 4])
def test_groups_stay_within_max_group_and_can_wait_for_their_checkpoint(tmp_path: Path, max_group: int) -> None:
    log = AuditLog.in_data_dir(tmp_path, max_group=max_group, checkpoint_before_answer=True)
    late: list[int] = []

    def caller(t: int) -> None:
        for i in range(8):
            record = log.append(principal=f"c{t}", tool="search", arguments={"i": i}, decision="allow")
            if not (_on_disk(log, record) and _checkpoint_reaches(log, record)):
                late.append(record["seq"])

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not late, f"records {late} were returned before they and their checkpoint were on disk"
    assert log.commits >= 64 / max_group
    report = log.verify()
    assert report.ok and report.records == 64 and not report.warnings, report


def test_callers_from_the_event_loop_share_fsyncs_through_worker_threads(tmp_path: Path) -> None:
    """The server's path: each call's record is written by `CallGuard.record` in a worker thread."""
    log = AuditLog.in_data_dir(tmp_path)
    guard = CallGuard(log, None)
    alice = Principal.from_scopes("alice", ["read:default", "tool:search"])
    seqs: list[int] = []

    async def one_call(i: int) -> None:
        record = await anyio.to_thread.run_sync(guard.record, alice, "search", {"q": i}, "allow", 1, 0.5)
        assert record is not None and _on_disk(log, record)
        seqs.append(record["seq"])

    async def burst() -> None:
        async with anyio.create_task_group() as group:
            for i in range(64):
                group.start_soon(one_call, i)

    anyio.run(burst)
    assert sorted(seqs) == list(range(1, 65))
    report = log.verify()
    assert report.ok and report.records == 64, report
    assert log.commits < 64


def test_two_processes_appending_at_once_keep_one_chain(tmp_path: Path) -> None:
    AuditLog.in_data_dir(tmp_path).open_for_writing()
    writers = [_writer(tmp_path, name, 4, 15) for name in ("a", "b")]
    for writer in writers:
        _, err = writer.communicate(timeout=50)
        assert writer.returncode == 0, err.decode()
    report = AuditLog.in_data_dir(tmp_path).verify()
    assert report.ok and report.records == 120 and not report.warnings, report
    principals = [r["principal"] for r in _records(AuditLog.in_data_dir(tmp_path))]
    for name in ("a", "b"):
        for t in range(4):
            assert principals.count(f"{name}-{t}") == 15


def test_a_writer_killed_mid_burst_leaves_a_verifiable_log(tmp_path: Path) -> None:
    log = AuditLog.in_data_dir(tmp_path)
    log.open_for_writing()
    writer = _writer(tmp_path, "doomed", 8, 0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not log.path.exists() or log.path.read_bytes().count(b"\n") < 40):
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    assert writer.returncode == -signal.SIGKILL
    written = log.path.read_bytes().count(b"\n")
    assert written >= 40, "the writer did not get going before the deadline"

    report = log.verify()
    assert report.ok and report.records == written, report
    # a new writer continues the chain after whatever the killed one left
    record = log.append(principal="after", tool="search", arguments={}, decision="allow")
    assert record["seq"] == written + 1
    report = log.verify()
    assert report.ok and report.records == written + 1 and not report.warnings, report
