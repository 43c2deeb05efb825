"""Search stage times of two or more checkouts on one kept store, in turn.

A benchmark run starts its stores afresh, so between runs the machine's noise and (on Neo4j) the
server's JIT warming up move the figures more than a small change does. This compares checkouts
on the same data instead: each round runs every `--tree` in a new process against the same data
dir (and the same Neo4j, with `--neo4j-uri`), searches five other queries to warm up, then every
question twice. The first pass is timed end to end (wall time per search, the query's embedding
included: what a caller waits), and its total of all stages but the embedding is kept too (what a
question asked for the first time costs, caches of earlier questions' work included). The second
pass's stage times are kept (query vectors then come from the cache, so the embedding's threads
do not slow the stages after them), and each stage's p50 and the total's p50 / p95 are reported.

    python -m benchmarks.speed.stage_times --data-dir DIR [--tree A --tree B] [--rounds 2]
        [--neo4j-uri bolt://127.0.0.1:7687 --neo4j-password PW] [--questions 40] [--out FILE]

`--data-dir` is a data dir a benchmark kept (`python -m benchmarks.speed --keep-data`: the
`store` folder of an embedded job, the `engine` folder of a Neo4j job).
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
from typing import Any

import numpy as np

from benchmarks.speed.measure import console, machine_info, progress
from benchmarks.speed.runner import REPO_ROOT

_WORKER = "benchmarks.speed.stage_times"
# The first pass's wall time per search, the query's embedding included.
WALL = "first pass: wall incl. embedding"
FIRST = "first pass: total excl. embedding"
_WARM_UP = ("warm up the engine", "a second warm-up query", "third warm-up", "fourth one", "and a fifth")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {_WORKER}", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True, help="a kept data dir (see above)")
    parser.add_argument("--tree", type=Path, action="append", help="a checkout to time (repeatable; default: this one)")
    parser.add_argument("--rounds", type=int, default=2, help="times each checkout runs, in turn")
    parser.add_argument("--questions", type=int, default=40, help="questions per dataset")
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "evaldata")
    parser.add_argument("--neo4j-uri", default=None)
    parser.add_argument("--neo4j-user", default="neo4j")
    parser.add_argument("--neo4j-password", default=os.environ.get("AESOP_NEO4J_PASSWORD", ""))
    parser.add_argument("--out", type=Path, default=None, help="also write the results here (JSON)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _timed_pass(args: argparse.Namespace) -> dict[str, list[float]]:
    """In the checkout under test: every question searched twice, the second pass's stage times."""
    from aesoperator import ContextEngine
    from aesoperator.config import Settings
    from benchmarks.quality.datasets import load_all

    datasets, _notes = load_all(args.data, ["hotpotqa", "musique", "scifact"])
    questions = [q.text for ds in datasets for q in ds.questions[: args.questions]]
    if not questions:
        raise SystemExit(f"no questions found under {args.data}")
    extra: dict[str, Any] = {}
    if args.neo4j_uri:
        extra = {"graph": args.neo4j_uri, "neo4j_user": args.neo4j_user, "neo4j_password": args.neo4j_password}
    engine = ContextEngine.open(settings=Settings(data_dir=args.data_dir, **extra))
    stages: dict[str, list[float]] = {"total excl. embedding": [], WALL: [], FIRST: []}
    try:
        for warm_up in _WARM_UP:  # loads the model and the indexes; not questions of the passes
            engine.search(warm_up, k=10, hops=1)
        for timed in (False, True):
            for question in questions:
                started = time.perf_counter()
                result = engine.search(question, k=10, hops=1)
                if not timed:  # each question's first search: its query is embedded
                    stages[WALL].append((time.perf_counter() - started) * 1000)
                    stages[FIRST].append(sum(v for s, v in result.timings_ms.items() if s != "embed"))
                if timed:
                    for stage, ms in result.timings_ms.items():
                        stages.setdefault(stage, []).append(ms)
                    stages["total excl. embedding"].append(sum(v for s, v in result.timings_ms.items() if s != "embed"))
    finally:
        engine.close()
    return stages


def _run(tree: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    command = [sys.executable, "-m", _WORKER, "--worker", "--data-dir", str(args.data_dir), "--data", str(args.data)]
    command += ["--questions", str(args.questions)]
    if args.neo4j_uri:
        command += ["--neo4j-uri", args.neo4j_uri, "--neo4j-user", args.neo4j_user]
    with tempfile.TemporaryDirectory(prefix="aesop-stage-times-") as shim:
        # Only the engine package comes from the checkout under test; the benchmark's own modules
        # (this worker, the question loaders) are this checkout's, the same for every tree.
        (Path(shim) / "aesoperator").symlink_to(tree / "aesoperator", target_is_directory=True)
        env = {**os.environ, "PYTHONPATH": f"{shim}{os.pathsep}{REPO_ROOT}", "HF_HUB_OFFLINE": "1"}
        env["AESOP_NEO4J_PASSWORD"] = args.neo4j_password
        # `-m` puts the working folder first on the path: the shim, not this checkout.
        done = subprocess.run(command, cwd=shim, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the timed pass failed in {tree}:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        if Path(result["engine"]).resolve() != (tree / "aesoperator").resolve():
            raise SystemExit(f"the timed pass ran the engine in {result['engine']}, not the one in {tree}")
    stages: dict[str, list[float]] = result["stages_ms"]
    return stages


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        args.neo4j_password = os.environ.get("AESOP_NEO4J_PASSWORD", "")
        import aesoperator

        print(json.dumps({"engine": str(Path(aesoperator.__file__).parent), "stages_ms": _timed_pass(args)}))
        return 0
    trees = [t.resolve() for t in (args.tree or [REPO_ROOT])]
    for tree in trees:
        if not (tree / "aesoperator" / "__init__.py").is_file():
            raise SystemExit(f"{tree} is not a checkout of the engine: it has no aesoperator package")
    runs: list[dict[str, Any]] = []
    with progress() as bar:
        task = bar.add_task("timed passes", total=args.rounds * len(trees))
        for round_ in range(1, args.rounds + 1):
            for tree in trees:
                stages = _run(tree, args)
                runs.append({"tree": str(tree), "round": round_, "stages_ms": stages})
                bar.advance(task)
    for run in runs:
        stages = run["stages_ms"]
        total = stages.pop("total excl. embedding")
        wall = stages.pop(WALL)
        first = stages.pop(FIRST, [])
        parts = ", ".join(f"{s} {np.percentile(v, 50):.2f}" for s, v in stages.items() if s != "embed")
        console.print(
            f"{run['tree']} round {run['round']}: first pass (query embedded) wall p50 "
            f"{np.percentile(wall, 50):.2f} / p95 {np.percentile(wall, 95):.2f} ms"
            + (
                f", total excl. embedding p50 {np.percentile(first, 50):.2f} / p95 {np.percentile(first, 95):.2f} ms"
                if first
                else ""
            )
            + "; second pass total p50 "
            f"{np.percentile(total, 50):.2f} / p95 {np.percentile(total, 95):.2f} ms; stage p50s: {parts}"
        )
        stages["total excl. embedding"] = total
        stages[WALL] = wall
        if first:
            stages[FIRST] = first
    if args.out:
        args.out.write_text(json.dumps({"machine": machine_info(), "runs": runs}, indent=1))
        console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
