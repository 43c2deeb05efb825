"""search_nodes' in-memory listing finds exactly what a field-by-field substring scan finds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aesoperator.serve import memory_listing as tools_memory_compat
from aesoperator.serve.memory_listing import _Listed, _Listing
from aesoperator.serve.schemas import MemoryEntity

_text = st.text(alphabet="abcAB \x00é", max_size=12)


def _rows(fields: list[tuple[str, ...]]) -> list[_Listed]:
    return [
        _Listed(MemoryEntity(name=f"e{i}", entityType="t", observations=[]), f"id{i}", row)
        for i, row in enumerate(fields)
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_text, min_size=1, max_size=4).map(tuple), max_size=8), _text)
def test_listing_matches_the_field_by_field_scan(fields: list[tuple[str, ...]], query: str) -> None:
    rows = _rows(fields)
    expected = [row for row in rows if any(query in field for field in row.fields)]
    assert _Listing(rows, {}).matching(query) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.text(alphabet="abcAB \x00éü日", max_size=12), min_size=1, max_size=4).map(tuple), max_size=8),
    st.lists(st.text(alphabet="abcAB \x00éü日", max_size=5), min_size=1, max_size=6),
)
def test_trigram_path_matches_the_scan(fields: list[tuple[str, ...]], queries: list[str]) -> None:
    """From the second search on a listing the trigram index answers: the same rows, in order."""
    rows = _rows(fields)
    listing = _Listing(rows, {})
    listing._searches = 1  # the next search takes the trigram path
    original = tools_memory_compat.TRIGRAM_MIN_CHARS
    tools_memory_compat.TRIGRAM_MIN_CHARS = 0
    try:
        for query in queries:
            expected = [row for row in rows if any(query in field for field in row.fields)]
            assert listing.matching(query) == expected, query
    finally:
        tools_memory_compat.TRIGRAM_MIN_CHARS = original


def test_trigram_path_on_a_large_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    words = ["river", "delta", "río", "façade", "東京", "granite", "meadow", "x", "ab", "naïve"]
    rows = _rows([tuple(" ".join(rng.choices(words, k=rng.randint(1, 30))) for _ in range(3)) for _ in range(4000)])
    listing = _Listing(rows, {})
    assert len(listing._text) >= tools_memory_compat.TRIGRAM_MIN_CHARS
    queries = [*words, "er de", "a r", "çad", "京", "zzz", "river delta río"]
    scanned = {q: listing.matching(q) for q in queries[:1]}  # first search: a scan
    assert listing._trigrams is None
    for q in queries:
        expected = [row for row in rows if any(q in field for field in row.fields)]
        assert listing.matching(q) == expected, q
        if q in scanned:
            assert scanned[q] == expected
    assert listing._trigrams is not None


def test_a_row_is_reported_once_and_matches_never_span_fields() -> None:
    rows = _rows([("abab", "ab"), ("xa", "bx"), ("ab",)])
    listing = _Listing(rows, {})
    assert [r.id for r in listing.matching("ab")] == ["id0", "id2"]
    assert listing.matching("ab\x00") == []  # the separator itself is never a match
    assert [r.id for r in listing.matching("")] == ["id0", "id1", "id2"]


def test_listing_follows_writes_incrementally(make_engine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """After each kind of write the kept listing is patched from the change log (never rebuilt)
    and answers exactly what a listing built from scratch answers, relations included."""
    from aesoperator.serve.memory_graph import MemoryGraph
    from aesoperator.serve.schemas import MemoryRelation, ObservationAddition, ObservationDeletion

    engine = make_engine()
    graph = MemoryGraph(engine, embed=False)
    rng = random.Random(9)
    words = ["river", "delta", "granite", "meadow", "lantern", "río", "façade"]
    people = [
        MemoryEntity(name=f"person {i}", entityType="person", observations=[" ".join(rng.choices(words, k=5))])
        for i in range(40)
    ]
    graph.create_entities(people)
    graph.create_relations(
        [
            MemoryRelation.model_validate({"from": f"person {i}", "to": f"person {i + 1}", "relationType": "knows"})
            for i in range(39)
        ]
        + [MemoryRelation.model_validate({"from": "person 3", "to": "nobody yet", "relationType": "waits for"})]
    )
    queries = [*words, "person 1", "person", "nobody", "knows", "PERSON 2"]

    def check() -> None:
        fresh = MemoryGraph(engine, embed=False)
        for q in queries:
            assert graph.search_nodes(q) == fresh.search_nodes(q), q

    check()
    rebuilt: list[bool] = []  # one entry per full build: is it the kept graph's?
    original = MemoryGraph._full_listing
    monkeypatch.setattr(MemoryGraph, "_full_listing", lambda self: rebuilt.append(self is graph) or original(self))
    steps = [
        lambda: graph.add_observations([ObservationAddition(entityName="person 5", contents=["lantern festival"])]),
        lambda: graph.delete_observations(
            [ObservationDeletion(entityName="person 7", observations=people[7].observations)]
        ),
        lambda: graph.delete_relations(
            [MemoryRelation.model_validate({"from": "person 1", "to": "person 2", "relationType": "knows"})]
        ),
        lambda: graph.delete_entities(["person 10", "person 3"]),
        lambda: graph.create_entities([MemoryEntity(name="newcomer", entityType="person", observations=["river"])]),
        lambda: graph.create_relations(
            [MemoryRelation.model_validate({"from": "newcomer", "to": "person 0", "relationType": "knows"})]
        ),
    ]
    for step in steps:
        step()
        check()
    assert rebuilt == [False] * len(steps)  # only the fresh graphs were built from scratch
    assert graph._listing is not None and graph._listing[0] == engine.store.last_seq()
