"""Typed results the engine returns: what was found, why, and where it came from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from aesoperator.graph_schema.models import Provenance


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
    truncated: bool = False


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

    def to_text(self) -> str:
        """The context as plain text for a prompt: passages first, then facts as triples."""
        lines: list[str] = []
        for i, hit in enumerate(self.hits, 1):
            origin = hit.provenance.uri if hit.provenance else hit.source
            lines.append(f"[{i}] {hit.type} {hit.name} ({origin})")
            lines.append(hit.text)
            lines.append("")
        if self.triples:
            lines.append("Facts:")
            lines.extend(f"- {t.src_name} {t.type} {t.dst_name}" for t in self.triples)
        return "\n".join(lines).strip()


class SearchResult(BaseModel):
    """The answer to `ContextEngine.search`."""

    query: str
    hits: list[SearchHit]
    triples: list[Triple] = Field(default_factory=list)
    tokens_used: int = 0
    token_budget: int = 0
    dropped: int = 0
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Cost of each retrieval stage.")

    def context_text(self) -> str:
        return ContextPack(
            hits=self.hits, triples=self.triples, tokens_used=self.tokens_used, token_budget=self.token_budget
        ).to_text()
