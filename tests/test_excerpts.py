"""Query-focused excerpts: sentence splitting, the sentences an excerpt keeps and where they are,
the shares of the budget by rank, and packed context with excerpts never exceeding its budget."""

from __future__ import annotations

import itertools
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aesoperator.engine.excerpts import QueryTerms, allot, excerpt, rank_weight, sentences
from aesoperator.engine.packing import fit_context
from aesoperator.engine.results import SearchHit
from aesoperator.engine.tokens import token_counter
from tests.test_packed_context import chunk, hit, hit_lists

cl100k = token_counter("cl100k")

FILLER = [
    f"Survey note {i} records rainfall, soil depth and crop yields across the {place} farms."
    for i, place in enumerate(["northern", "eastern", "western", "southern", "upland", "coastal"] * 4)
]
ANSWER = "The Tamar bridge was completed in 1859 by Isambard Kingdom Brunel."
QUESTION = "When was the Tamar bridge completed?"


def long_passage(answer_at: int = 12) -> str:
    return " ".join([*FILLER[:answer_at], ANSWER, *FILLER[answer_at:]])


def test_sentences_split_at_sentence_ends_but_not_after_initials_or_abbreviations() -> None:
    text = "Dr. J. Smith et al. found it. Was it 3.5 mm? Yes!\nA new line\n\n  Last one."
    assert [text[s.start : s.end] for s in sentences(text)] == [
        "Dr. J. Smith et al. found it.",
        "Was it 3.5 mm?",
        "Yes!",
        "A new line",
        "Last one.",
    ]


def test_a_long_passage_keeps_the_answer_sentence_from_its_middle_within_a_small_budget() -> None:
    text = long_passage()
    query = QueryTerms.of(QUESTION, [text])
    shown = excerpt(text, 40, query, cl100k, orient=False)
    assert shown is not None
    assert cl100k(shown.text) <= 40
    assert shown.text == f"… {ANSWER} …"  # cut at both ends
    assert [text[a:b] for a, b in shown.ranges] == [ANSWER]  # the range points at what is shown
    assert cl100k(text) > 400


def test_orientation_puts_the_first_sentence_before_the_answer_with_a_gap_between() -> None:
    text = long_passage()
    query = QueryTerms.of(QUESTION, [text])
    shown = excerpt(text, 60, query, cl100k, orient=True)
    assert shown is not None
    first = FILLER[0]
    assert shown.text == f"{first} … {ANSWER} …"
    assert [text[a:b] for a, b in shown.ranges] == [first, ANSWER]


def test_consecutive_sentences_become_one_range_without_a_gap() -> None:
    text = "Alpha bridge one. Alpha bridge two. Unrelated words here. Alpha bridge three."
    query = QueryTerms.of("alpha bridge", [text, "Nothing in common at all. Still nothing. More of it."])
    shown = excerpt(text, 100, query, cl100k, orient=False)
    assert shown is not None
    assert shown.text == "Alpha bridge one. Alpha bridge two. … Alpha bridge three."
    assert shown.ranges == ((0, 35), (text.index("Alpha bridge three"), len(text)))


def test_no_query_term_in_the_text_means_no_excerpt() -> None:
    text = long_passage()
    query = QueryTerms.of("zebra migration", [text])
    assert excerpt(text, 40, query, cl100k) is None


def test_shares_favour_better_ranks_and_short_hits_stay_whole() -> None:
    assert rank_weight(0) > rank_weight(1) > rank_weight(9)
    shares = allot([300] * 10, [40] * 10, 1000)
    assert sum(shares) <= 1000
    assert all(a >= b for a, b in itertools.pairwise(shares))  # first hits keep more
    assert all(s >= 40 for s in shares)  # every hit shown gets at least its smallest excerpt
    # a short hit keeps its whole text and the long ones share the rest
    mixed = allot([300, 30, 300, 300], [40] * 4, 500)
    assert mixed[1] == 30 and sum(mixed) <= 500
    # everything fits: all whole
    assert allot([100, 100], [20, 20], 500) == [100, 100]
    # too many hits for their floors: the last ones get nothing
    few = allot([300] * 20, [60] * 20, 500)
    assert few[-1] == 0 and all(s >= 60 for s in few if s)


