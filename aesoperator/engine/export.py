"""The stored graph for analysis: as a networkx MultiDiGraph, and the store's statistics as a table.

One set of node and edge attributes serves every export: nodes carry `type`, `name`,
`namespace`, `source`, `valid_from` and `valid_to`; edges are keyed by relation id and carry
`type`, `namespace`, `source`, `valid_from`, `valid_to`, `recorded_at`, `expired_at` and `live`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx

from aesoperator.engine.stores.base import GraphStore, StoreStats, Subgraph
from aesoperator.errors import AesopError
from aesoperator.graph_schema.models import Entity, Relation

if TYPE_CHECKING:
    import pandas as pd


def node_attributes(entity: Entity) -> dict[str, Any]:
    """The attributes an entity's node carries in an exported graph.

    Args:
        entity: the entity.

    Returns:
        type, name, namespace, source, valid_from and valid_to.
    """
    return {
        "type": entity.type,
        "name": entity.name,
        "namespace": entity.namespace,
        "source": entity.source,
        "valid_from": entity.valid_from,
        "valid_to": entity.valid_to,
    }


def add_relation_edge(graph: nx.MultiDiGraph, rel: Relation, live: bool) -> None:
    """Add a relation as an edge keyed by its id.

    Args:
        graph: the graph to add to (both ends should already be nodes).
        rel: the relation.
        live: whether the relation holds now (stored as the `live` attribute).
    """
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


def to_networkx(
    store: GraphStore,
    namespaces: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    relation_types: Sequence[str] | None = None,
    include_expired: bool = False,
    batch_size: int = 1000,
) -> nx.MultiDiGraph:
    """The stored graph (or the part the filters select) as a networkx MultiDiGraph.

    A relation is kept only when both its ends are kept, and, unless `include_expired`, only
    while it holds now. Built from the store's iterators, so it works on every backend; it is a
    copy: changing it does not change the store.

    Args:
        store: the graph store to read.
        namespaces: keep only entities in these namespaces (None: all).
        types: keep only entities of these types (None: all).
        relation_types: keep only relations of these types (None: all).
        include_expired: keep relations that no longer hold too.
        batch_size: rows read per store call.

    Returns:
        The graph; `graph.graph["store"]` names the backend.

    Raises:
        StoreError: the store failed.
    """
    graph = nx.MultiDiGraph()
    graph.graph["store"] = store.backend  # not `backend=`: networkx reads that as its own dispatch
    for batch in store.iter_entities(
        batch_size=batch_size,
        namespaces=list(namespaces) if namespaces is not None else None,
        types=list(types) if types is not None else None,
    ):
        for entity in batch:
            graph.add_node(entity.id, **node_attributes(entity))
    wanted = set(relation_types) if relation_types is not None else None
    for relations in store.iter_relations(batch_size=batch_size):
        for rel in relations:
            if wanted is not None and rel.type not in wanted:
                continue
            if rel.src not in graph or rel.dst not in graph:
                continue
            live = rel.is_live()
            if not live and not include_expired:
                continue
            add_relation_edge(graph, rel, live)
    return graph


def subgraph_to_networkx(subgraph: Subgraph) -> nx.MultiDiGraph:
    """A `Subgraph` (what `neighbors` returns) as a MultiDiGraph with the attributes of
    `to_networkx`, plus each node's `hop` from the seeds.

    Args:
        subgraph: the subgraph.

    Returns:
        The graph (relations whose ends are not both in the subgraph are left out).
    """
    graph = nx.MultiDiGraph()
    for eid, entity in subgraph.entities.items():
        graph.add_node(eid, **node_attributes(entity), hop=subgraph.hops.get(eid))
    for rel in subgraph.relations:
        if rel.src in graph and rel.dst in graph:
            add_relation_edge(graph, rel, rel.is_live())
    return graph


def stats_frame(stats: StoreStats) -> pd.DataFrame:
    """Store statistics as a pandas DataFrame (columns group, name, count) that renders as a
    table in Jupyter: the totals, then entities per type, relations per type, entities per
    namespace.

    Args:
        stats: the store's statistics.

    Returns:
        The table; `frame.attrs["backend"]` names the backend.

    Raises:
        AesopError: pandas is not installed (the `notebooks` extra).
    """
    try:
        import pandas
    except ImportError as exc:  # an optional dependency
        raise AesopError("stats_frame needs pandas: pip install 'aesoperator[notebooks]'") from exc

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


__all__ = ["add_relation_edge", "node_attributes", "stats_frame", "subgraph_to_networkx", "to_networkx"]
