"""RSS of a started `aesop serve --stdio` before any call that needs the embedder.

    python -m benchmarks.speed.server_rss [--tree DIR] [--seconds 60] [--out FILE]

Starts the server on an empty data directory (from the source tree `--tree`, default this
checkout, so another checkout can be measured the same way), makes no call, samples its RSS every
half second for `--seconds` (long enough for a start-up warm-up to finish) and reports the last
and peak values and whether torch was mapped into the process. Writes JSON to `--out` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.speed.measure import progress

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_S = 0.5


def measure(tree: Path, seconds: float) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", AESOP_CONFIG=os.devnull)
    with tempfile.TemporaryDirectory(prefix="aesop-rss-") as data:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aesoperator.cli", "--data-dir", data, "serve", "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=data,
        )
        try:
            server = psutil.Process(proc.pid)
            peak = 0.0
            with progress() as bar:
                task = bar.add_task(f"server RSS ({tree.name})", total=seconds)
                started = time.monotonic()
                while (elapsed := time.monotonic() - started) < seconds:
                    peak = max(peak, server.memory_info().rss / 2**20)
                    bar.update(task, completed=elapsed)
                    time.sleep(SAMPLE_S)
                bar.update(task, completed=seconds)
            last = server.memory_info().rss / 2**20
            torch = any("/torch/" in m.path for m in server.memory_maps())
        finally:
            proc.kill()
            proc.wait()
    return {
        "tree": str(tree),
        "seconds": seconds,
        "rss_mb": round(last, 1),
        "peak_rss_mb": round(max(peak, last), 1),
        "torch_loaded": torch,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed.server_rss", description=__doc__)
    p.add_argument("--tree", type=Path, default=REPO_ROOT, help="source tree to run the server from")
    p.add_argument("--seconds", type=float, default=60.0, help="how long to watch the idle server (default 60)")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    result = measure(args.tree.resolve(), args.seconds)
    print(json.dumps(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
