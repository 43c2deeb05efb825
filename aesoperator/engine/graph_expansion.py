"""Graph expansion, a stage of the retrieval pipeline: spread the candidates' scores over their
local subgraph so that entities linked to several good candidates rise, and bring in new entities
one or more hops away (`expand_graph`); personalised PageRank over the same weighted graph
(`personalized_pagerank`).

Pure functions over data: no I/O, deterministic, ties broken by score, then id.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from aesoperator.engine.candidates import GRAPH_CHANNEL, Candidate, sort_desc
from aesoperator.engine.stores.base import Links, Subgraph
from aesoperator.graph_schema.vocabulary import DEFAULT_RELATION_WEIGHT, RELATION_WEIGHTS

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# A neighbourhood as the store returns it: with its records (`neighbors`) or its shape only
# (`neighbor_links`); expansion needs only the shape.
Neighbourhood = Subgraph | Links

_MAX_NAME_IN_REASON = 80
_MAX_SEEDS_IN_REASONS = 3


@dataclass(slots=True)
class _Graph:
    """An undirected, weighted arc list sorted by head (for walking paths back), and the sparse
    matrices built from it (for moving mass along all arcs at once)."""

    ids: list[str]
    index: dict[str, int]
    src: IntArray  # arc tail (node index), arcs sorted by head
    dst: IntArray  # arc head
    code: IntArray  # relation type of each arc, as an index into `type_names`
    type_names: list[str]
    weight: FloatArray  # relation-type weight of each arc
    norm_weight: FloatArray  # weight / sqrt(deg_type(tail) × deg_type(head))
    in_ptr: IntArray  # arcs into node v are in_ptr[v]:in_ptr[v+1]

    _lists: tuple[list[int], list[float], list[int], list[int]] | None = None

    @property
    def n(self) -> int:
        return len(self.ids)

    def lists(self) -> tuple[list[int], list[float], list[int], list[int]]:
        """(src, norm_weight, code, in_ptr) as Python lists, for walking a few arcs at a time."""
        if self._lists is None:
            self._lists = (
                self.src.tolist(),
                self.norm_weight.tolist(),
                self.code.tolist(),
                self.in_ptr.tolist(),
            )
        return self._lists

    def matrix(self, arc_values: FloatArray) -> sp.csr_matrix:
        """The n × n sparse matrix M with M[head, tail] = sum of `arc_values` over its arcs, so that
        ``M @ X`` moves per-node columns X one step along the arcs."""
        return sp.csr_matrix((arc_values, (self.dst, self.src)), shape=(self.n, self.n))


def _visible(subgraph: Neighbourhood) -> Mapping[str, object]:
    """The neighbourhood's entity ids (the keys), in the store's order."""
    return subgraph.entities if isinstance(subgraph, Subgraph) else subgraph.hops


def _arcs(subgraph: Neighbourhood, as_of: datetime | None) -> Iterator[tuple[str, str, str]]:
    """Each distinct relation live at `as_of` as (one end, other end, type), self-loops left out.
    The store followed only live relations into a `Links`; a `Subgraph` may hold any."""
    seen: set[str] = set()
    if isinstance(subgraph, Subgraph):
        for rel in subgraph.relations:
            if rel.id in seen or rel.src == rel.dst:
                continue
            seen.add(rel.id)
            if rel.is_live(as_of):
                yield rel.src, rel.dst, rel.type
        return
    for (a, b, rel_type), rel_id in zip(subgraph.edges, subgraph.relation_ids, strict=True):
        if rel_id in seen or a == b:
            continue
        seen.add(rel_id)
        yield a, b, rel_type


def _build_graph(
    seed_ids: Sequence[str],
    subgraph: Neighbourhood,
    relation_weights: Mapping[str, float],
    default_weight: float,
    as_of: datetime | None,
) -> _Graph:
    ids: list[str] = []
    index: dict[str, int] = {}
    for node in (*seed_ids, *_visible(subgraph)):
        if node not in index:
            index[node] = len(ids)
            ids.append(node)
    tails: list[int] = []
    heads: list[int] = []
    codes: list[int] = []
    type_code: dict[str, int] = {}
    for one_end, other_end, rel_type in _arcs(subgraph, as_of):
        a = index.get(one_end)
        b = index.get(other_end)
        if a is None or b is None:
            continue
        tails.append(a)
        heads.append(b)
        codes.append(type_code.setdefault(rel_type, len(type_code)))
    type_names = list(type_code)
    type_weight = np.asarray(
        [max(0.0, float(relation_weights.get(t, default_weight))) for t in type_names], dtype=np.float64
    )
    # Every relation is walkable both ways: arcs tail -> head and head -> tail.
    src = np.asarray(tails + heads, dtype=np.int64)
    dst = np.asarray(heads + tails, dtype=np.int64)
    code = np.asarray(codes + codes, dtype=np.int64)
    weight = type_weight[code] if len(code) else np.zeros(0, dtype=np.float64)
    # Degree per (node, relation type), counting both directions because arcs are undirected;
    # each arc is damped by the degrees of both its ends (see `expand_graph`).
    key = src * max(1, len(type_names)) + code
    if len(key):
        keys, counts = np.unique(key, return_counts=True)
        tail_degree = counts[np.searchsorted(keys, key)].astype(np.float64)
        head_key = dst * max(1, len(type_names)) + code
        head_degree = counts[np.searchsorted(keys, head_key)].astype(np.float64)
        degree = tail_degree * head_degree
    else:
        degree = np.ones(0, dtype=np.float64)
    norm_weight = weight / np.sqrt(degree)
    order = np.argsort(dst, kind="stable")
    src, dst, code, weight, norm_weight = src[order], dst[order], code[order], weight[order], norm_weight[order]
    in_ptr = np.searchsorted(dst, np.arange(len(ids) + 1)).astype(np.int64)
    return _Graph(ids, index, src, dst, code, type_names, weight, norm_weight, in_ptr)


def _layers(
    graph: _Graph, seed_idx: IntArray, seed_mass: FloatArray, hop_decay: float, max_hops: int
) -> tuple[list[FloatArray], NDArray[np.int32]]:
    """Breadth-first mass propagation, one column per seed.

    Layer h holds, for each node at distance exactly h from a seed, the sum over the shortest paths
    from that seed of seed mass × product of degree-normalised relation weights × hop_decay**h.
    Returns the layers (layer 0 is the seeds) and the distance matrix (-1 where unreached).
    """
    n, s = graph.n, len(seed_idx)
    cols = np.arange(s)
    dist = np.full((n, s), -1, dtype=np.int32)
    dist[seed_idx, cols] = 0
    mass = np.zeros((n, s), dtype=np.float64)
    mass[seed_idx, cols] = seed_mass
    frontier = np.zeros((n, s), dtype=np.float64)
    frontier[seed_idx, cols] = 1.0
    layers = [mass]
    if not len(graph.src):
        return layers, dist
    step = graph.matrix(graph.norm_weight * hop_decay)
    adjacent = graph.matrix(np.ones(len(graph.src), dtype=np.float64))
    for h in range(1, max_hops + 1):
        reached = np.asarray(adjacent @ frontier) > 0
        new = reached & (dist < 0)
        if not new.any():
            break
        spread = np.asarray(step @ mass)
        dist[new] = h
        mass = np.where(new, spread, 0.0)
        frontier = new.astype(np.float64)
        layers.append(mass)
    return layers, dist


def _ppr_matrix(
    graph: _Graph,
    restart: tuple[IntArray, IntArray, FloatArray],
    columns: int,
    alpha: float,
    max_iter: int,
    tol: float,
) -> FloatArray:
    """Personalised PageRank by power iteration, one column per restart distribution.

    `restart` lists (node, column, probability) entries, each (node, column) once. A walker
    follows an arc with probability proportional to its relation weight, and with probability
    1 - alpha (or always, at a node with no weighted arcs) jumps back to its column's restart
    distribution. Stops when no column changes by `tol` or more (L1) in an iteration.
    """
    rows, cols, probs = restart
    out_weight = np.bincount(graph.src, weights=graph.weight, minlength=graph.n).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        prob = np.where(out_weight[graph.src] > 0, graph.weight / out_weight[graph.src], 0.0)
    dangling = np.flatnonzero(out_weight <= 0)
    walk = graph.matrix(alpha * prob)
    x = np.zeros((graph.n, columns), dtype=np.float64)
    x[rows, cols] = probs
    for _ in range(max_iter):
        back = alpha * x[dangling].sum(axis=0) + (1 - alpha) if len(dangling) else np.full(columns, 1 - alpha)
        nxt = np.asarray(walk @ x)
        nxt[rows, cols] += back[cols] * probs
        delta = float(np.abs(nxt - x).sum(axis=0).max()) if x.size else 0.0
        x = nxt
        if delta < tol:
            break
    return x


def _restart_weights(scores: Sequence[float]) -> FloatArray:
    mass = np.maximum(np.asarray(scores, dtype=np.float64), 0.0)
    total = mass.sum()
    if total <= 0 or not math.isfinite(total):
        return np.full(len(scores), 1.0 / max(1, len(scores)))
    return mass / total


def personalized_pagerank(
    seeds: Sequence[Candidate] | Mapping[str, float],
    subgraph: Neighbourhood,
    alpha: float = 0.85,
    *,
    relation_weights: Mapping[str, float] = RELATION_WEIGHTS,
    default_weight: float = DEFAULT_RELATION_WEIGHT,
    as_of: datetime | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> dict[str, float]:
    """Personalised PageRank over the subgraph, restarting at the seeds in proportion to their score.

    Relations are followed in both directions with probability proportional to their type weight;
    only relations live at `as_of` count. Returns every node with a positive score (seeds
    included); the scores sum to 1. If no seed has a positive score the seeds restart uniformly.

    Args:
        seeds: candidates, or a mapping of id to score; the restart distribution.
        subgraph: the entities and relations to walk.
        alpha: the probability of following a relation rather than restarting, in (0, 1).
        relation_weights: weight of each relation type.
        default_weight: weight of relation types not in `relation_weights`.
        as_of: follow only relations live at this moment (None: now).
        max_iter: power iterations at most.
        tol: stop when no score changes by this much (L1) in an iteration.

    Returns:
        Node id -> score, for every node with a positive score.

    Raises:
        ValueError: `alpha` is not strictly between 0 and 1.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    pairs = list(seeds.items()) if isinstance(seeds, Mapping) else [(c.id, c.score) for c in seeds]
    first: dict[str, float] = {}
    for node, score in pairs:
        first.setdefault(node, float(score))
    if not first:
        return {}
    graph = _build_graph(list(first), subgraph, relation_weights, default_weight, as_of)
    rows = np.asarray([graph.index[s] for s in first], dtype=np.int64)
    restart = (rows, np.zeros(len(rows), dtype=np.int64), _restart_weights(list(first.values())))
    x = _ppr_matrix(graph, restart, 1, alpha, max_iter, tol)[:, 0]
    x = x / x.sum()
    return {graph.ids[i]: float(x[i]) for i in np.flatnonzero(x > 0).tolist()}


