"""The server under test: `aesop serve --http` in a child process, on 127.0.0.1 and a free port.

It is the real command (bearer tokens from the data dir's token store, audit log on), started as
`python -m aesoperator.cli --data-dir D serve --http --port 0`; the URL is read from the line it
prints when listening. `rss_mb()` samples its resident memory; `stop()` sends SIGINT, as Ctrl-C
would, so the engine closes normally.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

_SERVING = re.compile(r"serving MCP at (http://127\.0\.0\.1:\d+/\S*)")


def child_env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class AesopServer:
    def __init__(self, data_dir: Path, root: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.root = root
        self.log_path = log_path
        command = [sys.executable, "-m", "aesoperator.cli", "--data-dir", str(data_dir), "serve", "--http"]
        command += ["--host", "127.0.0.1", "--port", "0"]
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(command, cwd=root, env=child_env(root), stdout=self._log, stderr=subprocess.STDOUT)
        self._process = psutil.Process(self.proc.pid)

    def wait_ready(self, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _SERVING.search(self.log_path.read_text(errors="replace"))
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"aesop serve --http did not start (see {self.log_path}):\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def rss_mb(self) -> float | None:
        try:
            return self._process.memory_info().rss / 2**20
        except psutil.Error:
            return None

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def audit_verify(data_dir: Path, root: Path) -> dict[str, Any]:
    """`aesop audit verify --json` on the data dir: its report and exit code."""
    done = subprocess.run(
        [sys.executable, "-m", "aesoperator.cli", "--data-dir", str(data_dir), "--json", "audit", "verify"],
        cwd=root,
        env=child_env(root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        report = {"ok": False, "problem": (done.stderr or done.stdout)[-2000:]}
    report["exit_code"] = done.returncode
    return report
