"""Query-focused excerpts of long passages, so that a small token budget holds more hits.

A passage longer than its share of the budget shows the sentences that matter for the query
instead of its first lines: its sentences are scored by the query's terms (the keyword channel's
stemmed terms, each weighted by its inverse sentence frequency among the passages being packed,
so a term every passage has counts little), and the best ones are kept, in the text's order, with
the first sentence for orientation when the block has no title, "…" marking every cut.

`excerpt` picks the sentences for one passage and a number of tokens; `allot` decides how many
tokens each hit of a context may have (whole text when it fits, larger shares for better ranks).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aesoperator.engine.fts_terms import FtsTermMaker

GAP = " … "
# A hit that costs at most this many times its share keeps its whole text: cutting it would not
# free a share for another hit.
SLACK = 2.0
# A sentence ends at . ! ? (then white space) or at a line break.
_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)|\n")
# Words after which a full stop rarely ends a sentence.
_ABBREVIATIONS = frozenset({"al", "e.g", "i.e", "cf", "vs", "fig", "figs", "eq", "no", "dr", "mr", "mrs", "ms", "st"})
_LAST_WORD = re.compile(r"([\w.]+)\.$")

_terms_lock = threading.Lock()
_term_maker: FtsTermMaker | None = None


def _terms(text: str) -> list[str]:
    """The keyword index's terms of `text` (case folded, stemmed as FTS5 stems them)."""
    global _term_maker
    with _terms_lock:
        if _term_maker is None:
            _term_maker = FtsTermMaker()
    return _term_maker.terms(text)


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence of a text: `text[start:end]`, without the white space around it."""

    start: int
    end: int


def sentences(text: str) -> list[Sentence]:
    """The sentences of `text` in order: cut after . ! ? followed by white space (not after an
    initial or a common abbreviation) and at line breaks; blank pieces are skipped.

    Args:
        text: any text.

    Returns:
        Non-overlapping spans covering every non-blank character of the text.
    """
    spans: list[Sentence] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if match.group() != "\n":
            word = _LAST_WORD.search(text, max(start, match.start() - 12), match.start() + 1)
            last = word.group(1) if word is not None else ""
            if (len(last) == 1 and last.isalpha()) or last.lower() in _ABBREVIATIONS:
                continue
        _add(spans, text, start, end)
        start = end
    _add(spans, text, start, len(text))
    return spans


def _add(spans: list[Sentence], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        lead = len(piece) - len(piece.lstrip())
        spans.append(Sentence(start + lead, start + lead + len(stripped)))


@dataclass(frozen=True, slots=True)
class Excerpt:
    """What an excerpt shows: its text and the [start, end) character ranges of the source text."""

    text: str
    ranges: tuple[tuple[int, int], ...]


def render(text: str, chosen: Sequence[Sentence]) -> Excerpt:
    """The chosen sentences in the text's order; consecutive ones keep the white space between
    them, a gap (or a cut at either end) is marked with "…"."""
    ordered = sorted(set(chosen), key=lambda s: s.start)
    runs: list[list[int]] = []
    for sentence in ordered:
        if runs and not text[runs[-1][1] : sentence.start].strip():
            runs[-1][1] = sentence.end
        else:
            runs.append([sentence.start, sentence.end])
    if not runs:
        return Excerpt("", ())
    body = GAP.join(text[a:b] for a, b in runs)
    if text[: runs[0][0]].strip():
        body = "… " + body
    if text[runs[-1][1] :].strip():
        body += " …"
    return Excerpt(body, tuple((a, b) for a, b in runs))


class QueryTerms:
    """The query's terms and their weights, for scoring the sentences of a set of passages. The
    sentences of a text and their scores are worked out once and remembered (a search packs its
    hits several times)."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = dict(weights)
        self._scored: dict[str, tuple[list[Sentence], list[float]]] = {}
        self._excerpts: dict[tuple[str, int, bool, int | None], Excerpt | None] = {}

    @classmethod
    def of(cls, query: str, passages: Sequence[str]) -> QueryTerms:
        """Weights of the query's terms: BM25's idf, log((N - n + 0.5) / (n + 0.5)), for a term in
        n of the N sentences of `passages`; a term no sentence has, or at least half of them
        have ("the", "of"), weighs nothing, as in the keyword channel.

        Args:
            query: the query.
            passages: the texts that may be excerpted.

        Returns:
            The weights.
        """
        wanted = set(_terms(query))
        if not wanted:
            return cls({})
        counts: dict[str, int] = dict.fromkeys(wanted, 0)
        found: dict[str, tuple[list[Sentence], list[set[str]]]] = {}
        total = 0
        for text in passages:
            if text in found:
                spans, terms = found[text]
            else:
                spans = sentences(text)
                terms = [wanted.intersection(_terms(text[s.start : s.end])) for s in spans]
                found[text] = (spans, terms)
            total += len(spans)
            for present in terms:
                for term in present:
                    counts[term] += 1
        idf = {t: math.log((total - n + 0.5) / (n + 0.5)) for t, n in counts.items() if n}
        made = cls({t: w for t, w in idf.items() if w > 0})
        for text, (spans, terms) in found.items():
            made._scored[text] = (spans, [sum(made.weights.get(t, 0.0) for t in present) for present in terms])
        return made

    def score(self, sentence: str) -> float:
        """The sum of the weights of the query terms the sentence has (each once)."""
        if not self.weights:
            return 0.0
        return sum(self.weights.get(t, 0.0) for t in set(_terms(sentence)))

    def scored(self, text: str) -> tuple[list[Sentence], list[float]]:
        """The sentences of `text` and their scores."""
        known = self._scored.get(text)
        if known is None:
            spans = sentences(text)
            known = self._scored[text] = (spans, [self.score(text[s.start : s.end]) for s in spans])
        return known


