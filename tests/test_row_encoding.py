"""Properties and provenance are stored as the text `json.dumps` gives with sorted keys, compact
separators and non-ASCII kept: equal content must give equal text, or an unchanged re-ingest would
count as a change. Both stores use one encoder built once (`canonical_json`); it must write
exactly what the standard call writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aesoperator.engine.stores import neo4j_rows
from aesoperator.engine.stores.canonical_json import canonical_json
from aesoperator.engine.stores.embedded_rows import dump_properties, dump_provenance, load_provenance
from aesoperator.graph_schema.models import Provenance


def standard(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_properties_are_encoded_as_the_standard_call_encodes_them(props: dict[str, Any]) -> None:
    assert dump_properties(props) == (standard(props) if props else "{}")
    assert neo4j_rows.dump_properties(props) == dump_properties(props)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_is_encoded_as_the_standard_call_encodes_it(value: Any) -> None:
    assert canonical_json(value) == standard(value)


@settings(max_examples=100, deadline=None)
@given(uri=st.text(min_size=1), version=st.none() | st.text())
def test_provenance_text_round_trips(uri: str, version: str | None) -> None:
    when = datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=UTC)
    prov = Provenance(uri=uri, fetched_at=when, version=version)
    text = dump_provenance(prov)
    assert text is not None
    assert json.loads(text) == {"uri": uri, "version": version, "fetched_at": "2026-12-07T12:00:00.123456Z"}
    assert load_provenance(text) == prov
