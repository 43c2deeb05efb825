"""The candidate every retrieval stage passes on: an entity id with its score and its reasons."""

from __future__ import annotations

from dataclasses import dataclass, field

# How the raw score of a channel reads in a reason; channels not named here show the bare number.
CHANNEL_SCORE_LABELS: dict[str, str] = {"vector": "cosine", "keyword": "bm25", "walk": "ppr"}
# Channels whose hits need no rank or score in their reason: an exact name match says it all.
NAME_CHANNEL = "name"
GRAPH_CHANNEL = "graph"


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
        """A copy whose lists and maps can change without changing this one.

        Returns:
            The copy.
        """
        return Candidate(self.id, self.score, list(self.reasons), dict(self.channels), self.hop, self.via)


def sort_desc(candidates: list[Candidate]) -> list[Candidate]:
    """Sort by score, descending; stable, so equal scores keep their incoming order.

    Args:
        candidates: the candidates.

    Returns:
        A new sorted list.
    """
    return sorted(candidates, key=lambda c: -c.score)


__all__ = ["CHANNEL_SCORE_LABELS", "GRAPH_CHANNEL", "NAME_CHANNEL", "Candidate", "sort_desc"]
