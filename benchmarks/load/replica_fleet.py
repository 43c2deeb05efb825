"""Several `aesop serve --http` replicas against one Neo4j, as real processes.

Each replica has a data dir of its own (derived indexes, tokens, audit log) and shares the graph,
the vectors and the change log through Neo4j. Used by `python -m benchmarks.load.replicas` and by
the replica tests.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

START_SECONDS = 120.0
READY_LINE = re.compile(r"serving MCP at (http://\S+)")
METRICS_LINE = re.compile(r"serving metrics at (http://\S+)")
REPLICA_SCOPES = ["read:*", "write:*", "tool:*"]


@dataclass(frozen=True)
class Neo4jTarget:
    """Where the shared Neo4j answers."""

    uri: str
    user: str
    password: str


def replica_env(neo4j: Neo4jTarget, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A replica's environment: offline model loading, no stray aesop.toml, the Neo4j login."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESOP_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        AESOP_CONFIG=os.devnull,
        PYTHONUNBUFFERED="1",
        AESOP_NEO4J_USER=neo4j.user,
        AESOP_NEO4J_PASSWORD=neo4j.password,
        AESOP_LOG_LEVEL="info",
    )
    env.update(extra or {})
    return env


def aesop_argv(data_dir: Path, neo4j: Neo4jTarget, *args: str) -> list[str]:
    """`aesop --data-dir D --graph URI ARGS...` run with this interpreter."""
    return [sys.executable, "-m", "aesoperator.cli", "--data-dir", str(data_dir), "--graph", neo4j.uri, *args]


def issue_token(data_dir: Path, name: str = "agent", scopes: list[str] | None = None) -> str:
    """A bearer token in the replica's own token file."""
    from aesoperator.security.tokens import TokenStore

    return TokenStore.in_data_dir(data_dir).add(name, scopes or REPLICA_SCOPES).token


class Replica:
    """One `aesop serve --http --port 0 --metrics-port 0` process; `url` and `metrics_url` are read
    from its ready lines on stderr, every stderr line is kept in `log`."""

    def __init__(self, data_dir: Path, neo4j: Neo4jTarget, extra_env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.neo4j = neo4j
        self.extra_env = dict(extra_env or {})
        self.log: list[str] = []
        self.url = ""
        self.metrics_url = ""
        self.started_in_s = 0.0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Replica:
        """Start the process and wait until it serves."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log, self.url, self.metrics_url = [], "", ""  # a restart reads its own lines only
        argv = aesop_argv(self.data_dir, self.neo4j, "serve", "--http", "--port", "0", "--metrics-port", "0")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            cwd=self.data_dir,
            env=replica_env(self.neo4j, self.extra_env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc, lines), daemon=True).start()
        deadline = started + START_SECONDS
        while time.monotonic() < deadline and not self.url:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if found := METRICS_LINE.search(line):
                self.metrics_url = found.group(1)
            if found := READY_LINE.search(line):
                self.url = found.group(1)
        if not self.url:
            self.kill()
            raise RuntimeError(f"replica in {self.data_dir} did not start:\n" + "".join(self.log[-40:]))
        self.started_in_s = time.monotonic() - started
        return self

    def _pump(self, proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log.append(line)
            lines.put(line)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mib(self) -> float:
        """Resident memory of the process, from /proc (0 when it is gone)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process used so far (0 when it is gone)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is saved or closed."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL when it does not end in time."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


__all__ = ["Neo4jTarget", "Replica", "aesop_argv", "issue_token", "replica_env"]
