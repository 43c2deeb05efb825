"""EngineCore: the engine proper. It owns a graph store, an embedder and the indexes derived
from the store (FAISS vectors, in-memory BM25), answers queries with the hybrid retrieval pipeline
(`aesoperator.engine.search`), keeps agent memory and exports the graph for analysis.

Getting data in from files, documents and MCP sources is the ingest layer's job; the class that
ties both together, and the one users hold, is `aesoperator.context.ContextEngine`.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from aesoperator.config import Settings, load_settings
from aesoperator.engine import export
from aesoperator.engine.data_dir import make_private_dir, warn_if_loose
from aesoperator.engine.embed_backlog import EmbeddingBacklog, backlog_state_name
from aesoperator.engine.embedder_factory import make_embedder
from aesoperator.engine.embeddings import TextEmbedder, embedding_text
from aesoperator.engine.entity_cache import EntityCache
from aesoperator.engine.forget import ForgetReport, complete_pending_erasure
from aesoperator.engine.forget import forget as forget_memories
from aesoperator.engine.keyword_index import KeywordIndex
from aesoperator.engine.knowledge_reads import KnowledgeReads
from aesoperator.engine.lazy_embedder import LazyEmbedder
from aesoperator.engine.memory import AgentMemory
from aesoperator.engine.progress import ProgressReporter
from aesoperator.engine.results import SearchResult
from aesoperator.engine.search import (
    CHANNELS,
    DEFAULT_HOPS,
    MAX_K,
    MAX_QUERY_CHARS,
    SearchRequest,
    SearchSettings,
    SearchSources,
    run_search,
)
from aesoperator.engine.search_request import LexicalCost
from aesoperator.engine.stores import GraphStore, StoreStats, Subgraph, WriteBatch, open_store
from aesoperator.engine.tokens import token_counter
from aesoperator.engine.vector_backend import check_vector_backend
from aesoperator.engine.vector_policy import has_vector, without_vectors
from aesoperator.engine.vectors import SyncReport, VectorIndex
from aesoperator.errors import AesopError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.graph_schema.knowledge import KnowledgeStage
from aesoperator.graph_schema.models import Direction, Entity, Relation

if TYPE_CHECKING:
    import networkx as nx
    import pandas as pd

log = logging.getLogger(__name__)


def _store_label(settings: Settings) -> str:
    """Which store the derived indexes under `data_dir/index` belong to."""
    return "embedded" if not settings.uses_neo4j else settings.graph


def vector_index_dir(settings: Settings, model_name: str) -> Path:
    """Where the FAISS index of `model_name` over the configured store is saved."""
    # One replica per (store, model): a Neo4j-backed engine keeps its FAISS copy locally.
    tag = hashlib.blake2b(f"{_store_label(settings)}|{model_name}".encode(), digest_size=6).hexdigest()
    return settings.data_dir / "index" / tag


def keyword_index_dir(settings: Settings) -> Path:
    """Where the in-memory keyword index over the configured store is saved."""
    tag = hashlib.blake2b(_store_label(settings).encode(), digest_size=6).hexdigest()
    return settings.data_dir / "index" / f"keywords-{tag}"


class EngineCore(KnowledgeReads):
    """Hybrid retrieval and agent memory over a graph store (no ingest: see `ContextEngine`).

    >>> core = EngineCore.open(data_dir=".aesop")
    >>> core.search("how are vectors persisted?", k=5).hits[0].name
    """

    def __init__(
        self,
        store: GraphStore,
        settings: Settings | None = None,
        embedder: TextEmbedder | None = None,
        knowledge: KnowledgeStage | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.store = store
        self._knowledge = knowledge
        self._knowledge_loaded = knowledge is not None
        self._embedder = embedder
        self._embedder_lock = threading.RLock()  # the backlog reads `embedder` while holding it
        self._backlogs: dict[str, EmbeddingBacklog] = {}
        self._index: VectorIndex | None = None
        self._keywords: KeywordIndex | None = None
        self._index_lock = threading.RLock()
        self._memory: AgentMemory | None = None
        self._counter: Callable[[str], int] | None = None
        self.search_settings = SearchSettings()
        self._lexical_cost = LexicalCost()  # decides where a search's keyword channel runs
        cache_chars = self.settings.entity_cache_mb * 1_000_000
        self._entity_cache = EntityCache(cache_chars) if cache_chars else None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        data_dir: str | Path | None = None,
        graph: str | None = None,
        embedder: TextEmbedder | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> Self:
        """Open (or create) an engine: the embedded store in `data_dir`, or Neo4j if `graph` is a URI.

        Args:
            data_dir: the data directory (default: settings, `.aesop`).
            graph: "embedded" or a Neo4j URI.
            embedder: the text embedder (default: the configured sentence-transformers model,
                loaded on first use).
            settings: complete settings; when given, `data_dir`, `graph` and `overrides` are ignored.
            **overrides: other settings fields.

        Returns:
            An engine of the class it is called on.

        Raises:
            ConfigError: a setting is invalid.
            StoreError: the store cannot be opened.
        """
        settings = settings or load_settings(data_dir=data_dir, graph=graph, **overrides)
        warn_if_loose(settings.data_dir)  # an older data dir may be open to other local users
        engine = cls(open_store(settings), settings=settings, embedder=embedder)
        try:
            complete_pending_erasure(engine)  # a purge killed after its store transaction
        except BaseException:
            engine.close()
            raise
        return engine

    def close(self) -> None:
        """Save the vector index when the disk has room (the saved copy only spares the next open
        some replay), close the keyword index, and close the store whatever happened before."""
        try:
            self._stop_backlogs()
            with self._index_lock:
                if self._index is not None and self._caught_up_for_close(self._index):
                    self._index.save_if_room()
                if self._keywords is not None:
                    self._caught_up_for_close(self._keywords)
                    self._keywords.close()
        finally:
            self.store.close()

    def _caught_up_for_close(self, index: VectorIndex | KeywordIndex) -> bool:
        """Catch `index` up before it is saved at close, so a purge made elsewhere since its last
        sync is not written back to disk (replaying the erasure rebuilds it); False when the store
        cannot be read, and then it is not saved (the saved copy is only a head start)."""
        try:
            index.sync(self.store, persist=False)
        except AesopError as exc:
            log.warning("%s not saved at close: the store could not be read (%s)", index, exc)
            return False
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- components ---------------------------------------------------------------------------
    @property
    def embedder(self) -> TextEmbedder:
        """The text embedder: a `LazyEmbedder` that builds the configured one (`_build_embedder`)
        when something first needs the model, so an engine that never embeds never loads it."""
        if self._embedder is None:
            with self._embedder_lock:
                if self._embedder is None:
                    self._embedder = LazyEmbedder(self._build_embedder)
        return self._embedder

    def _build_embedder(self) -> TextEmbedder:
        """The embedder the settings name (called once, on first need): the ONNX Runtime one by
        default, torch when asked for or when onnx cannot run (`embedder_factory.make_embedder`)."""
        return make_embedder(self.settings)

    # -- embedding off the write path -----------------------------------------------------------
    def embedding_backlog(self, namespace: str, accept: Callable[[Entity], bool]) -> EmbeddingBacklog:
        """The background worker that embeds `namespace`'s entities picked by `accept` after they
        are written without vectors (started on first call; one per namespace). It first catches
        up with what an earlier process wrote and did not embed.

        Args:
            namespace: the namespace whose entity writes it follows.
            accept: which entities get a vector (the others are left without).

        Returns:
            The running backlog; call `notify()` on it after each write.
        """
        with self._embedder_lock:
            backlog = self._backlogs.get(namespace)
            if backlog is None:
                name = backlog_state_name(namespace, _store_label(self.settings), self.embedder.model_name)
                backlog = EmbeddingBacklog(
                    self.store,
                    lambda: self.embedder,
                    namespace,
                    accept,
                    make_private_dir(self.settings.data_dir / "index") / name,
                    batch_size=self.settings.embedding_batch_size,
                )
                self._backlogs[namespace] = backlog
            return backlog

    def wait_for_index(self, timeout: float | None = 60.0) -> bool:
        """Wait until every entity written before this call that is embedded in the background
        has its vector stored, then bring the vector index up to date: a search after it sees
        those writes on the vector channel too.

        Args:
            timeout: seconds to wait at most (None: as long as it takes).

        Returns:
            Whether everything was embedded in time (the index is refreshed either way).

        Raises:
            StoreError: the store failed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._embedder_lock:
            backlogs = list(self._backlogs.values())
        caught_up = True
        for backlog in backlogs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            caught_up = backlog.wait(left) and caught_up
        if self._index is not None or backlogs:
            self.refresh_index()
        return caught_up

    def _stop_backlogs(self) -> None:
        """Stop the background embedders after the batch in hand; what they leave is embedded by
        the next open, from the change log."""
        with self._embedder_lock:
            backlogs, self._backlogs = list(self._backlogs.values()), {}
        for backlog in backlogs:
            backlog.close()

    def _index_dir(self) -> Path:
        return vector_index_dir(self.settings, self.embedder.model_name)

    @property
    def index(self) -> VectorIndex:
        """The FAISS index, brought up to date with the store's change log on each access."""
        return self._vector_index(None)

    def _vector_index(self, store_seq: int | None) -> VectorIndex:
        """The FAISS index, synced unless it already reflects `store_seq` (None: ask the store)."""
        with self._index_lock:
            if self._index is None:
                directory = make_private_dir(self._index_dir())
                index = VectorIndex(
                    directory,
                    self.embedder.model_name,
                    self.embedder.dim,
                    exact_max=self.settings.vector_exact_max,
                    nprobe=self.settings.vector_nprobe,
                    ivf_codes=self.settings.vector_ivf_codes,
                    prefilter_min=self.settings.vector_prefilter_min,
                )
                index.sync(self.store)
                # Checked at every open until it passes: a store embedded by another backend is
                # refused, never searched with part of its vectors.
                check_vector_backend(self.store, self.embedder.model_name, len(index))
                self._index = index
            elif self._index.store_seq != (self.store.last_seq() if store_seq is None else store_seq):
                self._index.sync(self.store)
            return self._index

    def loaded_indexes(self) -> tuple[VectorIndex | None, KeywordIndex | None]:
        """The vector and in-memory keyword indexes as they are now, None for one not loaded yet;
        never loads or syncs them (metrics and health checks read them without side effects)."""
        return self._index, self._keywords

    @property
    def keywords(self) -> KeywordIndex:
        """The in-memory BM25 index (`keyword_index = "memory"`), caught up with the store's
        change log on each access; saved after a rebuild, replayed from the log otherwise."""
        return self._keyword_index(None)

    def _keyword_index(self, store_seq: int | None) -> KeywordIndex:
        with self._index_lock:
            if self._keywords is None:
                self._keywords = KeywordIndex(keyword_index_dir(self.settings))
                self._keywords.sync(self.store)
            elif self._keywords.store_seq != (self.store.last_seq() if store_seq is None else store_seq):
                self._keywords.sync(self.store)
            return self._keywords

    @property
    def knowledge(self) -> KnowledgeStage | None:
        """The knowledge stage (extraction and entity resolution) used on ingest and remember:
        the one given to the constructor or set here, else the one `_build_knowledge` makes on
        first use (none for the bare engine; `ContextEngine` builds the configured extractor)."""
        if not self._knowledge_loaded:
            self._knowledge = self._build_knowledge()
            self._knowledge_loaded = True
        return self._knowledge

    @knowledge.setter
    def knowledge(self, stage: KnowledgeStage | None) -> None:
        self._knowledge, self._knowledge_loaded = stage, True

    def _build_knowledge(self) -> KnowledgeStage | None:
        """The knowledge stage to use when none was given: none here (the engine does not know how
        extraction is done); the facade overrides it with the one the settings ask for."""
        return None

    @property
    def memory(self) -> AgentMemory:
        """Agent memory (episodes, sessions, recall) over this engine."""
        if self._memory is None:
            self._memory = AgentMemory(self)
        return self._memory

    # -- writing ------------------------------------------------------------------------------
    def upsert(self, entities: Sequence[Entity] = (), relations: Sequence[Relation] = (), embed: bool = True) -> int:
        """Write entities and relations (with their embeddings) in one atomic batch.

        Args:
            entities: entities to insert or update.
            relations: relations to insert or update.
            embed: embed the entities' text (`embedding_text`) and store the vectors with them
                (of the entities `vector_policy.has_vector` admits; code symbols get none).

        Returns:
            The store's change-log position after the write.

        Raises:
            SchemaError: an entity or relation is invalid.
            NamespaceConflict: an id already belongs to another namespace.
            StoreError: the store failed.
        """
        vectors: dict[str, tuple[str, np.ndarray]] = {}
        embedded = [e for e in entities if has_vector(e)]
        if embed and embedded:
            texts = [embedding_text(e) for e in embedded]
            matrix = self.embedder.embed(texts)
            vectors = {e.id: (content_hash(t), matrix[i]) for i, (e, t) in enumerate(zip(embedded, texts, strict=True))}
        batch = WriteBatch(
            entities=list(entities),
            relations=list(relations),
            vectors=vectors,
            vector_model=self.embedder.model_name if vectors else None,
            delete_vector_ids=without_vectors(entities),
        )
        return self.store.write(batch).seq

    def delete(self, entity_ids: Sequence[str]) -> int:
        """Delete entities, their relations and vectors from the store.

        Args:
            entity_ids: the ids to delete (unknown ids are ignored).

        Returns:
            How many entities were deleted.

        Raises:
            StoreError: the store failed.
        """
        return self.store.delete_entities(entity_ids)

    def refresh_index(self, save: bool = False) -> SyncReport | None:
        """Bring the vector index up to date with the store's change log.

        Args:
            save: also write the index to disk.

        Returns:
            The report of the last sync (None when nothing has been synced).

        Raises:
            StoreError: the store failed, or the index could not be saved.
        """
        with self._index_lock:
            index = self.index
            if save:
                index.save()
            return index.last_sync

    def embed_missing(self, batch_size: int = 512, progress: ProgressReporter | None = None) -> int:
        """Embed every entity whose stored vector is missing or was computed from other text
        (after an ingest with embedding off, or a change of model), and drop the stored vectors of
        entities that get none (`vector_policy.has_vector`: code symbols an earlier version embedded).

        Args:
            batch_size: entities read and embedded per batch.
            progress: receives the progress over all entities.

        Returns:
            How many entities were embedded.

        Raises:
            StoreError: the store failed.
        """
        model = self.embedder.model_name
        done = 0
        if progress is not None:
            progress.start("embed", self.store.stats().entities)
        try:
            for batch in self.store.iter_entities(batch_size=batch_size):
                texts = {e.id: embedding_text(e) for e in batch if has_vector(e)}
                stored = self.store.vector_hashes(list(texts), model)
                todo = [i for i, t in texts.items() if stored.get(i) != content_hash(t)]
                vectors: dict[str, tuple[str, np.ndarray]] = {}
                if todo:
                    matrix = self.embedder.embed([texts[i] for i in todo])
                    vectors = {i: (content_hash(texts[i]), matrix[row]) for row, i in enumerate(todo)}
                    done += len(todo)
                self.store.write(
                    WriteBatch(vectors=vectors, vector_model=model, delete_vector_ids=without_vectors(batch))
                )
                if progress is not None:
                    progress.advance(len(batch))
        finally:
            if progress is not None:
                progress.finish()
        return done

    def rebuild_index(self) -> SyncReport:
        """Rebuild the derived indexes from the store (the keyword index too, when in memory).

        Returns:
            The vector index's report.

        Raises:
            StoreError: the store failed, or the index could not be saved.
        """
        with self._index_lock:
            report = self.index.rebuild(self.store)
            self.index.save()
            if self.settings.keyword_index == "memory":
                self.keywords.rebuild(self.store)
            return report

    # -- reading ------------------------------------------------------------------------------
    def get_entities(self, ids: Sequence[str], namespaces: Sequence[str] | None = None) -> list[Entity]:
        """Entities by id.

        Args:
            ids: the ids.
            namespaces: read only these namespaces (None: all).

        Returns:
            The entities found (unknown or unreadable ids are left out).
        """
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
        """The entities and relations around some entities.

        Args:
            ids: the seed entities.
            depth: hops to follow.
            relation_types: follow only these relation types (None: all).
            direction: "out", "in" or "both".
            as_of: follow only relations valid at this moment (None: now).
            namespaces: read only these namespaces (None: all).
            limit: entities to return at most.

        Returns:
            The subgraph, with each entity's hop from the seeds.

        Raises:
            StoreError: the store failed.
        """
        return self.store.neighbors(ids, depth, relation_types, direction, as_of, namespaces, limit)

    def stats(self) -> StoreStats:
        """Counts of what the store holds.

        Returns:
            Entities, relations and vectors in total and per type and namespace.

        Raises:
            StoreError: the store failed.
        """
        return self.store.stats()

    def search(
        self,
        query: str,
        k: int = 10,
        hops: int | None = None,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        token_budget: int | None = None,
        channels: Sequence[str] = CHANNELS,
        mmr_lambda: float = 1.0,
        recency_half_life_days: float | None = None,
        candidate_k: int | None = None,
        preset: str | SearchSettings | None = None,
    ) -> SearchResult:
        """Hybrid search: vector + BM25 + exact names → fusion → graph expansion → MMR → token budget.

        `hops=0` turns graph expansion off; `channels` picks the candidate generators (for
        baselines: ("keyword",) is BM25 alone, ("vector",) is dense retrieval alone).
        `mmr_lambda` < 1 trades relevance for diversity (MMR); it is off by default because on the
        development splits it lowered recall@10 (MuSiQue 0.718 → 0.695 at 0.7). Fusion and graph
        expansion are tuned by `self.search_settings` (a `SearchSettings`), or by `preset`.

        Args:
            query: what to look for (at most 10,000 characters).
            k: how many hits (1 to 500).
            hops: graph expansion depth, 0 to 3 (None: the settings' `hops`, else 1).
            namespaces: read only these namespaces (None: all).
            types: return only entities of these types (None: all).
            as_of: answer as of this moment (validity of entities and relations).
            token_budget: tokens the packed context may use (None: settings).
            channels: candidate channels, a subset of ("vector", "keyword", "name").
            mmr_lambda: 1 is plain relevance; lower values favour diversity.
            recency_half_life_days: favour recent items with this half-life (None: off).
            candidate_k: candidates per channel (None: max(50, 3k)).
            preset: a `SearchSettings` or the name of one (`SearchSettings.preset`) to use
                instead of `self.search_settings` for this call.

        Returns:
            The packed hits and triples, with the reasons for each hit and per-stage timings.

        Raises:
            SchemaError: an argument is out of range or a channel is unknown.
            ConfigError: `preset` names no preset.
            StoreError: the store failed.
        """
        tuning = SearchSettings.preset(preset) if isinstance(preset, str) else preset or self.search_settings
        depth = hops if hops is not None else tuning.hops if tuning.hops is not None else DEFAULT_HOPS
        request = SearchRequest(
            query=query,
            k=k,
            hops=depth,
            namespaces=list(namespaces) if namespaces is not None else None,
            types=list(types) if types else None,
            as_of=as_of,
            token_budget=token_budget or self.settings.token_budget,
            channels=tuple(channels),
            mmr_lambda=mmr_lambda,
            recency_half_life_days=recency_half_life_days,
            candidate_k=candidate_k,
        )
        return run_search(self._search_sources(), request, tuning)

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` is under the counter the settings name (`token_counter`), the
        one every token budget is kept in (the tokenizer is loaded on first use).

        Args:
            text: any text.

        Returns:
            Its token count.

        Raises:
            ConfigError: the tokenizer's data is missing or damaged.
        """
        if self._counter is None:
            self._counter = token_counter(self.settings.token_counter)
        return self._counter(text)

    def _search_sources(self) -> SearchSources:
        """The store and derived indexes, as the search stages read them."""
        return SearchSources(
            store=self.store,
            embedder=lambda: self.embedder,
            vector_index=self._vector_index,
            keyword_index=self._keyword_index if self.settings.keyword_index == "memory" else None,
            count_tokens=self.count_tokens,
            lexical_cost=self._lexical_cost,
            entity_cache=self._entity_cache,
        )

    # -- knowledge: items about an entity (entities, merges, code symbols: `KnowledgeReads`) ----
    def search_about(
        self,
        name_or_id: str,
        query: str | None = None,
        k: int = 10,
        namespaces: Sequence[str] | None = None,
        **search_args: Any,
    ) -> SearchResult:
        """Items that mention an entity (or any entity merged with it).

        Args:
            name_or_id: the entity.
            query: rank the items by this search (None: by how often they mention it).
            k: how many items.
            namespaces: read only these namespaces (None: all).
            **search_args: further `search` arguments, used with `query`.

        Returns:
            The items as search hits.

        Raises:
            SchemaError: no entity has that name or id.
        """
        summary, hits = self.catalog.about_hits(name_or_id, namespaces, k=MAX_K if query else k)
        if query is None:
            return SearchResult(query=f"about {summary.name}", hits=hits, token_budget=0)
        allowed = {h.id: h for h in hits}
        result = self.search(query, k=MAX_K, namespaces=namespaces, token_budget=10**7, **search_args)
        kept = [h for h in result.hits if h.id in allowed][:k]
        for h in kept:
            h.reasons.extend(allowed[h.id].reasons)
        return result.model_copy(update={"hits": kept, "triples": []})

    # -- memory (delegates) -------------------------------------------------------------------
    def remember(self, content: str, agent_id: str, session_id: str | None = None, **kwargs: Any) -> Any:
        """Store an episode of an agent's memory (see `AgentMemory.remember`).

        Args:
            content: what to remember.
            agent_id: the agent.
            session_id: the session it belongs to.
            **kwargs: further `AgentMemory.remember` arguments.

        Returns:
            The stored episode.
        """
        return self.memory.remember(content, agent_id, session_id, **kwargs)

    def recall(self, query: str, agent_id: str, **kwargs: Any) -> Any:
        """Recall an agent's episodes relevant to a query (see `AgentMemory.recall`).

        Args:
            query: what to recall.
            agent_id: the agent.
            **kwargs: further `AgentMemory.recall` arguments.

        Returns:
            The recalled episodes with scores and reasons.
        """
        return self.memory.recall(query, agent_id, **kwargs)

    def update_memory(self, episode_id: str, new_content: str, **kwargs: Any) -> Any:
        """Correct a remembered episode with a new version (see `AgentMemory.update`).

        Args:
            episode_id: the episode to correct.
            new_content: what it should say.
            **kwargs: further `AgentMemory.update` arguments (namespaces, at).

        Returns:
            The new version and what it retired.
        """
        return self.memory.update(episode_id, new_content, **kwargs)

    def memory_history(self, target: str, **kwargs: Any) -> Any:
        """Every version of a memory, a fact or what is known about an entity (see `AgentMemory.history`).

        Args:
            target: an episode id, a fact id, or an entity's name or id.
            **kwargs: further `AgentMemory.history` arguments (namespaces).

        Returns:
            The versions, oldest first, with times and evidence.
        """
        return self.memory.history(target, **kwargs)

    def compact_memory(self, agent_id: str | None = None, **kwargs: Any) -> Any:
        """Merge duplicate episodes and retire expired ones (see `AgentMemory.compact`).

        Args:
            agent_id: the agent whose memory to compact.
            **kwargs: further `AgentMemory.compact` arguments (namespace, apply).

        Returns:
            What was found, and whether it was applied.
        """
        return self.memory.compact(agent_id, **kwargs)

    def forget(self, agent_id: str | None = None, **kwargs: Any) -> ForgetReport:
        """Retire memories, or erase them with `purge=True` (see `aesoperator.engine.forget.forget`).

        Args:
            agent_id: the agent (its namespace is meant unless `namespace` is given).
            **kwargs: `ids`, `query` or `entity` (exactly one), and `namespace`, `purge`,
                `dry_run`, `entity_namespaces`.

        Returns:
            What was forgotten.
        """
        return forget_memories(self, agent_id, **kwargs)

    def _erase_caches(self, items: Sequence[Entity]) -> None:
        """Erase what caches beside the store hold of `items`' text and scrub their files (none in
        the bare engine; the facade erases the extraction cache)."""

    def _renew_indexes(self) -> None:
        """After an erasure: rebuild the loaded derived indexes from the store and save them (the
        new files replace every older generation), and delete every other saved index under
        `data_dir/index`, which may hold erased text (each is rebuilt when next used)."""
        root = self.settings.data_dir / "index"
        with self._index_lock:
            kept: set[Path] = set()
            if self._index is not None:
                self._index.rebuild(self.store, persist=True)
                kept.add(self._index.directory)
            if self._keywords is not None and self._keywords.directory is not None:
                self._keywords.rebuild(self.store, persist=True)
                kept.add(self._keywords.directory)
            if root.is_dir():
                for child in root.iterdir():
                    if child in kept:
                        continue
                    if child.is_dir():
                        shutil.rmtree(child)
                    else:
                        child.unlink()

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

        Args:
            namespaces: keep only entities in these namespaces (None: all).
            types: keep only entities of these types (None: all).
            relation_types: keep only relations of these types (None: all).
            include_expired: keep relations that no longer hold too.
            batch_size: rows read per store call.

        Returns:
            The graph (see `aesoperator.engine.export.to_networkx`).

        Raises:
            StoreError: the store failed.
        """
        return export.to_networkx(self.store, namespaces, types, relation_types, include_expired, batch_size)

    def stats_frame(self) -> pd.DataFrame:
        """`stats()` as a pandas DataFrame (columns group, name, count) that renders as a table
        in Jupyter: the totals, then entities per type, relations per type, entities per namespace.

        Returns:
            The table (see `aesoperator.engine.export.stats_frame`).

        Raises:
            AesopError: pandas is not installed (the `notebooks` extra).
        """
        return export.stats_frame(self.stats())


__all__ = ["MAX_K", "MAX_QUERY_CHARS", "AesopError", "EngineCore", "SearchSettings"]
