"""What extraction adds to ingest time: the same texts ingested with embedding, without and with
the default extractor, through the real pipeline (map → extract → embed → store) into fresh stores.

    python -m benchmarks.knowledge.speed [--items 300] [--data ../shared/evaldata] [--json OUT]

Each dataset is ingested three times: without extraction, with it, and without it again; the
mean of the two runs without is the reference, so a drift of machine speed during the job does
not favour either side. The spaCy model and the embedding model are loaded and warmed before any
timing (a one-time cost per process, reported apart); each run gets a fresh embedder (its text
cache would otherwise make the second run free) and a fresh extraction cache.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from aesoperator.config import Settings
from aesoperator.engine.embeddings import Embedder
from aesoperator.engine.stores import open_store
from aesoperator.graph_schema.knowledge import TextItem
from aesoperator.ingest.documents import DocumentInput, DocumentsMapper, document_records
from aesoperator.ingest.extract.cache import ExtractionCache
from aesoperator.ingest.extract.default import DefaultExtractor
from aesoperator.ingest.extract.resolve import EntityResolver
from aesoperator.ingest.extract.stage import KnowledgeExtractionStage
from aesoperator.ingest.pipeline import IngestPipeline
from benchmarks.quality.datasets import load_all

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "evaldata"


def documents(name: str, data: Path, n: int) -> list[DocumentInput]:
    [ds], _ = load_all(data, [name])
    if ds.kind == "documents":
        return [DocumentInput(key=d.key, title=d.title, text=d.text, type="Document") for d in ds.docs[:n]]
    return [
        DocumentInput(
            key=f"{t.conversation}/{t.key}", title=f"{t.speaker} {t.key}", text=f"{t.speaker}: {t.text}", type="Episode"
        )
        for t in ds.turns[:n]
    ]


def one_run(docs: list[DocumentInput], extract: bool, extractor: DefaultExtractor) -> dict[str, Any]:
    embedder = Embedder()
    embedder.embed(["warm up the model", "and its threads"])
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Settings(data_dir=Path(tmp)))
        stage = (
            KnowledgeExtractionStage(store, extractor, ExtractionCache(None), EntityResolver(store))
            if extract
            else None
        )
        pipeline = IngestPipeline(store, embedder, batch_size=1000, knowledge=stage)
        started = time.perf_counter()
        report = pipeline.run("bench", document_records("bench", docs), DocumentsMapper("bench", "default"))
        seconds = time.perf_counter() - started
        stats = store.stats()
        store.close()
    return {
        "seconds": round(seconds, 3),
        "stage_seconds": {k: round(v, 3) for k, v in report.stage_seconds.items()},
        "entities": stats.entities,
        "relations": stats.relations,
        "texts_embedded": report.texts_embedded,
        "mentions": report.mentions,
        "merges": report.merges,
    }


def copy_tree(tree: Path, limit: int, into: Path) -> int:
    """The first `limit` text and code files of `tree` (sorted walk, site-packages left out)."""
    n = 0
    for path in sorted(tree.rglob("*")):
        if n >= limit:
            break
        if not path.is_file() or "site-packages" in path.parts or "__pycache__" in path.parts:
            continue
        if path.suffix not in {".py", ".md", ".txt", ".rst", ".js", ".ts", ".go", ".java", ".rs", ".toml", ".cfg"}:
            continue
        if path.stat().st_size > 200_000:
            continue
        target = into / path.relative_to(tree)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        n += 1
    return n


def tree_run(folder: Path, extractor: Literal["default", "none"]) -> dict[str, Any]:
    from aesoperator.context import ContextEngine

    embedder = Embedder()
    embedder.embed(["warm up the model", "and its threads"])
    with tempfile.TemporaryDirectory() as tmp:
        engine = ContextEngine.open(settings=Settings(data_dir=Path(tmp), extractor=extractor), embedder=embedder)
        _ = engine.knowledge  # the NER model is loaded before timing
        started = time.perf_counter()
        report = engine.ingest_path(folder, name="tree")
        seconds = time.perf_counter() - started
        stats = engine.stats()
        engine.close()
    return {
        "seconds": round(seconds, 3),
        "stage_seconds": {k: round(v, 3) for k, v in report.stage_seconds.items()},
        "entities": stats.entities,
        "relations": stats.relations,
        "relation_types": stats.relation_types,
    }


def tree_main(tree: Path, limit: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tree"
        files = copy_tree(tree, limit, folder)
        a = tree_run(folder, "none")
        b = tree_run(folder, "default")
        c = tree_run(folder, "none")
    base = (a["seconds"] + c["seconds"]) / 2
    row = {
        "tree": str(tree),
        "files": files,
        "without_seconds": [a["seconds"], c["seconds"]],
        "with_seconds": b["seconds"],
        "added_share": round((b["seconds"] - base) / base, 4),
        "with": b,
        "without": a,
    }
    print(json.dumps(row), flush=True)
    print(
        f"\n{files} files of {tree}: ingest with embedding {base:.1f} s, with extraction {b['seconds']:.1f} s "
        f"({row['added_share']:+.1%}); knowledge stage {b['stage_seconds'].get('knowledge', 0):.1f} s; "
        f"entities {a['entities']} → {b['entities']}, relations {a['relations']} → {b['relations']}"
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--datasets", default="scifact,hotpotqa,locomo")
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--tree", type=Path, default=None, help="also a folder of real files (e.g. the standard library)"
    )
    parser.add_argument("--files", type=int, default=300, help="files taken from --tree")
    args = parser.parse_args(argv)
    if args.tree is not None and args.datasets == "none":
        tree_main(args.tree, args.files)
        return 0
    t0 = time.perf_counter()
    extractor = DefaultExtractor()
    extractor.extract([TextItem("warm", "Ada Lovelace met Charles Babbage in London in 1833.")])
    load_seconds = time.perf_counter() - t0
    rows = []
    for name in args.datasets.split(","):
        docs = documents(name, Path(args.data), args.items)
        without_a = one_run(docs, False, extractor)
        with_ = one_run(docs, True, extractor)
        without_b = one_run(docs, False, extractor)
        base = (without_a["seconds"] + without_b["seconds"]) / 2
        row = {
            "dataset": name,
            "items": len(docs),
            "chars_per_item": round(sum(len(d.text) for d in docs) / max(1, len(docs))),
            "without_seconds": [without_a["seconds"], without_b["seconds"]],
            "with_seconds": with_["seconds"],
            "added_share": round((with_["seconds"] - base) / base, 4),
            "knowledge_stage_seconds": with_["stage_seconds"].get("knowledge", 0.0),
            "embed_seconds_with": with_["stage_seconds"]["embed"],
            "entities_without": without_a["entities"],
            "entities_with": with_["entities"],
            "relations_with": with_["relations"],
            "texts_embedded_with": with_["texts_embedded"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nspaCy model load and warm-up (once per process): {load_seconds:.1f} s\n")
    print(
        "| dataset | items | chars/item | ingest with embedding (s) | + extraction (s) | added | extraction stage (s) | entities without → with |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = sum(r["without_seconds"]) / 2
        print(
            f"| {r['dataset']} | {r['items']} | {r['chars_per_item']} | {base:.1f} | {r['with_seconds']:.1f} "
            f"| {r['added_share']:+.1%} | {r['knowledge_stage_seconds']:.1f} | {r['entities_without']} → {r['entities_with']} |"
        )
    tree_row = tree_main(args.tree, args.files) if args.tree is not None else None
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "tree": tree_row, "model_load_seconds": round(load_seconds, 2)}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
