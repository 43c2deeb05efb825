"""The hybrid retrieval pipeline's stages, as pure functions over data.

The engine calls them in this order for every query:

1. `score_fusion` (min-max scaled scores, the default) or `reciprocal_rank_fusion` merges the
   best-first lists of the candidate channels (vector, keyword, exact name) into scored
   `Candidate`s.
2. `expand_graph` spreads the candidates' scores over the local subgraph, so that entities linked
   to several good candidates rise, and brings in new entities one or two hops away.
3. `apply_recency` favours recent items (agent memories).
4. `mmr` picks a relevant but diverse set.
5. `pack_context` fits the chosen entities, and the relations between them, into a token budget.

No stage does I/O, touches a store or runs a model; each runs in time linear in its input (graph
stages in the number of relations times the number of seeds) and is deterministic: equal inputs
give equal outputs, ties are broken by rank and then by id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from aesoperator.engine.results import ContextPack, SearchHit, Triple
from aesoperator.engine.stores.base import Subgraph
from aesoperator.graph_schema.models import Entity, Relation
from aesoperator.graph_schema.vocabulary import DEFAULT_RELATION_WEIGHT, RELATION_WEIGHTS

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# How the raw score of a channel reads in a reason; channels not named here show the bare number.
CHANNEL_SCORE_LABELS: dict[str, str] = {"vector": "cosine", "keyword": "bm25"}
# Channels whose hits need no rank or score in their reason: an exact name match says it all.
NAME_CHANNEL = "name"
GRAPH_CHANNEL = "graph"
ELLIPSIS = " …"
_MAX_NAME_IN_REASON = 80
_MAX_SEEDS_IN_REASONS = 3


@dataclass(slots=True)
class Candidate:
    """An entity id on its way through the pipeline, with its score and why it got it."""

    id: str
    score: float
    reasons: list[str] = field(default_factory=list)
    channels: dict[str, int] = field(default_factory=dict)  # channel name -> 1-based rank there
    hop: int = 0
    via: str | None = None  # the seed it was reached from, when hop > 0

    def copy(self) -> Candidate:
        return Candidate(self.id, self.score, list(self.reasons), dict(self.channels), self.hop, self.via)


def _sort_desc(candidates: list[Candidate]) -> list[Candidate]:
    """Score descending; stable, so equal scores keep their incoming order."""
    return sorted(candidates, key=lambda c: -c.score)


# -- 1. fusion -------------------------------------------------------------------------------------


def _channel_reason(channel: str, rank: int, score: float) -> str:
    if channel == NAME_CHANNEL:
        return "exact name match"
    label = CHANNEL_SCORE_LABELS.get(channel)
    if label is not None:
        return f"{channel} #{rank} ({label} {score:.2f})"
    return f"{channel} #{rank} ({score:.3g})"


def _fuse(
    channels: Mapping[str, Sequence[tuple[str, float]]],
    weights: Mapping[str, float] | None,
    limit: int | None,
    values: Callable[[list[float]], list[float]],
) -> list[Candidate]:
    """The fusion both methods share: each channel's list is reduced to the first listing of each
    id (its best rank), `values` turns those raw scores into per-rank contributions, and every id
    collects weight × contribution from each channel that lists it."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    by_id: dict[str, Candidate] = {}
    best_rank: dict[str, int] = {}
    for channel, ranked in channels.items():
        weight = 1.0 if weights is None else float(weights.get(channel, 1.0))
        if weight < 0 or not math.isfinite(weight):
            raise ValueError(f"weight of channel {channel!r} must be a finite number >= 0, got {weight}")
        if weight == 0 or not ranked:
            continue
        firsts: dict[str, float] = {}
        for doc_id, raw in ranked:
            firsts.setdefault(doc_id, float(raw))
        for rank, (doc_id, value) in enumerate(zip(firsts, values(list(firsts.values())), strict=True), 1):
            cand = by_id.get(doc_id)
            if cand is None:
                cand = by_id[doc_id] = Candidate(doc_id, 0.0)
                best_rank[doc_id] = rank
            cand.score += weight * value
            cand.channels[channel] = rank
            cand.reasons.append(_channel_reason(channel, rank, firsts[doc_id]))
            best_rank[doc_id] = min(best_rank[doc_id], rank)
    fused = sorted(by_id.values(), key=lambda c: (-c.score, best_rank[c.id], c.id))
    return fused if limit is None else fused[:limit]


