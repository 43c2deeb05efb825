"""What knowledge extraction adds to ingest with embedding, on the benchmark's own texts.

The `extraction` job ingests the first articles of the benchmark stream (documents, chunks and
their title entities: the texts the `embed` job embeds) through `IngestPipeline` with embedding
on, three times on fresh embedded stores: with `extractor="none"`, with `"default"` (rules + the
spaCy NER model, code symbols, entity resolution: what `ContextEngine` builds from the settings),
and with `"none"` again. The mean of the two runs without is the reference, so a drift of the
machine's speed during the job favours neither side. Wall time and this process's CPU time (all
its threads) are both reported: on a shared machine the CPU figure is the steadier one.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from benchmarks import datagen
from benchmarks.speed.measure import console

TARGET_ADDED = 0.25  # extraction adds at most 25% to ingest-with-embedding time


def _one_run(
    units: list[tuple[str, list[Any]]], extractor: Literal["none", "default"], batch_size: int
) -> dict[str, Any]:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings
    from aesoperator.engine.embeddings import Embedder
    from aesoperator.graph_schema.ids import content_hash
    from aesoperator.graph_schema.models import Entity
    from aesoperator.ingest.pipeline import IngestPipeline
    from aesoperator.ingest.records import SourceRecord
    from benchmarks.speed.jobs import _BenchMapper

    embedder = Embedder()  # fresh: its text cache would make a second run free
    embedder.embed(["warm up the model", "and its threads"])
    with tempfile.TemporaryDirectory(prefix="aesop-extraction-") as tmp:
        settings = Settings(data_dir=Path(tmp), extractor=extractor, write_batch_size=batch_size)
        engine = ContextEngine.open(settings=settings, embedder=embedder)
        knowledge = engine.knowledge
        if knowledge is not None:  # the NER model loads before timing, as in a long-running server
            knowledge.process(
                [Entity(id="warm:note", type="Note", name="warm", text="Ada Lovelace met Charles Babbage in London.")]
            )
        records = []
        for key, items in units:
            texts = "\n".join(i.text for i in items if isinstance(i, Entity))
            digest = content_hash(texts + key)
            records.append(SourceRecord(key=key, kind="bench", content_hash=digest, payload={"items": items}, uri=key))
        pipeline = IngestPipeline(engine.store, embedder, batch_size=batch_size, knowledge=knowledge)
        pipeline.claim_source("bench", "bench://extraction")
        wall0, cpu0 = time.perf_counter(), time.process_time()
        report = pipeline.run("bench", iter(records), _BenchMapper(), total=len(records))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        stats = engine.stats()
        engine.close()
    return {
        "extractor": extractor,
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "stage_seconds": {k: round(v, 3) for k, v in report.stage_seconds.items()},
        "texts_embedded": report.texts_embedded,
        "entities": stats.entities,
        "relations": stats.relations,
        "mentions": report.mentions,
        "merges": report.merges,
    }


def run_extraction_job(spec: dict[str, Any]) -> dict[str, Any]:
    from aesoperator.graph_schema.models import Entity

    corpus = datagen.load_corpus(Path(spec["data_dir"]))
    units = list(datagen.GraphStream(corpus).units(int(spec["extraction_entities"])))
    entities = sum(1 for _, items in units for i in items if isinstance(i, Entity))
    console.log(f"extraction share: {len(units)} articles, {entities} entities, three ingests")
    order: tuple[Literal["none", "default"], ...] = ("none", "default", "none")
    runs = [_one_run(units, extractor, int(spec["batch_size"])) for extractor in order]
    without, with_ = [runs[0], runs[2]], runs[1]
    base_wall = sum(r["seconds"] for r in without) / 2
    base_cpu = sum(r["cpu_seconds"] for r in without) / 2
    return {
        "backend": "embedded",
        "articles": len(units),
        "entities_in": entities,
        "runs": runs,
        "added_wall": round(with_["seconds"] / base_wall - 1, 4),
        "added_cpu": round(with_["cpu_seconds"] / base_cpu - 1, 4),
        "knowledge_stage_share": round(with_["stage_seconds"].get("knowledge", 0.0) / base_wall, 4),
    }


def ok(results: dict[str, Any]) -> dict[str, Any] | None:
    res = results.get("extraction")
    return res if isinstance(res, dict) and "error" not in res and "runs" in res else None


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    res = ok(results)
    if res is None:
        return []
    a, b, c = res["runs"]
    return [
        {
            "name": "time extraction adds to ingest with embedding (default extractor)",
            "backend": "embedded",
            "size": None,
            "value": res["added_wall"],
            "target": f"<= {TARGET_ADDED}",
            "met": res["added_wall"] <= TARGET_ADDED,
            "detail": f"{res['articles']} articles; without {a['seconds']:.1f} s and {c['seconds']:.1f} s, with "
            f"{b['seconds']:.1f} s; CPU time {res['added_cpu']:+.1%}; the knowledge stage itself "
            f"{b['stage_seconds'].get('knowledge', 0):.1f} s ({res['knowledge_stage_share']:.1%} of the time without)",
        }
    ]


def markdown(results: dict[str, Any], h2: str) -> list[str]:
    res = ok(results)
    if res is None:
        return []
    a, b, c = res["runs"]
    lines = [
        f"{h2} What knowledge extraction adds",
        "",
        f"The first {res['articles']} articles of the stream ({res['entities_in']:,} entities) through "
        "`IngestPipeline` with embedding, on fresh embedded stores: without extraction, with the default "
        "extractor (rules, spaCy NER, code symbols, entity resolution), and without again.",
        "",
        "| run | wall (s) | CPU (s) | knowledge stage (s) | embed (s) | texts embedded | entities | relations |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in (("without", a), ("with extraction", b), ("without, again", c)):
        st = r["stage_seconds"]
        lines.append(
            f"| {label} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {st.get('knowledge', 0):.1f} | "
            f"{st.get('embed', 0):.1f} | {r['texts_embedded']:,} | {r['entities']:,} | {r['relations']:,} |"
        )
    lines += [
        "",
        f"Added: **{res['added_wall']:+.1%}** wall time, {res['added_cpu']:+.1%} CPU time (target at most "
        f"+{TARGET_ADDED:.0%}); the knowledge stage alone is {res['knowledge_stage_share']:.1%} of the time without.",
        "",
    ]
    return lines
