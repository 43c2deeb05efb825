"""Packing, the last stage of the retrieval pipeline: fit the chosen entities, and the relations
between them, into a token budget (`pack_context` from candidates, `pack_hits` from hits,
`fit_context` with the note on what was left out and the budget checked on the whole text),
laid out as `context_layout` says, counting tokens with a cheap, deterministic estimate
(`estimate_tokens`) or a real tokenizer (`tokens.py`), and shortening long texts at sentence or
word boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from aesoperator.engine.candidates import Candidate
from aesoperator.engine.context_layout import (
    BLOCK_SEPARATOR,
    FACTS_HEADER,
    Block,
    Layout,
    fact_line,
    header_line,
    left_out_note,
    line_range,
)
from aesoperator.engine.excerpts import QueryTerms, allot, excerpt
from aesoperator.engine.results import ContextPack, SearchHit, Triple
from aesoperator.graph_schema.models import Entity, Relation

ELLIPSIS = " …"
MIN_HIT_CHARS = 2000
MAX_HIT_CHARS = 20_000

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

    Args:
        text: any text.

    Returns:
        The estimated number of tokens (0 for empty or blank text).
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
    """The line that introduces a hit that has a block of its own in `ContextPack.to_text`.

    Args:
        position: the block's 1-based position in the context.
        hit: the hit.

    Returns:
        "[position] Type title (source reference, when)" (see `context_layout.header_line`).
    """
    return header_line(position, Layout.of([hit]).blocks[0])


def triple_line(triple: Triple) -> str:
    """The line that states a triple in `ContextPack.to_text`.

    Args:
        triple: the triple.

    Returns:
        "- subject TYPE object", by names, with when it held if known.
    """
    return fact_line(triple)


def hit_chars(token_budget: int) -> int:
    """The longest text one hit keeps before packing, for a budget: about a third of it (at four
    characters a token), at least 2,000 and at most 20,000 characters. One long passage then
    cannot crowd out the rest of a small budget, and a large budget still gets whole passages.

    Args:
        token_budget: the packing budget in tokens.

    Returns:
        A number of characters.
    """
    return min(MAX_HIT_CHARS, max(MIN_HIT_CHARS, token_budget * 4 // 3))


def _hit(cand: Candidate, ent: Entity, max_chars_per_hit: int) -> SearchHit:
    text, truncated = ent.text, False
    if len(text) > max_chars_per_hit:
        text, truncated = _shorten(text, max_chars_per_hit), True
        if not text:  # nothing but leading whitespace fits: keep a hard cut
            text = ent.text[: max_chars_per_hit - len(ELLIPSIS)] + ELLIPSIS
    return SearchHit(
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
        valid_from=ent.valid_from,
        valid_to=ent.valid_to,
        truncated=truncated,
    )


def candidate_hits(
    candidates: Sequence[Candidate],
    entities: Mapping[str, Entity],
    relations: Sequence[Relation],
    max_chars_per_hit: int = 2000,
) -> tuple[list[SearchHit], list[Triple]]:
    """Candidates as hits (best first, unknown and repeated ids skipped, texts longer than
    `max_chars_per_hit` shortened at a boundary), and the relations between two of them as
    triples (deduplicated by (src, type, dst)).

    Args:
        candidates: the chosen candidates, best first.
        entities: their entities by id.
        relations: relations that may become triples.
        max_chars_per_hit: longest text of one hit before shortening (>= 8).

    Returns:
        The hits and the triples among them.

    Raises:
        ValueError: `max_chars_per_hit` is below 8.
    """
    if max_chars_per_hit < 8:
        raise ValueError(f"max_chars_per_hit must be at least 8, got {max_chars_per_hit}")
    hits: list[SearchHit] = []
    seen: set[str] = set()
    for cand in candidates:
        if cand.id in entities and cand.id not in seen:
            seen.add(cand.id)
            hits.append(_hit(cand, entities[cand.id], max_chars_per_hit))
    triples: dict[tuple[str, str, str], Triple] = {}
    for rel in relations:
        key = (rel.src, rel.type, rel.dst)
        if rel.src in seen and rel.dst in seen and key not in triples:
            triples[key] = Triple(
                src=rel.src,
                src_name=entities[rel.src].name,
                type=rel.type,
                dst=rel.dst,
                dst_name=entities[rel.dst].name,
                valid_from=rel.valid_from,
                valid_to=rel.valid_to,
            )
    return hits, list(triples.values())


class _Costs:
    """Token costs of a layout's blocks (header line plus text), kept up to date as hits are
    added; each distinct string is counted once."""

    def __init__(self, count_tokens: Callable[[str], int]) -> None:
        self.count = count_tokens
        self._seen: dict[str, int] = {}
        self.blocks: list[int] = []
        self.total = 0

    def of(self, text: str) -> int:
        cost = self._seen.get(text)
        if cost is None:
            cost = self._seen[text] = self.count(text)
        return cost

    def block(self, position: int, block: Block) -> int:
        """A block as it is rendered: header, newline, text, and the blank line before it (the
        whitespace is free for `estimate_tokens`, not for a subword tokenizer)."""
        head = header_line(position, block)
        body = f"{head}\n{block.text}" if block.text else head
        return self.of(body) + (self.of(BLOCK_SEPARATOR) if position > 1 else 0)

    def after(self, after: Layout, changed: int) -> list[int]:
        """The block costs of `after`: the kept layout with one hit added to block `changed`."""
        if len(after.blocks) == len(self.blocks) + 1:  # a new block at the end
            return [*self.blocks, self.block(len(after.blocks), after.blocks[-1])]
        if len(after.blocks) == len(self.blocks):  # a block grew (joined) or took a repeat (folded)
            costs = list(self.blocks)
            costs[changed] = self.block(changed + 1, after.blocks[changed])
            return costs
        return [self.block(i + 1, b) for i, b in enumerate(after.blocks)]  # excerpts absorbed others

    def keep(self, costs: list[int]) -> None:
        self.blocks = costs
        self.total = sum(costs)


def pack_hits(
    hits: Sequence[SearchHit],
    triples: Sequence[Triple],
    token_budget: int,
    *,
    count_tokens: Callable[[str], int] = estimate_tokens,
    min_fragment_tokens: int = 16,
    query: QueryTerms | None = None,
) -> ContextPack:
    """Fit hits (best first) and the triples among them into a budget, laid out as
    `context_layout` does (chunks of one file joined, repeated passages folded).

    With `query`, the hits first get their shares of the budget (`excerpts.allot`: the whole text
    when it fits its share, a larger share for a better rank) and a hit longer than its share is
    cut to it: to the sentences that matter for the query (`excerpts.excerpt`), or from its start
    when no query term is in it or it is an excerpt of a file by lines.

    Each block costs its header line plus its text; a hit that joins or folds into a block costs
    what it changes. When a hit does not fit, it is shortened to the room left, if that room holds
    at least `min_fragment_tokens` of text, or always for the first hit, so a long best hit is cut
    rather than lost; then packing stops. `dropped` counts the hits left out (repeated ids are
    skipped, not counted).

    Then come the triples whose two ends are both included, deduplicated by (src, type, dst),
    ordered by their ends' ranks, then type: as many as fit, each costing its line, plus the
    "Facts:" line once per block that gets facts. `tokens_used` is the sum of the pieces' counts,
    never more than `token_budget`; with the default `estimate_tokens` (whitespace is free) it
    equals ``estimate_tokens(pack.to_text())``.

    Args:
        hits: the hits, best first.
        triples: triples that may be stated.
        token_budget: tokens the context may use (>= 0).
        count_tokens: the token counter.
        min_fragment_tokens: least room worth filling with a shortened hit.
        query: the query's terms, for excerpts (None: a hit is only cut from its start, when it
            is the last that fits).

    Returns:
        The hits and triples that fit, the tokens used and how many hits were dropped.

    Raises:
        ValueError: `token_budget` is negative.
    """
    if token_budget < 0:
        raise ValueError(f"token_budget must be >= 0, got {token_budget}")
    unique: list[SearchHit] = []  # the first listing of each id
    listed: set[str] = set()
    for hit in hits:
        if hit.id not in listed:
            listed.add(hit.id)
            unique.append(hit)
    costs = _Costs(count_tokens)
    if query is not None:
        unique = _excerpted(unique, token_budget, query, costs, min_fragment_tokens)
    layout = Layout()
    chosen: list[SearchHit] = []
    for hit in unique:
        trial = layout.copy()
        after = costs.after(trial, trial.add(hit))
        if sum(after) <= token_budget:
            layout = trial
            costs.keep(after)
            chosen.append(hit)
            continue
        head_cost = costs.of(hit_header(len(layout.blocks) + 1, hit) + "\n")
        head_cost += costs.of(BLOCK_SEPARATOR) if layout.blocks else 0
        allowed = token_budget - costs.total - head_cost
        if allowed > 0 and (allowed >= min_fragment_tokens or not chosen):
            cut = _cut(hit, allowed, query, costs)
            if cut is not None:
                trial = layout.copy()
                after = costs.after(trial, trial.add(cut))
                if sum(after) <= token_budget:
                    layout = trial
                    costs.keep(after)
                    chosen.append(cut)
        break
    used = costs.total

    rank = {hit.id: i for i, hit in enumerate(chosen)}
    kept: dict[tuple[str, str, str], Triple] = {}
    for triple in triples:
        key = (triple.src, triple.type, triple.dst)
        if triple.src in rank and triple.dst in rank and key not in kept:
            kept[key] = triple
    ordered = sorted(
        kept.items(),
        key=lambda kv: (min(rank[kv[0][0]], rank[kv[0][2]]), max(rank[kv[0][0]], rank[kv[0][2]]), kv[0]),
    )
    stated: list[Triple] = []
    with_facts: set[int] = set()
    for _, triple in ordered:
        block = min(layout.block_of[triple.src], layout.block_of[triple.dst])
        cost = costs.of("\n" + fact_line(triple)) + (0 if block in with_facts else costs.of("\n" + FACTS_HEADER))
        if used + cost <= token_budget:
            stated.append(triple)
            with_facts.add(block)
            used += cost
    return ContextPack(
        hits=chosen,
        triples=stated,
        tokens_used=used,
        token_budget=token_budget,
        dropped=len(unique) - len(chosen),
    )


def _excerpted(
    hits: list[SearchHit], token_budget: int, query: QueryTerms, costs: _Costs, min_fragment_tokens: int
) -> list[SearchHit]:
    """The hits, each cut to its share of the budget (see `pack_hits`)."""
    heads: list[int] = []
    whole: list[int] = []
    floors: list[int] = []
    for position, hit in enumerate(hits, 1):
        head = costs.of(hit_header(position, hit) + "\n") + (costs.of(BLOCK_SEPARATOR) if position > 1 else 0)
        heads.append(head)
        whole.append(head + costs.of(hit.text))
        # the smallest excerpt worth showing: the best sentence, or a fragment from the start
        best = excerpt(hit.text, 10**9, query, costs.of, orient=False, limit=1) if _excerptable(hit) else None
        floors.append(head + (costs.of(best.text) if best is not None else min_fragment_tokens))
    if sum(whole) <= token_budget:
        return hits
    shares = allot(whole, floors, token_budget)
    out: list[SearchHit] = []
    for hit, head, cost, share in zip(hits, heads, whole, shares, strict=True):
        allowed = share - head
        if share >= cost or allowed <= 0:  # whole, or no share: packed (or left out) as it is
            out.append(hit)
            continue
        out.append(_cut(hit, allowed, query, costs) or hit)
    return out


def _cut(hit: SearchHit, allowed: int, query: QueryTerms | None, costs: _Costs) -> SearchHit | None:
    """The hit with its text within `allowed` tokens: the sentences that matter for the query
    when there is one and the hit is a passage, else its start; None if nothing fits."""
    if query is not None and _excerptable(hit):
        plain = costs.of(hit_header(1, hit))
        orient = not _titled(hit)
        room = allowed
        while room > 0:  # the ranges lengthen the header: the text gets what they leave
            shown = excerpt(hit.text, room, query, costs.of, orient=orient)
            if shown is None:
                break
            update = {"text": shown.text, "truncated": True, "excerpt_ranges": list(shown.ranges)}
            cut = hit.model_copy(update=update)
            longer = costs.of(hit_header(1, cut)) - plain
            if costs.of(shown.text) + longer <= allowed:
                return cut
            room = min(room - 1, allowed - longer)
    short = _fit(hit.text, allowed, costs.of)
    return hit.model_copy(update={"text": short, "truncated": True}) if short else None


def _excerptable(hit: SearchHit) -> bool:
    """A passage, not an excerpt of a file by lines (whose blocks join by line range)."""
    return line_range(hit.properties) is None and hit.excerpt_ranges is None


def _titled(hit: SearchHit) -> bool:
    return bool(Layout.of([hit]).blocks[0].title)


def entity_hits(entities: Sequence[Entity], max_chars_per_hit: int = 2000) -> list[SearchHit]:
    """Entities (in the order given) as hits to pack, scored 0, texts longer than
    `max_chars_per_hit` shortened at a boundary.

    Args:
        entities: the entities.
        max_chars_per_hit: longest text of one hit before shortening (>= 8).

    Returns:
        One hit per entity.
    """
    return [_hit(Candidate(e.id, 0.0), e, max_chars_per_hit) for e in entities]


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
    """Fit candidates (in the given order, best first) and the relations among them into a budget:
    `candidate_hits`, then `pack_hits`. Candidates without an entity and repeated ids are skipped,
    not counted as dropped.

    Args:
        candidates: the chosen candidates, best first.
        entities: their entities by id.
        relations: relations that may become triples.
        token_budget: tokens the context may use (>= 0).
        max_chars_per_hit: longest text of one hit before shortening (>= 8).
        count_tokens: the token counter.
        min_fragment_tokens: least room worth filling with a shortened hit.

    Returns:
        The hits and triples that fit, the tokens used and how many candidates were dropped.

    Raises:
        ValueError: `token_budget` is negative or `max_chars_per_hit` is below 8.
    """
    if token_budget < 0:
        raise ValueError(f"token_budget must be >= 0, got {token_budget}")
    hits, triples = candidate_hits(candidates, entities, relations, max_chars_per_hit)
    return pack_hits(hits, triples, token_budget, count_tokens=count_tokens, min_fragment_tokens=min_fragment_tokens)


def fit_context(
    hits: Sequence[SearchHit],
    triples: Sequence[Triple],
    token_budget: int,
    *,
    count_tokens: Callable[[str], int] = estimate_tokens,
    min_fragment_tokens: int = 16,
    note: Callable[[int], str] = left_out_note,
    query: QueryTerms | None = None,
) -> ContextPack:
    """`pack_hits` plus a note saying what the budget left out, with the budget checked on the
    whole text: `count_tokens(pack.to_text()) <= token_budget` for any counter, additive over
    whitespace or not (a subword tokenizer counts a joined text a little differently from its
    pieces; the budget is then lowered by the excess and the hits packed again).

    The note's room is kept only when something does not fit; when the budget is too small for
    the note and any hit, the hits win and the note is left out. `tokens_used` is the count of the
    whole text.

    Args:
        hits: the hits, best first.
        triples: triples that may be stated.
        token_budget: tokens the text may use (>= 0).
        count_tokens: the token counter.
        min_fragment_tokens: least room worth filling with a shortened hit.
        note: the note for a number of hits left out (`left_out_note` by default).
        query: the query's terms: hits longer than their share of the budget become excerpts
            of the sentences that matter for it (see `pack_hits`); None keeps every hit whole
            but the last.

    Returns:
        The pack, its `note` set when hits were left out.

    Raises:
        ValueError: `token_budget` is negative.
    """
    if token_budget < 0:
        raise ValueError(f"token_budget must be >= 0, got {token_budget}")
    counted: dict[str, int] = {}

    def count(text: str) -> int:  # the passes below count the same pieces again
        cost = counted.get(text)
        if cost is None:
            cost = counted[text] = count_tokens(text)
        return cost

    target = token_budget
    while True:
        pack = pack_hits(
            hits, triples, target, count_tokens=count, min_fragment_tokens=min_fragment_tokens, query=query
        )
        if pack.dropped:
            reserve = count(BLOCK_SEPARATOR + note(max(pack.dropped, len(hits))))
            noted = pack_hits(
                hits,
                triples,
                max(0, target - reserve),
                count_tokens=count,
                min_fragment_tokens=min_fragment_tokens,
                query=query,
            )
            if noted.hits or not pack.hits:
                noted.note = note(noted.dropped)
                pack = noted
        used = count_tokens(pack.to_text())
        if used <= token_budget:
            return pack.model_copy(update={"tokens_used": used, "token_budget": token_budget})
        if not pack.hits:  # not even the note fits
            return pack.model_copy(update={"note": "", "tokens_used": 0, "token_budget": token_budget})
        target = max(0, target - (used - token_budget))


__all__ = [
    "ELLIPSIS",
    "FACTS_HEADER",
    "candidate_hits",
    "entity_hits",
    "estimate_tokens",
    "fit_context",
    "hit_chars",
    "hit_header",
    "pack_context",
    "pack_hits",
    "triple_line",
]