def _display(node: str, names: Mapping[str, str] | None, subgraph: Neighbourhood) -> str:
    if names is not None and node in names:
        name = names[node]
    elif isinstance(subgraph, Subgraph) and node in subgraph.entities:
        name = subgraph.entities[node].name
    else:
        name = node
    return name if len(name) <= _MAX_NAME_IN_REASON else name[: _MAX_NAME_IN_REASON - 1] + "…"


def _path_types(graph: _Graph, layers: list[FloatArray], dist: NDArray[np.int32], node: int, col: int) -> list[str]:
    """Relation types along the strongest shortest path from seed `col` to `node`, seed first.

    Plain Python over the few arcs of each node on the path: cheaper than numpy on tiny slices.
    """
    src, weights, codes, in_ptr = graph.lists()
    types: list[str] = []
    d = int(dist[node, col])
    while d > 0:
        layer = layers[d - 1]
        best, pick_tail, pick_code = -1.0, -1, 0
        for arc in range(in_ptr[node], in_ptr[node + 1]):
            tail = src[arc]
            if dist[tail, col] == d - 1:
                strength = float(layer[tail, col]) * weights[arc]
                if strength > best:
                    best, pick_tail, pick_code = strength, tail, codes[arc]
        types.append(graph.type_names[pick_code])
        node = pick_tail
        d -= 1
    types.reverse()
    return types


