"""What the query-vector cache saves: `embed_query` for N distinct questions, then the same N again.

    python -m benchmarks.speed.query_cache [--queries 100] [--out FILE]

The engine's embedder is a `LazyEmbedder` whose LRU (keyed by model and text) answers a repeated
query without the model; the first pass encodes, the second is served from the cache.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks import datagen
from benchmarks.speed.measure import progress, summarize

REPO_ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    from aesoperator.engine.embeddings import Embedder
    from aesoperator.engine.lazy_embedder import LazyEmbedder

    p = argparse.ArgumentParser(prog="python -m benchmarks.speed.query_cache", description=__doc__)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    data_dir = (args.data or datagen.default_data_dir(REPO_ROOT)).resolve()
    texts = [q.text for q in datagen.load_queries(data_dir)[: args.queries]]
    embedder = LazyEmbedder(Embedder)
    embedder.load()
    embedder.inner.embed_query("warm up the model")
    passes: dict[str, list[float]] = {}
    with progress() as bar:
        for name in ("first (encoded)", "repeated (cached)"):
            task = bar.add_task(name, total=len(texts))
            times = passes.setdefault(name, [])
            for text in texts:
                t0 = time.perf_counter()
                embedder.embed_query(text)
                times.append((time.perf_counter() - t0) * 1000)
                bar.advance(task)
    result = {name: summarize(ms) for name, ms in passes.items()}
    result["cache"] = {"hits": embedder.query_cache.hits, "misses": embedder.query_cache.misses}
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
