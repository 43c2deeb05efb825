"""The one table of source kinds: each kind and the adapter class that reads it.

`SourceDefinition.kind` is checked against this table where definitions are declared
(`aesoperator.ingest.registry`) and where adapters are made (`make_adapter`); a new adapter is
added here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from aesoperator.errors import ConfigError
from aesoperator.ingest.adapters.aesop_github import GitHubConnectorAdapter
from aesoperator.ingest.adapters.aesop_postgres import PostgresConnectorAdapter
from aesoperator.ingest.adapters.base import SourceAdapter
from aesoperator.ingest.adapters.everything import EverythingAdapter
from aesoperator.ingest.adapters.filesystem import FilesystemAdapter
from aesoperator.ingest.adapters.gdrive import GDriveAdapter
from aesoperator.ingest.adapters.git import GitAdapter
from aesoperator.ingest.adapters.github import GitHubAdapter
from aesoperator.ingest.adapters.memory import MemoryServerAdapter
from aesoperator.ingest.adapters.notion import NotionAdapter
from aesoperator.ingest.adapters.postgres import PostgresAdapter
from aesoperator.ingest.adapters.sqlite import SqliteAdapter
from aesoperator.ingest.adapters.web import WebAdapter
from aesoperator.ingest.sources import SourceDefinition

ADAPTERS: Mapping[str, Callable[[SourceDefinition], SourceAdapter]] = MappingProxyType(
    {
        "filesystem": FilesystemAdapter,
        "git": GitAdapter,
        "postgres": PostgresAdapter,
        "sqlite": SqliteAdapter,
        "memory": MemoryServerAdapter,
        "github": GitHubAdapter,
        "notion": NotionAdapter,
        "gdrive": GDriveAdapter,
        "web": WebAdapter,
        "everything": EverythingAdapter,
        "aesop_postgres": PostgresConnectorAdapter,
        "aesop_github": GitHubConnectorAdapter,
    }
)

SOURCE_KINDS: tuple[str, ...] = tuple(ADAPTERS)


def check_kind(kind: str) -> str:
    """`kind` if the table has an adapter for it.

    Args:
        kind: a source definition's `kind`.

    Returns:
        The same kind.

    Raises:
        ConfigError: no adapter reads that kind; the message lists the kinds there are.
    """
    if kind not in ADAPTERS:
        raise ConfigError(f"no adapter for source kind {kind!r}; known kinds: {', '.join(SOURCE_KINDS)}")
    return kind


def make_adapter(definition: SourceDefinition) -> SourceAdapter:
    """The adapter for a definition's kind.

    Args:
        definition: the source to read.

    Returns:
        A new adapter for that source.

    Raises:
        ConfigError: the kind is unknown, or the adapter refuses the definition's options.
    """
    return ADAPTERS[check_kind(definition.kind)](definition)