def expand_graph(
    seeds: Sequence[Candidate],
    subgraph: Neighbourhood,
    *,
    relation_weights: Mapping[str, float] = RELATION_WEIGHTS,
    default_weight: float = DEFAULT_RELATION_WEIGHT,
    hop_decay: float = 0.5,
    max_new: int = 50,
    as_of: datetime | None = None,
    names: Mapping[str, str] | None = None,
    method: Literal["paths", "ppr"] = "paths",
    max_hops: int | None = None,
    max_seeds: int | None = None,
    alpha: float = 0.85,
    weight: float = 1.0,
    relevance: Mapping[str, float] | None = None,
    relevance_weight: float = 0.0,
) -> list[Candidate]:
    """Spread candidate scores over the subgraph; return the candidates plus the best new entities.

    Every seed keeps its candidate. A node of the subgraph gets a graph bonus summed over the seeds
    that reach it within `max_hops` (default: the deepest hop in `subgraph.hops`, else 2), so an
    entity linked to several seeds rises above one linked to a single seed: that is what answers
    multi-hop questions. Seeds that reach each other get the bonus too.

    `method="paths"`: the bonus from seed s for a node at distance h is, summed over the shortest
    paths from s, ``s.score × hop_decay**h × Π w(rel) / sqrt(deg_T(u) × deg_T(v))`` over the path's
    relations u–v of type T, where deg_T counts a node's live T relations in the subgraph.
    Relations are followed in both directions. Hubs are damped both ways by this symmetric
    normalisation: a directory that CONTAINS 1000 files passes each file 1/31.6 of a single link's
    weight (sqrt(1000) for all of them together), and when 50 of those files are candidates the
    directory collects 50/31.6 links' worth rather than 50: the hub still counts, but it can
    neither flood the results with its members nor float to the top on their votes.

    `method="ppr"`: the bonus from seed s for node v is
    ``s.score × min(ppr_s(v), ppr_v(s)) / ppr_s(s)``, where ppr_x is personalised PageRank
    restarting at x (damping `alpha`, transitions proportional to relation weights). The forward
    walk spreads a hub seed's mass over its members; the reverse one, computed from the forward as
    ``ppr_v(s) = ppr_s(v) × deg(s) / deg(v)`` (weighted degrees, an identity of walks on undirected
    graphs), stops a hub from collecting its members' mass: with forward PPR alone, a directory
    holding 40 candidate files would outscore a note's direct topic by over a hundred times. Only
    nodes within `max_hops` of s receive a bonus.

    Only relations live at `as_of` (`Relation.is_live`) are followed, and only between entities of
    the neighbourhood (`subgraph.entities`, or the `hops` of a `Links`) or seeds: the store leaves
    out what the caller may not see. Negative seed scores spread nothing. Only the first
    `max_seeds` seeds by score spread (all when None); every seed can still receive a bonus. At
    most `max_new` new candidates are added, best first (ties by id); their `hop`/`via` name the
    seed giving the largest share. Reasons read like "2 hops from 'Alice' via AUTHORED →
    MODIFIES", naming seeds by `names` when given (else the entity name, else the id).
    Candidates that got a bonus are ranked in channel "graph".
    The bonus is multiplied by `weight`, and, when `relevance` is given, by
    ``1 - relevance_weight + relevance_weight × relevance[v]`` (ids missing from it count 0): a
    query-aware expansion, in which a neighbour rises by as much as the graph vouches for it only
    if it also matches the query itself, so bridging evidence comes in without pushing strong
    direct matches down.

    Args:
        seeds: the fused candidates, best first.
        subgraph: the seeds' neighbourhood as the store returned it, with its records or its
            shape only (seeds are then named by `names`).
        relation_weights: weight of each relation type.
        default_weight: weight of relation types not in `relation_weights`.
        hop_decay: factor per hop (method "paths"), in [0, 1].
        max_new: new candidates to add at most.
        as_of: follow only relations live at this moment (None: now).
        names: display names for reasons, by id.
        method: "paths" (shortest paths, degree-normalised) or "ppr" (personalised PageRank).
        max_hops: deepest hop that receives a bonus (None: from `subgraph.hops`, else 2).
        max_seeds: seeds that spread, best first (None: all).
        alpha: PageRank damping (method "ppr"), in (0, 1).
        weight: multiplies every bonus (>= 0).
        relevance: each id's match to the query in [0, 1], for query-aware expansion.
        relevance_weight: share of the bonus scaled by `relevance`, in [0, 1].

    Returns:
        All candidates (seeds and new ones) sorted by score, descending (stable: ties keep seeds
        first, in order).

    Raises:
        ValueError: a parameter is out of range or `method` is unknown.
    """
    if not 0 <= hop_decay <= 1:
        raise ValueError(f"hop_decay must be in [0, 1], got {hop_decay}")
    if max_new < 0:
        raise ValueError(f"max_new must be >= 0, got {max_new}")
    if weight < 0 or not math.isfinite(weight):
        raise ValueError(f"weight must be a finite number >= 0, got {weight}")
    if not 0 <= relevance_weight <= 1:
        raise ValueError(f"relevance_weight must be in [0, 1], got {relevance_weight}")
    if method not in ("paths", "ppr"):
        raise ValueError(f"method must be 'paths' or 'ppr', got {method!r}")
    if method == "ppr" and not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    if max_hops is None:
        max_hops = max(subgraph.hops.values(), default=2) or 2
    if max_hops < 0:
        raise ValueError(f"max_hops must be >= 0, got {max_hops}")

    out: list[Candidate] = []
    position: dict[str, int] = {}
    for cand in seeds:
        if cand.id not in position:
            position[cand.id] = len(out)
            out.append(cand.copy())
    if not out or max_hops == 0:
        return sort_desc(out)
    spreaders = sort_desc(out)[: len(out) if max_seeds is None else max(0, max_seeds)]
    if not spreaders:
        return sort_desc(out)

    graph = _build_graph([c.id for c in out], subgraph, relation_weights, default_weight, as_of)
    seed_idx = np.asarray([graph.index[c.id] for c in spreaders], dtype=np.int64)
    seed_score = np.maximum(np.asarray([c.score for c in spreaders], dtype=np.float64), 0.0)
    layers, dist = _layers(graph, seed_idx, seed_score, hop_decay, max_hops)
    cols = np.arange(len(spreaders))
    if method == "paths":
        bonus = np.sum(layers[1:], axis=0) if len(layers) > 1 else np.zeros_like(layers[0])
    else:
        # Scores only need ranking precision here: 1e-4 of a seed's unit mass is plenty.
        restart = (seed_idx, cols, np.ones(len(spreaders), dtype=np.float64))
        ppr = _ppr_matrix(graph, restart, len(spreaders), alpha, max_iter=100, tol=1e-4)
        own = ppr[seed_idx, cols]
        degree = np.bincount(graph.src, weights=graph.weight, minlength=graph.n)
        # min(1, deg(s) / deg(v)): the smaller of forward and reverse PPR (see the docstring).
        damp = np.minimum(1.0, degree[seed_idx][None, :] / np.where(degree > 0, degree, 1.0)[:, None])
        bonus = np.where(dist > 0, ppr / np.where(own > 0, own, 1.0) * seed_score * damp, 0.0)
    scale = np.full(graph.n, weight, dtype=np.float64)
    if relevance is not None and relevance_weight > 0:
        own_match = np.asarray([float(relevance.get(node, 0.0)) for node in graph.ids], dtype=np.float64)
        scale *= 1.0 - relevance_weight + relevance_weight * np.clip(own_match, 0.0, 1.0)
    bonus = bonus * scale[:, None]
    total = bonus.sum(axis=1)

    receivers: list[int] = []
    fresh: list[int] = []
    visible = _visible(subgraph)
    for node in np.flatnonzero(total > 0).tolist():
        node_id = graph.ids[node]
        if node_id in position:
            receivers.append(node)
        elif node_id in visible:
            fresh.append(node)
    fresh.sort(key=lambda v: (-total[v], graph.ids[v]))
    receivers += fresh[:max_new]
    receivers.sort(key=lambda v: (-total[v], graph.ids[v]))

    for graph_rank, node in enumerate(receivers, 1):
        node_id = graph.ids[node]
        shares = bonus[node]
        order = sorted(np.flatnonzero(shares > 0).tolist(), key=lambda j: (-shares[j], j))
        reasons = []
        for j in order[:_MAX_SEEDS_IN_REASONS]:
            hops = int(dist[node, j])
            path = " → ".join(_path_types(graph, layers, dist, node, j))
            seed_name = _display(spreaders[j].id, names, subgraph)
            reasons.append(f"{hops} hop{'' if hops == 1 else 's'} from '{seed_name}' via {path}")
        if len(order) > _MAX_SEEDS_IN_REASONS:
            reasons.append(f"linked to {len(order) - _MAX_SEEDS_IN_REASONS} more seeds")
        if node_id in position:
            cand = out[position[node_id]]
            cand.score += float(total[node])
        else:
            best = order[0]
            cand = Candidate(node_id, float(total[node]), hop=int(dist[node, best]), via=spreaders[best].id)
            position[node_id] = len(out)
            out.append(cand)
        cand.reasons.extend(reasons)
        cand.channels[GRAPH_CHANNEL] = graph_rank
    return sort_desc(out)


__all__ = ["expand_graph", "personalized_pagerank"]
