"""BM25 top k without scoring every posting: MaxScore pruning, with the exhaustive answer.

A question's words at a million entities name about 150,000 postings (p50), most of them of its
commonest words, and summing them all was most of the keyword channel's time. A word's addend to
a document's BM25 is below idf × (k1 + 1), whatever the document. So, taking the words rarest
first (largest bound first) and keeping every document they name as a candidate, once the bounds
of the words not yet taken sum to less than the k-th best score the candidates have already
reached (a partial score: every addend is positive), a document none of the taken words names
cannot reach the top k. The remaining words then only add to the candidates' scores: their
postings are looked up in a dense slot column, and only the candidates' addends are computed.

Every candidate's total is then summed again in query order from zero, the order in which the
exhaustive sum (and FTS5) adds the same addends, so the scores agree to the last bit and the
answer, ties at the k-th score included, is the exhaustive one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# A bound is compared with a score summed in another order: leave a margin far above rounding.
_MARGIN = 1e-9


@dataclass(frozen=True, slots=True)
class TermPostings:
    """One query term's live postings: documents, their frequencies, its idf and addend bound."""

    docs: np.ndarray
    freqs: np.ndarray
    idf: float
    bound: float  # above every addend of the term: idf × (k1 + 1)


class SlotColumn:
    """A dense int32 column, one per document, zero between searches: a candidate's slot + 1."""

    def __init__(self) -> None:
        self.values = np.zeros(0, dtype=np.int32)

    def at_least(self, size: int) -> np.ndarray:
        if len(self.values) < size:
            self.values = np.zeros(size + size // 4 + 1024, dtype=np.int32)
        return self.values


def pruned_sums(
    terms: dict[int, TermPostings],
    occurrences: Sequence[int],
    k: int,
    addends: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
    kept: Callable[[np.ndarray], np.ndarray],
    slots: SlotColumn,
    size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The documents that may be in the top k and their exact totals.

    Args:
        terms: the distinct query terms with postings.
        occurrences: one term id per query word, in query order (a term may come twice).
        k: how many best documents are wanted.
        addends: the BM25 addends of (docs, freqs) for a term of that idf.
        kept: which of some documents the search's filters let through (a mask).
        slots: the scratch column (all zero; left all zero).
        size: documents in the index (every doc id is below it).

    Returns:
        Candidate documents (every document that can score at least the k-th best filtered one),
        their totals, summed in query order, which of them the filters let through, and how many
        terms added no candidates.
    """
    times = Counter(occurrences)
    order = sorted(terms, key=lambda t: (-terms[t].bound, t))
    remaining = sum(terms[t].bound * times[t] for t in order)
    slot = slots.at_least(size)
    room = sum(len(terms[t].docs) for t in order)  # no more candidates than postings
    partial = np.zeros(room, dtype=np.float64)  # each candidate's sum so far, in any order
    allowed = np.zeros(room, dtype=np.bool_)  # whether the filters let it through
    found: list[np.ndarray] = []  # candidate documents, in slot order
    count = 0
    growing = True
    skipped = 0
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # term -> (slots, addends)
    try:
        for tid in order:
            term = terms[tid]
            remaining -= term.bound * times[tid]
            at = slot[term.docs]
            if growing:
                fresh = at == 0
                new_docs = term.docs[fresh]
                at[fresh] = np.arange(count + 1, count + 1 + len(new_docs), dtype=np.int32)
                slot[new_docs] = at[fresh]
                found.append(new_docs)
                allowed[count : count + len(new_docs)] = kept(new_docs)
                count += len(new_docs)
                at -= 1
                values = addends(term.docs, term.freqs, term.idf)
                parts[tid] = (at, values)
                partial[at] += values * times[tid]
                growing = not _enough(partial[:count][allowed[:count]], k, remaining)
            else:
                skipped += 1
                hit = at > 0
                parts[tid] = (at[hit] - 1, addends(term.docs[hit], term.freqs[hit], term.idf))
        docs = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    finally:
        for new_docs in found:
            slot[new_docs] = 0
    totals = np.zeros(count, dtype=np.float64)
    for tid in occurrences:  # query order, from zero: the exhaustive sum's order
        at, values = parts[tid]
        totals[at] += values
    return docs, totals, allowed[:count], skipped


def _enough(scores: np.ndarray, k: int, remaining: float) -> bool:
    """Whether k filtered candidates (their partial scores) already score more than a document
    named only by the terms left could."""
    if len(scores) < k or remaining >= float(scores.max()):
        return False
    kth = float(np.partition(scores, len(scores) - k)[len(scores) - k])
    return remaining < kth * (1.0 - _MARGIN)


__all__ = ["SlotColumn", "TermPostings", "pruned_sums"]
