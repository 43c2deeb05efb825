"""search_nodes' in-memory listing finds exactly what a field-by-field substring scan finds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aesoperator.serve.schemas import MemoryEntity
from aesoperator.serve.tools_memory_compat import _Listed, _Listing

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
    assert _Listing(rows).matching(query) == expected


def test_a_row_is_reported_once_and_matches_never_span_fields() -> None:
    rows = _rows([("abab", "ab"), ("xa", "bx"), ("ab",)])
    listing = _Listing(rows)
    assert [r.id for r in listing.matching("ab")] == ["id0", "id2"]
    assert listing.matching("ab\x00") == []  # the separator itself is never a match
    assert [r.id for r in listing.matching("")] == ["id0", "id1", "id2"]
