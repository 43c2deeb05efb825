"""How packed context reads: one block per passage or entity, in relevance order.

A block is a header line — `[n] Type title (short source reference, when it was true)` — then the
text, then the facts (triples) whose first-ranked end is in the block, under "Facts:". Blocks are
separated by a blank line. What a block leaves out is what an LLM cannot use: ids, scores,
reasons, namespaces, fetch times, content hashes (they stay in the structured result).

Deduplication happens here, so that the packer and the renderer agree on it:

- overlapping or adjacent chunks of one file become one excerpt with one line range
  (`path#L12-L80`), placed where the best of them ranked (a chunk shortened to fit the budget
  keeps its whole lines, and its range says which);
- a hit whose text already appears in an earlier block of the same item (source and URI without
  its fragment: a document and its chunk), or repeats an earlier block's text exactly (the same
  passage reached through another entity or source), adds no block;
- an entity's facts are grouped under it.

A hit whose text is a query-focused excerpt (`excerpts.py`) says in its reference which characters
of the entity's text it shows (`chars 0-120,840-1102`); the cuts are marked with "…" in the text.

The module works on anything shaped like a `SearchHit` / `Triple` (`HitView`, `TripleView`), so
the result models can render themselves with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from aesoperator.graph_schema.models import Provenance

FACTS_HEADER = "Facts:"
BLOCK_SEPARATOR = "\n\n"
# A text shorter than this is an entity's description, not a passage: it keeps its own block
# even when an earlier passage contains it (the block says what the entity is).
MIN_FOLD_CHARS = 40
MAX_REF_CHARS = 60

_ISSUE = re.compile(r"/(issues|pull|pulls|merge_requests)/(\d+)(?:$|[/?#])")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://(www\.)?", re.IGNORECASE)


class HitView(Protocol):
    """What a block is made from (a `SearchHit` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def provenance(self) -> Provenance | None: ...
    @property
    def properties(self) -> Mapping[str, Any]: ...
    @property
    def valid_from(self) -> datetime | None: ...
    @property
    def valid_to(self) -> datetime | None: ...
    @property
    def truncated(self) -> bool: ...


class TripleView(Protocol):
    """What a fact line is made from (a `Triple` has it)."""

    @property
    def src(self) -> str: ...
    @property
    def src_name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def dst(self) -> str: ...
    @property
    def dst_name(self) -> str: ...
    @property
    def valid_from(self) -> datetime | None: ...
    @property
    def valid_to(self) -> datetime | None: ...


# -- the pieces of a header ---------------------------------------------------------------------------
def _one_line(text: str) -> str:
    return " ".join(text.split())


def _date(moment: datetime, with_time: bool) -> str:
    if with_time and (moment.hour or moment.minute):
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


def when_text(valid_from: datetime | None, valid_to: datetime | None, with_time: bool = False) -> str:
    """When something was true, shortly: "2024-05-01", "2024-05-01 → 2024-06-02", "until 2024-06-02"
    ("" when nothing is known). Memories (`with_time`) keep the time of day."""
    start = _date(valid_from, with_time) if valid_from else ""
    end = _date(valid_to, with_time) if valid_to else ""
    if start and end:
        return f"{start} → {end}"
    return start or (f"until {end}" if end else "")


def _short_uri(uri: str) -> str:
    bare = _SCHEME.sub("", uri)
    return bare if len(bare) <= MAX_REF_CHARS else "…" + bare[-(MAX_REF_CHARS - 1) :]


def line_range(properties: Mapping[str, Any]) -> tuple[str, int, int] | None:
    """(path, first line, last line) when the properties say where in a file the text is."""
    path, start, end = properties.get("path"), properties.get("start_line"), properties.get("end_line")
    if isinstance(path, str) and path and isinstance(start, int) and isinstance(end, int) and 0 < start <= end:
        return path, start, end
    return None


def _lines_ref(path: str, start: int, end: int) -> str:
    return f"{path}#L{start}" if start == end else f"{path}#L{start}-L{end}"


def _place(fragment: str) -> str:
    """The page, slide, sheet, chapter or rows of a document fragment, without the character range."""
    kept = [part for part in fragment.split("&") if not part.startswith("char=")]
    return "&".join(kept) or fragment


def source_ref(hit: HitView) -> str:
    """A short reference to where a hit comes from: `path#L12-L40`, `report.pdf#page=12`, `issue #42`, `PR #7`,
    `commit 1a2b3c4d5e`, `session s1`, a URL without its scheme (at most 60 characters), else the
    source's name."""
    props = hit.properties
    lines = line_range(props)
    if lines is not None:
        return _lines_ref(*lines)
    path, where = props.get("path"), props.get("fragment")
    if isinstance(path, str) and path and isinstance(where, str) and where:
        return f"{path}#{_place(where)}"  # a document's page, slide, sheet or chapter
    path = props.get("path")
    if isinstance(path, str) and path:
        return path
    sha = props.get("sha")
    if hit.type == "Commit" and isinstance(sha, str) and sha:
        return f"commit {sha[:10]}"
    uri = hit.provenance.uri if hit.provenance else ""
    found = _ISSUE.search(uri)
    if found is not None:
        return f"{'issue' if found.group(1) == 'issues' else 'PR'} #{found.group(2)}"
    if hit.type == "Episode":
        session = props.get("session_id")
        return f"session {session}" if isinstance(session, str) and session else ""
    if uri:
        return _short_uri(uri)
    return hit.source


# -- blocks -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Block:
    """One passage or entity of the context (possibly several hits: merged chunks, folded repeats)."""

    hit_ids: tuple[str, ...]
    type: str
    title: str
    ref: str
    when: str
    text: str
    # A line excerpt of a file: (source, namespace, path), its first line and its lines.
    file: tuple[str, str, str] | None = None
    first_line: int = 0
    lines: tuple[str, ...] = ()
    flat: str = field(default="", compare=False)  # the text with whitespace collapsed, for containment
    origin: tuple[str, str] = field(default=("", ""), compare=False)  # (source, item URI): where repeats come from


def _block_for(hit: HitView) -> Block:
    text = hit.text
    uri = hit.provenance.uri.split("#", 1)[0] if hit.provenance else ""
    lines = line_range(hit.properties)
    origin = (hit.source, uri or (f"path:{lines[0]}" if lines else f"id:{hit.id}"))
    title = _one_line(hit.name)
    ref = source_ref(hit)
    if hit.type == "Chunk":  # its name is "path › heading" or "path #3": the reference says the path
        heading = hit.properties.get("heading")
        title = _one_line(heading) if isinstance(heading, str) else ""
    if title and (title == ref or _one_line(text).startswith(title.rstrip("…").rstrip())):
        title = ""  # the text starts with the name (a memory named by its first words)
    when = when_text(hit.valid_from, hit.valid_to, with_time=hit.type == "Episode")
    shown = getattr(hit, "excerpt_ranges", None)
    if shown:  # a query-focused excerpt: the reference says which characters it shows
        ranges = "chars " + ",".join(f"{a}-{b}" for a, b in shown)
        return Block(
            (hit.id,), hit.type, title, f"{ref}, {ranges}" if ref else ranges, when, text, flat=_one_line(text),
            origin=origin,
        )  # fmt: skip
    split = text.split("\n")
    if lines is not None and hit.truncated:  # shortened: its whole lines are an excerpt, the cut line is not
        path, start, _ = lines
        split = split[:-1]
        if not split:
            return Block(
                (hit.id,), hit.type, title, f"{path}#L{start}", when, text, flat=_one_line(text), origin=origin
            )
        ref = _lines_ref(path, start, start + len(split) - 1)
        text = "\n".join(split)
    elif lines is None or len(split) != lines[2] - lines[1] + 1:
        return Block((hit.id,), hit.type, title, ref, when, text, flat=_one_line(text), origin=origin)
    path, start, _ = lines
    return Block(
        (hit.id,), hit.type, title, ref, when, text, (hit.source, hit.namespace, path), start, tuple(split),
        _one_line(text), origin,
    )  # fmt: skip


def _joinable(a: Block, b: Block) -> bool:
    """Two excerpts of one file whose line ranges overlap or touch, and agree where they overlap."""
    if a.file is None or a.file != b.file:
        return False
    a_end, b_end = a.first_line + len(a.lines) - 1, b.first_line + len(b.lines) - 1
    if b.first_line > a_end + 1 or a.first_line > b_end + 1:
        return False
    for line in range(max(a.first_line, b.first_line), min(a_end, b_end) + 1):
        if a.lines[line - a.first_line].strip() != b.lines[line - b.first_line].strip():
            return False
    return True


def _join(a: Block, b: Block) -> Block:
    """`a` extended by the lines of `b` (a's own lines win where they overlap), at a's place."""
    assert a.file is not None
    by_line = {b.first_line + i: line for i, line in enumerate(b.lines)}
    by_line.update({a.first_line + i: line for i, line in enumerate(a.lines)})
    first, last = min(by_line), max(by_line)
    lines = tuple(by_line[n] for n in range(first, last + 1))
    text = "\n".join(lines)
    return replace(
        a,
        hit_ids=a.hit_ids + b.hit_ids,
        ref=_lines_ref(a.file[2], first, last),
        text=text,
        first_line=first,
        lines=lines,
        flat=_one_line(text),
    )


class Layout:
    """The blocks of a context, built hit by hit in relevance order (see the module docstring).

    `copy()` is cheap (blocks are immutable), so a packer can try a hit and keep or drop it.
    Joins are looked for among the excerpts of the same file, repeats among blocks with the same
    text or from the same item (source and URI without its fragment), so adding a hit costs
    about the same however many blocks there are."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.block_of: dict[str, int] = {}
        self._by_origin: dict[tuple[str, str], list[int]] = {}
        self._by_text: dict[str, int] = {}

    def copy(self) -> Layout:
        other = Layout()
        other.blocks = list(self.blocks)
        other.block_of = dict(self.block_of)
        other._by_origin = dict(self._by_origin)  # lists are replaced, never appended to
        other._by_text = dict(self._by_text)
        return other

    def add(self, hit: HitView) -> int:
        """Place a hit: joined to an excerpt of the same file, folded into a block that already
        holds its text, or a new block at the end.

        Returns:
            The index of the block that holds it.
        """
        if hit.id in self.block_of:
            return self.block_of[hit.id]
        new = _block_for(hit)
        near = self._by_origin.get(new.origin, [])
        if new.file is not None:
            for i in near:
                if _joinable(self.blocks[i], new):
                    return self._grow(i, _join(self.blocks[i], new))
        if len(new.flat) >= MIN_FOLD_CHARS:
            same = self._by_text.get(new.flat)
            # an excerpt is a repeat only within its own item: two items' excerpts can be alike
            alike = [same] if same is not None and not getattr(hit, "excerpt_ranges", None) else []
            for i in alike + near:
                if new.flat in self.blocks[i].flat:
                    self.blocks[i] = replace(self.blocks[i], hit_ids=self.blocks[i].hit_ids + new.hit_ids)
                    self.block_of[hit.id] = i
                    return i
        index = len(self.blocks)
        self.blocks.append(new)
        self.block_of[hit.id] = index
        self._by_origin[new.origin] = [*near, index]
        self._by_text.setdefault(new.flat, index)
        return index

    def _grow(self, index: int, grown: Block) -> int:
        """Put `grown` at `index`, then absorb later excerpts it now overlaps or touches. (Text
        keys of the block before it grew stay: the grown text still contains them.)"""
        self.blocks[index] = grown
        absorbed = False
        for j in sorted(self._by_origin.get(grown.origin, []), reverse=True):
            if j > index and _joinable(self.blocks[index], self.blocks[j]):
                self.blocks[index] = _join(self.blocks[index], self.blocks.pop(j))
                absorbed = True
        if absorbed:  # blocks after the absorbed ones moved up
            self.block_of, self._by_origin, self._by_text = {}, {}, {}
            for i, block in enumerate(self.blocks):
                self.block_of.update(dict.fromkeys(block.hit_ids, i))
                self._by_origin[block.origin] = [*self._by_origin.get(block.origin, []), i]
                self._by_text.setdefault(block.flat, i)
        else:
            self.block_of.update(dict.fromkeys(grown.hit_ids, index))
        self._by_text.setdefault(self.blocks[index].flat, index)
        return index

    @classmethod
    def of(cls, hits: Sequence[HitView]) -> Layout:
        layout = cls()
        for hit in hits:
            layout.add(hit)
        return layout


# -- lines --------------------------------------------------------------------------------------------
def header_line(position: int, block: Block) -> str:
    """`[n] Type title (ref, when)`, leaving out what is empty."""
    head = f"[{position}] {block.type}" + (f" {block.title}" if block.title else "")
    details = [d for d in (block.ref, block.when) if d]
    return head + (f" ({', '.join(details)})" if details else "")


def fact_line(triple: TripleView) -> str:
    """`- subject TYPE object`, by names, with when it held if known."""
    when = when_text(triple.valid_from, triple.valid_to)
    return f"- {triple.src_name} {triple.type} {triple.dst_name}" + (f" ({when})" if when else "")


NARROWER = "ask with a larger token_budget or a narrower query"


def left_out_note(count: int, what: str = "hit", hint: str = NARROWER) -> str:
    """What the budget left out, and what to do about it ("" when nothing was).

    Args:
        count: how many were left out.
        what: what they are, singular ("hit", "entity", "episode").
        hint: what the caller can do to see them.

    Returns:
        "12 more hits left out by the token budget: ask with a larger token_budget or a narrower query."
    """
    if count <= 0:
        return ""
    noun = what if count == 1 else (what[:-1] + "ies" if what.endswith("y") else what + "s")
    return f"{count} more {noun} left out by the token budget: {hint}."


def facts_by_block(layout: Layout, triples: Sequence[TripleView]) -> dict[int, list[str]]:
    """Fact lines under the block of their first-ranked end (triples with an end not in the
    layout are skipped)."""
    grouped: dict[int, list[str]] = {}
    for triple in triples:
        ends = [layout.block_of.get(triple.src), layout.block_of.get(triple.dst)]
        if ends[0] is None or ends[1] is None:
            continue
        grouped.setdefault(min(ends[0], ends[1]), []).append(fact_line(triple))
    return grouped


def render_context(layout: Layout, triples: Sequence[TripleView] = (), note: str = "") -> str:
    """The context text: the blocks in order, each with its facts, then the note."""
    facts = facts_by_block(layout, triples)
    parts: list[str] = []
    for i, block in enumerate(layout.blocks):
        lines = [header_line(i + 1, block)] + ([block.text] if block.text else [])
        if i in facts:
            lines += [FACTS_HEADER, *facts[i]]
        parts.append("\n".join(lines))
    if note:
        parts.append(note)
    return BLOCK_SEPARATOR.join(parts)


__all__ = [
    "BLOCK_SEPARATOR",
    "FACTS_HEADER",
    "NARROWER",
    "Block",
    "HitView",
    "Layout",
    "TripleView",
    "fact_line",
    "facts_by_block",
    "header_line",
    "left_out_note",
    "line_range",
    "render_context",
    "source_ref",
    "when_text",
]
