"""A cold `aesop search`: a new process (imports, store open, index load, model session and the
query) on a small ingested folder, as an agent's shell tool or a script runs it.

The folder is ingested once into a fresh data dir by the checkout under test (`--tree`), then the
search runs `--rounds` times, each in a new process; wall time and peak RSS of each are reported,
and the best (the machine's noise only ever adds).

    python -m benchmarks.speed.cold_search [--tree DIR] [--folder DIR] [--rounds 5]
                                            [--query TEXT] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.speed.measure import machine_info
from benchmarks.speed.runner import REPO_ROOT


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed.cold_search", description=__doc__)
    parser.add_argument("--tree", type=Path, default=REPO_ROOT, help="the checkout whose CLI runs")
    parser.add_argument("--folder", type=Path, default=REPO_ROOT / "aesoperator" / "engine", help="what is ingested")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--query", default="how are clients rate limited")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "cold-search.json")
    return parser.parse_args(argv)


def _cli(tree: Path, data_dir: Path, *args: str) -> tuple[float, float]:
    """Run `python -m aesoperator.cli ARGS` from `tree`; (wall seconds, peak RSS MB of the child)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESOP_")}
    env.update(
        AESOP_DATA_DIR=str(data_dir),
        AESOP_CONFIG=os.devnull,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=str(tree),
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "aesoperator.cli", *args], cwd=tree, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"`aesop {' '.join(args)}` failed in {tree}:\n{done.stderr[-3000:]}")
    # RUSAGE_CHILDREN keeps the largest child so far: a new maximum is this child's own.
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return seconds, peak


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    commit = subprocess.run(["git", "-C", str(args.tree), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="aesop-cold-") as tmp:
        data_dir = Path(tmp) / "data"
        ingest_s, _ = _cli(args.tree, data_dir, "ingest", str(args.folder))
        rounds: list[dict[str, Any]] = []
        for i in range(args.rounds):
            load = os.getloadavg()[0]
            seconds, peak = _cli(args.tree, data_dir, "search", args.query)
            rounds.append({"seconds": seconds, "peak_rss_mb_so_far": peak, "load_average": load})
            print(f"round {i + 1}: {seconds:.2f} s (load {load:.1f})")
    best = min(r["seconds"] for r in rounds)
    print(f"best of {args.rounds}: {best:.2f} s (ingest took {ingest_s:.1f} s)")
    report = {
        "machine": machine_info(),
        "tree": str(args.tree),
        "commit": commit,
        "folder": str(args.folder),
        "query": args.query,
        "rounds": rounds,
        "best_seconds": best,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
