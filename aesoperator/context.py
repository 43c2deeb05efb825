"""ContextEngine: the one object users hold. It is the engine (`aesoperator.engine.context.EngineCore`:
stores, indexes, search, memory, export) plus the ways of getting data in: local folders, plain
documents and MCP sources, run by the ingest layer.

This module sits above both `engine` and `ingest`; neither imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aesoperator.engine.context import EngineCore
from aesoperator.engine.progress import ProgressReporter
from aesoperator.engine.search import SearchSettings
from aesoperator.graph_schema.ids import entity_id
from aesoperator.graph_schema.knowledge import KnowledgeStage
from aesoperator.graph_schema.models import Entity
from aesoperator.ingest.documents import DocumentInput, DocumentsMapper, document_records, mention_links
from aesoperator.ingest.extract.cache_erase import erase_cached_texts
from aesoperator.ingest.extract.factory import CACHE_FILE, knowledge_stage_for_engine
from aesoperator.ingest.loaders.settings import document_limits
from aesoperator.ingest.local_files import LocalFolderExtractor
from aesoperator.ingest.mappers.files import FilesMapper
from aesoperator.ingest.pipeline import IngestPipeline, IngestReport
from aesoperator.ingest.records import SourceRecord
from aesoperator.ingest.sources import SourceDefinition

if TYPE_CHECKING:
    from aesoperator.ingest.mcp_ingest import WatchEvent

MENTION_LINK_BATCH = 500


class ContextEngine(EngineCore):
    """Hybrid retrieval and agent memory over a graph store, and ingest into it.

    >>> engine = ContextEngine.open(data_dir=".aesop")
    >>> engine.ingest_path("docs/")
    >>> engine.search("how are vectors persisted?", k=5).hits[0].name
    """

    def _build_knowledge(self) -> KnowledgeStage | None:
        """The knowledge stage the settings ask for (`extractor`; none for "none"), used by
        ingest and by memory's `remember`."""
        return knowledge_stage_for_engine(self)

    def _erase_caches(self, items: Sequence[Entity]) -> None:
        """Erase the extraction cache's results for `items`' text and scrub its file."""
        erase_cached_texts(self.settings.data_dir / "cache" / CACHE_FILE, items)

    # -- local data ---------------------------------------------------------------------------
    def ingest_path(
        self,
        path: str | Path,
        name: str | None = None,
        namespace: str | None = None,
        embed: bool | None = None,
        progress: ProgressReporter | None = None,
        include: Sequence[str] = (),
    ) -> IngestReport:
        """Ingest a local folder of text, Markdown and code files and documents (PDF, Word, PowerPoint,
        Excel, CSV, saved web pages, EPUB), incrementally and idempotently. A document that cannot
        be read (password, damage, over a limit, no text layer) is quarantined with the reason.

        Args:
            path: the folder, or one file (then the source holds that file only).
            name: the source name (default: the folder's or the file's name).
            namespace: the namespace to write into (default: settings).
            embed: embed the text (default: `settings.embed_on_ingest`).
            progress: receives the progress of the run.
            include: glob patterns of files to take (default: every supported file).

        Returns:
            What the run read, wrote, skipped and how long each stage took.

        Raises:
            SourceError: the folder cannot be read, or the source name belongs to another folder.
            StoreError: the store failed.
        """
        root = Path(path).expanduser().resolve()
        if root.is_file():  # one file: its folder, with only that file taken
            include = (root.name,)
            source = name or root.name
            root = root.parent
        else:
            source = name or root.name or "root"
        extractor = LocalFolderExtractor(
            root,
            source,
            include=include,
            max_file_bytes=self.settings.max_file_bytes,
            max_depth=self.settings.max_dir_depth,
            read_timeout=self.settings.file_read_timeout,
            max_document_bytes=self.settings.max_document_bytes,
            document_limits=document_limits(self.settings),
        )
        mapper = FilesMapper(
            source,
            namespace or self.settings.default_namespace,
            chunk_chars=self.settings.chunk_chars,
            overlap_chars=self.settings.chunk_overlap_chars,
            document_limits=document_limits(self.settings),
            chunks_across_units=self.settings.document_chunks_across_units,
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
        each other. Re-adding the same documents changes nothing.

        Args:
            docs: documents (`DocumentInput`: strings, mappings or `Document`s).
            source: the source name.
            namespace: the namespace to write into (default: settings).
            link_mentions: add MENTIONS relations between changed documents and those they name.
            embed: embed the text (default: `settings.embed_on_ingest`).
            progress: receives the progress of the run.
            total: how many documents there are, for the progress bar.

        Returns:
            What the run read and wrote (relations include the mention links).

        Raises:
            SchemaError: a document is invalid.
            StoreError: the store failed.
        """
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
            for start in range(0, len(ids), MENTION_LINK_BATCH):
                batch = self.store.get_entities(ids[start : start + MENTION_LINK_BATCH])
                links = mention_links(self.store, batch, namespaces=[ns])
                if links:
                    self.store.upsert(relations=links)
                    report.relations_written += len(links)
        if use_embedder:
            self.refresh_index(save=True)
        return report

    # -- MCP sources --------------------------------------------------------------------------
    def source_definition(self, source: str | SourceDefinition) -> SourceDefinition:
        """A definition as given, or the one registered under that name (aesop.toml or sources.toml).

        Args:
            source: a registered source name or a definition.

        Returns:
            The definition.

        Raises:
            ConfigError: no source is registered under that name.
        """
        if isinstance(source, SourceDefinition):
            return source
        from aesoperator.ingest.registry import SourceRegistry

        return SourceRegistry.for_settings(self.settings).get(source)

    def ingest_source(
        self,
        source: str | SourceDefinition,
        progress: ProgressReporter | None = None,
        embed: bool | None = None,
    ) -> IngestReport:
        """Ingest an MCP source (a registered name or a definition), incrementally.

        Args:
            source: a registered source name or a definition.
            progress: receives the progress of the run.
            embed: embed the text (default: `settings.embed_on_ingest`).

        Returns:
            What the run read and wrote.

        Raises:
            ConfigError: no source is registered under that name.
            SourceError: the MCP server failed or could not be reached.
        """
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
        """Ingest an MCP source, then re-ingest on its resource updates until `stop` is set.

        Args:
            source: a registered source name or a definition.
            stop: set it to end the watch (None: until interrupted).
            on_event: called with each run, update and reconnection.
            progress: receives the progress of each run.
            embed: embed the text (default: `settings.embed_on_ingest`).

        Raises:
            ConfigError: no source is registered under that name.
            SourceError: the MCP server failed for good.
        """
        from aesoperator.ingest.mcp_ingest import watch_source

        watch_source(self, self.source_definition(source), stop=stop, on_event=on_event, progress=progress, embed=embed)


__all__ = ["ContextEngine", "EngineCore", "SearchSettings"]
