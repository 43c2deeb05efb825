"""The audit log on a full disk: a record that cannot be written whole is cut off again (the log goes
back to its previous size, no partial line remains), the call gets a clear error, and once there
is room `aesop audit verify` passes and the next record is written.

Two real ways to run out of room, as in test_disk_full.py: a 1 MB tmpfs filled up by a filler
file (needs root or CAP_SYS_ADMIN; skipped, with the reason, where mounting is impossible), and
RLIMIT_FSIZE in a child process (no privileges needed), set a few bytes past the log's end so the
record's write stops in the middle of the line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_types import CallToolResult, TextContent

from aesoperator.security.audit import AuditLog
from aesoperator.security.envelope import GuardedCalls
from aesoperator.security.guard import CallGuard
from aesoperator.security.principal import Principal

ROOT = Path(__file__).resolve().parent.parent
PAGE = 4096


def cli_verify(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "aesoperator.cli", "--data-dir", str(data_dir), "--json", "audit", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )


def assert_whole_lines(path: Path, size: int) -> None:
    data = path.read_bytes()
    assert len(data) == size, f"the log is {len(data)} bytes, expected {size} (a partial record was left)"
    assert data.endswith(b"\n")
    for line in data.splitlines():
        json.loads(line)


def append(log: AuditLog, i: int) -> dict[str, Any]:
    return log.append(principal="alice", kind="static", tool="search", arguments={"i": i}, decision="allow")


async def guarded_call(guard: CallGuard) -> Any:
    calls = GuardedCalls(guard, lambda: Principal.full_access("alice", "static"))

    async def run() -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text="ok")])

    return await calls.call_tool("search", {"query": "x"}, run)


# -- a full tmpfs ---------------------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs mounted on a fresh directory, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}); the file-size-limit test covers running out of room")
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip()
        pytest.skip(f"cannot mount a tmpfs here ({reason}); the file-size-limit test covers running out of room")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], capture_output=True, timeout=30)


def fill(filler: Path) -> None:
    """Take every free page of the filesystem."""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def test_audit_record_on_a_full_tmpfs_is_cut_off_and_the_log_recovers(tiny_disk: Path) -> None:
    data_dir = tiny_disk / "data"
    log = AuditLog.in_data_dir(data_dir)
    guard = CallGuard(log, None)
    for i in range(3):
        append(log, i)
    # bring the log's end near a page boundary, so the next record's write has to take a new page
    # after writing part of the line into the page it already has
    i = 3
    while PAGE - log.path.stat().st_size % PAGE > 200:
        append(log, i)
        i += 1
    filler = tiny_disk / "filler.bin"
    fill(filler)
    before = log.path.stat().st_size
    with pytest.raises(OSError) as info:
        append(log, 999)
    assert info.value.errno == errno.ENOSPC
    assert_whole_lines(log.path, before)

    # through the guarded call: the call fails with a clear message, and nothing partial is left
    result = anyio.run(guarded_call, guard)
    assert result.is_error
    message = result.content[0].text
    assert "audit log could not be written" in message and "free disk space" in message, message
    assert_whole_lines(log.path, before)
    assert not [p.name for p in data_dir.iterdir() if p.name.endswith(".tmp")]
    assert log.verify().ok

    filler.unlink()  # space returns
    verified = cli_verify(data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["status"] == "intact"
    record = append(log, 1000)
    ok = anyio.run(guarded_call, guard)
    assert not ok.is_error
    assert log.tail(2)[0]["seq"] == record["seq"] and log.tail(1)[0]["seq"] == record["seq"] + 1
    assert log.verify().ok
    guard.close()
    assert cli_verify(data_dir).returncode == 0


# -- a file size limit -----------------------------------------------------------------------------------
_CHILD = """
import errno, json, resource, signal, sys
from pathlib import Path
from aesoperator.security.audit import AuditLog

data_dir = Path(sys.argv[1])
log = AuditLog.in_data_dir(data_dir)
for i in range(3):
    log.append(principal="alice", kind="static", tool="search", arguments={"i": i}, decision="allow")
before = log.path.stat().st_size
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limits = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (before + 40, limits[1]))  # the record stops mid-line
try:
    log.append(principal="alice", kind="static", tool="search", arguments={"i": 3}, decision="allow")
    outcome = "written"
except OSError as exc:
    outcome = errno.errorcode.get(exc.errno, str(exc.errno))
after_failure = log.path.stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, limits)
print(json.dumps({"before": before, "outcome": outcome, "after_failure": after_failure}))
"""


def test_audit_record_past_the_file_size_limit_is_cut_off_and_the_log_recovers(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data_dir)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["outcome"] == "EFBIG"
    assert report["after_failure"] == report["before"]
    log = AuditLog.in_data_dir(data_dir)
    assert_whole_lines(log.path, report["before"])
    verified = cli_verify(data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    record = append(log, 4)
    assert record["seq"] == 4
    assert log.verify().ok
    assert cli_verify(data_dir).returncode == 0
