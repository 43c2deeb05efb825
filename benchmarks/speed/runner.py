"""`python -m benchmarks.speed`: parse the command line, run every job in its own process on a
fresh store, check the targets and write the report."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import datagen
from benchmarks.speed import extraction_share, memory_server_report, report
from benchmarks.speed.measure import console, machine_info
from benchmarks.speed.targets import TARGET_P95_SIZE, query_target_ms

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"
SCHEMA = "aesoperator-speed/1"

TARGET_RATIO = 0.9
TARGET_WRITE = {"embedded": 20_000.0, "neo4j": 10_000.0}

SMOKE = {
    "sizes": [1_000],
    "queries": 20,
    "embed_sample": 64,
    "backends": ["embedded"],
    "memory_server_sizes": [200],
    "extraction_entities": 100,
}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size {text!r} is not a number such as 1k, 10k, 100k or 1m")
    value = float(match.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    if value < 100:
        raise argparse.ArgumentTypeError(f"size {text!r} is too small: use at least 100 entities")
    return int(value)


def neo4j_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The Neo4j options of a job spec (`--neo4j-*`), as the job reads them."""
    return {
        "uri": args.neo4j_uri,
        "user": args.neo4j_user,
        "password": args.neo4j_password,
        "database": args.neo4j_database,
        "java_opts": args.neo4j_java_opts,
    }


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.speed",
        description="Speed benchmark: embedding and ingest rates, query latency per retrieval stage, memory.",
    )
    p.add_argument(
        "--sizes", default="10k,100k", help="graph sizes in entities, e.g. 1k,10k,100k,1m (default 10k,100k)"
    )
    p.add_argument(
        "--memory-server-sizes",
        default="1k,10k",
        help="sizes at which search is compared with the reference memory server (default 1k,10k; none skips it)",
    )
    p.add_argument("--backends", default="embedded", help="embedded, neo4j or both: embedded,neo4j (default embedded)")
    p.add_argument(
        "--neo4j-uri",
        default=os.environ.get("AESOP_BENCH_NEO4J_URI"),
        help="use this Neo4j (it is emptied before every job) instead of starting tools/neo4j-local",
    )
    p.add_argument("--neo4j-user", default="neo4j")
    p.add_argument(
        "--neo4j-password", default=os.environ.get("AESOP_NEO4J_PASSWORD", ""), help="default: $AESOP_NEO4J_PASSWORD"
    )
    p.add_argument("--neo4j-database", default=None)
    p.add_argument("--neo4j-java-opts", default=None, help="extra JVM options for tools/neo4j-local, e.g. -Xmx4g")
    p.add_argument("--embed-sample", type=int, default=2000, help="texts embedded for real (default 2000)")
    p.add_argument(
        "--embed-all", action="store_true", help="embed every entity for real instead of copying sample vectors (slow)"
    )
    p.add_argument(
        "--extraction-entities",
        type=int,
        default=1000,
        help="entities of the stream ingested without, with and again without knowledge extraction, to measure "
        "what it adds (default 1000; 0 skips it)",
    )
    p.add_argument("--queries", type=int, default=200, help="questions timed per run (default 200)")
    p.add_argument("--k", type=int, default=10, help="hits per query (default 10)")
    p.add_argument("--hops", type=int, default=1, help="graph expansion hops (default 1)")
    p.add_argument("--batch-size", type=int, default=1000, help="rows per store write (default 1000)")
    p.add_argument("--data", type=Path, default=None, help="evaluation data folder (default ../shared/evaldata)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go (default benchmarks/results)")
    p.add_argument(
        "--tmp", type=Path, default=None, help="parent folder for the per-run data dirs (default: system temp)"
    )
    p.add_argument("--keep-data", action="store_true", help="keep the data dirs after the run")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a quick check: 1k entities, 20 queries, 64 texts, embedded only, in-process",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run the jobs in this process (quicker; memory figures then include earlier jobs)",
    )
    p.add_argument(
        "--no-readme", action="store_true", help="do not refresh the results section of benchmarks/README.md"
    )
    p.add_argument("--job", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.job is None:
        args.sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
        args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        skip = args.memory_server_sizes.strip().lower() in ("", "none", "0", "off")
        args.memory_server_sizes = (
            [] if skip else [parse_size(s) for s in args.memory_server_sizes.split(",") if s.strip()]
        )
        unknown = set(args.backends) - {"embedded", "neo4j"}
        if unknown:
            p.error(f"unknown backend(s) {sorted(unknown)}: use embedded and/or neo4j")
        if args.smoke:
            args.sizes, args.queries = SMOKE["sizes"], SMOKE["queries"]
            args.embed_sample, args.backends = SMOKE["embed_sample"], SMOKE["backends"]
            args.memory_server_sizes = SMOKE["memory_server_sizes"]
            args.extraction_entities = SMOKE["extraction_entities"]
            args.in_process = True
        if args.embed_sample < 1 or args.queries < 1:
            p.error("--embed-sample and --queries must be at least 1")
    return args


def _run_job(spec: dict[str, Any], work_root: Path, n: int, in_process: bool = False) -> dict[str, Any]:
    spec_path = work_root / f"job-{n:02d}.json"
    spec["result_path"] = str(work_root / f"job-{n:02d}-result.json")
    spec_path.write_text(json.dumps(spec, indent=2))
    sized = spec["kind"] in ("scale", "memory_server")
    what = spec["kind"] + (f" {size_label(spec['size'])}" if sized else "") + f" on {spec['backend']}"
    console.rule(f"[bold]{what}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    result_path = Path(spec["result_path"])
    if in_process:
        from benchmarks.speed.jobs import run_job_file

        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM"):
            os.environ.setdefault(key, env[key])
        code = run_job_file(spec_path)
    else:
        code = subprocess.run(
            [sys.executable, "-m", "benchmarks.speed", "--job", str(spec_path)], cwd=REPO_ROOT, env=env, check=False
        ).returncode
    if result_path.exists():
        result = json.loads(result_path.read_text())
    else:
        result = {"error": f"the job process ended with code {code} and wrote no result"}
    result.setdefault("kind", spec["kind"])
    result.setdefault("backend", spec["backend"])
    if sized:
        result.setdefault("size", spec["size"])
    console.log(
        f"{what}: {'failed: ' + result['error'] if 'error' in result else 'done'} in {time.perf_counter() - started:.0f} s"
    )
    return result


def evaluate_targets(embed: dict[str, Any], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target with its measured value, whether it is met, and what is responsible if not."""
    out: list[dict[str, Any]] = []
    for backend, res in embed.items():
        if "error" in res:
            continue
        ratio = res["ratio_to_raw"]
        stages = res["ingest_with_embedding"]["stage_seconds"]
        raw_s = res["raw_encode"]["seconds"]
        note = (
            f"pipeline {res['ingest_with_embedding']['seconds']:.1f} s vs raw encode {raw_s:.1f} s; "
            f"embed stage {stages.get('embed', 0):.1f} s, map {stages.get('map', 0):.2f} s, "
            f"store {stages.get('store', 0):.2f} s (overlapped with the next batch's embedding)"
        )
        out.append(
            {
                "name": "ingest with embedding / raw encode",
                "backend": backend,
                "size": None,
                "value": ratio,
                "target": f">= {TARGET_RATIO}",
                "met": ratio >= TARGET_RATIO,
                "detail": note,
            }
        )
    for run in runs:
        if "error" in run:
            continue
        backend, size = run["backend"], run["size"]
        rate = run["write"]["rows_per_s"]
        goal = TARGET_WRITE[backend]
        out.append(
            {
                "name": "ingest without embedding (rows/s, store.write)",
                "backend": backend,
                "size": size,
                "value": rate,
                "target": f">= {goal:,.0f}",
                "met": rate >= goal,
                "detail": f"{run['write']['batch_ms']['p50']:.0f} ms per {run['batch_size']}-row batch (p50); "
                f"first tenth {run['write']['first_tenth_rows_per_s']:,.0f}/s, last tenth {run['write']['last_tenth_rows_per_s']:,.0f}/s",
            }
        )
        q = run["queries"]
        p95 = q["total_excl_embed_ms"]["p95"]
        stages = {s: v["p95"] for s, v in q["stages_ms"].items() if s != "embed"}
        worst = sorted(stages.items(), key=lambda kv: -kv[1])[:3]
        limit, binding = query_target_ms(size)
        out.append(
            {
                "name": "query p95, all stages but the query embedding (ms)",
                "backend": backend,
                "size": size,
                "value": p95,
                "target": f"< {limit:.0f}"
                + ("" if binding else f" (the target is set at {size_label(TARGET_P95_SIZE)})"),
                "met": p95 < limit,
                "binding": binding,
                "detail": "largest stage p95: " + ", ".join(f"{s} {v:.1f} ms" for s, v in worst),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.job is not None:
        from benchmarks.speed.jobs import run_job_file

        return run_job_file(args.job)

    data_dir = (args.data or datagen.default_data_dir(REPO_ROOT)).resolve()
    if not data_dir.is_dir():
        console.print(f"[red]evaluation data folder {data_dir} does not exist; pass --data DIR")
        return 2
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    command = "python -m benchmarks.speed " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
    work_root = Path(tempfile.mkdtemp(prefix=f"aesop-speed-{stamp}-", dir=args.tmp))
    console.log(f"data dirs under {work_root}")
    common = {
        "data_dir": str(data_dir),
        "batch_size": args.batch_size,
        "embed_sample": args.embed_sample,
        "queries": args.queries,
        "k": args.k,
        "hops": args.hops,
        "embed_all": args.embed_all,
        "keep_data": args.keep_data,
        "sample_vectors": str(work_root / "sample_vectors.npy"),
        "sample_ids": str(work_root / "sample_ids.json"),
        "neo4j": neo4j_spec(args),
    }
    embed: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    memory_server: list[dict[str, Any]] = []
    extraction: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = []
    n = 0
    try:
        for backend in args.backends:
            n += 1
            job_dir = work_root / f"embed-{backend}"
            job_dir.mkdir()
            res = _run_job(
                {**common, "kind": "embed", "backend": backend, "work_dir": str(job_dir)}, work_root, n, args.in_process
            )
            embed[backend] = res
            if "error" in res:
                errors.append({"job": f"embed/{backend}", "error": res["error"]})
                if not Path(common["sample_vectors"]).exists():
                    for size in args.sizes:
                        errors.append(
                            {"job": f"scale/{backend}/{size_label(size)}", "error": "skipped: no sample vectors"}
                        )
                    continue
            for size in args.sizes:
                n += 1
                job_dir = work_root / f"scale-{backend}-{size_label(size)}"
                job_dir.mkdir()
                res = _run_job(
                    {**common, "kind": "scale", "backend": backend, "size": size, "work_dir": str(job_dir)},
                    work_root,
                    n,
                    args.in_process,
                )
                if "error" in res:
                    errors.append({"job": f"scale/{backend}/{size_label(size)}", "error": res["error"]})
                runs.append(res)
        for size in args.memory_server_sizes:
            n += 1
            job_dir = work_root / f"memory-server-{size_label(size)}"
            job_dir.mkdir()
            res = _run_job(
                {**common, "kind": "memory_server", "backend": "embedded", "size": size, "work_dir": str(job_dir)},
                work_root,
                n,
                args.in_process,
            )
            if "error" in res:
                errors.append({"job": f"memory_server/{size_label(size)}", "error": res["error"]})
            memory_server.append(res)
        if args.extraction_entities > 0:
            n += 1
            job_dir = work_root / "extraction"
            job_dir.mkdir()
            extraction = _run_job(
                {
                    **common,
                    "kind": "extraction",
                    "backend": "embedded",
                    "extraction_entities": args.extraction_entities,
                    "work_dir": str(job_dir),
                },
                work_root,
                n,
                args.in_process,
            )
            if "error" in extraction:
                errors.append({"job": "extraction", "error": extraction["error"]})
    finally:
        if not args.keep_data:
            shutil.rmtree(work_root, ignore_errors=True)

    described = None
    for e in embed.values():
        described = e.pop("data", None) or described
    if described is None:
        described = datagen.describe(datagen.load_corpus(data_dir))
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "created_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "config": {
            "sizes": args.sizes,
            "memory_server_sizes": args.memory_server_sizes,
            "extraction_entities": args.extraction_entities,
            "backends": args.backends,
            "embed_sample": args.embed_sample,
            "embed_all": args.embed_all,
            "queries": args.queries,
            "k": args.k,
            "hops": args.hops,
            "batch_size": args.batch_size,
            "smoke": args.smoke,
            "jobs": "in this process" if args.in_process else "one process per job",
            "data_dir": str(data_dir),
            "seed": datagen.SEED,
            "neo4j": "given URI" if args.neo4j_uri else "tools/neo4j-local, one fresh server per job",
            "neo4j_java_opts": args.neo4j_java_opts,
        },
        "machine": machine_info(),
        "data": {
            **described,
            "vectors": (
                "every entity embedded for real"
                if args.embed_all
                else f"the first {args.embed_sample:,} entities embedded for real; every other entity stores a copy of "
                "a sample vector plus Gaussian noise (sigma 0.01 per dimension, renormalised), written through "
                "store.upsert like any vector. Exact (flat) FAISS search costs the same whatever the values."
            ),
        },
        "embed": embed,
        "runs": runs,
        "memory_server": memory_server,
        "extraction": extraction,
        "errors": errors,
    }
    results["targets"] = (
        evaluate_targets(embed, runs)
        + memory_server_report.evaluate_targets(memory_server)
        + extraction_share.evaluate_targets(results)
    )
    paths = report.write_all(results, args.out, stamp, update_readme=_should_update_readme(args))
    report.print_summary(results)
    for p in paths:
        console.log(f"wrote {p}")
    return 1 if errors else 0


def _should_update_readme(args: argparse.Namespace) -> bool:
    return not args.no_readme and not args.smoke and args.out.resolve() == DEFAULT_OUT.resolve()