def reciprocal_rank_fusion(
    channels: Mapping[str, Sequence[tuple[str, float]]],
    k: int = 60,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[Candidate]:
    """Fuse best-first channel lists: score(d) = sum over channels c of w_c / (k + rank_c(d)).

    Ranks are 1-based; an id listed twice in one channel counts once, at its best rank. A channel
    weighs 1.0 unless `weights` says otherwise; a weight of 0 leaves the channel out. The result is
    sorted by score, then by the best rank the id reached in any channel, then by id; `limit`
    keeps only the first so many.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return _fuse(channels, weights, limit, lambda scores: [1.0 / (k + r) for r in range(1, len(scores) + 1)])


def _normalised(scores: Sequence[float]) -> list[float]:
    """Min-max scaling of one channel's best-first scores to [0, 1] (all 1 when they are equal)."""
    top, low = max(scores), min(scores)
    if not (math.isfinite(top) and math.isfinite(low)) or top <= low:
        return [1.0] * len(scores)
    return [(x - low) / (top - low) for x in scores]


def score_fusion(
    channels: Mapping[str, Sequence[tuple[str, float]]],
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[Candidate]:
    """Fuse best-first channel lists by their scores: score(d) = sum over channels c of
    w_c × norm_c(d), where norm_c min-max scales channel c's scores over its own list (the best
    gets 1, the last 0) and an id a channel did not list gets nothing from it.

    Unlike rank fusion this keeps how far apart the channel's scores are: a keyword hit far ahead
    of the rest stays far ahead. Channel scores must be "higher is better". Weights, duplicates,
    ordering and `limit` work as in `reciprocal_rank_fusion`.
    """
    return _fuse(channels, weights, limit, _normalised)


def query_relevance(similarities: Mapping[str, float], floor: float, top: float) -> dict[str, float]:
    """Each id's similarity to the query scaled to [0, 1] between `floor` (0) and `top` (1),
    clipped; for weighing graph-expanded candidates by their own match to the query. With
    ``top <= floor`` every id gets 1 (no evidence to tell them apart)."""
    if not top > floor:
        return dict.fromkeys(similarities, 1.0)
    span = top - floor
    return {i: min(1.0, max(0.0, (float(v) - floor) / span)) for i, v in similarities.items()}


# -- 2. graph expansion ------------------------------------------------------------------------------


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


def _build_graph(
    seed_ids: Sequence[str],
    subgraph: Subgraph,
    relation_weights: Mapping[str, float],
    default_weight: float,
    as_of: datetime | None,
) -> _Graph:
    ids: list[str] = []
    index: dict[str, int] = {}
    for node in (*seed_ids, *subgraph.entities):
        if node not in index:
            index[node] = len(ids)
            ids.append(node)
    tails: list[int] = []
    heads: list[int] = []
    codes: list[int] = []
    type_code: dict[str, int] = {}
    seen: set[str] = set()
    for rel in subgraph.relations:
        if rel.id in seen or rel.src == rel.dst:
            continue
        seen.add(rel.id)
        a = index.get(rel.src)
        b = index.get(rel.dst)
        if a is None or b is None or not rel.is_live(as_of):
            continue
        tails.append(a)
        heads.append(b)
        codes.append(type_code.setdefault(rel.type, len(type_code)))
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
    subgraph: Subgraph,
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


def _display(node: str, names: Mapping[str, str] | None, subgraph: Subgraph) -> str:
    if names is not None and node in names:
        name = names[node]
    elif node in subgraph.entities:
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
    subgraph: Subgraph,
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
    `subgraph.entities` or seeds: the store leaves out what the caller may not see. Negative seed
    scores spread nothing. Only the first `max_seeds` seeds by score spread (all when None); every
    seed can still receive a bonus. At most `max_new` new candidates are added, best first (ties
    by id); their `hop`/`via` name the seed giving the largest share. Reasons read like
    "2 hops from 'Alice' via AUTHORED → MODIFIES", naming seeds by `names` when given (else the
    entity name, else the id). Candidates that got a bonus are ranked in channel "graph".
    The bonus is multiplied by `weight`, and, when `relevance` is given, by
    ``1 - relevance_weight + relevance_weight × relevance[v]`` (ids missing from it count 0): a
    query-aware expansion, in which a neighbour rises by as much as the graph vouches for it only
    if it also matches the query itself, so bridging evidence comes in without pushing strong
    direct matches down.
    Returns all candidates sorted by score, descending (stable: ties keep seeds first, in order).
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
        return _sort_desc(out)
    spreaders = _sort_desc(out)[: len(out) if max_seeds is None else max(0, max_seeds)]
    if not spreaders:
        return _sort_desc(out)

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
    for node in np.flatnonzero(total > 0).tolist():
        node_id = graph.ids[node]
        if node_id in position:
            receivers.append(node)
        elif node_id in subgraph.entities:
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
    return _sort_desc(out)


# -- 3. recency ----------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def apply_recency(
    candidates: Sequence[Candidate],
    timestamps: Mapping[str, datetime],
    now: datetime,
    half_life_days: float = 30.0,
    weight: float = 0.2,
) -> list[Candidate]:
    """Scale scores by ``1 - weight + weight × 0.5 ** (age_days / half_life_days)``.

    An item from now keeps its score; a very old one keeps (1 - weight) of it. Items dated after
    `now` count as new; naive datetimes are read as UTC. Candidates without a timestamp are left
    alone. Returns copies sorted by the new score (stable).
    """
    if not half_life_days > 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days}")
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    ref = _aware(now)
    out: list[Candidate] = []
    for cand in candidates:
        cand = cand.copy()
        stamp = timestamps.get(cand.id)
        if stamp is not None:
            age_days = max(0.0, (ref - _aware(stamp)).total_seconds() / 86_400.0)
            factor = 1.0 - weight + weight * 0.5 ** (age_days / half_life_days)
            cand.score *= factor
            cand.reasons.append(f"recency ×{factor:.2f} ({age_days:.0f} days old)")
        out.append(cand)
    return _sort_desc(out)


