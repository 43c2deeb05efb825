"""Turning free text into the terms the name and keyword channels look up."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_TOKEN = re.compile(r"[\w][\w.\-/:@#]*[\w]|\w")


def name_candidates(text: str, max_words: int = 5, limit: int = 400) -> list[str]:
    """Every run of 1..max_words consecutive tokens, as typed and with trailing punctuation
    stripped, so that 'what did Alice Smith change in README.md?' can hit 'Alice Smith' and
    'README.md' by exact (case-insensitive) name."""
    tokens = _TOKEN.findall(text)
    grams: dict[str, None] = {}
    for size in range(1, max_words + 1):
        for start in range(0, len(tokens) - size + 1):
            gram = " ".join(tokens[start : start + size])
            if len(gram) >= 2:
                grams.setdefault(gram, None)
            if len(grams) >= limit:
                return list(grams)
    return list(grams)


def prune_common_terms(
    terms: Sequence[str], doc_freq: Mapping[str, int], total_docs: int, max_df_fraction: float
) -> list[str]:
    """The query terms worth matching, in their original order.

    A term found in more than `max_df_fraction` of the documents has a small BM25 idf, so it
    moves rankings little, yet scoring every document it matches is most of a keyword query's
    cost on a large store. Such terms are dropped; terms that match nothing are dropped too (they
    cannot change any score). If every matching term is common, the rarest one is kept so the
    query still finds something. Ties between equally rare terms keep the earlier one.
    """
    present = [t for t in terms if doc_freq.get(t, 0) > 0]
    if not present:
        return []
    limit = max_df_fraction * total_docs
    kept = [t for t in present if doc_freq[t] <= limit]
    if kept:
        return kept
    return [min(present, key=lambda t: doc_freq[t])]
