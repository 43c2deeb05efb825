"""python -m benchmarks.quality.study [--data DIR] [--workdir DIR] [--datasets ...] [--configs ...]

A configuration study: each dataset is ingested once into a kept data folder (reused on the next
run), then every configuration asks all questions and a table of recall@k, nDCG@10 and MRR is
printed. Configurations are search keyword arguments plus `SearchSettings` overrides, so a new
pipeline knob is compared on the development splits without ingesting again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.quality.__main__ import DEFAULT_DATA, evaluate, ingest
from benchmarks.quality.datasets import load_all
from benchmarks.quality.systems import ENGINE_SYSTEMS, ranker

# name -> (ContextEngine.search keyword arguments, SearchSettings overrides)
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "bm25": (ENGINE_SYSTEMS["bm25"], {}),
    "vector": (ENGINE_SYSTEMS["vector"], {}),
    "hybrid": (ENGINE_SYSTEMS["hybrid"], {}),
    "engine": (ENGINE_SYSTEMS["engine"], {}),
}

METRICS = ("recall@1", "recall@5", "recall@10", "recall@20", "ndcg@10", "mrr", "all@10")


def parse_try(spec: str) -> tuple[str, tuple[dict[str, Any], dict[str, Any]]]:
    """'name:hops=1,keyword_weight=2' -> (name, (search kwargs, SearchSettings overrides))."""
    name, _, body = spec.partition(":")
    search: dict[str, Any] = dict(ENGINE_SYSTEMS["engine"])
    overrides: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in body.split(","))):
        key, _, raw = item.partition("=")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key in ("hops", "mmr_lambda", "channels"):
            search[key] = tuple(value.split("+")) if key == "channels" else value
        else:
            overrides[key] = value
    return name, (search, overrides)


def open_engine(workdir: Path, name: str) -> tuple[Any, bool]:
    """The engine over this dataset's kept folder, and whether it still needs ingesting."""
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    folder = workdir / name
    done = (folder / "INGESTED").exists()
    folder.mkdir(parents=True, exist_ok=True)
    return ContextEngine.open(settings=Settings(data_dir=folder)), not done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality.study", description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--workdir", default="/tmp/aesop-study")
    parser.add_argument("--datasets", default="locomo,musique,hotpotqa,scifact")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument(
        "--try",
        dest="extra",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="an extra configuration: the engine system with these changes (hops=N is a search "
        "argument, other keys are SearchSettings fields), e.g. 'kw2:keyword_weight=2,hops=1'",
    )
    parser.add_argument("--ingest-only", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    for spec in args.extra:
        name, config = parse_try(spec)
        CONFIGS[name] = config
        names.append(name)
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}")
    datasets, notes = load_all(Path(args.data), [d.strip() for d in args.datasets.split(",") if d.strip()])
    workdir = Path(args.workdir)
    results: dict[str, dict[str, Any]] = {}
    print("| dataset | configuration | " + " | ".join(METRICS) + " | ms/query |")
    print("|---|---|" + "---:|" * (len(METRICS) + 1))
    for ds in datasets:
        engine, needs_ingest = open_engine(workdir, ds.name)
        try:
            if needs_ingest:
                ingest(engine, ds)
                (workdir / ds.name / "INGESTED").write_text("ok\n")
            if args.ingest_only:
                continue
            base = engine.search_settings
            for name in names:
                kwargs, overrides = CONFIGS[name]
                engine.search_settings = dataclasses.replace(base, **overrides)
                rank = ranker(engine, ds, name, kwargs)
                t0 = time.perf_counter()
                rankings = {q.qid: rank(q) for q in ds.questions}
                res = evaluate(rankings, ds.questions)
                res["ms_per_query"] = round((time.perf_counter() - t0) * 1000 / max(1, len(ds.questions)), 2)
                results.setdefault(ds.name, {})[name] = res
                cells = " | ".join(f"{res['overall'][m]:.3f}" for m in METRICS)
                print(f"| {ds.name} | {name} | {cells} | {res['ms_per_query']} |", flush=True)
            engine.search_settings = base
        finally:
            engine.close()
    for note in notes:
        print(f"note: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
