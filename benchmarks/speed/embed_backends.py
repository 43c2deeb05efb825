"""Embedding backends side by side: torch, ONNX Runtime fp32 and ONNX Runtime int8.

The speed suite's texts (`datagen`: chunks, documents, title and abbreviation entities), grouped
by entity type, are encoded by each backend in the same process, interleaved round by round so
a change in the machine's load falls on all three alike. Caches are off, so every text is
encoded. Also: one query embedding per call (p50/p95; the backends take turns a block of queries
at a time), and how close each onnx vector is to torch's (cosine).

    python -m benchmarks.speed.embed_backends [--per-kind 128] [--rounds 2] [--queries 100]

Writes `results/embed-backends-<UTC>.json`, `results/embed-backends-latest.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import datagen
from benchmarks.speed.measure import machine_info, progress

RESULTS = Path(__file__).resolve().parents[1] / "results"
BACKENDS = ("torch", "onnx", "onnx-int8")
BATCH = 64
CORPUS_ENTITIES = 6000
# Queries are timed a block per backend in turn, after one untimed call: a query right after
# another backend's (torch's idle OpenMP workers, the other model's weights in the cache) took
# 7.4 instead of 5.1 ms p50 on ONNX fp32, which no process running one backend ever sees.
QUERY_BLOCK = 20


def _embedders(cache_dir: Path | None) -> dict[str, Any]:
    from aesoperator.engine.embeddings import Embedder
    from aesoperator.engine.onnx_embeddings import OnnxEmbedder

    out: dict[str, Any] = {"torch": Embedder(batch_size=BATCH, cache_size=0)}
    for name, precision in (("onnx", "fp32"), ("onnx-int8", "int8")):
        embedder = OnnxEmbedder(batch_size=BATCH, cache_size=0, precision=precision, cache_dir=cache_dir)  # type: ignore[arg-type]
        embedder.ensure_export()
        out[name] = embedder
    for embedder in out.values():
        embedder.load()
    return out


def _texts_by_kind(data_dir: Path, per_kind: int) -> dict[str, list[str]]:
    from aesoperator.engine.embeddings import embedding_text
    from aesoperator.graph_schema.models import Entity

    corpus = datagen.load_corpus(data_dir)
    kinds: dict[str, list[str]] = {}
    for item in datagen.GraphStream(corpus).items(CORPUS_ENTITIES):
        if isinstance(item, Entity):
            kinds.setdefault(item.type, []).append(embedding_text(item))
    return {kind: texts[:per_kind] for kind, texts in sorted(kinds.items()) if len(texts) >= 8}


def run(args: argparse.Namespace) -> dict[str, Any]:
    texts = _texts_by_kind(args.data, args.per_kind)
    queries = [q.text for q in datagen.load_queries(args.data)]
    embedders = _embedders(args.cache_dir)
    warm = queries[-BATCH:]
    for embedder in embedders.values():
        embedder.embed(warm)
        embedder.embed_query(warm[0])
    seconds: dict[str, dict[str, list[float]]] = {b: {k: [] for k in texts} for b in BACKENDS}
    cpu_seconds: dict[str, dict[str, list[float]]] = {b: {k: [] for k in texts} for b in BACKENDS}
    vectors: dict[str, dict[str, np.ndarray]] = {b: {} for b in BACKENDS}
    total = args.rounds * len(BACKENDS) * sum(len(t) for t in texts.values())
    with progress() as bar:
        task = bar.add_task("encode per kind, interleaved", total=total)
        for _ in range(args.rounds):
            for kind, group in texts.items():
                for backend in BACKENDS:
                    c0, t0 = time.process_time(), time.perf_counter()
                    vectors[backend][kind] = embedders[backend].embed(group)
                    seconds[backend][kind].append(time.perf_counter() - t0)
                    cpu_seconds[backend][kind].append(time.process_time() - c0)
                    bar.advance(task, len(group))
    query_ms: dict[str, list[float]] = {b: [] for b in BACKENDS}
    query_cpu_ms: dict[str, list[float]] = {b: [] for b in BACKENDS}
    sample = queries[: args.queries]
    with progress() as bar:
        task = bar.add_task("query embedding, in blocks", total=len(sample) * len(BACKENDS))
        for start in range(0, len(sample), QUERY_BLOCK):
            block = sample[start : start + QUERY_BLOCK]
            for backend in BACKENDS:
                embedders[backend].embed_query(block[0] + " (warm-up)")  # untimed: see QUERY_BLOCK
                for text in block:
                    c0, t0 = time.process_time(), time.perf_counter()
                    embedders[backend].embed_query(text)
                    query_ms[backend].append((time.perf_counter() - t0) * 1000)
                    query_cpu_ms[backend].append((time.process_time() - c0) * 1000)
                    bar.advance(task)
    encode: dict[str, Any] = {}
    for backend in BACKENDS:
        per_kind = {}
        for kind, group in texts.items():
            best = min(seconds[backend][kind])
            cos = (vectors[backend][kind] * vectors["torch"][kind]).sum(axis=1)
            per_kind[kind] = {
                "texts": len(group),
                "texts_per_s_best": round(len(group) / best, 2),
                "texts_per_s_runs": [round(len(group) / s, 2) for s in seconds[backend][kind]],
                # CPU time of this process: what the encoding costs, whatever else holds the cores
                "texts_per_cpu_s_best": round(len(group) / min(cpu_seconds[backend][kind]), 2),
                "cosine_to_torch_mean": round(float(cos.mean()), 6),
                "cosine_to_torch_min": round(float(cos.min()), 6),
            }
        all_texts = sum(len(g) for g in texts.values())
        best_total = sum(min(seconds[backend][k]) for k in texts)
        best_cpu = sum(min(cpu_seconds[backend][k]) for k in texts)
        encode[backend] = {
            "per_kind": per_kind,
            "texts_per_s_best": round(all_texts / best_total, 2),
            "texts_per_cpu_s_best": round(all_texts / best_cpu, 2),
        }
    query = {
        b: {
            "p50_ms": round(statistics.median(v), 2),
            "p95_ms": round(float(np.percentile(v, 95)), 2),
            "min_ms": round(min(v), 2),
            "cpu_p50_ms": round(statistics.median(query_cpu_ms[b]), 2),
            "queries": len(v),
        }
        for b, v in query_ms.items()
    }
    words = {k: round(statistics.mean(len(t.split()) for t in g), 1) for k, g in texts.items()}
    return {
        "command": "python -m benchmarks.speed.embed_backends " + " ".join(args.argv),
        "commit": _commit(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "threads": {b: embedders[b].num_threads for b in BACKENDS},
        "query_threads": {b: embedders[b].query_num_threads for b in BACKENDS},
        "load_average": os.getloadavg(),
        "mean_words": words,
        "encode": encode,
        "query_embedding": query,
    }


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def report(result: dict[str, Any]) -> str:
    kinds = list(result["encode"]["torch"]["per_kind"])
    lines = [
        "# Embedding backends: torch, ONNX Runtime fp32, ONNX Runtime int8",
        "",
        f"`{result['command']}` at {result['commit']}, {result['when']}; load average during the run "
        f"{', '.join(f'{x:.1f}' for x in result['load_average'])} on {result['machine'].get('usable_cores', '?')} cores "
        "(other jobs shared the machine: the best of the interleaved rounds is shown).",
        "",
        "Encode rate (texts/s, batch 64, caches off; best round):",
        "",
        "| kind | mean words | " + " | ".join(BACKENDS) + " | onnx ÷ torch | int8 ÷ torch |",
        "|---|---:|" + "---:|" * (len(BACKENDS) + 2),
    ]
    enc = result["encode"]
    for kind in [*kinds, "all"]:
        rates = [
            enc[b]["per_kind"][kind]["texts_per_s_best"] if kind != "all" else enc[b]["texts_per_s_best"]
            for b in BACKENDS
        ]
        words = result["mean_words"].get(kind, "")
        lines.append(
            f"| {kind} | {words} | "
            + " | ".join(f"{r:.1f}" for r in rates)
            + f" | {rates[1] / rates[0]:.2f}× | {rates[2] / rates[0]:.2f}× |"
        )
    lines += [
        "",
        "Encode rate per CPU-second of this process (texts per CPU-second, best round; the fairer "
        "comparison when other jobs hold the cores):",
        "",
        "| kind | " + " | ".join(BACKENDS) + " | onnx ÷ torch | int8 ÷ torch |",
        "|---|" + "---:|" * (len(BACKENDS) + 2),
    ]
    for kind in [*kinds, "all"]:
        rates = [
            enc[b]["per_kind"][kind]["texts_per_cpu_s_best"] if kind != "all" else enc[b]["texts_per_cpu_s_best"]
            for b in BACKENDS
        ]
        lines.append(
            f"| {kind} | "
            + " | ".join(f"{r:.1f}" for r in rates)
            + f" | {rates[1] / rates[0]:.2f}× | {rates[2] / rates[0]:.2f}× |"
        )
    lines += [
        "",
        "Cosine of each onnx vector to torch's (mean / min):",
        "",
        "| kind | onnx | onnx-int8 |",
        "|---|---|---|",
    ]
    for kind in kinds:
        cells = [
            f"{enc[b]['per_kind'][kind]['cosine_to_torch_mean']:.6f} / {enc[b]['per_kind'][kind]['cosine_to_torch_min']:.6f}"
            for b in ("onnx", "onnx-int8")
        ]
        lines.append(f"| {kind} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "Query embedding (`embed_query`, one text, distinct queries):",
        "",
        "| backend | p50 ms | p95 ms | min ms | CPU ms p50 |",
    ]
    lines.append("|---|---:|---:|---:|---:|")
    for b in BACKENDS:
        q = result["query_embedding"][b]
        lines.append(f"| {b} | {q['p50_ms']:.2f} | {q['p95_ms']:.2f} | {q['min_ms']:.2f} | {q['cpu_p50_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=datagen.default_data_dir())
    parser.add_argument("--per-kind", type=int, default=128, help="texts encoded per entity type")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (the best is reported)")
    parser.add_argument("--queries", type=int, default=100, help="query embeddings timed per backend")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where the onnx exports are cached")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.argv = argv
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = json.dumps(result, indent=2)
    (args.out / f"embed-backends-{stamp}.json").write_text(payload, encoding="utf-8")
    (args.out / "embed-backends-latest.json").write_text(payload, encoding="utf-8")
    (args.out / "embed-backends-latest.md").write_text(report(result), encoding="utf-8")
    print(report(result))


if __name__ == "__main__":
    main()
