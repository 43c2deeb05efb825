"""The knowledge stage the settings ask for (`extractor = "default" | "rules" | "llm" | "none"`;
the llm extractor over HTTP or, with `llm_transport = "sampling"`, over MCP sampling).

The facade `aesoperator.context.ContextEngine` builds its stage with `knowledge_stage_for_engine`
and hands it to the engine as a `KnowledgeStage` (graph_schema), so the engine's memory and the
ingest pipeline use extraction without the engine depending on how extraction is done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aesoperator.errors import ConfigError
from aesoperator.graph_schema.knowledge import EntityExtractor
from aesoperator.ingest.extract.cache import ExtractionCache
from aesoperator.ingest.extract.default import DefaultExtractor
from aesoperator.ingest.extract.resolve import EntityResolver
from aesoperator.ingest.extract.stage import KnowledgeExtractionStage

if TYPE_CHECKING:
    from aesoperator.config import Settings
    from aesoperator.engine.context import EngineCore
    from aesoperator.engine.embeddings import TextEmbedder
    from aesoperator.engine.stores.base import GraphStore

CACHE_FILE = "extraction.sqlite"


def make_extractor(settings: Settings) -> EntityExtractor | None:
    kind = settings.extractor
    if kind == "none":
        return None
    if kind == "default":
        return DefaultExtractor(use_model=True)
    if kind == "rules":
        return DefaultExtractor(use_model=False)
    # The llm extractors import an HTTP client (or the MCP SDK): only when asked for.
    if kind == "llm" and settings.llm_transport == "sampling":
        from aesoperator.ingest.extract.llm_sampling import SamplingExtractor

        return SamplingExtractor.from_settings(settings)
    if kind == "llm":
        from aesoperator.ingest.extract.llm import LlmExtractor

        return LlmExtractor.from_settings(settings)
    raise ConfigError(f"unknown extractor {kind!r}: use default, rules, llm or none")


def knowledge_stage(
    store: GraphStore, settings: Settings, embedder: TextEmbedder | None = None
) -> KnowledgeExtractionStage | None:
    extractor = make_extractor(settings)
    if extractor is None:
        return None
    cache = ExtractionCache(settings.data_dir / "cache" / CACHE_FILE)
    return KnowledgeExtractionStage(store, extractor, cache, EntityResolver(store, embedder))


def knowledge_stage_for_engine(engine: EngineCore) -> KnowledgeExtractionStage | None:
    return knowledge_stage(engine.store, engine.settings, engine.embedder if engine.settings.embed_on_ingest else None)
