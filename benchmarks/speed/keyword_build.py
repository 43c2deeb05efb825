"""The keyword index's first build: time and peak memory of `KeywordIndex.sync` on a store that
has no saved index (what a new replica, `aesop rebuild-index` or the first search after a large
ingest pays), at the speed suite's graph sizes.

The store is written once per size with the speed suite's generator (real texts of the
evaluation data, repeated with variations past one pass; no vectors) into `--store-dir`, and kept
there so that later runs, and runs of another checkout (`--tree`), build from the same rows. Each
build runs in a new process so its peak RSS is its own.

    python -m benchmarks.speed.keyword_build [--sizes 100k,1m] [--store-dir DIR] [--tree DIR]
                                              [--rounds 1] [--data ../shared/evaldata] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from benchmarks import datagen
from benchmarks.speed.measure import machine_info, progress, run_in_tree, write_report
from benchmarks.speed.runner import REPO_ROOT, parse_size, size_label

BATCH_ROWS = 2_000

# Run in the checkout under test (`--tree`): build the index from the store, report as JSON.
_BUILD = """
import json, resource, sys, time
from pathlib import Path
from aesoperator.engine.keyword_index import KeywordIndex
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
store = EmbeddedGraphStore(Path(sys.argv[1]))
started = time.perf_counter()
index = KeywordIndex(None)
index.sync(store)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "documents": len(index), "postings": index.postings,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed.keyword_build", description=__doc__)
    parser.add_argument("--sizes", default="100k,1m", help="graph sizes in entities (default 100k,1m)")
    parser.add_argument("--store-dir", type=Path, default=Path("/tmp/aesop-keyword-build"),
                        help="where the generated stores are kept between runs")  # fmt: skip
    parser.add_argument("--tree", type=Path, default=REPO_ROOT, help="the checkout whose index is built")
    parser.add_argument("--rounds", type=int, default=1, help="builds per size (the best is reported too)")
    parser.add_argument("--data", type=Path, default=datagen.default_data_dir(REPO_ROOT))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "keyword-build.json")
    return parser.parse_args(argv)


def ensure_store(folder: Path, size: int, data_dir: Path) -> int:
    """The store of `size` generated entities in `folder`, written unless a complete one is there."""
    from aesoperator.engine.stores.base import WriteBatch
    from aesoperator.engine.stores.embedded import EmbeddedGraphStore
    from aesoperator.graph_schema.models import Entity, Relation

    done = folder / "complete.json"
    if done.exists():
        return int(json.loads(done.read_text())["entities"])
    folder.mkdir(parents=True, exist_ok=True)
    store = EmbeddedGraphStore(folder)
    stream = datagen.GraphStream(datagen.load_corpus(data_dir))
    entities: list[Entity] = []
    relations: list[Relation] = []
    with progress() as bar:
        task = bar.add_task(f"writing the {size_label(size)} store", total=size)
        for item in stream.items(size):
            if isinstance(item, Entity):
                entities.append(item)
                bar.advance(task)
            else:
                relations.append(item)
            if len(entities) + len(relations) >= BATCH_ROWS:
                store.write(WriteBatch(entities=entities, relations=relations))
                entities, relations = [], []
        store.write(WriteBatch(entities=entities, relations=relations))
    count = store.stats().entities
    store.close()
    done.write_text(json.dumps({"entities": count}))
    return count


def build_once(tree: Path, folder: Path) -> dict[str, Any]:
    return run_in_tree(tree, _BUILD, str(folder), what="the build")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    commit = subprocess.run(["git", "-C", str(args.tree), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    report: dict[str, Any] = {"machine": machine_info(), "tree": str(args.tree), "commit": commit, "sizes": {}}
    for size in sizes:
        folder = args.store_dir / size_label(size)
        entities = ensure_store(folder, size, args.data)
        builds = []
        for round_ in range(args.rounds):
            load = os.getloadavg()[0]
            build = build_once(args.tree, folder)
            build["load_average"] = load
            builds.append(build)
            print(f"{size_label(size)} ({entities:,} entities) round {round_ + 1}: {build['seconds']:.1f} s, "
                  f"peak RSS {build['peak_rss_mb']:,.0f} MB, {build['postings']:,} postings (load {load:.1f})")  # fmt: skip
        report["sizes"][size_label(size)] = {
            "entities": entities,
            "builds": builds,
            "best_seconds": min(b["seconds"] for b in builds),
        }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
