"""Explorer page loads at 100k entities, measured in the browser.

Builds (once, kept in `--data-dir`) an embedded store of the benchmark graph (`benchmarks/datagen.py`:
real HotpotQA/MuSiQue/SciFact texts), with real MiniLM vectors for the first `--real-vectors`
entities and noisy copies of them for the rest (as the speed suite's scale jobs do), then serves
the explorer on loopback and drives Debian's Chromium with Playwright:

- search page: a full page load of `/explore/?n#/search?q=<question>` until the results are
  rendered (the page's own `performance.now()` when it marks them loaded: HTML, scripts, the
  caller check, the search call and rendering);
- entity page: the same for `#/entity?id=<top hit>` until the entity's details are rendered, and
  until its neighbourhood graph is drawn.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.explore_pages --size 100000 --queries 30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from playwright.sync_api import Page, sync_playwright
from tqdm import tqdm

from aesoperator import ContextEngine
from aesoperator.config import Settings
from aesoperator.engine.embeddings import Embedder, embedding_text
from aesoperator.explore import standalone_app
from aesoperator.explore.server import build_explorer
from aesoperator.graph_schema.ids import content_hash
from aesoperator.security.guard import CallGuard
from aesoperator.security.http.listener import HTTPServerThread, bind_socket, resource_url_for
from aesoperator.security.tokens import StaticTokenVerifier, TokenStore
from benchmarks import datagen
from benchmarks.speed.jobs import _synthetic_vectors

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_MS = 300.0


def build_store(data_dir: Path, size: int, real_vectors: int) -> dict[str, Any]:
    """The benchmark graph with `size` entities and a vector for each (skipped when built already)."""
    marker = data_dir / "explore-bench.json"
    if marker.exists():
        return dict(json.loads(marker.read_text()))
    stream = datagen.GraphStream(datagen.load_corpus(datagen.default_data_dir()))
    started = time.perf_counter()
    with ContextEngine.open(settings=Settings(data_dir=data_dir, extractor="none")) as engine:
        with tqdm(total=size, desc="write graph", unit="entity") as bar:
            for entities, relations in datagen.batches(stream.items(size), 2000):
                engine.store.upsert(entities, relations)
                bar.update(len(entities))
        embedder = Embedder()
        model = embedder.model_name
        sample: np.ndarray | None = None
        position = 0
        with tqdm(total=size, desc="vectors (real sample, then noisy copies)", unit="entity") as bar:
            for batch in engine.store.iter_entities(batch_size=2000):
                texts = [embedding_text(e) for e in batch]
                if position < real_vectors:
                    matrix = embedder.embed(texts)
                    sample = matrix if sample is None else np.vstack([sample, matrix])
                else:
                    assert sample is not None
                    matrix = _synthetic_vectors(position, len(batch), sample, len(sample), datagen.SEED + position)
                vectors = {
                    e.id: (content_hash(t), matrix[i]) for i, (e, t) in enumerate(zip(batch, texts, strict=True))
                }
                engine.store.upsert(vectors=vectors, vector_model=model)
                position += len(batch)
                bar.update(len(batch))
        engine.rebuild_index()
        stats = engine.stats()
    info = {
        "entities": stats.entities,
        "relations": stats.relations,
        "vectors": stats.vectors,
        "real_vectors": len(sample) if sample is not None else 0,
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    marker.write_text(json.dumps(info))
    marker.chmod(0o600)  # the data dir holds only owner-only files (aesop doctor checks it)
    return info


def _load(page: Page, url: str, mark: str) -> float:
    """Load `url` afresh and return the page's time (ms since navigation) when it marks `mark`."""
    page.goto(url)
    page.wait_for_function("m => window.aesopTimings && window.aesopTimings[m] !== undefined", arg=mark)
    return float(page.evaluate("m => window.aesopTimings[m]", mark))


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "max_ms": round(ordered[-1], 1),
        "mean_ms": round(statistics.fmean(ordered), 1),
    }


