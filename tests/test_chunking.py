from __future__ import annotations

from aesoperator.ingest.chunking import chunk_text


def test_markdown_chunks_carry_their_heading_and_respect_the_size() -> None:
    text = "# Title\n\nintro line\n\n## Part A\n\n" + ("alpha beta gamma. " * 40) + "\n\n## Part B\n\nclosing words\n"
    chunks = chunk_text(text, max_chars=300, overlap_chars=50, markdown=True)
    assert len(chunks) >= 3
    assert all(len(c.text) <= 300 for c in chunks)
    assert chunks[0].heading == "Title"
    assert chunks[-1].heading == "Part B" and "closing words" in chunks[-1].text
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_every_line_is_covered_and_lines_numbers_are_consistent() -> None:
    lines = [f"line {i} " + "w" * (i % 17) for i in range(200)]
    text = "\n".join(lines)
    chunks = chunk_text(text, max_chars=400, overlap_chars=80)
    joined = "\n".join(c.text for c in chunks)
    for line in lines:
        assert line.strip() in joined
    for c in chunks:
        assert 1 <= c.start_line <= c.end_line <= 200
        assert lines[c.start_line - 1].strip() in c.text


def test_a_single_huge_line_is_split() -> None:
    chunks = chunk_text("x" * 5000, max_chars=1000, overlap_chars=0)
    assert len(chunks) == 5 and all(len(c.text) == 1000 for c in chunks)


def test_empty_text_gives_no_chunks() -> None:
    assert chunk_text("   \n\n  ") == []
