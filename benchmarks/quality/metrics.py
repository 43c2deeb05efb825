"""Ranking metrics over retrieved keys against a gold set."""

from __future__ import annotations

import math
from collections.abc import Sequence

KS = (1, 5, 10, 20)


def recall_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    return len(set(ranked[:k]) & gold) / len(gold) if gold else 0.0


def all_gold_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    return 1.0 if gold and gold <= set(ranked[:k]) else 0.0


def ndcg_at(ranked: Sequence[str], gold: set[str], k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, key in enumerate(ranked[:k]) if key in gold)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(gold), k)))
    return dcg / ideal if ideal else 0.0


def mrr(ranked: Sequence[str], gold: set[str]) -> float:
    for i, key in enumerate(ranked):
        if key in gold:
            return 1.0 / (i + 1)
    return 0.0


def score(ranked: Sequence[str], gold: set[str]) -> dict[str, float]:
    out = {f"recall@{k}": recall_at(ranked, gold, k) for k in KS}
    out.update({f"all@{k}": all_gold_at(ranked, gold, k) for k in (5, 10, 20)})
    out["ndcg@10"] = ndcg_at(ranked, gold, 10)
    out["mrr"] = mrr(ranked, gold)
    return out


def mean(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {}
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