# -- 4. diversification ---------------------------------------------------------------------------


def mmr(
    candidates: Sequence[Candidate], vectors: Mapping[str, np.ndarray], k: int, lambda_: float = 0.7
) -> list[Candidate]:
    """Maximal marginal relevance: pick k candidates, each maximising
    ``lambda_ × relevance - (1 - lambda_) × redundancy``.

    Relevance is the score scaled to [0, 1]: divided by the top score when scores are
    non-negative (fused scores are: min-max scaling would give the last candidate relevance 0 however
    close it is to the first), else min-max scaled (all 1 when the scores are equal). Redundancy
    is the largest cosine to an already chosen candidate, floored at 0 (being opposite is no better
    than being unrelated); candidates without a vector (or with a zero one) have redundancy 0.
    Vectors are normalised here, so unnormalised input is fine. Ties go to the higher score, then
    to the earlier candidate. `lambda_=1` is the plain top k by score. Returns the chosen
    candidates (the same objects, unchanged) in the order they were picked.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not 0 <= lambda_ <= 1:
        raise ValueError(f"lambda_ must be in [0, 1], got {lambda_}")
    pool = _sort_desc(list(candidates))
    if k == 0 or not pool:
        return []
    if k >= len(pool) and lambda_ == 1:
        return pool
    scores = np.asarray([c.score for c in pool], dtype=np.float64)
    top, low = float(scores.max()), float(scores.min())
    if low >= 0 and top > 0:
        relevance = scores / top
    elif top > low:
        relevance = (scores - low) / (top - low)
    else:
        relevance = np.ones_like(scores)

    with_vec = [i for i, c in enumerate(pool) if c.id in vectors]
    dim = None
    rows: list[np.ndarray] = []
    for i in with_vec:
        vec = np.asarray(vectors[pool[i].id], dtype=np.float64).ravel()
        if dim is None:
            dim = vec.shape[0]
        elif vec.shape[0] != dim:
            raise ValueError(f"vector of {pool[i].id!r} has {vec.shape[0]} dimensions, expected {dim}")
        rows.append(vec)
    matrix = np.zeros((len(pool), dim or 1), dtype=np.float64)
    if rows:
        stacked = np.vstack(rows)
        norms = np.linalg.norm(stacked, axis=1, keepdims=True)
        matrix[with_vec] = np.divide(stacked, norms, out=np.zeros_like(stacked), where=norms > 0)

    redundancy = np.zeros(len(pool), dtype=np.float64)
    taken = np.zeros(len(pool), dtype=bool)
    chosen: list[Candidate] = []
    for _ in range(min(k, len(pool))):
        gain = lambda_ * relevance - (1 - lambda_) * redundancy
        gain[taken] = -np.inf
        pick = int(np.argmax(gain))
        taken[pick] = True
        chosen.append(pool[pick])
        if rows:
            redundancy = np.maximum(redundancy, matrix @ matrix[pick])
    return chosen


# -- 5. packing ----------------------------------------------------------------------------------

_LETTERS = re.compile(r"[^\W\d_]+")
_DIGITS = re.compile(r"\d+")
_SYMBOLS = re.compile(r"[^\w\s]+|_+")
_SENTENCE_END = re.compile(r"[.!?;:。！？](?=\s)|\n")


def estimate_tokens(text: str) -> int:
    """A cheap, deterministic token count: about 4 characters a token for English prose, about
    3.3 for Python source. It errs high rather than low, the safe side for a budget: on a
    576-character English paragraph it counts 146 where the MiniLM WordPiece tokenizer counts 101.

    - a run of letters: ASCII letters cost (length + 2) // 4 tokens, at least 1 (most English
      words are one token, long ones several); each non-ASCII letter costs 1 (CJK, accents);
    - a run of digits: one token per 3 digits;
    - a run of punctuation or symbols: one token per 2 characters;
    - whitespace is free.

    Because whitespace is free, the count is additive over whitespace-joined pieces
    (``estimate_tokens(a + "\\n" + b) == estimate_tokens(a) + estimate_tokens(b)``) and never
    decreases as text grows, which the packer relies on to account for a context exactly.
    """
    total = 0
    for word in _LETTERS.findall(text):
        ascii_len = len(word) if word.isascii() else len(word.encode("ascii", "ignore"))
        total += (max(1, (ascii_len + 2) // 4) if ascii_len else 0) + len(word) - ascii_len
    for digits in _DIGITS.findall(text):
        total += (len(digits) + 2) // 3
    for symbols in _SYMBOLS.findall(text):
        total += (len(symbols) + 1) // 2
    return total


def _shorten(text: str, limit: int) -> str:
    """At most `limit` characters of text ending in an ellipsis, cut after a sentence when one
    ends in the last 40 % of the room, else between words, else mid-word. "" if nothing fits."""
    if len(text) <= limit:
        return text
    room = limit - len(ELLIPSIS)
    if room <= 0:
        return ""
    head = text[: room + 1]  # one extra character shows whether a boundary falls right at the end
    cut = -1
    for match in _SENTENCE_END.finditer(head):
        if match.end() <= room:
            cut = match.end()
    if cut < 0.6 * room:
        space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
        cut = space if space > 0 else room
    body = text[:cut].rstrip()
    if not body:  # the only boundary is in leading whitespace: cut mid-word instead
        body = text[:room].rstrip()
    return body + ELLIPSIS if body else ""


def _fit(text: str, allowed: int, count_tokens: Callable[[str], int]) -> str:
    """The longest shortening of text whose token count is within `allowed` ("" if none)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        piece = _shorten(text, mid)
        if piece and count_tokens(piece) <= allowed:
            lo = mid
        else:
            hi = mid - 1
    piece = _shorten(text, lo) if lo else ""
    return piece if piece and count_tokens(piece) <= allowed else ""


