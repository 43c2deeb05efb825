"""Typed results the engine returns: what was found, why, and where it came from."""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from aesoperator.engine.context_layout import Layout, left_out_note, render_context
from aesoperator.graph_schema.models import Provenance

if TYPE_CHECKING:
    import pandas as pd


class SearchHit(BaseModel):
    """One entity chosen for the context, with the reasons it was chosen."""

    id: str
    type: str
    name: str
    text: str = Field(description="The entity text, possibly shortened to fit the token budget.")
    score: float
    reasons: list[str] = Field(default_factory=list)
    hop: int = Field(default=0, description="0 for direct hits; n for entities reached n hops from one.")
    namespace: str
    source: str
    provenance: Provenance | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    valid_from: datetime | None = Field(default=None, description="When what the entity says became true.")
    valid_to: datetime | None = Field(default=None, description="When it stopped being true (None: still is).")
    truncated: bool = False
    excerpt_ranges: list[tuple[int, int]] | None = Field(
        default=None,
        description="When `text` is a query-focused excerpt: the [start, end) character ranges of the entity's"
        " text it shows, in order (the cuts between them are marked with '…').",
    )


class Triple(BaseModel):
    """A relation between two chosen entities, as (subject, predicate, object)."""

    src: str
    src_name: str
    type: str
    dst: str
    dst_name: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None


class ContextPack(BaseModel):
    """Hits and triples that fit in a token budget."""

    hits: list[SearchHit] = Field(default_factory=list)
    triples: list[Triple] = Field(default_factory=list)
    tokens_used: int = 0
    token_budget: int = 0
    dropped: int = Field(default=0, description="Candidates left out because the budget was spent.")
    note: str = Field(default="", description="What the budget left out, said at the end of the text.")

    def to_text(self) -> str:
        """The context as text for a prompt: one block per passage or entity in relevance order,
        each entity's facts under it, then the note (see `context_layout`)."""
        return render_context(Layout.of(self.hits), self.triples, self.note)


class SearchResult(BaseModel):
    """The answer to `ContextEngine.search`."""

    query: str
    hits: list[SearchHit]
    triples: list[Triple] = Field(default_factory=list)
    tokens_used: int = 0
    token_budget: int = 0
    dropped: int = 0
    left_out: int = Field(default=0, description="Hits the token budget left out of the context (of the k chosen).")
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Cost of each retrieval stage.")

    def context_text(self) -> str:
        """The packed context: what MCP `search` answers with as text and `aesop search --context`
        prints, within `token_budget` tokens."""
        return ContextPack(
            hits=self.hits,
            triples=self.triples,
            tokens_used=self.tokens_used,
            token_budget=self.token_budget,
            note=left_out_note(self.left_out),
        ).to_text()

    # -- notebooks ----------------------------------------------------------------------------
    def to_dataframe(self) -> pd.DataFrame:
        """The hits as a pandas DataFrame, one row per hit in rank order (needs pandas, the
        `notebooks` extra): rank, score, type, name, hop, reasons (joined by "; "), namespace,
        source, uri (the provenance), id and text."""
        import pandas

        columns = ["rank", "score", "type", "name", "hop", "reasons", "namespace", "source", "uri", "id", "text"]
        rows = [
            (
                rank,
                hit.score,
                hit.type,
                hit.name,
                hit.hop,
                "; ".join(hit.reasons),
                hit.namespace,
                hit.source,
                hit.provenance.uri if hit.provenance else None,
                hit.id,
                hit.text,
            )
            for rank, hit in enumerate(self.hits, 1)
        ]
        frame = pandas.DataFrame(rows, columns=columns)
        frame.attrs["query"] = self.query
        return frame

    def _repr_html_(self) -> str:
        """A table of the hits (with the reasons they were chosen) and the facts between them."""
        esc = html.escape

        def preview(text: str, chars: int) -> str:
            flat = " ".join(text.split())
            return esc(flat if len(flat) <= chars else flat[: chars - 1] + "…")

        hit_rows = "".join(
            f"<tr><td>{rank}</td><td>{hit.score:.4f}</td><td>{esc(hit.type)}</td><td>{preview(hit.name, 80)}</td>"
            f"<td>{hit.hop}</td><td>{esc('; '.join(hit.reasons))}</td>"
            f"<td>{preview(hit.provenance.uri if hit.provenance else hit.source, 80)}</td>"
            f"<td>{preview(hit.text, 200)}</td></tr>"
            for rank, hit in enumerate(self.hits, 1)
        )
        parts = [
            f"<div><b>{preview(self.query, 200)}</b> — {len(self.hits)} hits, "
            f"{self.tokens_used} of {self.token_budget} tokens"
            + (f", {self.dropped} left out" if self.dropped else "")
            + (f", {sum(self.timings_ms.values()):.1f} ms" if self.timings_ms else "")
            + "</div>",
            "<table><thead><tr><th>#</th><th>score</th><th>type</th><th>name</th><th>hop</th><th>why</th>"
            f"<th>where</th><th>text</th></tr></thead><tbody>{hit_rows}</tbody></table>",
        ]
        if self.triples:
            shown = self.triples[:50]
            triple_rows = "".join(
                f"<tr><td>{preview(t.src_name, 80)}</td><td>{esc(t.type)}</td><td>{preview(t.dst_name, 80)}</td></tr>"
                for t in shown
            )
            more = len(self.triples) - len(shown)
            parts.append(
                "<details><summary>"
                f"{len(self.triples)} facts between the hits"
                + (f" (first {len(shown)} shown)" if more else "")
                + "</summary><table><thead><tr><th>subject</th><th>relation</th><th>object</th></tr></thead>"
                f"<tbody>{triple_rows}</tbody></table></details>"
            )
        return "\n".join(parts)
