"""Graph store backends behind one protocol; `open_store` picks one from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aesoperator.engine.stores.base import (
    Change,
    GraphStore,
    SourceItemState,
    StoreStats,
    Subgraph,
    WriteBatch,
    WriteResult,
)

if TYPE_CHECKING:
    from aesoperator.config import Settings

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
    """The embedded store in `settings.data_dir`, or Neo4j when `settings.graph` is a URI."""
    if settings.uses_neo4j:
        from aesoperator.engine.stores.neo4j import Neo4jGraphStore

        return Neo4jGraphStore(
            settings.graph,
            settings.neo4j_user,
            settings.neo4j_password,
            database=settings.neo4j_database,
            batch_size=settings.write_batch_size,
            max_retry_time=settings.neo4j_max_retry_time,
            connection_timeout=settings.neo4j_connection_timeout,
        )
    from aesoperator.engine.data_dir import make_private_dir
    from aesoperator.engine.stores.embedded import EmbeddedGraphStore

    make_private_dir(settings.data_dir)
    return EmbeddedGraphStore(settings.data_dir)
