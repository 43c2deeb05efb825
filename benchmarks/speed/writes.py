"""`python -m benchmarks.speed.writes`: only the ingest-without-embedding part of the speed suite.

Each size × backend writes the benchmark graph through `store.write` in its own process, on a
fresh data directory (for Neo4j a fresh `tools/neo4j-local`, or the given server emptied
first), exactly as the suite's `scale` job does before it stores vectors and runs queries. The
rows/s are printed and saved in `benchmarks/results/speed-writes-<time>.json` with the load
average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import datagen
from benchmarks.speed.jobs import neo4j_for_job, open_store
from benchmarks.speed.measure import PhaseMeter, console
from benchmarks.speed.runner import DEFAULT_OUT, REPO_ROOT, TARGET_WRITE, neo4j_spec, parse_size, size_label
from benchmarks.speed.write_rate import measure_writes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.speed.writes",
        description="Entities + relations per second through store.write, without embedding.",
    )
    p.add_argument("--sizes", default="10k,100k", help="graph sizes in entities (default 10k,100k)")
    p.add_argument("--backends", default="embedded", help="embedded, neo4j or both: embedded,neo4j")
    p.add_argument("--batch-size", type=int, default=1000, help="rows per store write (default 1000)")
    p.add_argument("--neo4j-uri", default=os.environ.get("AESOP_BENCH_NEO4J_URI"), help="use this (emptied) Neo4j")
    p.add_argument("--neo4j-user", default="neo4j")
    p.add_argument("--neo4j-password", default=os.environ.get("AESOP_NEO4J_PASSWORD", ""))
    p.add_argument("--neo4j-database", default=None)
    p.add_argument("--neo4j-java-opts", default=None, help="extra JVM options for tools/neo4j-local")
    p.add_argument("--data", type=Path, default=None, help="evaluation data folder (default ../shared/evaldata)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go (default benchmarks/results)")
    p.add_argument("--job", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_write_job(spec: dict[str, Any]) -> dict[str, Any]:
    """One size on one backend, in this process."""
    backend, size, batch_size = spec["backend"], int(spec["size"]), int(spec["batch_size"])
    work = Path(spec["work_dir"])
    meter = PhaseMeter()
    stream = datagen.GraphStream(datagen.load_corpus(Path(spec["data_dir"])))
    with neo4j_for_job(spec, work) if backend == "neo4j" else contextlib.nullcontext(None) as neo:
        if neo is not None:
            meter.watch_server(neo.pid)
        store = open_store(backend, work, neo)
        try:
            return {"backend": backend, "size": size, "write": measure_writes(store, stream, size, batch_size, meter)}
        finally:
            store.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.job is not None:
        spec = json.loads(args.job.read_text())
        Path(spec["result_path"]).write_text(json.dumps(run_write_job(spec), indent=2))
        return 0
    data_dir = (args.data or datagen.default_data_dir(REPO_ROOT)).resolve()
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="aesop-writes-") as tmp:
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            for size in [parse_size(s) for s in args.sizes.split(",") if s.strip()]:
                job_dir = Path(tmp) / f"{backend}-{size_label(size)}"
                job_dir.mkdir()
                spec = {
                    "backend": backend,
                    "size": size,
                    "batch_size": args.batch_size,
                    "work_dir": str(job_dir),
                    "data_dir": str(data_dir),
                    "result_path": str(job_dir / "result.json"),
                    "neo4j": neo4j_spec(args),
                }
                (job_dir / "job.json").write_text(json.dumps(spec))
                cmd = [sys.executable, "-m", "benchmarks.speed.writes", "--job", str(job_dir / "job.json")]
                subprocess.run(cmd, check=True, cwd=REPO_ROOT)
                result = json.loads((job_dir / "result.json").read_text())
                results.append(result)
                w = result["write"]
                target = TARGET_WRITE[backend]
                console.print(
                    f"{backend} {size_label(size)}: {w['rows_per_s']:,.0f} rows/s (target {target:,.0f}); "
                    f"first tenth {w['first_tenth_rows_per_s']:,.0f}/s, last tenth {w['last_tenth_rows_per_s']:,.0f}/s; "
                    f"{w['rows']:,} rows in {w['write_seconds']:.1f} s, p50 {w['batch_ms']['p50']:.0f} ms per batch"
                )
    report = {
        "command": "python -m benchmarks.speed.writes " + " ".join(sys.argv[1:]),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"speed-writes-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    console.print(f"load average before {report['load_average_before']}, after {report['load_average_after']}")
    console.print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
