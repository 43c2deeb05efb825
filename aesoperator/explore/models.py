"""What the explorer's JSON endpoints answer with (`/explore/api/...`), one model per answer.

Everything here is data for the page's script, which puts it into the page with `textContent`
only: names and texts are ingested content and never markup.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from aesoperator.graph_schema.models import Provenance
from aesoperator.serve.schemas import SourceOut

ReasonKind = Literal["channel", "hop", "link", "other"]


class WhoAmI(BaseModel):
    """The caller as the page shows it, and what it may filter on."""

    principal: str
    kind: str
    scopes: list[str]
    namespaces: list[str] = Field(description="Namespaces the caller may read that hold data.")
    all_namespaces: bool = Field(description="The caller reads every namespace (read:*).")
    entity_types: list[str] = Field(default_factory=list, description="Entity types in the readable namespaces.")
    sources: list[str] = Field(default_factory=list, description="Sources the caller may see.")
    entities: int = 0


class Reason(BaseModel):
    """One reason a hit was chosen, with its kind: a retrieval channel, a graph hop, a linked entity."""

    kind: ReasonKind
    text: str


class SearchHitOut(BaseModel):
    id: str
    type: str
    name: str
    text: str
    score: float
    hop: int
    reasons: list[Reason]
    namespace: str
    source: str
    provenance: Provenance | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


class SearchOut(BaseModel):
    query: str
    hits: list[SearchHitOut]
    filtered_by_source: int = Field(default=0, description="Hits left out because of the source filter.")
    timings_ms: dict[str, float] = Field(default_factory=dict)
    elapsed_ms: float = 0.0


class EntityBrief(BaseModel):
    """Another entity, as a relation or a mention shows it."""

    id: str
    type: str
    name: str
    namespace: str


class RelationRow(BaseModel):
    """One relation of the entity with its validity in the world and in the store."""

    id: str
    type: str
    direction: Literal["out", "in"]
    other: EntityBrief
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    recorded_at: datetime | None = None
    expired_at: datetime | None = None
    live: bool
    evidence: str = ""
    source: str = ""


class MentionRow(BaseModel):
    """An item that mentions the entity."""

    item: EntityBrief
    text: str = ""
    extractor: str = ""
    confidence: float | None = None
    source: str = ""


class MergeRow(BaseModel):
    """A merge decision of entity resolution touching the entity (live, undone, or refused)."""

    id: str
    kind: str
    other: EntityBrief
    rule: str = ""
    score: float = 0.0
    evidence: str = ""
    decided_at: str | None = None
    live: bool = True


class EntityPage(BaseModel):
    id: str
    type: str
    name: str
    text: str
    properties: dict[str, Any]
    namespace: str
    source: str
    provenance: Provenance | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    relations: list[RelationRow]
    mentions: list[MentionRow]
    merges: list[MergeRow]
    sources: list[str] = Field(description="Where this entity and the entities merged with it come from.")
    relations_total: int
    mentions_total: int
    elapsed_ms: float = 0.0


class GraphNode(BaseModel):
    id: str
    type: str
    name: str
    namespace: str
    hop: int


class GraphEdge(BaseModel):
    id: str
    type: str
    src: str
    dst: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None


class Neighbourhood(BaseModel):
    """An entity's neighbours, one hop out. When it has more than `limit`, a sample of them."""

    center: str
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    total_neighbours: int = Field(description="Neighbours found (counted up to `counted_up_to`).")
    counted_up_to: int
    sampled: bool = Field(description="True when only a sample of the neighbours is shown.")
    relation_types: dict[str, int] = Field(default_factory=dict, description="Relations per type around the center.")


class AgentRow(BaseModel):
    agent_id: str
    namespace: str
    entities: int = Field(description="Entities in the agent's namespace (episodes, sessions, facts).")


class AgentsOut(BaseModel):
    agents: list[AgentRow]


class EpisodeRow(BaseModel):
    id: str
    content: str
    session_id: str | None
    created_at: datetime | None
    status: Literal["current", "superseded", "forgotten", "retired"]
    retired_note: str | None = None
    superseded_by: str | None = None
    mentions: list[EntityBrief] = Field(default_factory=list, description="Mentioned entities the caller may read.")


class SessionRow(BaseModel):
    session_id: str | None
    episodes: list[EpisodeRow]


class MemoryOut(BaseModel):
    agent_id: str
    namespace: str
    sessions: list[SessionRow]
    shown: int
    total: int


class SourceRow(SourceOut):
    """A source with its quarantined items and whether the caller may re-sync it."""

    quarantined_items: list[dict[str, Any]] = Field(default_factory=list)
    can_resync: bool = False
    resync_note: str = ""
    job: ResyncJob | None = None


class SourcesOut(BaseModel):
    sources: list[SourceRow]


class ResyncJob(BaseModel):
    """A re-sync started from the explorer, running in the background."""

    id: str
    source: str
    state: Literal["running", "ok", "failed"]
    started_at: datetime
    finished_at: datetime | None = None
    message: str = ""


class ErrorOut(BaseModel):
    error: str
    message: str


SourceRow.model_rebuild()
