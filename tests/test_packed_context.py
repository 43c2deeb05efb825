"""Packed context: the layout (one block per passage, chunks of a file joined, repeats folded,
facts under their entity, short source references), `fit_context` keeping any counter's budget on
the whole text, and the cl100k token counter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aesoperator.engine.context_layout import Layout, header_line, left_out_note, source_ref, when_text
from aesoperator.engine.packing import estimate_tokens, fit_context, pack_hits
from aesoperator.engine.results import SearchHit, Triple
from aesoperator.engine.tokens import CL100K_SHA256, cl100k_ranks_file, cl100k_tokens, token_counter
from aesoperator.errors import ConfigError
from aesoperator.graph_schema.models import Provenance


def file_lines(path: str) -> list[str]:
    return [f"{path} line {n}: the retrieval module fuses keyword and vector results." for n in range(1, 61)]


FILE_LINES = file_lines("src/mod.py")


def chunk(
    start: int, end: int, path: str = "src/mod.py", source: str = "repo", heading: str | None = None
) -> SearchHit:
    """A chunk of a file, as the files mapper makes it (lines start..end, 1-based)."""
    return SearchHit(
        id=f"{source}:chunk:{path}#{start}",
        type="Chunk",
        name=f"{path} #{start}",
        text="\n".join(file_lines(path)[start - 1 : end]),
        score=1.0,
        namespace="default",
        source=source,
        properties={"path": path, "start_line": start, "end_line": end, "heading": heading},
        provenance=Provenance(uri=f"file:///work/{path}#L{start}-L{end}"),
    )


def hit(hid: str, text: str, type_: str = "Document", **fields: object) -> SearchHit:
    return SearchHit(
        id=hid,
        type=type_,
        name=fields.pop("name", hid),
        text=text,
        score=1.0,
        namespace="default",
        source="docs",
        **fields,
    )  # type: ignore[arg-type]


# -- layout: deduplication --------------------------------------------------------------------------------
def test_overlapping_chunks_of_one_file_become_one_excerpt_with_its_line_range() -> None:
    layout = Layout.of([chunk(1, 12), hit("other", "an unrelated passage"), chunk(10, 20)])
    assert len(layout.blocks) == 2
    first = layout.blocks[0]
    assert first.hit_ids == ("repo:chunk:src/mod.py#1", "repo:chunk:src/mod.py#10")
    assert first.text == "\n".join(FILE_LINES[0:20])  # each shared line once
    assert header_line(1, first) == "[1] Chunk (src/mod.py#L1-L20)"
    assert layout.block_of["repo:chunk:src/mod.py#10"] == 0  # placed where the best of them ranked


def test_adjacent_chunks_join_but_a_gap_or_another_file_does_not() -> None:
    layout = Layout.of([chunk(1, 10), chunk(11, 15), chunk(30, 40), chunk(5, 12, path="src/other.py")])
    assert [b.ref for b in layout.blocks] == ["src/mod.py#L1-L15", "src/mod.py#L30-L40", "src/other.py#L5-L12"]


def test_a_chunk_that_bridges_two_excerpts_makes_them_one() -> None:
    layout = Layout.of([chunk(1, 10), chunk(30, 40), chunk(9, 31)])
    assert len(layout.blocks) == 1
    assert layout.blocks[0].ref == "src/mod.py#L1-L40"
    assert layout.blocks[0].text == "\n".join(FILE_LINES[0:40])
    assert set(layout.block_of.values()) == {0}


def test_a_chunk_shortened_to_fit_keeps_its_whole_lines_and_says_which() -> None:
    cut = chunk(11, 20).model_copy(
        update={"text": "\n".join(FILE_LINES[10:14]) + "\nsrc/mod.py line 15: the …", "truncated": True}
    )
    layout = Layout.of([chunk(1, 10), cut])
    assert [b.ref for b in layout.blocks] == ["src/mod.py#L1-L14"]
    assert layout.blocks[0].text == "\n".join(FILE_LINES[0:14])


def test_chunks_that_disagree_where_they_overlap_stay_apart() -> None:
    changed = chunk(5, 12).model_copy(update={"id": "changed", "text": "\n".join(["edited"] * 8)})
    assert len(Layout.of([chunk(1, 10), changed]).blocks) == 2


def test_a_passage_reached_through_two_entities_is_shown_once() -> None:
    passage = "Marguerite Okafor runs the night shift and maintains the battery banks of the station."
    doc = hit("doc", f"Staff\n{passage}\nTobias is the head baker.", provenance=Provenance(uri="docs:staff"))
    again = hit("chunk", passage, type_="Chunk", provenance=Provenance(uri="docs:staff#2"))
    layout = Layout.of([doc, again, hit("doc", "the same id twice")])
    assert len(layout.blocks) == 1 and layout.block_of == {"doc": 0, "chunk": 0}
    text = fit_context([doc, again], [], 500).to_text()
    assert text.count("Marguerite Okafor") == 1
    # a short entity description keeps its own block even when a passage contains it
    assert len(Layout.of([doc, hit("person", "Tobias", type_="Person")]).blocks) == 2
    # the same text from another item is shown once too; a passage of another item that only contains it is not
    copy = hit("copy", passage, provenance=Provenance(uri="elsewhere:1"))
    assert len(Layout.of([again, copy]).blocks) == 1 and len(Layout.of([doc, copy]).blocks) == 2


def test_facts_are_grouped_under_the_first_ranked_entity() -> None:
    a, b, c = hit("a", "text a", name="Ada"), hit("b", "text b", name="Bob"), hit("c", "text c", name="Cy")
    triples = [
        Triple(src="c", src_name="Cy", type="KNOWS", dst="b", dst_name="Bob"),
        Triple(src="a", src_name="Ada", type="MENTORS", dst="b", dst_name="Bob", valid_from=datetime(2024, 3, 1)),
    ]
    text = pack_hits([a, b, c], triples, 1000).to_text()
    assert text.split("\n\n") == [
        "[1] Document Ada (docs)\ntext a\nFacts:\n- Ada MENTORS Bob (2024-03-01)",
        "[2] Document Bob (docs)\ntext b\nFacts:\n- Cy KNOWS Bob",
        "[3] Document Cy (docs)\ntext c",
    ]


# -- layout: headers --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"properties": {"path": "docs/a.md", "start_line": 12, "end_line": 40}}, "docs/a.md#L12-L40"),
        ({"properties": {"path": "docs/a.md"}}, "docs/a.md"),
        ({"provenance": Provenance(uri="https://github.com/o/r/issues/42")}, "issue #42"),
        ({"provenance": Provenance(uri="https://github.com/o/r/pull/7#discussion")}, "PR #7"),
        ({"type_": "Commit", "properties": {"sha": "1a2b3c4d5e6f7a8b"}}, "commit 1a2b3c4d5e"),
        ({"type_": "Episode", "properties": {"session_id": "s1"}}, "session s1"),
        ({"provenance": Provenance(uri="https://www.example.org/a/b")}, "example.org/a/b"),
        ({"provenance": Provenance(uri="https://example.org/" + "x" * 100)}, "…" + "x" * 59),
        ({}, "docs"),
    ],
)
def test_short_source_references(fields: dict[str, object], expected: str) -> None:
    assert source_ref(hit("h", "text", **fields)) == expected


def test_when_it_was_true() -> None:
    start, end = datetime(2024, 5, 1, 14, 2, tzinfo=UTC), datetime(2024, 6, 2, tzinfo=UTC)
    assert when_text(start, None) == "2024-05-01"
    assert when_text(start, None, with_time=True) == "2024-05-01 14:02"
    assert when_text(start, end) == "2024-05-01 → 2024-06-02"
    assert when_text(None, end) == "until 2024-06-02"
    assert when_text(None, None) == ""
    episode = hit("e", "Caroline: I went to the support group.", type_="Episode", name="Caroline: I went to the")
    episode = episode.model_copy(update={"valid_from": start, "properties": {"session_id": "session_2"}})
    # the name is the text's first words: not repeated
    assert header_line(1, Layout.of([episode]).blocks[0]) == "[1] Episode (session session_2, 2024-05-01 14:02)"


def test_left_out_note() -> None:
    assert left_out_note(0) == ""
    assert (
        left_out_note(1)
        == "1 more hit left out by the token budget: ask with a larger token_budget or a narrower query."
    )
    assert left_out_note(3, "entity", "ask with offset=20").startswith("3 more entities left out")


# -- fit_context ------------------------------------------------------------------------------------------
def test_fit_context_says_what_was_left_out_within_the_budget() -> None:
    hits = [
        hit(f"d{i}", f"Passage {i} about the bakery on the station, with enough words to cost tokens.")
        for i in range(20)
    ]
    pack = fit_context(hits, [], 120)
    text = pack.to_text()
    assert estimate_tokens(text) == pack.tokens_used <= 120
    assert pack.dropped == 20 - len(pack.hits) > 0
    assert text.endswith(left_out_note(pack.dropped))
    everything = fit_context(hits, [], 10_000)
    assert everything.dropped == 0 and not everything.note and "left out" not in everything.to_text()


words = st.sampled_from(
    ["graph", "Alice", "commit", "retrieval", "x", "2024", "naïve", "日本", "a_b", "!?", "\n", "  "]
)
texts = st.lists(words, min_size=1, max_size=80).map(" ".join).filter(lambda s: s.strip() != "")


@st.composite
def hit_lists(draw: st.DrawFn) -> list[SearchHit]:
    out: list[SearchHit] = []
    for i in range(draw(st.integers(0, 10))):
        if draw(st.booleans()):
            start = draw(st.integers(1, 50))
            out.append(chunk(start, start + draw(st.integers(0, 10)), path=draw(st.sampled_from(["a.py", "b.py"]))))
        else:
            out.append(hit(f"h{i}", draw(texts), name=draw(texts)[:40] or "x"))
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hits=hit_lists(), budget=st.integers(0, 600), counter=st.sampled_from(["estimate", "cl100k"]))
def test_fit_context_never_exceeds_the_budget_under_its_counter(
    hits: list[SearchHit], budget: int, counter: str
) -> None:
    count = token_counter(counter)
    pack = fit_context(hits, [], budget, count_tokens=count)
    text = pack.to_text()
    assert count(text) == pack.tokens_used <= budget
    unique = list(dict.fromkeys(h.id for h in hits))
    assert [h.id for h in pack.hits] == unique[: len(pack.hits)]  # best first, a prefix
    assert pack.dropped == len(unique) - len(pack.hits)
    flat = " ".join(text.split())
    for h in pack.hits:  # every included hit's text is in the context (joined or folded, not lost)
        shown = h.text.split("\n")[:-1] if h.truncated and h.type == "Chunk" else [h.text]  # a cut chunk: whole lines
        assert " ".join(" ".join(shown).split()) in flat
    if pack.note:
        assert text.endswith(pack.note) and str(pack.dropped) in pack.note


# -- the cl100k counter -----------------------------------------------------------------------------------
def test_cl100k_counts_like_the_gpt4_tokenizer() -> None:
    assert cl100k_tokens("") == 0
    assert cl100k_tokens("hello world") == 2
    assert cl100k_tokens("The quick brown fox jumps over the lazy dog.") == 10
    assert cl100k_tokens("<|endoftext|>") > 1  # special-token text is counted as plain text
    import hashlib

    assert hashlib.sha256(cl100k_ranks_file().read_bytes()).hexdigest() == CL100K_SHA256


def test_unknown_counter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown token counter"):
        token_counter("gpt-17")
