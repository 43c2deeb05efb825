"""The hybrid retrieval pipeline's stages, as pure functions over data.

`aesoperator.engine.search` calls them in this order for every query:

1. `score_fusion` (min-max scaled scores, the default) or `reciprocal_rank_fusion` merges the
   best-first lists of the candidate channels (vector, keyword, exact name) into scored
   `Candidate`s (this module).
2. `expand_graph` spreads the candidates' scores over the local subgraph, so that entities linked
   to several good candidates rise, and brings in new entities one or two hops away
   (`aesoperator.engine.graph_expansion`).
3. `apply_recency` favours recent items (agent memories) (this module).
4. `mmr` picks a relevant but diverse set (this module).
5. `candidate_hits` and `fit_context` fit the chosen entities, and the relations between them,
   into a token budget, laid out for a prompt and saying what was left out
   (`aesoperator.engine.packing`, `aesoperator.engine.context_layout`).

Every stage's public names can be imported from here. No stage does I/O, touches a store or runs
a model; each runs in time linear in its input (graph stages in the number of relations times the
number of seeds) and is deterministic: equal inputs give equal outputs, ties are broken by rank
and then by id.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from aesoperator.engine.candidates import CHANNEL_SCORE_LABELS, GRAPH_CHANNEL, NAME_CHANNEL, Candidate, sort_desc
from aesoperator.engine.graph_expansion import expand_graph, personalized_pagerank
from aesoperator.engine.packing import (
    FACTS_HEADER,
    candidate_hits,
    estimate_tokens,
    fit_context,
    hit_header,
    pack_context,
    pack_hits,
    triple_line,
)

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
    scaled: Collection[str] = (),
) -> list[Candidate]:
    """Fuse best-first channel lists by their scores: score(d) = sum over channels c of
    w_c × norm_c(d), where norm_c min-max scales channel c's scores over its own list (the best
    gets 1, the last 0) and an id a channel did not list gets nothing from it.

    Unlike rank fusion this keeps how far apart the channel's scores are: a keyword hit far ahead
    of the rest stays far ahead. Channel scores must be "higher is better". Weights, duplicates,
    ordering and `limit` work as in `reciprocal_rank_fusion`. Channels named in `scaled` already
    score on [0, 1] against a fixed zero and are taken as they are: min-max scaling would give the
    last of a short list nothing however good it is.
    """
    if not scaled:
        return _fuse(channels, weights, limit, _normalised)
    parts = {c: ranked for c, ranked in channels.items() if c not in scaled}
    fixed = {c: ranked for c, ranked in channels.items() if c in scaled}
    fused = {cand.id: cand for cand in _fuse(parts, weights, None, _normalised)}
    for cand in _fuse(fixed, weights, None, _as_given):
        mine = fused.get(cand.id)
        if mine is None:
            fused[cand.id] = cand
        else:
            mine.score += cand.score
            mine.channels.update(cand.channels)
            mine.reasons.extend(cand.reasons)
    ordered = sorted(fused.values(), key=lambda c: (-c.score, min(c.channels.values(), default=0), c.id))
    return ordered if limit is None else ordered[:limit]


def _as_given(scores: Sequence[float]) -> list[float]:
    return [min(1.0, max(0.0, float(x))) for x in scores]


def query_relevance(similarities: Mapping[str, float], floor: float, top: float) -> dict[str, float]:
    """Each id's similarity to the query scaled to [0, 1] between `floor` (0) and `top` (1),
    clipped; for weighing graph-expanded candidates by their own match to the query. With
    ``top <= floor`` every id gets 1 (no evidence to tell them apart)."""
    if not top > floor:
        return dict.fromkeys(similarities, 1.0)
    span = top - floor
    return {i: min(1.0, max(0.0, (float(v) - floor) / span)) for i, v in similarities.items()}


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
    return sort_desc(out)


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
    pool = sort_desc(list(candidates))
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


__all__ = [
    "CHANNEL_SCORE_LABELS",
    "FACTS_HEADER",
    "GRAPH_CHANNEL",
    "NAME_CHANNEL",
    "Candidate",
    "apply_recency",
    "candidate_hits",
    "estimate_tokens",
    "expand_graph",
    "fit_context",
    "hit_header",
    "mmr",
    "pack_context",
    "pack_hits",
    "personalized_pagerank",
    "query_relevance",
    "reciprocal_rank_fusion",
    "score_fusion",
    "sort_desc",
    "triple_line",
]
