"""What 8-bit codes cost an IVF sub-index in recall, on real embeddings of the evaluation sets.

    python -m benchmarks.speed.vector_codes [--data ../shared/evaldata] [--out FILE]

Each dataset's items (documents, or conversation turns) and questions are embedded once with the
configured embedder (cached in `--cache`). Over the same vectors it builds the exact index and
IVF sub-indexes with float32 (`flat`) and 8-bit (`sq8`) codes, trained alike (`build_ivf`), and
searches each at two probe depths: the default `nprobe`, and the share of lists that `nprobe`
probes at a million vectors (64 of 4,000), where the IVF loss is largest. Per dataset and
configuration: recall@10 of the gold evidence, agreement of the top 10 with exact search, bytes
per vector of the serialised index, and the search time per query.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from aesoperator.config import load_settings
from aesoperator.engine.embedder_factory import make_embedder
from aesoperator.engine.vector_parts import DEFAULT_NPROBE, build_ivf, ivf_lists
from benchmarks.quality.datasets import LOADERS, Dataset
from benchmarks.speed.measure import write_report

K = 10
MILLION = 1_000_000


def _items(ds: Dataset) -> tuple[list[str], list[str]]:
    """(keys, texts) of a dataset's items; conversation turns are keyed by conversation."""
    if ds.kind == "conversation":
        return [f"{t.conversation}/{t.key}" for t in ds.turns], [f"{t.speaker}: {t.text}" for t in ds.turns]
    return [d.key for d in ds.docs], [f"{d.title}\n{d.text}" if d.title else d.text for d in ds.docs]


def _gold(ds: Dataset) -> list[set[str]]:
    if ds.kind == "conversation":
        return [{f"{q.scope}/{g}" for g in q.gold} for q in ds.questions]
    return [set(q.gold) for q in ds.questions]


def _embedded(ds: Dataset, texts: list[str], cache: Path) -> tuple[np.ndarray, np.ndarray]:
    path = cache / f"{ds.name}.npz"
    if path.exists():
        saved = np.load(path)
        if saved["items"].shape[0] == len(texts) and saved["queries"].shape[0] == len(ds.questions):
            return saved["items"], saved["queries"]
    embedder = make_embedder(load_settings())
    items = np.asarray(embedder.embed(texts), dtype=np.float32)
    queries = np.stack([np.asarray(embedder.embed_query(q.text), dtype=np.float32) for q in ds.questions])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, items=items, queries=queries)
    return items, queries


def _exact(items: np.ndarray) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(items.shape[1]))
    index.add_with_ids(items, np.arange(len(items), dtype=np.int64))
    return index


def _measure(index: faiss.Index, queries: np.ndarray, gold: list[set[int]], truth: np.ndarray) -> dict[str, Any]:
    found, took = [], []
    for query in queries:
        started = time.perf_counter()
        _, labels = index.search(query[None, :], K)
        took.append((time.perf_counter() - started) * 1000)
        found.append(labels[0])
    recall = [len(set(row.tolist()) & g) / len(g) for row, g in zip(found, gold, strict=True) if g]
    agree = [len(set(row.tolist()) & set(t.tolist())) / K for row, t in zip(found, truth, strict=True)]
    return {
        "recall_at_10": round(statistics.fmean(recall), 4),
        "agreement_with_exact_at_10": round(statistics.fmean(agree), 4),
        "bytes_per_vector": round(len(faiss.serialize_index(index)) / index.ntotal, 1),
        "search_ms_p50": round(statistics.median(took), 3),
    }


def run_dataset(ds: Dataset, cache: Path) -> dict[str, Any]:
    keys, texts = _items(ds)
    position = {key: i for i, key in enumerate(keys)}
    gold = [{position[g] for g in wanted if g in position} for wanted in _gold(ds)]
    items, queries = _embedded(ds, texts, cache)
    faiss.normalize_L2(items)
    faiss.normalize_L2(queries)
    exact = _exact(items)
    _, truth = exact.search(queries, K)
    nlist = ivf_lists(len(items))
    depths = {"default": DEFAULT_NPROBE, "as at 1M": max(1, round(nlist * DEFAULT_NPROBE / ivf_lists(MILLION)))}
    out: dict[str, Any] = {"items": len(items), "questions": len(queries), "lists": nlist}
    out["exact"] = _measure(exact, queries, gold, truth)
    labels = np.arange(len(items), dtype=np.int64)
    for codes in ("flat", "sq8"):
        index = build_ivf(items, labels, items.shape[1], DEFAULT_NPROBE, codes)
        for depth, nprobe in depths.items():
            index.nprobe = min(nprobe, nlist)
            out[f"ivf-{codes}, nprobe {index.nprobe} ({depth})"] = _measure(index, queries, gold, truth)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/evaldata"))
    parser.add_argument("--datasets", default="hotpotqa,musique,scifact,locomo")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/aesop-vector-codes"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vector-codes-latest.json"))
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)  # one query at a time, as the engine searches
    results = {}
    for name in args.datasets.split(","):
        ds = LOADERS[name](args.data / name)
        results[name] = run_dataset(ds, args.cache)
        print(json.dumps({name: results[name]}, indent=1))
    write_report(args.out, {"k": K, "datasets": results})


if __name__ == "__main__":
    main()