def excerpt(
    text: str,
    allowed: int,
    query: QueryTerms,
    count_tokens: Callable[[str], int],
    *,
    orient: bool = True,
    limit: int | None = None,
) -> Excerpt | None:
    """The sentences of `text` that matter most for the query within `allowed` tokens.

    Sentences are taken best first (by `QueryTerms.score`, earlier first on ties); the first
    sentence comes second when `orient` (the block has no title to say what the passage is).
    A sentence that does not fit is passed over for a later, shorter one. Sentences no query term
    is in are not taken, except the first for orientation.

    Args:
        text: the passage.
        allowed: tokens the excerpt may use.
        query: the query's terms.
        count_tokens: the token counter (one counter per `QueryTerms`: answers are remembered).
        orient: show the first sentence too.
        limit: most sentences to show (None: as many as fit).

    Returns:
        The excerpt, or None when no query term is in the text or not even its best sentence fits
        (the caller then shortens the text from its start).
    """
    key = (text, allowed, orient, limit)
    if key not in query._excerpts:
        query._excerpts[key] = _select(text, allowed, query, count_tokens, orient, limit)
    return query._excerpts[key]


def _select(
    text: str,
    allowed: int,
    query: QueryTerms,
    count_tokens: Callable[[str], int],
    orient: bool,
    limit: int | None,
) -> Excerpt | None:
    spans, scores = query.scored(text)
    ranked = sorted(range(len(spans)), key=lambda i: (-scores[i], i))
    order = [i for i in ranked if scores[i] > 0]
    if not order:
        return None
    if orient and order[0] != 0:
        order.insert(1, 0)
    chosen: list[Sentence] = []
    shown: Excerpt | None = None
    for i in order[:limit]:
        trial = render(text, [*chosen, spans[i]])
        if count_tokens(trial.text) <= allowed:
            chosen.append(spans[i])
            shown = trial
        elif not chosen:
            return None
    return shown


def rank_weight(rank: int) -> float:
    """How much of the budget a hit at a 0-based rank is entitled to, relative to the others: the
    position discount of DCG, 1 / log2(rank + 2)."""
    return 1.0 / math.log2(rank + 2)


def allot(costs: Sequence[int], floors: Sequence[int], budget: int) -> list[int]:
    """Tokens for each hit (best first) of a context: a share of the budget by rank weight, and a
    hit that costs no more than its share keeps its whole text and gives the rest back to the
    others (water filling). Hits are shared in while every excerpted one gets at least its floor
    (its smallest useful excerpt); the hits after them get 0.

    Args:
        costs: what each hit costs whole.
        floors: what each hit's smallest excerpt costs (at most its cost).
        budget: tokens for all of them.

    Returns:
        Tokens per hit: its cost when it is shown whole, less when it is excerpted, 0 when it has
        no share.
    """
    for n in range(len(costs), 0, -1):
        shares = _water_fill(costs[:n], budget)
        if all(share >= min(floor, cost) for share, floor, cost in zip(shares, floors, costs, strict=False)):
            return shares + [0] * (len(costs) - n)
    return [0] * len(costs)


def _water_fill(costs: Sequence[int], budget: int) -> list[int]:
    shares = [0] * len(costs)
    open_ = list(range(len(costs)))
    left = budget
    while open_:
        weight = sum(rank_weight(i) for i in open_)
        whole = [i for i in open_ if costs[i] <= SLACK * left * rank_weight(i) / weight]
        if not whole:
            for i in open_:
                shares[i] = int(left * rank_weight(i) / weight)
            break
        for i in whole:
            shares[i] = costs[i]
            left -= costs[i]
        open_ = [i for i in open_ if i not in whole]
    return shares


__all__ = ["GAP", "Excerpt", "QueryTerms", "Sentence", "allot", "excerpt", "rank_weight", "render", "sentences"]
