"""The entity walk, a retrieval channel: personalised PageRank over the graph of items and the
entities they mention, restarting at the query's first-stage hits and at the entities the query
names.

An item that shares specific entities with several good hits, or mentions an entity the query
names, gathers mass even when its own words are far from the query: the bridge passage of a
multi-hop question. The walk follows MENTIONS (item -> entity, and the items' own links such as a
document naming another's title), SAME_AS and ACRONYM_OF, both ways, with the relation weights of
`graph_schema.vocabulary`. An entity mentioned by many items passes each of them a small share of
its mass, so common names (a year, a country) spread little: no cut-off or stop list is needed.

Pure functions over data; the stage that reads the neighbourhood is `search.walk_candidates`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from aesoperator.engine.stores.base import Links
from aesoperator.graph_schema.vocabulary import DEFAULT_RELATION_WEIGHT, RELATION_WEIGHTS

WALK_RELATIONS = ("MENTIONS", "SAME_AS", "ACRONYM_OF")
_MAX_ITER = 50
_TOL = 1e-6


@dataclass(slots=True)
class WalkResult:
    """Items ranked by the walk, and for each item that is not a seed the entity it was reached
    through and the seed naming that entity (None: the query names it)."""

    ranked: list[tuple[str, float]] = field(default_factory=list)  # items, best first
    bridges: dict[str, tuple[str, str | None]] = field(default_factory=dict)


def walk_items(
    item_seeds: Mapping[str, float],
    entity_seeds: Mapping[str, float],
    links: Links,
    is_item: Callable[[str], bool],
    alpha: float = 0.5,
) -> WalkResult:
    """Personalised PageRank from the seeds; the items it reaches, best first.

    Args:
        item_seeds: first-stage hits and their fused scores (restart mass in proportion).
        entity_seeds: entities the query names, with their restart weight.
        links: the seeds' neighbourhood over `WALK_RELATIONS`.
        is_item: whether a node is an item (a hit to rank) rather than an extracted entity.
        alpha: probability of following a relation rather than restarting, in (0, 1); 0.5 keeps
            the walk within about two steps of its seeds.

    Returns:
        The items with positive mass, best first (ties by id), and their bridges.
    """
    restart = {k: max(0.0, v) for k, v in item_seeds.items()}
    for entity_id, weight in entity_seeds.items():
        restart[entity_id] = restart.get(entity_id, 0.0) + max(0.0, weight)
    total = sum(restart.values())
    if total <= 0 or not links.edges:
        return WalkResult()
    nodes = list(dict.fromkeys([*restart, *links.hops, *(end for a, b, _ in links.edges for end in (a, b))]))
    index = {n: i for i, n in enumerate(nodes)}
    pairs = [(index[a], index[b], t) for a, b, t in links.edges if a in index and b in index and a != b]
    if not pairs:
        return WalkResult()
    heads = np.asarray([p[0] for p in pairs] + [p[1] for p in pairs], dtype=np.int64)
    tails = np.asarray([p[1] for p in pairs] + [p[0] for p in pairs], dtype=np.int64)
    weights = np.asarray([RELATION_WEIGHTS.get(p[2], DEFAULT_RELATION_WEIGHT) for p in pairs] * 2, dtype=np.float64)
    mass = _pagerank(len(nodes), heads, tails, weights, np.asarray([restart.get(n, 0.0) for n in nodes]) / total, alpha)
    ranked = sorted(
        ((nodes[i], float(mass[i])) for i in np.flatnonzero(mass > 0).tolist() if is_item(nodes[i])),
        key=lambda p: (-p[1], p[0]),
    )
    scores = {nodes[i]: float(mass[i]) for i in range(len(nodes))}
    return WalkResult(ranked, _bridges(ranked, item_seeds, entity_seeds, scores, links, is_item))


def _pagerank(
    n: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray, restart: np.ndarray, alpha: float
) -> np.ndarray:
    """Power iteration: a walker follows an arc with probability alpha (in proportion to its
    weight among the arcs leaving its node) or jumps back to `restart`; a node without arcs
    sends its mass back to `restart`."""
    out = np.bincount(src, weights=weight, minlength=n)
    step = sp.csr_matrix((weight / out[src], (dst, src)), shape=(n, n))
    dangling = out <= 0
    x = restart.copy()
    for _ in range(_MAX_ITER):
        nxt = alpha * (step @ x) + ((1 - alpha) + alpha * x[dangling].sum()) * restart
        if float(np.abs(nxt - x).sum()) < _TOL:
            return nxt
        x = nxt
    return x


def _bridges(
    ranked: list[tuple[str, float]],
    item_seeds: Mapping[str, float],
    entity_seeds: Mapping[str, float],
    mass: Mapping[str, float],
    links: Links,
    is_item: Callable[[str], bool],
) -> dict[str, tuple[str, str | None]]:
    """For each reached item that is not a seed: the entity linking it to the seeds with the most
    mass, and the best seed item mentioning that entity (None when the query names it)."""
    linked: dict[str, set[str]] = {}
    for a, b, _ in links.edges:
        for x, y in ((a, b), (b, a)):
            if is_item(x) and not is_item(y):
                linked.setdefault(x, set()).add(y)
    named_by: dict[str, str] = {}
    for seed in sorted(item_seeds, key=lambda s: (-item_seeds[s], s)):
        for entity_id in linked.get(seed, ()):
            named_by.setdefault(entity_id, seed)
    out: dict[str, tuple[str, str | None]] = {}
    for item, _ in ranked:
        if item in item_seeds:
            continue
        bridges = [e for e in linked.get(item, ()) if e in entity_seeds or e in named_by]
        if bridges:
            best = max(bridges, key=lambda e: (mass.get(e, 0.0), e))
            out[item] = (best, None if best in entity_seeds else named_by[best])
    return out


__all__ = ["WALK_RELATIONS", "WalkResult", "walk_items"]
