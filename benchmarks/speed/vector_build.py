"""The vector index built from a kept store: peak memory, time, size and answers, per checkout.

    python -m benchmarks.speed.vector_build --data-dir DIR [--tree A --tree B] [--queries 200]
                                            [--out FILE]

`DIR` is an embedded store with vectors, such as the speed suite's
`scale-embedded-1m/store` kept with `--keep-data`. Each checkout runs in a new process that opens
the store, builds the vector index from it into a fresh directory (`VectorIndex.sync`, a rebuild),
then loads the saved index into a second `VectorIndex`. Per checkout: the process's peak RSS
during the build above its RSS before it, the RSS the built index keeps, the build and load
seconds, the index's bytes on disk, and for `--queries` stored vectors (a fixed sample) used as
queries: search p50 / p95 and agreement of the top 10 with exact search over every stored vector.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.speed.measure import machine_info, run_in_tree, write_report
from benchmarks.speed.runner import REPO_ROOT

# Run in the checkout under test.
_BUILD = """
import json, random, sqlite3, sys, tempfile, time
from pathlib import Path
import numpy as np

def status_mb(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key)) / 1024

folder, n_queries = Path(sys.argv[1]), int(sys.argv[2])
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.engine.vectors import VectorIndex

store = EmbeddedGraphStore(folder)
model = store.vector_models()[0]
with sqlite3.connect(folder / "graph.sqlite") as conn:
    all_ids = [r[0] for r in conn.execute("SELECT entity_id FROM vectors WHERE model = ? ORDER BY entity_id", (model,))]
picked = random.Random(23).sample(all_ids, n_queries)
del all_ids
found = store.get_vectors(picked, model)
queries = np.stack([found[i] for i in picked]).astype(np.float32)
queries /= np.linalg.norm(queries, axis=1, keepdims=True)
dim = queries.shape[1]

# exact top 10 of each query over every stored vector, in chunks
best_scores = np.full((n_queries, 10), -np.inf, dtype=np.float32)
best_ids = np.empty((n_queries, 10), dtype=object)
for batch_ids, _, matrix in store.iter_vectors(model):
    matrix = np.asarray(matrix, dtype=np.float32)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    scores = queries @ matrix.T
    ids_arr = np.asarray(batch_ids, dtype=object)
    both = np.concatenate([best_scores, scores], axis=1)
    both_ids = np.concatenate([best_ids, np.broadcast_to(ids_arr, scores.shape)], axis=1)
    top = np.argsort(-both, axis=1, kind="stable")[:, :10]
    best_scores = np.take_along_axis(both, top, axis=1)
    best_ids = np.take_along_axis(both_ids, top, axis=1)
exact = [set(row) for row in best_ids.tolist()]
del best_scores, best_ids

with tempfile.TemporaryDirectory() as tmp:
    index = VectorIndex(Path(tmp) / "ix", model, dim)
    before = status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    index.sync(store)
    build_s = time.perf_counter() - started
    peak = status_mb("VmHWM")
    kept = status_mb("VmRSS")
    disk = sum(p.stat().st_size for p in (Path(tmp) / "ix").iterdir())
    times, agree = [], []
    for q, truth in zip(queries, exact):
        t0 = time.perf_counter()
        hits = index.search(q, k=10)
        times.append((time.perf_counter() - t0) * 1000)
        agree.append(len({i for i, _ in hits} & truth) / 10)
    kinds = index.kinds()
    count = len(index)
    del index
    loaded = VectorIndex(Path(tmp) / "ix", model, dim)
    started = time.perf_counter()
    loaded.load()
    load_s = time.perf_counter() - started
store.close()
print(json.dumps({
    "vectors": count,
    "kinds": kinds,
    "rss_before_mb": round(before, 1),
    "build_peak_above_before_mb": round(peak - before, 1),
    "kept_after_build_mb": round(kept - before, 1),
    "build_seconds": round(build_s, 4),
    "load_seconds": round(load_s, 4),
    "index_disk_mb": round(disk / 1024**2, 1),
    "index_disk_bytes": disk,
    "search_ms_p50": round(float(np.percentile(times, 50)), 3),
    "search_ms_p95": round(float(np.percentile(times, 95)), 3),
    "agreement_with_exact_at_10": round(float(np.mean(agree)), 4),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="an embedded store with vectors")
    parser.add_argument("--tree", type=Path, action="append", help="a checkout to measure (default: this one)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vector-build-latest.json"))
    args = parser.parse_args()
    trees = args.tree or [REPO_ROOT]
    runs: list[dict[str, Any]] = []
    for tree in trees:
        print(f"building the vector index with {tree} ...", flush=True)
        result = run_in_tree(tree, _BUILD, str(args.data_dir), str(args.queries), what="vector index build")
        result["tree"] = str(tree)
        runs.append(result)
        print(result, flush=True)
    write_report(args.out, {"machine": machine_info(), "data_dir": str(args.data_dir), "runs": runs})


if __name__ == "__main__":
    main()
