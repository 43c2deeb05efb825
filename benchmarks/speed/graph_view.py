"""The embedded store's traversal view: the memory it holds, its load time and its walks, at the
speed suite's graph sizes, for one checkout or several (`--tree`, in turn, each in a new process).

The store is written once per size with the speed suite's generator (no vectors) into
`--store-dir` and kept, so later runs and other checkouts read the same rows (the stores of
`benchmarks.speed.keyword_build` are the same: point both at one folder). Per checkout and size:
the process's RSS before and after opening the store (which loads the view), the open's seconds,
then breadth-first walks through `EmbeddedGraphStore.neighbors` from random seeds (depth 2 from
10 seeds, both directions, the default limit), timed per walk, with a digest of their results so
that checkouts can be compared for identical answers.

    python -m benchmarks.speed.graph_view [--sizes 100k,1m] [--store-dir DIR] [--tree DIR ...]
                                           [--walks 300] [--data ../shared/evaldata] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

from benchmarks import datagen
from benchmarks.speed.keyword_build import ensure_store
from benchmarks.speed.measure import machine_info, run_in_tree, write_report
from benchmarks.speed.runner import REPO_ROOT, parse_size, size_label

# Run in the checkout under test: open the store (the view loads), walk, report as JSON.
_WALK = """
import hashlib, json, random, sqlite3, sys, time
from pathlib import Path
import numpy as np
from aesoperator.engine.stores.embedded import EmbeddedGraphStore

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

folder, walks = Path(sys.argv[1]), int(sys.argv[2])
with sqlite3.connect(folder / "graph.sqlite") as conn:
    ids = [row[0] for row in conn.execute("SELECT id FROM entities ORDER BY id")]
rng = random.Random(17)
seeds = [rng.sample(ids, 10) for _ in range(walks)]
del ids
before = rss_mb()
started = time.perf_counter()
store = EmbeddedGraphStore(folder)
open_seconds = time.perf_counter() - started
after = rss_mb()
digest = hashlib.sha256()
times = []
for round_ in range(2):
    for batch in seeds:
        started = time.perf_counter()
        links = store.neighbor_links(batch, depth=2)
        times.append((time.perf_counter() - started) * 1000)
        if round_ == 0:
            digest.update(json.dumps([list(links.hops.items()), links.relation_ids, links.edges]).encode())
store.close()
second = np.asarray(times[walks:])  # the second pass: caches warm
print(json.dumps({"open_seconds": open_seconds, "rss_before_mb": before, "rss_after_open_mb": after,
                  "view_rss_mb": after - before, "walk_p50_ms": float(np.percentile(second, 50)),
                  "walk_p95_ms": float(np.percentile(second, 95)), "walks": walks, "digest": digest.hexdigest()}))
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed.graph_view", description=__doc__)
    parser.add_argument("--sizes", default="100k,1m", help="graph sizes in entities (default 100k,1m)")
    parser.add_argument("--store-dir", type=Path, default=Path("/tmp/aesop-keyword-build"),
                        help="where the generated stores are kept between runs")  # fmt: skip
    parser.add_argument(
        "--tree", type=Path, action="append", help="a checkout to measure (repeatable; default this one)"
    )
    parser.add_argument("--walks", type=int, default=300, help="walks per pass (two passes; the second is timed)")
    parser.add_argument("--data", type=Path, default=datagen.default_data_dir(REPO_ROOT))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "graph-view.json")
    return parser.parse_args(argv)


def measure(tree: Path, folder: Path, walks: int) -> dict[str, Any]:
    return run_in_tree(tree, _WALK, str(folder), str(walks), what="the walks")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trees = args.tree or [REPO_ROOT]
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    report: dict[str, Any] = {"machine": machine_info(), "sizes": {}}
    for size in sizes:
        folder = args.store_dir / size_label(size)
        entities = ensure_store(folder, size, args.data)
        rows = []
        for tree in trees:
            commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
            result = {
                "tree": str(tree),
                "commit": commit,
                "load_average": os.getloadavg()[0],
                **measure(tree, folder, args.walks),
            }
            rows.append(result)
            print(f"{size_label(size)} ({entities:,} entities) {commit}: view {result['view_rss_mb']:,.0f} MB, "
                  f"open {result['open_seconds']:.1f} s, walk p50 / p95 {result['walk_p50_ms']:.2f} / "
                  f"{result['walk_p95_ms']:.2f} ms, results {result['digest'][:12]}")  # fmt: skip
        same = len({row["digest"] for row in rows}) == 1
        if len(rows) > 1:
            print(f"{size_label(size)}: the checkouts' walks are {'identical' if same else 'DIFFERENT'}")
        report["sizes"][size_label(size)] = {"entities": entities, "runs": rows, "identical_walks": same}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
