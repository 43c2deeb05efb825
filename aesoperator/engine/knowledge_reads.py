"""What the graph knows, read for people and agents: the entities extraction and the sources
produced (merged across sources), one entity's profile, the merge decisions entity resolution
recorded (and undoing one), and code symbols. `EngineCore` inherits these reads; they only read
the store, through the namespaces the caller may read.
"""

from __future__ import annotations

from collections.abc import Sequence

from aesoperator.engine.code_queries import SymbolReport, symbol_reports
from aesoperator.engine.entities import EntityCatalog, EntityProfile, EntitySummary, MergeInfo
from aesoperator.engine.stores import GraphStore


class KnowledgeReads:
    """Entity, merge and code-symbol reads over `self.store` (mixed into `EngineCore`)."""

    store: GraphStore

    @property
    def catalog(self) -> EntityCatalog:
        """The entities, mentions, relations and merge decisions in the store."""
        return EntityCatalog(self.store)

    def entities(
        self,
        query: str | None = None,
        types: Sequence[str] | None = None,
        namespaces: Sequence[str] | None = None,
        limit: int = 50,
    ) -> list[EntitySummary]:
        """People, organisations, places, systems, concepts... the graph knows (merged across
        sources), most mentioned first.

        Args:
            query: keep only names containing this (None: all).
            types: keep only these types (None: the knowledge types).
            namespaces: read only these namespaces (None: all).
            limit: how many at most.

        Returns:
            One summary per merged entity.

        Raises:
            StoreError: the store failed.
        """
        return self.catalog.summaries(query, types, namespaces, limit)

    def entity(self, name_or_id: str, namespaces: Sequence[str] | None = None) -> EntityProfile:
        """One entity with what mentions it, its relations, its sources and its merge decisions.

        Args:
            name_or_id: an entity id, or a name (case-insensitive).
            namespaces: read only these namespaces (None: all).

        Returns:
            The entity's profile.

        Raises:
            SchemaError: no entity has that name or id.
        """
        return self.catalog.show(name_or_id, namespaces)

    def merges(self, namespaces: Sequence[str] | None = None, include_undone: bool = False) -> list[MergeInfo]:
        """The merge decisions entity resolution recorded.

        Args:
            namespaces: read only these namespaces (None: all).
            include_undone: also list undone merges and refusals.

        Returns:
            The decisions, with rule, score and evidence.
        """
        return self.catalog.merges(namespaces, include_undone)

    def unmerge(self, decision_id: str, namespaces: Sequence[str] | None = None) -> MergeInfo:
        """Undo one merge decision; resolution will not merge the two entities again.

        Args:
            decision_id: a decision id from `merges()`.
            namespaces: the namespaces the caller may read (None: all).

        Returns:
            The undone decision.

        Raises:
            SchemaError: no such decision is readable.
        """
        return self.catalog.unmerge(decision_id, namespaces)

    def code_symbol(self, name: str, namespaces: Sequence[str] | None = None) -> list[SymbolReport]:
        """Where a code symbol is defined and what calls, imports or inherits it (and what it
        calls): 'what calls X' and 'where is Y defined', from the graph.

        Args:
            name: a qualified name (pkg.mod.func) or its last part.
            namespaces: read only these namespaces (None: all).

        Returns:
            One report per symbol of that name.

        Raises:
            SchemaError: the name is empty.
        """
        return symbol_reports(self.store, name, namespaces)
