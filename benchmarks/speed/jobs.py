"""The measurements themselves. Each job runs in its own process (see `runner`), on a fresh store.

- `embed` job: raw encode rate of the model on a sample of the benchmark texts, then the ingest
  rate of the same sample through the ingest pipeline with embedding on, and the latency of one
  query embedding. Saves the sample's vectors for the `scale` jobs.
- `scale` job (one size, one backend): writes the graph without embedding through
  `store.write` in batches, stores a vector for every entity (the real sample vectors, then
  copies of them with small deterministic noise), reopens the engine, builds the FAISS index
  from the store and runs the queries, recording every stage's time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import datagen
from benchmarks.speed.extraction_share import run_extraction_job
from benchmarks.speed.measure import PhaseMeter, console, dir_bytes, progress, summarize
from benchmarks.speed.memory_server import run_memory_server_job
from benchmarks.speed.write_rate import measure_writes

NOISE_SCALE = 0.01  # per dimension; unit vectors of 384 dims move by about 0.2 (cosine ≈ 0.98)
RAW_ENCODE_CALL = 1024  # texts per encode() call in the raw measurement (progress granularity)
WARMUP_QUERIES = 5
QUERY_EMBED_SAMPLES = 50
ENCODE_BATCH = 64
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Neo4jHandle:
    uri: str
    user: str
    password: str
    database: str | None
    pid: int | None
    stop: Any  # callable
    started_in_s: float | None = None
    launched: bool = False


# -- backends -----------------------------------------------------------------------------------
@contextlib.contextmanager
def neo4j_for_job(spec: dict[str, Any], work: Path) -> Iterator[Neo4jHandle]:
    """A Neo4j for one job: the server named by --neo4j-uri (emptied first), or a fresh
    `tools/neo4j-local` in the job's directory, started with the test suite's helpers."""
    cfg = spec["neo4j"]
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.neo4j_support import Neo4jServer, clear_database, start_local_neo4j

    if cfg.get("uri"):
        server = Neo4jServer(cfg["uri"], cfg.get("user") or "neo4j", cfg.get("password") or "", cfg.get("database"))
        clear_database(server)
        yield Neo4jHandle(server.uri, server.user, server.password, server.database, None, lambda: None)
        return
    home = work / "neo4j-home"
    home.mkdir(parents=True, exist_ok=True)
    if cfg.get("java_opts"):
        os.environ["NEO4J_LOCAL_JAVA_OPTS"] = cfg["java_opts"]
    password = "bench-" + secrets.token_hex(8)
    console.log("starting tools/neo4j-local for this job")
    try:
        local = start_local_neo4j(home, password=password)
    except BaseException as exc:  # the helper skips or fails the way pytest does
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise RuntimeError(f"could not start tools/neo4j-local: {type(exc).__name__}: {exc}") from None
    try:
        yield Neo4jHandle(local.uri, "neo4j", password, None, local.process.pid, local.stop, local.started_in_s, True)
    finally:
        local.stop()


def open_store(backend: str, work: Path, neo: Neo4jHandle | None) -> Any:
    if backend == "embedded":
        from aesoperator.engine.stores.embedded import EmbeddedGraphStore

        return EmbeddedGraphStore(work / "store")
    from aesoperator.engine.stores.neo4j import Neo4jGraphStore

    assert neo is not None
    return Neo4jGraphStore(neo.uri, neo.user, neo.password, database=neo.database)


def engine_settings(backend: str, work: Path, neo: Neo4jHandle | None, batch_size: int) -> Any:
    from aesoperator.config import Settings

    if backend == "embedded":
        return Settings(data_dir=work / "store", write_batch_size=batch_size)
    assert neo is not None
    return Settings(
        data_dir=work / "engine",
        graph=neo.uri,
        neo4j_user=neo.user,
        neo4j_password=neo.password,
        neo4j_database=neo.database,
        write_batch_size=batch_size,
    )


# -- helpers ------------------------------------------------------------------------------------
def _load(spec: dict[str, Any]) -> datagen.Corpus:
    t0 = time.perf_counter()
    corpus = datagen.load_corpus(Path(spec["data_dir"]))
    console.log(f"corpus loaded in {time.perf_counter() - t0:.1f} s: {corpus.counts}")
    return corpus


class _BenchMapper:
    """Maps one benchmark record (an article's share of the stream) to its prebuilt items."""

    kind = "bench"

    def map(self, record: Any) -> Any:
        from aesoperator.graph_schema.models import Entity
        from aesoperator.ingest.records import MappedItem

        items = record.payload["items"]
        return MappedItem(
            entities=[i for i in items if isinstance(i, Entity)],
            relations=[i for i in items if not isinstance(i, Entity)],
        )


class _BarReporter:
    """The pipeline's progress protocol on top of a rich bar counting entities."""

    def __init__(self, bar: Any, task: Any, per_record: list[int]) -> None:
        self.bar, self.task, self.per_record, self.i = bar, task, per_record, 0

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.i < len(self.per_record):
                self.bar.advance(self.task, self.per_record[self.i])
            self.i += 1

    def finish(self) -> None:
        pass


def _token_lengths(model: Any, texts: list[str]) -> dict[str, float]:
    tok = model.tokenizer
    limit = int(getattr(model, "max_seq_length", 256) or 256)
    lengths = [len(ids) for ids in tok(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]]
    clipped = [min(n, limit) for n in lengths]
    return {
        "mean_tokens": round(float(np.mean(clipped)), 1),
        "median_tokens": float(np.median(clipped)),
        "truncated_share": round(sum(n > limit for n in lengths) / len(lengths), 3),
        "max_seq_length": limit,
        "mean_words": round(float(np.mean([len(t.split()) for t in texts])), 1),
    }


# -- embed job ----------------------------------------------------------------------------------
def _raw_encode(model: Any, texts: list[str], meter: PhaseMeter, phase: str) -> tuple[np.ndarray, float]:
    """model.encode over the texts (batch 64), in calls of RAW_ENCODE_CALL texts; returns the
    vectors and the seconds the encode calls took."""
    parts: list[np.ndarray] = []
    with meter.phase(phase), progress() as bar:
        task = bar.add_task("raw encode (model.encode, batch 64)", total=len(texts))
        t0 = time.perf_counter()
        for start in range(0, len(texts), RAW_ENCODE_CALL):
            chunk = texts[start : start + RAW_ENCODE_CALL]
            parts.append(
                model.encode(
                    chunk,
                    batch_size=ENCODE_BATCH,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            )
            bar.advance(task, len(chunk))
        seconds = time.perf_counter() - t0
    return np.ascontiguousarray(np.vstack(parts), dtype=np.float32), seconds


def _warm_up_store(store: Any, corpus: datagen.Corpus, sample: int, vectors: np.ndarray) -> dict[str, Any]:
    """Write, then delete, the stream's next `sample` entities (with vectors) before the timed ingest.

    A long-running server has its write paths compiled and cached; a Neo4j started seconds ago
    spends its first batches in the JVM's compiler, which would be charged to the pipeline."""
    from aesoperator.engine.embeddings import DEFAULT_MODEL
    from aesoperator.engine.stores.base import WriteBatch
    from aesoperator.graph_schema.ids import content_hash
    from aesoperator.graph_schema.models import Entity

    items = list(datagen.GraphStream(corpus).items(2 * sample))
    first_ids = {i.id for i in datagen.GraphStream(corpus).items(sample) if isinstance(i, Entity)}
    entities = [i for i in items if isinstance(i, Entity) and i.id not in first_ids]
    kept = {e.id for e in entities}
    relations = [i for i in items if not isinstance(i, Entity) and i.src in kept and i.dst in kept]
    t0 = time.perf_counter()
    for start in range(0, len(entities), ENCODE_BATCH * 4):
        chunk = entities[start : start + ENCODE_BATCH * 4]
        ids = {e.id for e in chunk}
        store.write(
            WriteBatch(
                entities=chunk,
                relations=[r for r in relations if r.src in ids and r.dst in ids],
                vectors={e.id: (content_hash(e.text), vectors[n % len(vectors)]) for n, e in enumerate(chunk)},
                vector_model=DEFAULT_MODEL,
            )
        )
    store.write(WriteBatch(delete_entity_ids=sorted(kept)))
    return {"entities": len(entities), "seconds": round(time.perf_counter() - t0, 3)}


def run_embed_job(spec: dict[str, Any]) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from aesoperator.engine.embeddings import DEFAULT_MODEL, Embedder, default_num_threads, resolve_model
    from aesoperator.graph_schema.ids import content_hash
    from aesoperator.graph_schema.models import Entity
    from aesoperator.ingest.pipeline import IngestPipeline, embedding_text
    from aesoperator.ingest.records import SourceRecord

    backend = spec["backend"]
    work = Path(spec["work_dir"])
    meter = PhaseMeter()
    out: dict[str, Any] = {"backend": backend, "sample": spec["embed_sample"]}
    with meter.phase("load_corpus"):
        corpus = _load(spec)
        units = list(datagen.GraphStream(corpus).units(spec["embed_sample"]))
        entities = [i for _, items in units for i in items if isinstance(i, Entity)]
        relations = sum(1 for _, items in units for i in items if not isinstance(i, Entity))
        texts = [embedding_text(e) for e in entities]
        queries = datagen.load_queries(Path(spec["data_dir"]))
    out["entities"] = len(entities)
    out["relations"] = relations
    out["distinct_texts"] = len(set(texts))
    out["entity_types"] = dict(
        sorted({t: sum(e.type == t for e in entities) for t in {e.type for e in entities}}.items())
    )

    # (a) the model on its own: the upper bound for any ingest with embedding.
    import torch

    threads = default_num_threads()
    torch.set_num_threads(threads)
    with meter.phase("load_model"):
        model = SentenceTransformer(resolve_model(DEFAULT_MODEL).location, device="cpu", local_files_only=True)
        model.eval()
        warm = [q.text for q in queries[-ENCODE_BATCH:]]
        model.encode(warm, batch_size=ENCODE_BATCH, normalize_embeddings=True, show_progress_bar=False)
    out["text_stats"] = _token_lengths(model, texts)
    out["torch_threads"] = torch.get_num_threads()
    vectors, raw_first = _raw_encode(model, texts, meter, "raw_encode")
    out["raw_encode"] = {
        "texts": len(texts),
        "batch_size": ENCODE_BATCH,
        "texts_per_call": RAW_ENCODE_CALL,
        "runs_seconds": [round(raw_first, 3)],
    }

    # (b) the same texts through the ingest pipeline (map → embed → store, writes overlapped).
    neo_cm = neo4j_for_job(spec, work) if backend == "neo4j" else contextlib.nullcontext(None)
    with neo_cm as neo:
        if neo is not None:
            meter.watch_server(neo.pid)
            out["neo4j"] = {"uri": neo.uri, "launched": neo.launched, "start_seconds": neo.started_in_s}
        store = open_store(backend, work, neo)
        with meter.phase("store_warm_up"):
            out["store_warm_up"] = _warm_up_store(store, corpus, spec["embed_sample"], vectors)
        embedder = Embedder(DEFAULT_MODEL, batch_size=ENCODE_BATCH)
        embedder.load()
        embedder.embed(warm)  # warmed like the raw model, with texts outside the sample
        embedder.reset_stats()
        records = []
        per_record = []
        for key, items in units:
            ents = [i for i in items if isinstance(i, Entity)]
            digest = content_hash("\n".join(embedding_text(e) for e in ents) + key)
            uri = ents[0].provenance.uri if ents and ents[0].provenance else key
            records.append(SourceRecord(key=key, kind="bench", content_hash=digest, payload={"items": items}, uri=uri))
            per_record.append(len(ents))
        with meter.phase("ingest_with_embedding"), progress() as bar:
            task = bar.add_task(f"ingest with embedding → {backend}", total=len(entities))
            pipeline = IngestPipeline(
                store, embedder, batch_size=spec["batch_size"], progress=_BarReporter(bar, task, per_record)
            )
            pipeline.claim_source("bench", "bench://speed")
            t0 = time.perf_counter()
            report = pipeline.run("bench", iter(records), _BenchMapper(), total=len(records))
            ingest_seconds = time.perf_counter() - t0
        stats = embedder.stats()
        # The raw rate again, after the ingest: the mean of the two runs is the reference, so
        # a drift in machine speed during the job does not favour either side.
        _, raw_second = _raw_encode(model, texts, meter, "raw_encode_again")
        runs = [raw_first, raw_second]
        out["raw_encode"]["runs_seconds"] = [round(x, 3) for x in runs]
        out["raw_encode"]["seconds"] = round(sum(runs) / 2, 3)
        out["raw_encode"]["texts_per_s"] = round(len(texts) / (sum(runs) / 2), 2)
        out["raw_encode"]["runs_texts_per_s"] = [round(len(texts) / x, 2) for x in runs]
        ingest_rate = len(entities) / ingest_seconds
        out["ingest_with_embedding"] = {
            "path": "IngestPipeline.run (map → embed → store.write, one write in flight)",
            "entities": len(entities),
            "relations_written": report.relations_written,
            "vectors_written": report.vectors_written,
            "texts_encoded": stats.texts_encoded,
            "texts_from_cache": stats.texts_from_cache,
            "seconds": round(ingest_seconds, 3),
            "entities_per_s": round(ingest_rate, 2),
            "batches": report.batches,
            "stage_seconds": {k: round(v, 3) for k, v in report.stage_seconds.items()},
        }
        out["ratio_to_raw"] = round(ingest_rate / out["raw_encode"]["texts_per_s"], 3)

        # One query embedding, as the search path does it (distinct texts: no cache hits).
        lat = []
        for q in queries[: min(QUERY_EMBED_SAMPLES, max(spec["queries"], 10))]:
            t0 = time.perf_counter()
            embedder.embed_query(q.text)
            lat.append((time.perf_counter() - t0) * 1000)
        out["query_embed_ms"] = summarize(lat)
        store.close()
    out["data"] = datagen.describe(corpus)  # for the report; outside every timed phase
    np.save(spec["sample_vectors"], vectors)
    Path(spec["sample_ids"]).write_text(json.dumps([e.id for e in entities]))
    out["phases"] = meter.as_dict()
    meter.close()
    return out


# -- scale job ----------------------------------------------------------------------------------
def _synthetic_vectors(first_index: int, count: int, sample: np.ndarray, n_real: int, rng_seed: int) -> np.ndarray:
    """Vectors for stream positions first_index.. : the real sample vector at a position inside
    the sample, else a sample vector (chosen by position) plus small deterministic noise."""
    out = np.empty((count, sample.shape[1]), dtype=np.float32)
    positions = np.arange(first_index, first_index + count)
    real = positions < n_real
    out[real] = sample[positions[real]]
    fake = ~real
    if fake.any():
        rng = np.random.default_rng(rng_seed)
        picks = (positions[fake] * 7919) % len(sample)
        noisy = sample[picks] + rng.normal(0.0, NOISE_SCALE, size=(int(fake.sum()), sample.shape[1])).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        out[fake] = noisy
    return out


def run_scale_job(spec: dict[str, Any]) -> dict[str, Any]:
    from aesoperator import ContextEngine
    from aesoperator.engine.embedder_factory import make_embedder
    from aesoperator.graph_schema.ids import content_hash
    from aesoperator.graph_schema.models import Entity
    from aesoperator.ingest.pipeline import embedding_text

    backend, size, batch_size = spec["backend"], int(spec["size"]), int(spec["batch_size"])
    work = Path(spec["work_dir"])
    meter = PhaseMeter()
    out: dict[str, Any] = {"backend": backend, "size": size, "batch_size": batch_size}
    with meter.phase("load_corpus"):
        corpus = _load(spec)
        stream = datagen.GraphStream(corpus)
        queries = datagen.load_queries(Path(spec["data_dir"]))
    wanted = int(spec["queries"])
    if len(queries) < wanted + WARMUP_QUERIES:
        raise ValueError(f"only {len(queries)} questions in {spec['data_dir']}; ask for fewer --queries")
    measured, warmup = queries[:wanted], queries[wanted : wanted + WARMUP_QUERIES]

    neo_cm = neo4j_for_job(spec, work) if backend == "neo4j" else contextlib.nullcontext(None)
    with neo_cm as neo:
        if neo is not None:
            meter.watch_server(neo.pid)
            out["neo4j"] = {"uri": neo.uri, "launched": neo.launched, "start_seconds": neo.started_in_s}
        store = open_store(backend, work, neo)

        # (c) entities and relations, no embedding: only store.write is timed.
        out["write"] = measure_writes(store, stream, size, batch_size, meter)

        # Vectors: the real sample, then noisy copies, written through the store like any vector.
        sample = np.load(spec["sample_vectors"])
        sample_ids = json.loads(Path(spec["sample_ids"]).read_text())
        n_real = min(len(sample), size)
        settings = engine_settings(backend, work, neo, batch_size)
        # The engine embeds with what it is configured with (ONNX fp32 by default): its memory and
        # query embedding are what a user of the default gets. fp32 ONNX stores in torch's space,
        # so the torch sample vectors belong to the same model key.
        embedder = make_embedder(settings.model_copy(update={"embedding_batch_size": ENCODE_BATCH}))
        out["embedder"] = f"{type(embedder).__name__} ({settings.embedding_backend})"
        model = embedder.model_name
        real_embed = bool(spec.get("embed_all"))
        vec_s, vec_n, embed_s = 0.0, 0, 0.0
        with meter.phase("vectors"), progress() as bar:
            label = "embed + store vectors" if real_embed else "store vectors (sample + noisy copies)"
            task = bar.add_task(label, total=size)
            position = 0
            chunk: list[Entity] = []

            def flush(chunk: list[Entity], position: int) -> tuple[float, float]:
                texts = [embedding_text(e) for e in chunk]
                e0 = time.perf_counter()
                if real_embed:
                    matrix = embedder.embed(texts)
                else:
                    matrix = _synthetic_vectors(position, len(chunk), sample, n_real, datagen.SEED + position)
                e1 = time.perf_counter()
                vectors = {
                    e.id: (content_hash(t), matrix[i]) for i, (e, t) in enumerate(zip(chunk, texts, strict=True))
                }
                t0 = time.perf_counter()
                store.upsert(vectors=vectors, vector_model=model)
                return time.perf_counter() - t0, e1 - e0

            for item in stream.items(size):
                if not isinstance(item, Entity):
                    continue
                if position + len(chunk) < n_real and sample_ids[position + len(chunk)] != item.id:
                    raise RuntimeError("the sample vectors do not belong to this stream (different data?)")
                chunk.append(item)
                if len(chunk) >= batch_size:
                    w, e = flush(chunk, position)
                    vec_s, embed_s = vec_s + w, embed_s + e
                    position += len(chunk)
                    vec_n += len(chunk)
                    bar.advance(task, len(chunk))
                    chunk = []
            if chunk:
                w, e = flush(chunk, position)
                vec_s, embed_s = vec_s + w, embed_s + e
                vec_n += len(chunk)
                bar.advance(task, len(chunk))
        out["vectors"] = {
            "vectors": vec_n,
            "real_vectors": vec_n if real_embed else n_real,
            "synthetic_vectors": 0 if real_embed else vec_n - n_real,
            "noise_scale_per_dim": None if real_embed else NOISE_SCALE,
            "store_seconds": round(vec_s, 3),
            "vectors_per_s": round(vec_n / vec_s, 1) if vec_s else None,
            "embed_seconds": round(embed_s, 3) if real_embed else None,
        }
        store.close()

        # Reopen as a user would: the engine opens the store (the embedded store loads its graph
        # view), then builds the FAISS index from the stored vectors.
        # No counts come back from these two calls: an open-ended bar shows the time they take.
        with meter.phase("open"), progress() as bar:
            bar.add_task("open the engine (the embedded store loads its graph view)", total=None)
            engine = ContextEngine.open(settings=settings, embedder=embedder)
        with meter.phase("index_build"), progress() as bar:
            bar.add_task(f"build the vector index from {size:,} stored vectors", total=None)
            sync = engine.refresh_index(save=True)
        out["open_seconds"] = round(meter.phases["open"].seconds, 3)
        out["index"] = {
            "seconds": round(meter.phases["index_build"].seconds, 3),
            "vectors": len(engine.index),
            "rebuilt": bool(sync.rebuilt) if sync else None,
            "kind": ", ".join(f"{ns}: {kind}" for ns, kind in engine.index.kinds().items()),
        }
        with meter.phase("keyword_build"), progress() as bar:
            bar.add_task(f"build the keyword index from {size:,} stored entities", total=None)
            keywords = engine.keywords
        out["keyword_index"] = {
            "seconds": round(meter.phases["keyword_build"].seconds, 3),
            "entities": len(keywords),
            "postings": keywords.postings,
            "rebuilt": bool(keywords.last_sync.rebuilt) if keywords.last_sync else None,
        }
        embedder.load()
        for q in warmup:
            engine.search(q.text, k=spec["k"], hops=spec["hops"])

        # (d) query latency per stage.
        stage_ms: dict[str, list[float]] = {}
        totals, walls, embeds, hits = [], [], [], []
        per_dataset: dict[str, list[float]] = {}
        with meter.phase("queries"), progress() as bar:
            task = bar.add_task(f"queries (k={spec['k']}, hops={spec['hops']})", total=len(measured))
            for q in measured:
                t0 = time.perf_counter()
                result = engine.search(q.text, k=spec["k"], hops=spec["hops"])
                wall = (time.perf_counter() - t0) * 1000
                timings = dict(result.timings_ms)
                embed_ms = timings.get("embed", 0.0)
                total = sum(v for s, v in timings.items() if s != "embed")
                for s, v in timings.items():
                    stage_ms.setdefault(s, []).append(v)
                totals.append(total)
                walls.append(wall - embed_ms)
                embeds.append(embed_ms)
                hits.append(len(result.hits))
                per_dataset.setdefault(q.dataset, []).append(total)
                bar.advance(task)
        n = len(measured)
        out["queries"] = {
            "n": n,
            "k": spec["k"],
            "hops": spec["hops"],
            "datasets": {d: len(v) for d, v in per_dataset.items()},
            "stages_ms": {s: summarize(v + [0.0] * (n - len(v))) for s, v in stage_ms.items()},
            "stage_presence": {s: len(v) for s, v in stage_ms.items()},
            "total_excl_embed_ms": summarize(totals),
            "wall_excl_embed_ms": summarize(walls),
            "embed_ms": summarize(embeds),
            "total_by_dataset_ms": {d: summarize(v) for d, v in per_dataset.items()},
            "mean_hits": round(float(np.mean(hits)), 2) if hits else 0.0,
        }
        # The same questions again: their vectors now come from the embedder's query cache, so
        # no model runs right before the other stages. The difference to the first pass is what
        # the embedding's threads cost the stages that follow it (they keep cores busy for a while).
        again: list[float] = []
        again_cpu: list[float] = []
        again_stages: dict[str, list[float]] = {}
        with meter.phase("queries_cached_embedding"), progress() as bar:
            task = bar.add_task("queries again, query vectors cached", total=len(measured))
            for q in measured:
                c0 = time.process_time()
                result = engine.search(q.text, k=spec["k"], hops=spec["hops"])
                again_cpu.append((time.process_time() - c0) * 1000)
                again.append(sum(v for s, v in result.timings_ms.items() if s != "embed"))
                for s, v in result.timings_ms.items():
                    again_stages.setdefault(s, []).append(v)
                bar.advance(task)
        out["queries_cached_embedding"] = {
            "n": len(again),
            "total_excl_embed_ms": summarize(again),
            "cpu_ms_per_query": summarize(again_cpu),
            "stages_ms": {s: summarize(v + [0.0] * (n - len(v))) for s, v in again_stages.items()},
        }
        st = engine.stats()
        out["store"] = {
            "entities": st.entities,
            "relations": st.relations,
            "vectors": st.vectors,
            "entity_types": st.entity_types,
            "relation_types": st.relation_types,
        }
        if backend == "embedded":
            out["store"]["disk_mb"] = round(dir_bytes(work / "store") / 1024**2, 1)
        engine.close()
    out["phases"] = meter.as_dict()
    out["lifetime_peak_rss_mb"] = round(meter.lifetime_peak_mb(), 1)
    meter.close()
    if not spec.get("keep_data"):
        shutil.rmtree(work / "store", ignore_errors=True)
    return out


JOBS = {
    "embed": run_embed_job,
    "scale": run_scale_job,
    "memory_server": run_memory_server_job,
    "extraction": run_extraction_job,
}


def run_job_file(path: Path) -> int:
    spec = json.loads(path.read_text())
    started = time.perf_counter()
    try:
        result = JOBS[spec["kind"]](spec)
        result["job_seconds"] = round(time.perf_counter() - started, 1)
        Path(spec["result_path"]).write_text(json.dumps(result, indent=2))
        return 0
    except Exception as exc:
        import traceback

        traceback.print_exc()
        Path(spec["result_path"]).write_text(
            json.dumps({"error": f"{type(exc).__name__}: {exc}", "kind": spec["kind"], "backend": spec["backend"]})
        )
        return 1
