"""Multi-step retrieval without a model: bridge entities.

A two-hop question names the first passage's subject but not the second's ("Who is the spouse of
the Green performer?": the first passage says Green is by Steve Hillage; the second is about
Steve Hillage). An entity the best hits mention but the query does not is such a bridge. The
second pass asks the keyword index with the bridge's name plus the words of the question the hit
naming it does not contain ("spouse"): the part the first hop left open, which the bridge's own
passage should answer. Asking with the whole question again mostly finds the first hop's passages
once more. Only entities of the kinds a passage is about (people, organisations, places,
products, events, works, concepts) bridge; dates and identifiers do not.

A pass's scores are divided by the best BM25 its query could reach (`KeywordIndex.score_ceiling`),
not by its own best hit: a pass whose best item matches the open part of the question weakly lends
little, where dividing by its best would give that item a full share. Each bridge is further
weighed by how specific its name is (`KeywordIndex.specificity`): "Methods" or "North", which
extraction finds in many passages, lead nowhere in particular.

Pure functions; `search_graph.bridge_candidates` runs the second pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aesoperator.graph_schema.models import Entity

BRIDGE_TYPES = frozenset({"Person", "Organization", "Place", "Product", "Event", "Work", "Concept", "Project"})
_WORD = re.compile(r"\w+", re.UNICODE)
MIN_BM25 = 1e-3  # as in the keyword channel: scores near zero come from words found almost everywhere


@dataclass(frozen=True, slots=True)
class Bridge:
    """An entity a hit mentions and the query does not."""

    entity_id: str
    name: str
    hit_id: str  # the hit naming it
    hit_weight: float  # that hit's score relative to the best hit, in (0, 1]


def _words(text: str) -> set[str]:
    return {w.casefold() for w in _WORD.findall(text)}


def pick_bridges(
    query: str,
    hits: Sequence[tuple[str, float]],
    mentions: Mapping[str, Sequence[str]],
    entities: Mapping[str, Entity],
    limit: int,
) -> list[Bridge]:
    """The bridges to ask with, best hit first, at most `limit`.

    Args:
        query: the question.
        hits: the first pass's best (item id, score), best first.
        mentions: item id -> the extracted entities it mentions.
        entities: those entities by id (name and type).
        limit: bridges to return at most.

    Returns:
        Entities of a bridging type whose name has a word the query lacks, each once, from the
        best hit naming it.
    """
    asked = _words(query)
    top = max((s for _, s in hits), default=0.0)
    out: list[Bridge] = []
    seen: set[str] = set()
    for hit_id, score in hits:
        names = sorted(
            (entities[e] for e in mentions.get(hit_id, ()) if e in entities),
            key=lambda e: (-len(e.name), e.id),  # longer names are more specific
        )
        for entity in names:
            key = entity.name.casefold()
            if entity.type not in BRIDGE_TYPES or key in seen:
                continue
            words = _words(entity.name)
            if not words or words <= asked:
                continue
            seen.add(key)
            out.append(Bridge(entity.id, entity.name, hit_id, score / top if top > 0 else 1.0))
            if len(out) >= limit:
                return out
    return out


def residual_query(query: str, hit_text: str) -> str:
    """The query's words the hit naming a bridge does not contain, in query order (case folded for
    the comparison only): the part of the question the first hop left unanswered.

    Args:
        query: the question.
        hit_text: the text of the hit that names the bridge.

    Returns:
        Those words joined by spaces ("" when the hit holds them all).
    """
    have = _words(hit_text)
    return " ".join(w for w in _WORD.findall(query) if w.casefold() not in have)


@dataclass(frozen=True, slots=True)
class BridgePass:
    """One second pass: its bridge, the keyword hits it found (best first), the score its hits are
    divided by (None: the pass's own best) and a weight for the whole pass (the bridge's
    specificity)."""

    bridge: Bridge
    found: Sequence[tuple[str, float]]
    scale: float | None = None
    weight: float = 1.0


def bridge_scores(passes: Sequence[BridgePass]) -> tuple[list[tuple[str, float]], dict[str, Bridge]]:
    """One channel list from the second passes: an item scores, over the bridges that found it,
    the best of (its BM25 over the pass's scale, at most 1) × (the weight of the hit naming the
    bridge) × (the pass's weight).

    Args:
        passes: the second passes.

    Returns:
        (item id, score) best first, ties by id; and the bridge that gave each item its score.
    """
    best: dict[str, float] = {}
    via: dict[str, Bridge] = {}
    for one in passes:
        scale = one.scale if one.scale is not None else max((s for _, s in one.found), default=0.0)
        if scale <= 0 or one.weight <= 0:
            continue
        for item, score in one.found:
            if score < MIN_BM25:
                continue
            value = min(1.0, score / scale) * one.bridge.hit_weight * one.weight
            if value > best.get(item, 0.0):
                best[item] = value
                via[item] = one.bridge
    return sorted(best.items(), key=lambda p: (-p[1], p[0])), via


__all__ = ["BRIDGE_TYPES", "Bridge", "BridgePass", "bridge_scores", "pick_bridges", "residual_query"]