def hit_header(position: int, hit: SearchHit) -> str:
    """The line that introduces a hit in `ContextPack.to_text` (1-based position)."""
    origin = hit.provenance.uri if hit.provenance else hit.source
    return f"[{position}] {hit.type} {hit.name} ({origin})"


FACTS_HEADER = "Facts:"


def triple_line(triple: Triple) -> str:
    """The line that states a triple in `ContextPack.to_text`."""
    return f"- {triple.src_name} {triple.type} {triple.dst_name}"


def pack_context(
    candidates: Sequence[Candidate],
    entities: Mapping[str, Entity],
    relations: Sequence[Relation],
    token_budget: int,
    *,
    max_chars_per_hit: int = 2000,
    count_tokens: Callable[[str], int] = estimate_tokens,
    min_fragment_tokens: int = 16,
) -> ContextPack:
    """Fit candidates (in the given order, best first) and the relations among them into a budget.

    Each hit costs its header line (as `ContextPack.to_text` writes it) plus its text. A text
    longer than `max_chars_per_hit` is shortened first (at a sentence or word boundary, marked
    with an ellipsis, `truncated=True`). When a hit does not fit, it is shortened to the room left,
    if that room holds at least `min_fragment_tokens` of text, or always for the first hit, so a
    long best hit is cut rather than lost; then packing stops. `dropped` counts the candidates
    left out (candidates without an entity and repeated ids are skipped, not counted).

    Then come triples for relations whose two endpoints are both hits, deduplicated by
    (src, type, dst), ordered by their endpoints' positions, then type: as many as fit, each
    costing its line, and the "Facts:" line once. `tokens_used` is the sum of the pieces'
    counts, never more than `token_budget`; with the default `estimate_tokens` (whitespace is
    free) it equals ``estimate_tokens(pack.to_text())``.
    """
    if token_budget < 0:
        raise ValueError(f"token_budget must be >= 0, got {token_budget}")
    if max_chars_per_hit < 8:
        raise ValueError(f"max_chars_per_hit must be at least 8, got {max_chars_per_hit}")
    known: list[Candidate] = []
    seen: set[str] = set()
    for cand in candidates:
        if cand.id in entities and cand.id not in seen:
            seen.add(cand.id)
            known.append(cand)

    hits: list[SearchHit] = []
    used = 0
    for cand in known:
        ent = entities[cand.id]
        text = ent.text
        truncated = False
        if len(text) > max_chars_per_hit:
            text, truncated = _shorten(text, max_chars_per_hit), True
            if not text:  # nothing but leading whitespace fits: keep a hard cut
                text = ent.text[: max_chars_per_hit - len(ELLIPSIS)] + ELLIPSIS
        hit = SearchHit(
            id=ent.id,
            type=ent.type,
            name=ent.name,
            text=text,
            score=cand.score,
            reasons=list(cand.reasons),
            hop=cand.hop,
            namespace=ent.namespace,
            source=ent.source,
            provenance=ent.provenance,
            properties=dict(ent.properties),
            truncated=truncated,
        )
        head_cost = count_tokens(hit_header(len(hits) + 1, hit))
        text_cost = count_tokens(text)
        room = token_budget - used
        if head_cost + text_cost <= room:
            hits.append(hit)
            used += head_cost + text_cost
            continue
        allowed = room - head_cost
        if allowed > 0 and (allowed >= min_fragment_tokens or not hits):
            short = _fit(text, allowed, count_tokens)
            if short:
                hit.text, hit.truncated = short, True
                hits.append(hit)
                used += head_cost + count_tokens(short)
        break

    rank = {hit.id: i for i, hit in enumerate(hits)}
    chosen: dict[tuple[str, str, str], Relation] = {}
    for rel in relations:
        key = (rel.src, rel.type, rel.dst)
        if rel.src in rank and rel.dst in rank and key not in chosen:
            chosen[key] = rel
    ordered = sorted(
        chosen.items(),
        key=lambda kv: (min(rank[kv[0][0]], rank[kv[0][2]]), max(rank[kv[0][0]], rank[kv[0][2]]), kv[0]),
    )
    triples: list[Triple] = []
    facts_cost = count_tokens(FACTS_HEADER)
    for (src, rel_type, dst), rel in ordered:
        triple = Triple(
            src=src,
            src_name=entities[src].name,
            type=rel_type,
            dst=dst,
            dst_name=entities[dst].name,
            valid_from=rel.valid_from,
            valid_to=rel.valid_to,
        )
        cost = count_tokens(triple_line(triple)) + (0 if triples else facts_cost)
        if used + cost <= token_budget:
            triples.append(triple)
            used += cost
    return ContextPack(
        hits=hits,
        triples=triples,
        tokens_used=used,
        token_budget=token_budget,
        dropped=len(known) - len(hits),
    )


__all__ = [
    "CHANNEL_SCORE_LABELS",
    "FACTS_HEADER",
    "GRAPH_CHANNEL",
    "NAME_CHANNEL",
    "Candidate",
    "apply_recency",
    "estimate_tokens",
    "expand_graph",
    "hit_header",
    "mmr",
    "pack_context",
    "personalized_pagerank",
    "query_relevance",
    "reciprocal_rank_fusion",
    "score_fusion",
    "triple_line",
]
