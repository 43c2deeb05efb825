"""How much knowledge the default extractor adds on the development splits.

    python -m benchmarks.knowledge.coverage [--data ../shared/evaldata] [--datasets ...] [--json OUT]

Per dataset: items; extracted entities and relations per item; the share of items linked to at
least one other item through an entity (entities merged by resolution count as one), with and
without dates; and, for comparison, the share linked before extraction (documents that name
another's exact title, the only links the graph had).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from datetime import UTC
from pathlib import Path
from typing import Any

from aesoperator.config import Settings
from aesoperator.context import ContextEngine
from aesoperator.graph_schema.models import Episode
from aesoperator.ingest.documents import DocumentInput
from benchmarks.quality.datasets import Dataset, load_all

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "evaldata"
EXTRACTED = ("CO_OCCURS_WITH", "ACRONYM_OF")


def ingest(engine: ContextEngine, ds: Dataset) -> tuple[list[str], float]:
    started = time.perf_counter()
    if ds.kind == "documents":
        engine.add_documents(
            (DocumentInput(key=d.key, title=d.title, text=d.text) for d in ds.docs), source=ds.name, embed=False
        )
        items = [f"{ds.name}:doc:{d.key}" for d in ds.docs]
    else:
        by_conv: dict[str, list[Episode]] = defaultdict(list)
        for t in ds.turns:
            by_conv[t.conversation].append(
                Episode(
                    id=f"{t.conversation}/{t.key}",
                    content=t.text,
                    agent_id=f"locomo-{t.conversation}",
                    session_id=t.session,
                    created_at=t.when.replace(tzinfo=UTC),
                    metadata={"speaker": t.speaker, "dia_id": t.key},
                )
            )
        items = []
        for episodes in by_conv.values():
            stored = engine.memory.remember_many(episodes, detect_mentions=False)
            items.extend(e.id for e in stored)
    return items, time.perf_counter() - started


def measure(engine: ContextEngine, items: list[str]) -> dict[str, Any]:
    wanted = set(items)
    mentions: dict[str, set[str]] = defaultdict(set)
    same: list[tuple[str, str]] = []
    extracted_relations = 0
    doc_links: dict[str, set[str]] = defaultdict(set)
    for batch in engine.store.iter_relations():
        for r in batch:
            if not r.is_live():
                continue
            if r.type == "MENTIONS" and r.src in wanted:
                if r.dst in wanted:
                    doc_links[r.src].add(r.dst)
                    doc_links[r.dst].add(r.src)
                else:
                    mentions[r.src].add(r.dst)
            elif r.type == "SAME_AS":
                same.append((r.src, r.dst))
            elif r.properties.get("item") in wanted and (r.type in EXTRACTED or r.type.isupper()):
                extracted_relations += 1
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in same:
        parent[find(b)] = find(a)
    types = {e.id: e.type for b in engine.store.iter_entities(types=None) for e in b if e.source == "knowledge"}

    def linked(skip_dates: bool) -> int:
        holders: dict[str, set[str]] = defaultdict(set)
        for item, ents in mentions.items():
            for e in ents:
                if skip_dates and types.get(e) == "DateTime":
                    continue
                holders[find(e)].add(item)
        return sum(
            1
            for item in items
            if any(
                len(holders[find(e)]) > 1
                for e in mentions.get(item, ())
                if not (skip_dates and types.get(e) == "DateTime")
            )
        )

    n = len(items) or 1
    return {
        "items": len(items),
        "entities_per_item": round(sum(len(mentions[i]) for i in items) / n, 2),
        "relations_per_item": round(extracted_relations / n, 2),
        "linked_share": round(linked(False) / n, 4),
        "linked_share_without_dates": round(linked(True) / n, 4),
        "linked_share_before": round(sum(1 for i in items if doc_links.get(i)) / n, 4),
        "entities": len(types),
        "merges": len(same),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--datasets", default="locomo,musique,hotpotqa,scifact")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    datasets, notes = load_all(Path(args.data), args.datasets.split(","))
    rows = []
    for ds in datasets:
        with tempfile.TemporaryDirectory() as tmp:
            engine = ContextEngine.open(settings=Settings(data_dir=Path(tmp)))
            try:
                items, seconds = ingest(engine, ds)
                row = {"dataset": ds.name, **measure(engine, items), "ingest_seconds": round(seconds, 1)}
            finally:
                engine.close()
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        "| dataset | items | entities/item | relations/item | linked to another item | same, dates left out | linked before extraction | entities | merges |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['items']} | {r['entities_per_item']} | {r['relations_per_item']} "
            f"| {r['linked_share']:.1%} | {r['linked_share_without_dates']:.1%} | {r['linked_share_before']:.1%} "
            f"| {r['entities']} | {r['merges']} |"
        )
    print("\n".join(lines))
    for note in notes:
        print(f"note: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "notes": notes}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
