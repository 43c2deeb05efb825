"""Chunk a loaded document along its structure.

- A chunk holds text of one unit (page, slide, sheet, chapter) only, unless `across_units` is
  set: then small consecutive units share a chunk, which names the first and the last.
- A heading starts the chunk of the text below it and names that chunk's section (the path of
  headings above it, `Chapter › Section`); on pages, a section goes on over the page break.
- A table is cut between rows, and every piece of it starts with the table's header row, so a row
  read alone still says what its values are; the rows of sheets and CSV files keep their numbers.
- A paragraph longer than a chunk is cut at line ends, then at spaces, consecutive pieces sharing
  up to `overlap_chars`.

Every chunk knows its character range in its unit's text (`unit_text`: the blocks joined by blank
lines, a table as one line per row with cells joined by " | ").
"""

from __future__ import annotations

from dataclasses import dataclass

from aesoperator.ingest.loaders.model import DocumentBlock, DocumentUnit, LoadedDocument, TableRow

BLOCK_JOIN = "\n\n"
CELL_JOIN = " | "
SECTION_JOIN = " › "


@dataclass(frozen=True, slots=True)
class DocumentChunk:
    index: int
    text: str
    unit_kind: str
    unit_number: int
    unit_name: str | None
    last_unit_number: int  # == unit_number unless the chunk spans units
    heading: str | None
    char_start: int  # in the first unit's text
    char_end: int  # in the last unit's text
    rows: tuple[int, int] | None = None  # first and last row number, for chunks of table rows only


@dataclass(slots=True)
class _Piece:
    text: str
    start: int
    end: int
    heading: str | None
    rows: tuple[int, int] | None = None
    prefix: str = ""  # the headings that open this piece


def row_text(row: TableRow) -> str:
    return CELL_JOIN.join(row.cells)


def block_text(block: DocumentBlock) -> str:
    if block.kind != "table":
        return block.text
    lines = [row_text(r) for r in ((block.header,) if block.header else ()) + block.rows]
    return "\n".join(lines)


def unit_text(unit: DocumentUnit) -> str:
    return BLOCK_JOIN.join(block_text(b) for b in unit.blocks)


def _split_long(text: str, start: int, max_chars: int, overlap: int) -> list[tuple[str, int, int]]:
    """(text, start, end) pieces of at most `max_chars`, cut at line ends, else at spaces."""
    out: list[tuple[str, int, int]] = []
    pos = 0
    while pos < len(text):
        end = min(len(text), pos + max_chars)
        if end < len(text):
            cut = text.rfind("\n", pos + max_chars // 2, end)
            if cut < 0:
                cut = text.rfind(" ", pos + max_chars // 2, end)
            if cut > pos:
                end = cut
        piece = text[pos:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            out.append((piece.strip(), start + pos + lead, start + pos + lead + len(piece.strip())))
        if end >= len(text):
            break
        nxt = max(end - overlap, pos + 1)
        space = text.find(" ", nxt, end)
        pos = space + 1 if overlap and 0 <= space < end else end
    return out


def _table_pieces(block: DocumentBlock, start: int, max_chars: int, heading: str | None) -> list[_Piece]:
    header = row_text(block.header) if block.header else ""
    pieces: list[_Piece] = []
    offset = start + (len(header) + 1 if header else 0)
    group: list[TableRow] = []
    group_start = offset
    size = len(header)

    def emit(end: int) -> None:
        if not group:
            return
        body = "\n".join(row_text(r) for r in group)
        numbers = [r.number for r in group if r.number is not None]
        rows = (numbers[0], numbers[-1]) if numbers else None
        pieces.append(_Piece(f"{header}\n{body}" if header else body, group_start, end, heading, rows))

    for row in block.rows:
        line = row_text(row)
        if group and size + 1 + len(line) > max_chars:
            emit(offset - 1)
            group = []
            group_start = offset
            size = len(header)
        if len(header) + 1 + len(line) > max_chars:  # one row longer than a chunk: cut, header first
            line = line[: max(max_chars - len(header) - 1, 80)]
        group.append(row)
        size += 1 + len(line)
        offset += len(row_text(row)) + 1
    emit(offset - 1)
    if not pieces and header:  # a table that is only its header row
        pieces.append(_Piece(header, start, start + len(header), heading))
    return pieces


def _unit_pieces(unit: DocumentUnit, max_chars: int, overlap: int, sections: list[tuple[int, str]]) -> list[_Piece]:
    """The unit's pieces; `sections` is the heading path in effect (changed in place)."""
    pieces: list[_Piece] = []
    pending: list[tuple[str, int]] = []  # headings waiting for the text they open
    offset = 0
    for block in unit.blocks:
        text = block_text(block)
        if block.kind == "heading":
            level = max(block.level, 1)
            while sections and sections[-1][0] >= level:
                sections.pop()
            sections.append((level, block.text))
            pending.append((block.text, offset))
            offset += len(text) + len(BLOCK_JOIN)
            continue
        heading = SECTION_JOIN.join(t for _, t in sections) or None
        if block.kind == "table":
            made = _table_pieces(block, offset, max_chars, heading)
        else:
            made = [_Piece(t, s, e, heading) for t, s, e in _split_long(text, offset, max_chars, overlap)]
        if made and pending:
            made[0].prefix = "\n".join(t for t, _ in pending)
            made[0].start = pending[0][1]
            pending = []
        pieces.extend(made)
        offset += len(text) + len(BLOCK_JOIN)
    if pending:  # headings at the end of a unit, with nothing after them
        text = "\n".join(t for t, _ in pending)
        pieces.append(_Piece(text, pending[0][1], pending[-1][1] + len(pending[-1][0]), heading=None))
    return pieces


def chunk_document(
    document: LoadedDocument, max_chars: int = 1200, overlap_chars: int = 150, across_units: bool = False
) -> list[DocumentChunk]:
    chunks: list[DocumentChunk] = []
    current: list[tuple[DocumentUnit, _Piece]] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if not current:
            return
        (first_unit, first), (last_unit, last) = current[0], current[-1]
        text = BLOCK_JOIN.join("\n".join(p for p in (piece.prefix, piece.text) if p) for _, piece in current)
        row_ranges = [p.rows for _, p in current]
        rows = (
            (row_ranges[0][0], row_ranges[-1][1])
            if all(r is not None for r in row_ranges) and row_ranges[0] is not None and row_ranges[-1] is not None
            else None
        )
        chunks.append(
            DocumentChunk(
                index=len(chunks),
                text=text,
                unit_kind=first_unit.kind,
                unit_number=first_unit.number,
                unit_name=first_unit.name,
                last_unit_number=last_unit.number,
                heading=first.heading or (first.prefix.split("\n")[-1] if first.prefix else None),
                char_start=first.start,
                char_end=last.end,
                rows=rows,
            )
        )
        current.clear()
        size = 0

    sections: list[tuple[int, str]] = []
    for unit in document.units:
        if unit.kind != "page":
            sections = []  # slides, sheets and chapters open their own sections
        for piece in _unit_pieces(unit, max_chars, overlap_chars, sections):
            length = len(piece.text) + len(piece.prefix) + len(BLOCK_JOIN)
            if current and size + length > max_chars:
                flush()
            current.append((unit, piece))
            size += length
        if not across_units:
            flush()
    flush()
    return chunks
