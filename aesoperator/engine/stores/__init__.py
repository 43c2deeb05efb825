"""Graph store backends behind one protocol; `open_store` picks one from settings."""

from __future__ import annotations

from aesoperator.config import Settings
from aesoperator.engine.data_dir import make_private_dir
from aesoperator.engine.stores.base import (
    Change,
    GraphStore,
    SourceItemState,
    StoreStats,
    Subgraph,
    WriteBatch,
    WriteResult,
)
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.errors import ConfigError

__all__ = [
    "Change",
    "GraphStore",
    "SourceItemState",
    "StoreStats",
    "Subgraph",
    "WriteBatch",
    "WriteResult",
    "open_store",
]


def open_store(settings: Settings) -> GraphStore:
    """The embedded store in `settings.data_dir`, or Neo4j when `settings.graph` is a URI.

    Args:
        settings: where the graph lives and how to reach it.

    Returns:
        The open store.

    Raises:
        StoreError: the store cannot be opened or reached.
        ConfigError: the graph is a Neo4j URI and the `neo4j` extra is not installed.
    """
    if settings.uses_neo4j:
        # Deferred: the Neo4j driver costs more to import than the rest of the engine, and it is
        # an optional extra.
        try:
            from aesoperator.engine.stores.neo4j import Neo4jGraphStore
        except ModuleNotFoundError as exc:
            if exc.name != "neo4j" and not (exc.name or "").startswith("neo4j."):
                raise
            raise ConfigError(
                f"the graph is the Neo4j database {settings.graph}, but the Neo4j driver is not installed: "
                "pip install 'aesoperator[neo4j]' (or use the embedded store: drop --graph / AESOP_GRAPH)"
            ) from None

        return Neo4jGraphStore(
            settings.graph,
            settings.neo4j_user,
            settings.neo4j_password,
            database=settings.neo4j_database,
            batch_size=settings.write_batch_size,
            max_retry_time=settings.neo4j_max_retry_time,
            connection_timeout=settings.neo4j_connection_timeout,
        )
    make_private_dir(settings.data_dir)
    return EmbeddedGraphStore(settings.data_dir)
