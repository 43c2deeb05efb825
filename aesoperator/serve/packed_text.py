"""The text part of every answer the server gives an agent: packed context, within a token budget.

A tool's structured content carries the full data (ids, scores, reasons, provenance, properties)
for programmatic clients; its text is what an LLM reads: compact lines, most relevant first, cut to
the token budget under the engine's counter (`ContextEngine.count_tokens`), ending with what was
left out. The text never repeats the structured data as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from aesoperator.engine.code_queries import CodeLinkInfo, SymbolReport
from aesoperator.engine.context_layout import NARROWER, left_out_note
from aesoperator.engine.entities import EntityProfile, EntitySummary, MergeInfo
from aesoperator.engine.packing import entity_hits, fit_context
from aesoperator.engine.results import SearchHit, Triple
from aesoperator.graph_schema.models import Entity, Episode, Relation
from aesoperator.serve.schemas import MemoryEntity, MemoryRelation, SourceOut

NOTHING = "Nothing found."
EXCERPT_CHARS = 300  # longest quoted evidence or mention text in a line of a knowledge answer

Counter = Callable[[str], int]


def tool_answer(structured: BaseModel, text: str, meta: Mapping[str, Any] | None = None) -> CallToolResult:
    """A tool result: `text` for the model, `structured` (as the output schema has it) for code."""
    answer: dict[str, Any] = {
        "content": [TextContent(type="text", text=text or NOTHING)],
        "structuredContent": structured.model_dump(mode="json", by_alias=True),
    }
    if meta:
        answer["_meta"] = dict(meta)
    return CallToolResult.model_validate(answer)


def _excerpt(text: str, chars: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= chars else flat[: chars - 1].rstrip() + "…"


def fit_lines(lines: Sequence[str], budget: int, count: Counter, what: str, hint: str = NARROWER) -> str:
    """The longest prefix of `lines` that fits the budget together with the note on the rest.

    The whole text is counted, so the budget holds for any counter. When not even the note fits,
    the text is empty.

    Args:
        lines: the pieces, most relevant first (a piece may hold several lines).
        budget: tokens the text may use.
        count: the token counter.
        what: what a piece is, singular, for the note.
        hint: what the caller can do to see the rest.

    Returns:
        The text.
    """

    def text(n: int) -> str:
        note = left_out_note(len(lines) - n, what, hint)
        return "\n".join([*lines[:n], *([note] if note else [])])

    lo, hi = -1, len(lines)  # text(lo) fits (-1: nothing does), text(hi + 1) does not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text(lo) if lo >= 0 else ""


def with_tail(text: str, tail: str, budget: int, count: Counter) -> str:
    """`text` and a last line, when both fit the budget; else `text` alone."""
    joined = f"{text}\n{tail}" if text else tail
    return joined if count(joined) <= budget else text


def hits_text(
    hits: Sequence[SearchHit],
    triples: Sequence[Triple],
    budget: int,
    count: Counter,
    what: str = "hit",
    hint: str = NARROWER,
) -> tuple[str, list[SearchHit]]:
    """Hits and the facts among them packed as context (see `engine.packing.fit_context`).

    Returns:
        The text and the hits it shows, whole or shortened.
    """
    pack = fit_context(hits, triples, budget, count_tokens=count, note=lambda n: left_out_note(n, what, hint))
    return pack.to_text(), pack.hits


# -- engine tools ---------------------------------------------------------------------------------------
def entities_text(
    entities: Sequence[Entity],
    relations: Sequence[Relation],
    budget: int,
    count: Counter,
    hint: str,
) -> str:
    """Entities (in the order given) with the relations among them as facts under them."""
    names = {e.id: e.name for e in entities}
    triples = [
        Triple(
            src=r.src,
            src_name=names[r.src],
            type=r.type,
            dst=r.dst,
            dst_name=names[r.dst],
            valid_from=r.valid_from,
            valid_to=r.valid_to,
        )
        for r in relations
        if r.src in names and r.dst in names
    ]
    text, _ = hits_text(entity_hits(entities, 10**7), triples, budget, count, "entity", hint)
    return text


def episode_hit(episode: Episode, score: float, mentioned: Sequence[str]) -> SearchHit:
    """A recalled episode as a hit: who said what, in which session and when, what it names."""
    speaker = episode.metadata.get("speaker")
    body = f"{speaker}: {episode.content}" if isinstance(speaker, str) and speaker else episode.content
    if mentioned:
        body += "\nMentions: " + ", ".join(mentioned)
    return SearchHit(
        id=episode.id,
        type="Episode",
        name=episode.content[:80],
        text=body,
        score=score,
        namespace=episode.namespace or "",
        source="",
        properties={"session_id": episode.session_id} if episode.session_id else {},
        valid_from=episode.created_at,
    )


# -- knowledge tools ------------------------------------------------------------------------------------
def summary_line(summary: EntitySummary) -> str:
    """`- Name (Type; 12 mentions; sources: a, b; also: other names)`."""
    details = [summary.type]
    if summary.mentions:
        details.append(f"{summary.mentions} mention" + ("" if summary.mentions == 1 else "s"))
    if summary.sources:
        details.append("sources: " + ", ".join(summary.sources[:5]))
    others = [n for n in summary.names if n != summary.name][:5]
    if others:
        details.append("also: " + ", ".join(others))
    return f"- {summary.name} ({'; '.join(details)})"


def profile_lines(profile: EntityProfile) -> list[str]:
    """An entity's profile: who it is, then its relations with evidence, the items that mention
    it, and the merges that made it one (each section's heading goes with its first line)."""
    name = profile.entity.name
    lines = [summary_line(profile.entity)[2:]]

    def section(heading: str, items: list[str]) -> None:
        if items:
            lines.append(f"{heading}\n{items[0]}")
            lines.extend(items[1:])

    section(
        "Relations:",
        [
            (f"- {name} {r.type} {r.other_name}" if r.direction != "in" else f"- {r.other_name} {r.type} {name}")
            + (f': "{_excerpt(r.evidence)}"' if r.evidence else "")
            for r in profile.relations
        ],
    )
    section(
        "Mentioned in:",
        [
            f"- {m.item_type} {_excerpt(m.item_name, 120)}"
            + (f' (as "{_excerpt(m.text, 80)}")' if m.text and m.text.casefold() != name.casefold() else "")
            for m in profile.mentions
        ],
    )
    section("Merges:", [merge_line(m) for m in profile.merges])
    return lines


def merge_line(merge: MergeInfo) -> str:
    """`- A = B (rule 0.93): evidence`, marked when undone or refused."""
    state = "" if merge.live else ", undone"
    evidence = f": {_excerpt(merge.evidence, 160)}" if merge.evidence else ""
    return f"- {merge.a_name or merge.a} = {merge.b_name or merge.b} ({merge.rule} {merge.score:.2f}{state}){evidence}"


def _where(path: str | None, start: int | None, end: int | None) -> str:
    if not path:
        return "not defined in the ingested code"
    if start is None:
        return path
    return f"{path}#L{start}" + (f"-L{end}" if end and end != start else "")


def _link_line(link: CodeLinkInfo, outgoing: bool) -> str:
    other = link.symbol
    where = _where(other.path, link.line or other.start_line, None)
    verb = link.type if outgoing else f"{link.type} it:"
    return f"- {verb} {other.qualified_name} ({where})" + (f" {link.detail}" if link.detail else "")


def symbol_lines(report: SymbolReport) -> list[str]:
    """A code symbol: where it is defined and what links to it, and from it."""
    s = report.symbol
    head = f"{s.qualified_name} ({s.kind or s.type}, {_where(s.path, s.start_line, s.end_line)})"
    lines = [head + (f"\n{s.signature}" if s.signature else "")]
    if report.defined_in:
        lines.append("Defined in: " + ", ".join(report.defined_in[:10]))
    lines += [_link_line(link, outgoing=False) for link in report.incoming]
    lines += [_link_line(link, outgoing=True) for link in report.outgoing]
    return lines


def source_line(source: SourceOut) -> str:
    """`- name (kind, namespace): N entities from M items, last ingested ..., status`."""
    details = [d for d in (source.kind, source.namespace) if d]
    head = f"- {source.name}" + (f" ({', '.join(details)})" if details else "")
    facts = [f"{source.entities} entities from {source.items} items"]
    if source.last_ok_at:
        facts.append(f"last ingested {source.last_ok_at[:16].replace('T', ' ')}")
    if source.status and source.status != "ok":
        facts.append(f"last run {source.status}")
    if source.quarantined:
        facts.append(f"{source.quarantined} quarantined")
    return head + ": " + ", ".join(facts)


# -- memory-server tools ---------------------------------------------------------------------------------
def memory_hits(entities: Sequence[MemoryEntity], relations: Sequence[MemoryRelation]) -> list[SearchHit]:
    """Memory-graph entities as hits: observations as lines, and each relation once, under the
    first of its ends that is listed (its own facts grouped under it)."""
    listed = {e.name for e in entities}
    under: dict[str, list[str]] = {}
    for r in relations:
        home = r.from_ if r.from_ in listed else r.to
        under.setdefault(home, []).append(f"- {r.from_} {r.relationType} {r.to}")
    return [
        SearchHit(
            id=e.name,
            type=e.entityType.replace("\n", " ") or "entity",
            name=e.name,
            text="\n".join([*(f"- {o}" for o in e.observations), *under.get(e.name, [])]),
            score=0.0,
            namespace="",
            source="",
        )
        for e in entities
    ]


__all__ = [
    "NOTHING",
    "entities_text",
    "episode_hit",
    "fit_lines",
    "hits_text",
    "memory_hits",
    "merge_line",
    "profile_lines",
    "source_line",
    "summary_line",
    "symbol_lines",
    "tool_answer",
    "with_tail",
]