def test_packed_context_shows_more_hits_as_excerpts_with_their_ranges() -> None:
    hits = [
        hit(f"d{i}", long_passage(answer_at=i), name=f"Survey {i}")
        for i in range(10)  # each about 430 cl100k tokens, the answer sentence at a different place
    ]
    query = QueryTerms.of(QUESTION, [h.text for h in hits])
    whole = fit_context(hits, [], 1000, count_tokens=cl100k)
    cut = fit_context(hits, [], 1000, count_tokens=cl100k, query=query)
    text = cut.to_text()
    assert cl100k(text) == cut.tokens_used <= 1000
    assert len(cut.hits) > len(whole.hits)
    assert text.count(ANSWER) == len(cut.hits)  # every excerpt shows the answer sentence
    # the best hit costs less than twice its share and stays whole; the rest are excerpts
    assert cut.hits[0].text == hits[0].text and cut.hits[0].excerpt_ranges is None
    for h, original in zip(cut.hits[1:], hits[1:], strict=False):
        assert h.excerpt_ranges is not None and h.truncated
        assert all(original.text[a:b] in h.text for a, b in h.excerpt_ranges)
        ranges = ",".join(f"{a}-{b}" for a, b in h.excerpt_ranges)
        assert f"chars {ranges})" in text
    lengths = [len(h.text) for h in cut.hits]
    assert lengths[0] >= lengths[-1]  # the best hit keeps at least as much as the last


def test_a_large_budget_keeps_whole_texts() -> None:
    hits = [hit(f"d{i}", long_passage(answer_at=i)) for i in range(3)]
    query = QueryTerms.of(QUESTION, [h.text for h in hits])
    pack = fit_context(hits, [], 10_000, count_tokens=cl100k, query=query)
    assert [h.text for h in pack.hits] == [h.text for h in hits]
    assert all(h.excerpt_ranges is None for h in pack.hits)


def test_file_chunks_are_not_excerpted_by_sentence() -> None:
    chunks = [chunk(1, 40), chunk(41, 60, path="b.py")]
    query = QueryTerms.of("retrieval module", [c.text for c in chunks])
    pack = fit_context(chunks, [], 300, count_tokens=cl100k, query=query)
    assert all(h.excerpt_ranges is None for h in pack.hits)
    assert re.search(r"src/mod\.py#L1-L\d+", pack.to_text())


queries = st.sampled_from(["graph retrieval", "Alice commit 2024", "naïve 日本", "x", "zebra"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hits=hit_lists(),
    budget=st.integers(0, 600),
    counter=st.sampled_from(["estimate", "cl100k"]),
    question=queries,
)
def test_excerpted_context_never_exceeds_the_budget(
    hits: list[SearchHit], budget: int, counter: str, question: str
) -> None:
    count = token_counter(counter)
    query = QueryTerms.of(question, [h.text for h in hits])
    pack = fit_context(hits, [], budget, count_tokens=count, query=query)
    text = pack.to_text()
    assert count(text) == pack.tokens_used <= budget
    unique = list(dict.fromkeys(h.id for h in hits))
    assert [h.id for h in pack.hits] == unique[: len(pack.hits)]  # best first, a prefix
    assert pack.dropped == len(unique) - len(pack.hits)
    originals = {h.id: h for h in hits}
    for h in pack.hits:
        for a, b in h.excerpt_ranges or []:  # an excerpt shows exactly the ranges it names
            assert originals[h.id].text[a:b] in h.text
    if pack.note:
        assert text.endswith(pack.note) and str(pack.dropped) in pack.note
