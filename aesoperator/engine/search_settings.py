"""The search pipeline's tuning knobs (`SearchSettings`) and the configurations measured on the
development splits, shipped as named presets (`SEARCH_PRESETS`, `SearchSettings.preset`).

The numbers in the presets' descriptions come from benchmarks/results/quality-configurations.md
(recall on the development splits, k=20, `python -m benchmarks.quality.study`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from aesoperator.errors import ConfigError

MAX_HOPS = 3


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """The retrieval pipeline's tuning knobs (see `ContextEngine.search`); defaults were chosen on
    the development splits of benchmarks/quality (benchmarks/results/quality-configurations.md).

    `hops` is the graph depth used when a search call does not name one (None: 1).
    """

    # Min-max score fusion keeps how far ahead a channel's best hits are; rank fusion ("rrf") does
    # not, and let weak dense hits drag strong keyword hits down on conversation turns.
    fusion: Literal["rrf", "score"] = "score"
    rrf_k: int = 60
    vector_weight: float = 1.0
    keyword_weight: float = 1.0
    name_weight: float = 1.0
    graph_weight: float = 1.0  # scales every graph-expansion bonus
    hop_decay: float = 0.5
    # Share of a graph bonus that depends on the receiver's own cosine to the query (0 = none).
    expansion_relevance_weight: float = 0.0
    hops: int | None = None
    # The walk channel (personalised PageRank over items and the entities they mention); off by
    # default until it gains on every development split (preset "entity_walk").
    walk_weight: float = 0.0
    walk_seeds: int = 10  # first-stage hits the walk restarts at
    walk_alpha: float = 0.5  # probability of following a link rather than restarting
    walk_limit: int = 2000  # entities of the neighbourhood walked at most
    # Multi-step retrieval through bridge entities (0: off): the keyword index asked again with the
    # query plus each entity the best hits name and the query does not.
    bridge_weight: float = 1.0
    bridge_hits: int = 5  # best first-stage hits whose entities bridge
    bridge_entities: int = 10  # second passes at most
    # How a second pass asks: "residual" with the bridge's name plus the query words the hit naming
    # it lacks (the part of the question the first hop left open), scored against the best BM25 the
    # pass could reach and weighed by how specific the bridge's name is in the corpus, its first
    # `bridge_depth` items kept; "query" with the whole query plus the name, scored against the
    # pass's best (the pipeline before residual passes, kept for comparison).
    bridge_query: Literal["residual", "query"] = "residual"
    bridge_depth: int = 3  # items a residual pass keeps: a bridge's own passages come first
    # Conversation windows: share of its best NEXT neighbour's score a turn gains (0: off); only
    # sequences linked by NEXT (a session's turns) are touched. 0.5 over two turns: of the LoCoMo
    # questions whose gold turns all missed the top 10, 52% had one next to a hit, 65% within two.
    window_weight: float = 0.5
    # Time words ("in May 2023", "last week"): candidates dated in the period gain this share of
    # their score (0: off).
    time_boost: float = 1.0
    window_span: int = 2  # turns away a hit lends its score to (weight**d at distance d)
    # True: a passage longer than its share of the token budget shows the sentences that matter for
    # the query. Off by default: on the development splits it lowered whole-item evidence recall at
    # 1,000 tokens on three of four sets and made packing 5-6x slower (benchmarks/README.md).
    excerpts: bool = False

    def __post_init__(self) -> None:
        if self.fusion not in ("rrf", "score"):
            raise ConfigError(f"fusion must be 'rrf' or 'score', got {self.fusion!r}")
        if self.rrf_k < 0:
            raise ConfigError(f"rrf_k must be >= 0, got {self.rrf_k}")
        for name in ("vector_weight", "keyword_weight", "name_weight", "graph_weight", "walk_weight", "bridge_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if not 0 <= self.hop_decay <= 1:
            raise ConfigError(f"hop_decay must be in [0, 1], got {self.hop_decay}")
        if not 0 <= self.expansion_relevance_weight <= 1:
            raise ConfigError(f"expansion_relevance_weight must be in [0, 1], got {self.expansion_relevance_weight}")
        if self.hops is not None and not 0 <= self.hops <= MAX_HOPS:
            raise ConfigError(f"hops must be 0 to {MAX_HOPS} or None, got {self.hops}")
        if not (self.time_boost >= 0 and math.isfinite(self.time_boost)):
            raise ConfigError(f"time_boost must be a finite number >= 0, got {self.time_boost}")
        if not 0 <= self.window_weight <= 1:
            raise ConfigError(f"window_weight must be in [0, 1], got {self.window_weight}")
        if not 1 <= self.window_span <= 5:
            raise ConfigError(f"window_span must be 1 to 5, got {self.window_span}")
        if not 0 < self.walk_alpha < 1:
            raise ConfigError(f"walk_alpha must be between 0 and 1 (exclusive), got {self.walk_alpha}")
        if self.bridge_query not in ("residual", "query"):
            raise ConfigError(f"bridge_query must be 'residual' or 'query', got {self.bridge_query!r}")
        if self.bridge_depth < 1:
            raise ConfigError(f"bridge_depth must be >= 1, got {self.bridge_depth}")
        if self.bridge_hits < 1 or self.bridge_entities < 1:
            raise ConfigError(
                f"bridge_hits and bridge_entities must be >= 1, got {self.bridge_hits}, {self.bridge_entities}"
            )
        if self.walk_seeds < 1 or self.walk_limit < 1:
            raise ConfigError(f"walk_seeds and walk_limit must be >= 1, got {self.walk_seeds}, {self.walk_limit}")

    def channel_weights(self) -> dict[str, float]:
        """The fusion weight of each candidate channel.

        Returns:
            {"vector": ..., "keyword": ..., "name": ..., "walk": ...}.
        """
        return {
            "vector": self.vector_weight,
            "keyword": self.keyword_weight,
            "name": self.name_weight,
            "walk": self.walk_weight,
            "bridge": self.bridge_weight,
        }

    def with_changes(self, **changes: Any) -> SearchSettings:
        """A copy with some fields changed (validated like a new instance).

        Args:
            **changes: field names and their new values.

        Returns:
            The new settings.

        Raises:
            ConfigError: a value is out of range.
            TypeError: a name is not a field.
        """
        return replace(self, **changes)

    @classmethod
    def preset(cls, name: str) -> SearchSettings:
        """Settings measured on the development splits, by name (see `SEARCH_PRESETS`).

        Args:
            name: a preset name, e.g. "multi_hop".

        Returns:
            The preset's settings.

        Raises:
            ConfigError: no preset has that name (the message lists the names).
        """
        found = SEARCH_PRESETS.get(name)
        if found is None:
            raise ConfigError(f"unknown search preset {name!r}; use one of {', '.join(SEARCH_PRESETS)}")
        return found.settings

    @staticmethod
    def preset_names() -> list[str]:
        """The names `preset` accepts.

        Returns:
            Preset names, in the order of `SEARCH_PRESETS`.
        """
        return list(SEARCH_PRESETS)


@dataclass(frozen=True, slots=True)
class SearchPreset:
    """A named configuration: its settings, the study configuration it comes from and when to use it."""

    name: str
    settings: SearchSettings
    study_name: str
    description: str


# From benchmarks/results/quality-configurations.md (recall@10 on the development splits, k=20).
SEARCH_PRESETS: dict[str, SearchPreset] = {
    p.name: p
    for p in (
        SearchPreset(
            "default",
            SearchSettings(),
            "sf (hops as the call names them, 1 by default)",
            "Score fusion with graph expansion at the depth the call asks for.",
        ),
        SearchPreset(
            "multi_hop",
            SearchSettings(hops=2),
            "sf",
            "Score fusion, two hops (with the bridge channel, windows and time words on by "
            "default): the best recall on questions that need several passages "
            "(recall@10 MuSiQue 0.798, HotpotQA 0.970, LoCoMo 0.760, SciFact 0.850).",
        ),
        SearchPreset(
            "direct",
            SearchSettings(hops=0),
            "sf0",
            "Score fusion, no graph expansion: the best first hit when one passage answers "
            "(recall@1 MuSiQue 0.402, HotpotQA 0.480; MRR 0.914 / 0.971).",
        ),
        SearchPreset(
            "rank_fusion",
            SearchSettings(fusion="rrf", rrf_k=60, hops=2),
            "engine",
            "Reciprocal rank fusion (k=60), two hops: the defaults before score fusion "
            "(recall@10 MuSiQue 0.735, LoCoMo 0.618).",
        ),
        SearchPreset(
            "rank_fusion_direct",
            SearchSettings(fusion="rrf", rrf_k=60, hops=0),
            "hybrid",
            "Reciprocal rank fusion (k=60), no graph: the classic hybrid baseline "
            "(recall@10 MuSiQue 0.698, LoCoMo 0.590).",
        ),
        SearchPreset(
            "query_aware",
            SearchSettings(hops=2, expansion_relevance_weight=0.5),
            "sf-r5",
            "Two hops, half of each graph bonus scaled by the receiver's own match to the query: "
            "for corpora where neighbours are often noise (recall@10 MuSiQue 0.742, LoCoMo 0.690).",
        ),
        SearchPreset(
            "query_aware_strong",
            SearchSettings(hops=2, expansion_relevance_weight=0.8),
            "sf-r8",
            "As query_aware with 0.8 of the bonus scaled (recall@10 MuSiQue 0.725, LoCoMo 0.687).",
        ),
        SearchPreset(
            "query_aware_one_hop",
            SearchSettings(hops=1, expansion_relevance_weight=0.8),
            "sf-r8-h1",
            "As query_aware_strong with one hop (recall@10 MuSiQue 0.725, LoCoMo 0.687).",
        ),
        SearchPreset(
            "light_graph",
            SearchSettings(hops=2, graph_weight=0.5),
            "sf-g5",
            "Two hops with every graph bonus halved (recall@10 MuSiQue 0.742, LoCoMo 0.688).",
        ),
        SearchPreset(
            "entity_walk",
            SearchSettings(hops=2, walk_weight=0.5),
            "walk05",
            "Two hops plus the walk channel at half weight: passages sharing specific entities "
            "with the first hits (recall@10 HotpotQA 0.970, MuSiQue 0.762; recall@5 MuSiQue 0.665).",
        ),
    )
}


__all__ = ["MAX_HOPS", "SEARCH_PRESETS", "SearchPreset", "SearchSettings"]