def measure(data_dir: Path, queries: int, chromium: str) -> dict[str, Any]:
    questions = [q.text for q in datagen.load_queries(datagen.default_data_dir())][:queries]
    engine = ContextEngine.open(settings=Settings(data_dir=data_dir, extractor="none"))
    guard = CallGuard.for_data_dir(data_dir)
    try:
        engine.search("warm up the model and the indexes", k=5)
        tokens = TokenStore.in_data_dir(data_dir)
        token = tokens.add("bench", ["read:*"], rotate=True).token
        sock = bind_socket("127.0.0.1", 0)
        explorer = build_explorer(
            engine, sock, guard=guard, verifier=StaticTokenVerifier.in_data_dir(data_dir), host="127.0.0.1"
        )
        base = resource_url_for(sock, "/explore/")
        search_ms: list[float] = []
        entity_ms: list[float] = []
        graph_ms: list[float] = []
        api: dict[str, list[float]] = {"search": [], "entity": []}
        with HTTPServerThread(standalone_app(explorer), sock), sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_init_script(f"sessionStorage.setItem('aesop-explore-token', {json.dumps(token)})")
            page = context.new_page()
            _load(page, base + "#/search?q=warm", "search")  # the browser's own cold start, not counted
            for n, question in enumerate(tqdm(questions, desc="page loads", unit="query")):
                search_ms.append(_load(page, f"{base}?{n}#/search?q={quote(question)}", "search"))
                api["search"].append(
                    float(
                        page.evaluate(
                            "() => parseFloat(document.querySelector('#search-status').textContent.split(' in ')[1])"
                        )
                    )
                )
                top = page.get_attribute("#results li.hit", "data-id")
                if top is None:
                    continue
                entity_ms.append(_load(page, f"{base}?e{n}#/entity?id={quote(top, safe='')}", "entity"))
                page.wait_for_function("() => window.aesopTimings.graph !== undefined")
                graph_ms.append(float(page.evaluate("() => window.aesopTimings.graph")))
            browser.close()
        del api["entity"]
        return {
            "queries": len(questions),
            "search_page": _summary(search_ms),
            "search_api_elapsed": _summary(api["search"]),
            "entity_page": _summary(entity_ms),
            "entity_page_with_graph": _summary(graph_ms),
        }
    finally:
        guard.close()
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--real-vectors", type=int, default=4000)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/aesop-explore-bench"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    store = build_store(args.data_dir, args.size, args.real_vectors)
    load_before = os.getloadavg()[0]
    results = measure(args.data_dir, args.queries, args.chromium)
    load = {"before": round(load_before, 1), "after": round(os.getloadavg()[0], 1), "cores": os.cpu_count()}
    payload = {"store": store, **results, "target_ms": TARGET_MS, "load_average_1min": load}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "explore-pages-latest.json").write_text(json.dumps(payload, indent=2) + "\n")
    rows = [
        f"| {name} | {s['n']} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} |"
        for name, s in (
            ("search page (load → results shown)", results["search_page"]),
            ("  of which the search call (server)", results["search_api_elapsed"]),
            ("entity page (load → details shown)", results["entity_page"]),
            ("entity page (load → graph drawn)", results["entity_page_with_graph"]),
        )
    ]
    table = "\n".join(["| page | n | p50 ms | p95 ms | max ms |", "| --- | --- | --- | --- | --- |", *rows])
    text = (
        f"# Explorer page loads at {store['entities']:,} entities\n\n"
        f"{store['relations']:,} relations, {store['vectors']:,} vectors ({store['real_vectors']:,} real). "
        f"Headless Chromium over loopback; target {TARGET_MS:.0f} ms. Machine load (1-minute average) "
        f"{load['before']} before and {load['after']} after the run on {load['cores']} cores.\n\n{table}\n"
    )
    (RESULTS / "explore-pages-latest.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
