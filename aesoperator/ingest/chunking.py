"""Split text into overlapping chunks along natural boundaries (headings, blank lines, lines)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    heading: str | None
    start_line: int  # 1-based, inclusive
    end_line: int


def _blocks(lines: list[str], markdown: bool) -> list[tuple[int, int, str | None]]:
    """Group lines into blocks (start, end exclusive, heading) split at blank lines and headings."""
    blocks: list[tuple[int, int, str | None]] = []
    heading: str | None = None
    start = 0
    for i, line in enumerate(lines):
        match = _HEADING.match(line) if markdown else None
        if match or not line.strip():
            if start < i:
                blocks.append((start, i, heading))
            if match:
                heading = match.group(2)
                start = i
            else:
                start = i + 1
    if start < len(lines):
        blocks.append((start, len(lines), heading))
    return blocks


def chunk_text(text: str, max_chars: int = 1200, overlap_chars: int = 150, markdown: bool = False) -> list[Chunk]:
    """Greedy packing of blocks into chunks of at most `max_chars` (a single huge block is split by
    lines, and a single huge line by characters). Consecutive chunks share up to `overlap_chars`
    of trailing lines so that a sentence cut at a boundary stays findable."""
    lines = text.splitlines()
    pieces: list[tuple[int, int, str | None]] = []  # line ranges no longer than max_chars
    for start, end, heading in _blocks(lines, markdown):
        size = sum(len(line) + 1 for line in lines[start:end])
        if size <= max_chars:
            pieces.append((start, end, heading))
            continue
        run_start, run_size = start, 0
        for i in range(start, end):
            line_size = len(lines[i]) + 1
            if run_size + line_size > max_chars and run_start < i:
                pieces.append((run_start, i, heading))
                run_start, run_size = i, 0
            run_size += line_size
        pieces.append((run_start, end, heading))

    chunks: list[Chunk] = []
    cur_start: int | None = None
    cur_end = 0
    cur_heading: str | None = None
    cur_size = 0

    def flush() -> None:
        nonlocal cur_start
        if cur_start is None:
            return
        body = "\n".join(lines[cur_start:cur_end]).strip()
        for j in range(0, max(len(body), 1), max_chars):
            part = body[j : j + max_chars].strip()
            if part:
                chunks.append(Chunk(len(chunks), part, cur_heading, cur_start + 1, cur_end))
        cur_start = None

    for start, end, heading in pieces:
        size = sum(len(line) + 1 for line in lines[start:end])
        if cur_start is not None and cur_size + size > max_chars:
            prev_end = cur_end
            flush()
            # carry trailing lines of the previous chunk as overlap
            back, carried = prev_end, 0
            while back > 0 and carried + len(lines[back - 1]) + 1 <= overlap_chars:
                back -= 1
                carried += len(lines[back]) + 1
            if carried and back < start and carried + size <= max_chars:
                cur_start, cur_size = back, carried
            else:
                cur_start, cur_size = start, 0
            cur_heading = heading
        if cur_start is None:
            cur_start, cur_size, cur_heading = start, 0, heading
        cur_end = end
        cur_size += size
    flush()
    return chunks
