"""ContextEngine: the one object users hold. It owns a graph store, an embedder and the FAISS
index derived from the store, and answers queries with the hybrid retrieval pipeline."""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from aesoperator.config import Settings, load_settings
from aesoperator.engine import retrieval
from aesoperator.engine.code_queries import SymbolReport, symbol_reports
from aesoperator.engine.entities import EntityCatalog, EntityProfile, EntitySummary, MergeInfo
from aesoperator.engine.query_terms import name_candidates
from aesoperator.engine.results import SearchResult
from aesoperator.engine.stores import GraphStore, StoreStats, Subgraph, open_store
from aesoperator.errors import AesopError, ConfigError, SchemaError
from aesoperator.graph_schema.knowledge import KnowledgeStage
from aesoperator.graph_schema.models import Direction, Entity, Relation

if TYPE_CHECKING:
    from aesoperator.engine.embeddings import TextEmbedder
    from aesoperator.engine.keyword_index import KeywordIndex
    from aesoperator.engine.memory import AgentMemory
    from aesoperator.engine.vectors import SyncReport, VectorIndex
    from aesoperator.ingest.documents import DocumentInput
    from aesoperator.ingest.pipeline import IngestReport
    from aesoperator.ingest.progress import ProgressReporter
    from aesoperator.ingest.records import SourceRecord

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 10_000
MAX_K = 500


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """The retrieval pipeline's tuning knobs (see `ContextEngine.search`); defaults were chosen on
    the development splits of benchmarks/quality (benchmarks/results/quality-configurations.md)."""

    # Min-max score fusion keeps how far ahead a channel's best hits are; rank fusion ("rrf") does
    # not, and let weak dense hits drag strong keyword hits down on conversation turns.
    fusion: Literal["rrf", "score"] = "score"
    rrf_k: int = 60
    vector_weight: float = 1.0
    keyword_weight: float = 1.0
    name_weight: float = 1.0
    graph_weight: float = 1.0  # scales every graph-expansion bonus
    hop_decay: float = 0.5
    # Share of a graph bonus that depends on the receiver's own cosine to the query (0 = none).
    expansion_relevance_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.fusion not in ("rrf", "score"):
            raise ConfigError(f"fusion must be 'rrf' or 'score', got {self.fusion!r}")
        if self.rrf_k < 0:
            raise ConfigError(f"rrf_k must be >= 0, got {self.rrf_k}")
        for name in ("vector_weight", "keyword_weight", "name_weight", "graph_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if not 0 <= self.hop_decay <= 1:
            raise ConfigError(f"hop_decay must be in [0, 1], got {self.hop_decay}")
        if not 0 <= self.expansion_relevance_weight <= 1:
            raise ConfigError(f"expansion_relevance_weight must be in [0, 1], got {self.expansion_relevance_weight}")

    def channel_weights(self) -> dict[str, float]:
        return {"vector": self.vector_weight, "keyword": self.keyword_weight, "name": self.name_weight}


KNOWLEDGE_SOURCE = "knowledge"
KNOWLEDGE_ID_PREFIX = KNOWLEDGE_SOURCE + ":"  # ids of extracted entities (ingest/extract/keys.py)


def _wanted(entity: Entity, type_filter: set[str] | None) -> bool:
    """Entities extraction found are bridges between items, not answers by themselves: they are
    hits only when their type is asked for (`types=["Person"]`); `entities()` lists them."""
    if type_filter is not None:
        return entity.type in type_filter
    return entity.source != KNOWLEDGE_SOURCE


def _entity_live(entity: Entity, as_of: datetime | None) -> bool:
    if as_of is None:
        return True
    if entity.valid_from is not None and entity.valid_from > as_of:
        return False
    return entity.valid_to is None or entity.valid_to > as_of


class ContextEngine:
    """Hybrid retrieval and agent memory over a graph store.

    >>> engine = ContextEngine.open(data_dir=".aesop")
    >>> engine.ingest_path("docs/")
    >>> engine.search("how are vectors persisted?", k=5).hits[0].name
    """

    def __init__(
        self,
        store: GraphStore,
        settings: Settings | None = None,
        embedder: TextEmbedder | None = None,
        knowledge: KnowledgeStage | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self._knowledge = knowledge
        self._knowledge_loaded = knowledge is not None
        self.store = store
        self._embedder = embedder
        self._index: VectorIndex | None = None
        self._keywords: KeywordIndex | None = None
        self._index_lock = threading.RLock()
        self._memory: AgentMemory | None = None
        self.search_settings = SearchSettings()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        data_dir: str | Path | None = None,
        graph: str | None = None,
        embedder: TextEmbedder | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> ContextEngine:
        """Open (or create) an engine: the embedded store in `data_dir`, or Neo4j if `graph` is a URI."""
        settings = settings or load_settings(data_dir=data_dir, graph=graph, **overrides)
        return cls(open_store(settings), settings=settings, embedder=embedder)

    def close(self) -> None:
        with self._index_lock:
            if self._index is not None:
                self._index.save()
            if self._keywords is not None:
                self._keywords.close()
        self.store.close()

    def __enter__(self) -> ContextEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- components ---------------------------------------------------------------------------
    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            from aesoperator.engine.embeddings import Embedder

            self._embedder = Embedder(self.settings.embedding_model, batch_size=self.settings.embedding_batch_size)
        return self._embedder

    def _index_dir(self) -> Path:
        # One replica per (store, model): a Neo4j-backed engine keeps its FAISS copy locally.
        tag = hashlib.blake2b(f"{self._store_label()}|{self.embedder.model_name}".encode(), digest_size=6).hexdigest()
        return self.settings.data_dir / "index" / tag

    def _store_label(self) -> str:
        """Which store the derived indexes under `data_dir/index` belong to."""
        return "embedded" if not self.settings.uses_neo4j else self.settings.graph

    @property
    def index(self) -> VectorIndex:
        """The FAISS index, brought up to date with the store's change log on each access."""
        return self._vector_index(None)

    def _vector_index(self, store_seq: int | None) -> VectorIndex:
        """The FAISS index, synced unless it already reflects `store_seq` (None: ask the store)."""
        from aesoperator.engine.vectors import VectorIndex

        with self._index_lock:
            if self._index is None:
                directory = self._index_dir()
                directory.mkdir(parents=True, exist_ok=True)
                self._index = VectorIndex(
                    directory,
                    self.embedder.model_name,
                    self.embedder.dim,
                    exact_max=self.settings.vector_exact_max,
                    nprobe=self.settings.vector_nprobe,
                )
                self._index.sync(self.store)
            elif self._index.store_seq != (self.store.last_seq() if store_seq is None else store_seq):
                self._index.sync(self.store)
            return self._index

    @property
    def keywords(self) -> KeywordIndex:
        """The in-memory BM25 index (`keyword_index = "memory"`), caught up with the store's
        change log on each access; saved after a rebuild, replayed from the log otherwise."""
        return self._keyword_index(None)

    def _keyword_index(self, store_seq: int | None) -> KeywordIndex:
        from aesoperator.engine.keyword_index import KeywordIndex

        with self._index_lock:
            if self._keywords is None:
                tag = hashlib.blake2b(self._store_label().encode(), digest_size=6).hexdigest()
                self._keywords = KeywordIndex(self.settings.data_dir / "index" / f"keywords-{tag}")
                self._keywords.sync(self.store)
            elif self._keywords.store_seq != (self.store.last_seq() if store_seq is None else store_seq):
                self._keywords.sync(self.store)
            return self._keywords

    @property
    def knowledge(self) -> KnowledgeStage | None:
        """The knowledge stage (extraction and entity resolution) used on ingest and remember:
        the one given to the constructor, else the one `settings.knowledge_factory` builds."""
        if not self._knowledge_loaded:
            self._knowledge_loaded = True
            factory = self.settings.knowledge_factory
            if factory and self.settings.extractor != "none":
                module_name, _, attr = factory.partition(":")
                try:
                    build = getattr(importlib.import_module(module_name), attr)
                except (ImportError, AttributeError) as exc:
                    raise ConfigError(f"knowledge_factory {factory!r} cannot be loaded: {exc}") from exc
                self._knowledge = build(self)
        return self._knowledge

    @knowledge.setter
    def knowledge(self, stage: KnowledgeStage | None) -> None:
        self._knowledge, self._knowledge_loaded = stage, True

    @property
    def memory(self) -> AgentMemory:
        from aesoperator.engine.memory import AgentMemory

        if self._memory is None:
            self._memory = AgentMemory(self)
        return self._memory

    # -- writing ------------------------------------------------------------------------------
    def ingest_path(
        self,
        path: str | Path,
        name: str | None = None,
        namespace: str | None = None,
        embed: bool | None = None,
        progress: ProgressReporter | None = None,
        include: Sequence[str] = (),
    ) -> IngestReport:
        """Ingest a local folder of text, Markdown and code files (incremental and idempotent)."""
        from aesoperator.ingest.local_files import LocalFolderExtractor
        from aesoperator.ingest.mappers.files import FilesMapper
        from aesoperator.ingest.pipeline import IngestPipeline

        root = Path(path).expanduser().resolve()
        source = name or root.name or "root"
        extractor = LocalFolderExtractor(root, source, include=include, max_file_bytes=self.settings.max_file_bytes)
        mapper = FilesMapper(
            source,
            namespace or self.settings.default_namespace,
            chunk_chars=self.settings.chunk_chars,
            overlap_chars=self.settings.chunk_overlap_chars,
        )
        use_embedder = self.settings.embed_on_ingest if embed is None else embed
        pipeline = IngestPipeline(
            self.store,
            self.embedder if use_embedder else None,
            batch_size=self.settings.write_batch_size,
            progress=progress,
            knowledge=self.knowledge,
        )
        pipeline.claim_source(source, root.as_uri())
        paths = list(extractor.paths())
        report = pipeline.run(
            source,
            (r for r in (extractor.read(p) for p in paths) if r is not None),
            mapper,
            total=len(paths),
            skipped=extractor.skipped,
        )
        if use_embedder:
            self.refresh_index(save=True)
        return report

    def add_documents(
        self,
        docs: Iterable[DocumentInput],
        source: str = "docs",
        namespace: str | None = None,
        link_mentions: bool = True,
        embed: bool | None = None,
        progress: ProgressReporter | None = None,
        total: int | None = None,
    ) -> IngestReport:
        """Ingest plain documents (incremental by content hash), then link documents that name
        each other. Re-adding the same documents changes nothing."""
        from aesoperator.graph_schema.ids import entity_id
        from aesoperator.ingest.documents import DocumentsMapper, document_records, mention_links
        from aesoperator.ingest.pipeline import IngestPipeline

        ns = namespace or self.settings.default_namespace
        use_embedder = self.settings.embed_on_ingest if embed is None else embed
        pipeline = IngestPipeline(
            self.store,
            self.embedder if use_embedder else None,
            self.settings.write_batch_size,
            progress,
            knowledge=self.knowledge,
        )
        changed: list[str] = []

        def tracked() -> Iterator[SourceRecord]:
            previous = self.store.source_items(source)
            for record in document_records(source, docs):
                before = previous.get(record.key)
                if before is None or before.content_hash != record.content_hash:
                    changed.append(record.key)
                yield record

        report = pipeline.run(source, tracked(), DocumentsMapper(source, ns), total=total, remove_missing=False)
        if link_mentions and changed:
            ids = [entity_id(source, "doc", key) for key in changed]
            for start in range(0, len(ids), 500):
                batch = self.store.get_entities(ids[start : start + 500])
                links = mention_links(self.store, batch, namespaces=[ns])
                if links:
                    self.store.upsert(relations=links)
                    report.relations_written += len(links)
        if use_embedder:
            self.refresh_index(save=True)
        return report

    def upsert(self, entities: Sequence[Entity] = (), relations: Sequence[Relation] = (), embed: bool = True) -> int:
        """Write entities and relations (with their embeddings) in one atomic batch; returns the new seq."""
        from aesoperator.graph_schema.ids import content_hash
        from aesoperator.ingest.pipeline import embedding_text

        vectors: dict[str, tuple[str, np.ndarray]] = {}
        if embed and entities:
            texts = [embedding_text(e) for e in entities]
            matrix = self.embedder.embed(texts)
            vectors = {e.id: (content_hash(t), matrix[i]) for i, (e, t) in enumerate(zip(entities, texts, strict=True))}
        result = self.store.upsert(
            entities, relations, vectors=vectors, vector_model=self.embedder.model_name if vectors else None
        )
        return result.seq

    def delete(self, entity_ids: Sequence[str]) -> int:
        return self.store.delete_entities(entity_ids)

    def refresh_index(self, save: bool = False) -> SyncReport | None:
        with self._index_lock:
            index = self.index
            if save:
                index.save()
            return index.last_sync

    def embed_missing(self, batch_size: int = 512, progress: ProgressReporter | None = None) -> int:
        """Embed every entity whose stored vector is missing or was computed from other text
        (after an ingest with embedding off, or a change of model). Returns how many were embedded."""
        from aesoperator.graph_schema.ids import content_hash
        from aesoperator.ingest.pipeline import embedding_text

        model = self.embedder.model_name
        done = 0
        if progress is not None:
            progress.start("embed", self.store.stats().entities)
        try:
            for batch in self.store.iter_entities(batch_size=batch_size):
                texts = {e.id: embedding_text(e) for e in batch}
                stored = self.store.vector_hashes(list(texts), model)
                todo = [i for i, t in texts.items() if stored.get(i) != content_hash(t)]
                if todo:
                    matrix = self.embedder.embed([texts[i] for i in todo])
                    vectors = {i: (content_hash(texts[i]), matrix[row]) for row, i in enumerate(todo)}
                    self.store.upsert(vectors=vectors, vector_model=model)
                    done += len(todo)
                if progress is not None:
                    progress.advance(len(batch))
        finally:
            if progress is not None:
                progress.finish()
        return done

    def rebuild_index(self) -> SyncReport:
        """Rebuild the derived indexes from the store (the keyword index too, when in memory);
        returns the vector index's report."""
        with self._index_lock:
            report = self.index.rebuild(self.store)
            self.index.save()
            if self.settings.keyword_index == "memory":
                self.keywords.rebuild(self.store)
            return report

    # -- reading ------------------------------------------------------------------------------
    def get_entities(self, ids: Sequence[str], namespaces: Sequence[str] | None = None) -> list[Entity]:
        return self.store.get_entities(ids, namespaces=namespaces)

    def neighbors(
        self,
        ids: Sequence[str],
        depth: int = 1,
        relation_types: Sequence[str] | None = None,
        direction: Direction = "both",
        as_of: datetime | None = None,
        namespaces: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> Subgraph:
        return self.store.neighbors(ids, depth, relation_types, direction, as_of, namespaces, limit)

    def stats(self) -> StoreStats:
        return self.store.stats()

    def search(
        self,
        query: str,
        k: int = 10,
        hops: int = 1,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        token_budget: int | None = None,
        channels: Sequence[str] = ("vector", "keyword", "name"),
        mmr_lambda: float = 1.0,
        recency_half_life_days: float | None = None,
        candidate_k: int | None = None,
    ) -> SearchResult:
        """Hybrid search: vector + BM25 + exact names → fusion → graph expansion → MMR → token budget.

        `hops=0` turns graph expansion off; `channels` picks the candidate generators (for
        baselines: ("keyword",) is BM25 alone, ("vector",) is dense retrieval alone).
        `mmr_lambda` < 1 trades relevance for diversity (MMR); it is off by default because on the
        development splits it lowered recall@10 (MuSiQue 0.718 → 0.695 at 0.7). Fusion and graph
        expansion are tuned by `self.search_settings` (a `SearchSettings`).
        """
        if not query or not query.strip():
            raise SchemaError("query must not be empty")
        if len(query) > MAX_QUERY_CHARS:
            raise SchemaError(f"query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
        if not 1 <= k <= MAX_K:
            raise SchemaError(f"k must be between 1 and {MAX_K}, got {k}")
        if not 0 <= hops <= 3:
            raise SchemaError(f"hops must be 0 to 3, got {hops}")
        unknown = set(channels) - {"vector", "keyword", "name"}
        if unknown:
            raise SchemaError(f"unknown retrieval channel(s) {sorted(unknown)}; use vector, keyword, name")
        budget = token_budget or self.settings.token_budget
        n_cand = candidate_k or max(50, 3 * k)
        ns = list(namespaces) if namespaces is not None else None
        type_filter = set(types) if types else None
        timings: dict[str, float] = {}

        def timed(stage: str, started: float) -> None:
            timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - started) * 1000

        ranked: dict[str, list[tuple[str, float]]] = {}
        query_vec: np.ndarray | None = None
        t0 = time.perf_counter()
        store_seq = self.store.last_seq()  # one read for both derived indexes
        timed("index_sync", t0)
        if "vector" in channels:
            t0 = time.perf_counter()
            query_vec = self.embedder.embed_query(query)
            timed("embed", t0)
            t0 = time.perf_counter()
            index = self._vector_index(store_seq)
            timed("index_sync", t0)
            t0 = time.perf_counter()
            # Over-fetch when a type filter applies: FAISS partitions by namespace, not by type.
            # Extracted entities are not hits unless their type is asked for (see `_wanted`): each
            # channel leaves them out before fusion, so scores are those of the items. Their vectors
            # (the mean of the items mentioning them) sit close to those items: over-fetch.
            hits = index.search(query_vec, n_cand * (4 if type_filter else 8), namespaces=ns)
            if type_filter is None:
                hits = [h for h in hits if not h[0].startswith(KNOWLEDGE_ID_PREFIX)][:n_cand]
            ranked["vector"] = hits
            timed("vector", t0)
        keyword_index = None  # the in-memory index answers the keyword and name channels
        if self.settings.keyword_index == "memory" and ("keyword" in channels or "name" in channels):
            t0 = time.perf_counter()
            keyword_index = self._keyword_index(store_seq)
            timed("index_sync", t0)
        if "keyword" in channels:
            t0 = time.perf_counter()
            n_kw = n_cand if type_filter else 2 * n_cand  # room for the extracted entities left out below
            bm25 = (
                keyword_index.search(query, n_kw, namespaces=ns, types=types)
                if keyword_index is not None
                else self.store.keyword_search(query, n_kw, namespaces=ns, types=types)
            )
            if type_filter is None:
                bm25 = [(i, s) for i, s in bm25 if not i.startswith(KNOWLEDGE_ID_PREFIX)][:n_cand]
            # BM25 scores near zero come from words present almost everywhere: no evidence.
            ranked["keyword"] = [(i, s) for i, s in bm25 if s >= 1e-3]
            timed("keyword", t0)
        if "name" in channels:
            t0 = time.perf_counter()
            grams = name_candidates(query)
            found = (
                keyword_index.name_lookup(grams, namespaces=ns, types=types)
                if keyword_index is not None
                else self.store.name_lookup(grams, namespaces=ns, types=types)
            )
            # Longer matched names are more specific: rank them first.
            by_len = sorted(found.items(), key=lambda kv: (-len(kv[0]), kv[0]))
            ranked["name"] = [
                (eid, float(len(nm)))
                for nm, ids in by_len
                for eid in ids
                if type_filter is not None or not eid.startswith(KNOWLEDGE_ID_PREFIX)
            ][:n_cand]
            timed("name", t0)

        t0 = time.perf_counter()
        tuning = self.search_settings
        if tuning.fusion == "score":
            candidates = retrieval.score_fusion(ranked, weights=tuning.channel_weights(), limit=n_cand * 2)
        else:
            candidates = retrieval.reciprocal_rank_fusion(
                ranked, k=tuning.rrf_k, weights=tuning.channel_weights(), limit=n_cand * 2
            )
        timed("fuse", t0)

        t0 = time.perf_counter()
        entities: dict[str, Entity] = {e.id: e for e in self.store.get_entities([c.id for c in candidates], ns)}
        candidates = [
            c
            for c in candidates
            if c.id in entities and _wanted(entities[c.id], type_filter) and _entity_live(entities[c.id], as_of)
        ][:n_cand]
        timed("load", t0)

        relations: list[Relation] = []
        if hops > 0 and candidates:
            t0 = time.perf_counter()
            seeds = candidates[: max(k, 10)]
            subgraph = self.store.neighbors(
                [c.id for c in seeds], depth=hops, as_of=as_of, namespaces=ns, limit=max(200, 20 * k)
            )
            entities.update(subgraph.entities)
            names = {eid: e.name for eid, e in entities.items()}
            relevance = None
            if tuning.expansion_relevance_weight > 0 and query_vec is not None:
                t1 = time.perf_counter()
                relevance = self._query_relevance(query_vec, ranked.get("vector", []), entities)
                timed("relevance", t1)
            expanded = retrieval.expand_graph(
                candidates,
                subgraph,
                as_of=as_of,
                names=names,
                max_new=max(20, 2 * k),
                max_seeds=len(seeds),
                hop_decay=tuning.hop_decay,
                weight=tuning.graph_weight,
                relevance=relevance,
                relevance_weight=tuning.expansion_relevance_weight,
            )
            candidates = [
                c
                for c in expanded
                if c.id in entities and _wanted(entities[c.id], type_filter) and _entity_live(entities[c.id], as_of)
            ]
            relations = subgraph.relations
            timed("expand", t0)
            timings["expand"] -= timings.get("relevance", 0.0)  # stages are disjoint: they add up

        t0 = time.perf_counter()
        if recency_half_life_days is not None:
            stamps = {c.id: entities[c.id].valid_from or entities[c.id].created_at for c in candidates}
            candidates = retrieval.apply_recency(
                candidates,
                {i: s for i, s in stamps.items() if s is not None},
                datetime.now(tz=next((s.tzinfo for s in stamps.values() if s is not None), None)),
                half_life_days=recency_half_life_days,
            )
        pool = candidates[: max(3 * k, 30)]
        if mmr_lambda < 1.0 and len(pool) > k:
            vectors = self.store.get_vectors([c.id for c in pool], self.embedder.model_name)
            chosen = retrieval.mmr(pool, vectors, k, lambda_=mmr_lambda)
        else:
            chosen = pool[:k]
        timed("rerank", t0)

        t0 = time.perf_counter()
        pack = retrieval.pack_context(chosen, entities, relations, budget)
        timed("pack", t0)
        return SearchResult(
            query=query,
            hits=pack.hits,
            triples=pack.triples,
            tokens_used=pack.tokens_used,
            token_budget=budget,
            dropped=pack.dropped + max(0, len(candidates) - len(chosen)),
            timings_ms={s: round(v, 3) for s, v in timings.items()},
        )

    def _query_relevance(
        self, query_vec: np.ndarray, vector_hits: Sequence[tuple[str, float]], entities: dict[str, Entity]
    ) -> dict[str, float]:
        """Cosine of each known entity to the query, scaled to [0, 1] between the weakest and the
        strongest vector hit; vectors come from the FAISS index (memory, no store round trip)."""
        cosines = dict(vector_hits)
        missing = [eid for eid in entities if eid not in cosines]
        if missing:
            found = self.index.get_vectors(missing)
            if found:
                ids = list(found)
                matrix = np.vstack([found[i] for i in ids]).astype(np.float32)
                sims = matrix @ np.asarray(query_vec, dtype=np.float32).ravel()
                cosines.update(zip(ids, sims.tolist(), strict=True))
        if not vector_hits:
            return retrieval.query_relevance(cosines, 0.0, 1.0)
        scores = [s for _, s in vector_hits]
        return retrieval.query_relevance(cosines, min(scores), max(scores))

    # -- knowledge: entities, mentions, merges ------------------------------------------------
    @property
    def catalog(self) -> EntityCatalog:
        return EntityCatalog(self.store)

    def entities(
        self,
        query: str | None = None,
        types: Sequence[str] | None = None,
        namespaces: Sequence[str] | None = None,
        limit: int = 50,
    ) -> list[EntitySummary]:
        """People, organisations, places, systems, concepts... the graph knows (merged across
        sources), most mentioned first; `query` filters by a part of the name."""
        return self.catalog.summaries(query, types, namespaces, limit)

    def entity(self, name_or_id: str, namespaces: Sequence[str] | None = None) -> EntityProfile:
        """One entity with what mentions it, its relations, its sources and its merge decisions."""
        return self.catalog.show(name_or_id, namespaces)

    def merges(self, namespaces: Sequence[str] | None = None, include_undone: bool = False) -> list[MergeInfo]:
        return self.catalog.merges(namespaces, include_undone)

    def unmerge(self, decision_id: str, namespaces: Sequence[str] | None = None) -> MergeInfo:
        return self.catalog.unmerge(decision_id, namespaces)

    def search_about(
        self,
        name_or_id: str,
        query: str | None = None,
        k: int = 10,
        namespaces: Sequence[str] | None = None,
        **search_args: Any,
    ) -> SearchResult:
        """Items that mention an entity: ranked by `query` when one is given, else by how often
        they mention it."""
        summary, hits = self.catalog.about_hits(name_or_id, namespaces, k=MAX_K if query else k)
        if query is None:
            return SearchResult(query=f"about {summary.name}", hits=hits, token_budget=0)
        allowed = {h.id: h for h in hits}
        result = self.search(query, k=MAX_K, namespaces=namespaces, token_budget=10**7, **search_args)
        kept = [h for h in result.hits if h.id in allowed][:k]
        for h in kept:
            h.reasons.extend(allowed[h.id].reasons)
        return result.model_copy(update={"hits": kept, "triples": []})

    def code_symbol(self, name: str, namespaces: Sequence[str] | None = None) -> list[SymbolReport]:
        """Where a code symbol is defined and what calls, imports or inherits it (and what it
        calls): 'what calls X' and 'where is Y defined', from the graph."""
        return symbol_reports(self.store, name, namespaces)

    # -- memory (delegates) -------------------------------------------------------------------
    def remember(self, content: str, agent_id: str, session_id: str | None = None, **kwargs: Any) -> Any:
        return self.memory.remember(content, agent_id, session_id, **kwargs)

    def recall(self, query: str, agent_id: str, **kwargs: Any) -> Any:
        return self.memory.recall(query, agent_id, **kwargs)

    # ==========================================================================================
    # -- MCP sources (delegates to aesoperator.ingest.mcp_ingest; types imported at the end) ----
    def source_definition(self, source: str | SourceDefinition) -> SourceDefinition:
        """A definition as given, or the one registered under that name (aesop.toml or sources.toml)."""
        from aesoperator.ingest.registry import SourceRegistry
        from aesoperator.ingest.sources import SourceDefinition

        if isinstance(source, SourceDefinition):
            return source
        return SourceRegistry.for_settings(self.settings).get(source)

    def ingest_source(
        self,
        source: str | SourceDefinition,
        progress: ProgressReporter | None = None,
        embed: bool | None = None,
    ) -> IngestReport:
        """Ingest an MCP source (a registered name or a definition), incrementally."""
        from aesoperator.ingest.mcp_ingest import ingest_source

        return ingest_source(self, self.source_definition(source), progress=progress, embed=embed)

    def watch_source(
        self,
        source: str | SourceDefinition,
        stop: threading.Event | None = None,
        on_event: Callable[[WatchEvent], None] | None = None,
        progress: ProgressReporter | None = None,
        embed: bool | None = None,
    ) -> None:
        """Ingest an MCP source, then re-ingest on its resource updates until `stop` is set."""
        from aesoperator.ingest.mcp_ingest import watch_source

        watch_source(self, self.source_definition(source), stop=stop, on_event=on_event, progress=progress, embed=embed)

    # ==========================================================================================
    # -- notebooks and analysis: the graph as networkx, stats as a table ------------------------
    def to_networkx(
        self,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        relation_types: Sequence[str] | None = None,
        include_expired: bool = False,
        batch_size: int = 1000,
    ) -> nx.MultiDiGraph:
        """The stored graph (or the part the filters select) as a networkx MultiDiGraph.

        Nodes are entity ids with the attributes `type`, `name`, `namespace`, `source`,
        `valid_from` and `valid_to`; edges are keyed by relation id and carry `type`, `namespace`,
        `source` and the relation's validity (`valid_from`, `valid_to`, `recorded_at`,
        `expired_at`, `live`). A relation is kept only when both its ends are kept, and, unless
        `include_expired`, only while it holds now. Built from the store's iterators, so it works
        on every backend; it is a copy: changing it does not change the store.
        """
        import networkx

        graph = networkx.MultiDiGraph()
        graph.graph["store"] = self.store.backend  # not `backend=`: networkx reads that as its own dispatch
        for batch in self.store.iter_entities(
            batch_size=batch_size,
            namespaces=list(namespaces) if namespaces is not None else None,
            types=list(types) if types is not None else None,
        ):
            for entity in batch:
                graph.add_node(
                    entity.id,
                    type=entity.type,
                    name=entity.name,
                    namespace=entity.namespace,
                    source=entity.source,
                    valid_from=entity.valid_from,
                    valid_to=entity.valid_to,
                )
        wanted = set(relation_types) if relation_types is not None else None
        for relations in self.store.iter_relations(batch_size=batch_size):
            for rel in relations:
                if wanted is not None and rel.type not in wanted:
                    continue
                if rel.src not in graph or rel.dst not in graph:
                    continue
                live = rel.is_live()
                if not live and not include_expired:
                    continue
                graph.add_edge(
                    rel.src,
                    rel.dst,
                    key=rel.id,
                    type=rel.type,
                    namespace=rel.namespace,
                    source=rel.source,
                    valid_from=rel.valid_from,
                    valid_to=rel.valid_to,
                    recorded_at=rel.recorded_at,
                    expired_at=rel.expired_at,
                    live=live,
                )
        return graph

    def stats_frame(self) -> pd.DataFrame:
        """`stats()` as a pandas DataFrame (columns group, name, count) that renders as a table
        in Jupyter: the totals, then entities per type, relations per type, entities per namespace.
        Needs pandas (the `notebooks` extra)."""
        try:
            import pandas
        except ImportError as exc:  # an optional dependency
            raise AesopError("stats_frame needs pandas: pip install 'aesoperator[notebooks]'") from exc

        stats = self.stats()
        rows: list[tuple[str, str, int]] = [
            ("total", "entities", stats.entities),
            ("total", "relations", stats.relations),
            ("total", "live relations", stats.live_relations),
            ("total", "vectors", stats.vectors),
            ("total", "change-log position", stats.last_seq),
        ]
        for group, counts in (
            ("entity type", stats.entity_types),
            ("relation type", stats.relation_types),
            ("namespace", stats.namespaces),
        ):
            rows.extend((group, name, count) for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        frame = pandas.DataFrame(rows, columns=["group", "name", "count"])
        frame.attrs["backend"] = stats.backend
        return frame


# -- names used only in the MCP-source annotations above ----------------------------------------
if TYPE_CHECKING:
    from collections.abc import Callable

    from aesoperator.ingest.mcp_ingest import WatchEvent
    from aesoperator.ingest.sources import SourceDefinition

# -- names used only in the notebook-helper annotations above ------------------------------------
if TYPE_CHECKING:
    import networkx as nx
    import pandas as pd

__all__ = ["AesopError", "ContextEngine", "SearchSettings"]
