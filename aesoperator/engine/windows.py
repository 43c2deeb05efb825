"""Conversation windows, a retrieval stage: a turn scores with its neighbours in its session.

In dialogue the answer is often the reply to the turn that matches the question ("What kind are
they?" -> "They're called Peruvian lilies"), or the turn before it sets the topic. So each turn
linked by NEXT to a candidate gains `weight` times the best score among its neighbours:
``s'(t) = s(t) + weight * max(s(t-1), s(t+1))``, where a turn that is not a candidate scores 0
of its own. The neighbour of a strong hit thus comes in just below it, and a turn between two
good hits rises above either. Pure function over data; `search.window_candidates` reads the
neighbours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aesoperator.engine.candidates import Candidate, sort_desc

WINDOW_RELATION = "NEXT"
WINDOW_CHANNEL = "window"


def widen(
    candidates: Sequence[Candidate],
    neighbours: Mapping[str, Sequence[str]],
    weight: float,
    names: Mapping[str, str] | None = None,
    span: int = 1,
) -> list[Candidate]:
    """Candidates rescored with their neighbours, plus the neighbours that were not candidates.

    Args:
        candidates: scored candidates, best first.
        neighbours: item id -> the items next to it (before or after) in its sequence.
        weight: share of the best neighbour's score a turn gains, in [0, 1].
        names: display names for the reasons, by id.
        span: how many turns away a hit lends its score (weight**d at distance d).

    Returns:
        All candidates, best first (stable), each that gained saying next to which hit.
    """
    score = {c.id: max(0.0, c.score) for c in candidates}
    out = {c.id: c.copy() for c in candidates}
    gains: dict[str, tuple[float, str]] = {}
    for source_id, source_score in score.items():
        seen = {source_id}
        ring = [source_id]
        for distance in range(1, span + 1):
            ring = [o for node in ring for o in neighbours.get(node, ()) if o not in seen]
            seen.update(ring)
            gain = weight**distance * source_score
            for other in ring:
                if gain > 0 and gain > gains.get(other, (0.0, ""))[0]:
                    gains[other] = (gain, source_id)
    for item, (gain, source_id) in gains.items():
        cand = out.get(item)
        if cand is None:
            cand = out[item] = Candidate(item, 0.0, hop=1, via=source_id)
        cand.score += gain
        label = (names or {}).get(source_id, source_id)
        cand.reasons.append(f"next to '{label}' in its conversation")
        cand.channels.setdefault(WINDOW_CHANNEL, 1)
    return sort_desc(list(out.values()))


__all__ = ["WINDOW_CHANNEL", "WINDOW_RELATION", "widen"]
