"""Pydantic models of what the MCP server's tools take and return.

Tool inputs are declared as annotated parameters (the limits below become the published input
schema, so a client sees them before calling); tool outputs are the models here, published as
each tool's output schema and returned as structured content.

The memory-server models reproduce the official `@modelcontextprotocol/server-memory` shapes
exactly: entities `{name, entityType, observations}`, relations `{from, to, relationType}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from aesoperator.engine.memory_facts import MemoryFact
from aesoperator.engine.results import SearchHit, Triple
from aesoperator.graph_schema.models import (
    NO_CONTROL_PATTERN,
    Entity,
    Episode,
    Provenance,
    Relation,
    check_label,
    check_storable,
)

# -- limits ----------------------------------------------------------------------------------------
MAX_QUERY_CHARS = 10_000
MAX_ID_CHARS = 1_024
MAX_LABEL_CHARS = 200
MAX_IDS = 100
MAX_FILTERS = 50
MAX_CONTENT_CHARS = 50_000
MAX_MEMORY_NAME_CHARS = 1_000
MAX_MEMORY_TYPE_CHARS = 200
MAX_OBSERVATION_CHARS = 10_000
MAX_OBSERVATIONS = 500
MAX_MEMORY_ITEMS = 500

ENTITY_URI_PREFIX = "entity://"
ENTITY_URI_TEMPLATE = "entity://{id}"
STATS_URI = "stats://graph"
MEMORY_GRAPH_URI = "memory://knowledge-graph"


def entity_uri(entity_id: str) -> str:
    """The `entity://` resource URI of an entity (the id percent-encoded, as RFC 6570 `{id}` does)."""
    return ENTITY_URI_PREFIX + quote(entity_id, safe="")


# -- reusable input types ----------------------------------------------------------------------------
# Labels (namespaces, agent, session and task ids) and the names the memory tools store hold no
# control characters; ids and looked-up names hold no NUL, which no stored id or name can contain.
# The rule is published as a JSON Schema pattern and checked with a message that names the character.
_PRINTABLE = Field(json_schema_extra={"pattern": NO_CONTROL_PATTERN})
_NO_NUL = Field(json_schema_extra={"pattern": r"^[^\x00]*$"})


def _printable(value: str) -> str:
    return check_label(value, "text")


def _storable(value: str) -> str:
    return check_storable(value, "text")


Printable = Annotated[str, _PRINTABLE, AfterValidator(_printable)]
Storable = Annotated[str, _NO_NUL, AfterValidator(_storable)]
Query = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What to look for.")]
EntityId = Annotated[Storable, Field(min_length=1, max_length=MAX_ID_CHARS)]
EntityIds = Annotated[
    list[EntityId], Field(min_length=1, max_length=MAX_IDS, description="Entity ids (as returned by search).")
]
Label = Annotated[Printable, Field(min_length=1, max_length=MAX_LABEL_CHARS)]
TypeName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
Namespaces = Annotated[
    list[Label] | None,
    Field(
        max_length=MAX_FILTERS,
        description="Only these namespaces (default: every namespace the caller may read).",
    ),
]
AsOf = Annotated[datetime | None, Field(description="Answer as of this moment (ISO 8601); default: now.")]
MIN_TOKEN_BUDGET = 50
MAX_TOKEN_BUDGET = 100_000
TokenBudget = Annotated[
    int | None,
    Field(
        ge=MIN_TOKEN_BUDGET,
        le=MAX_TOKEN_BUDGET,
        description="Tokens the answer's text may use (default: the server's token_budget setting).",
    ),
]


# -- engine tool outputs ---------------------------------------------------------------------------
class Hit(SearchHit):
    """One entity chosen for the context, with why it was chosen and where it came from."""

    uri: str = Field(description="The entity's resource URI (read it for the full entity).")


class SearchOutput(BaseModel):
    query: str
    hits: list[Hit]
    triples: list[Triple] = Field(
        default_factory=list, description="Relations between hits as (subject, type, object)."
    )
    context: str = Field(
        description="Hits and facts packed as prompt-ready text within the token budget (the answer's text part)."
    )
    tokens_used: int = 0
    token_budget: int = 0
    dropped: int = Field(default=0, description="Candidates left out by the budget or k.")
    left_out: int = Field(default=0, description="Hits the token budget left out of the context.")


class EntityOut(Entity):
    """A stored entity with its resource URI (and, in neighbourhoods, its hop distance)."""

    uri: str
    hop: int | None = Field(default=None, description="Hops from the nearest seed (neighbors only).")


class RelationOut(Relation):
    """A stored relation."""


class GetEntitiesOutput(BaseModel):
    entities: list[EntityOut]
    missing: list[str] = Field(
        default_factory=list, description="Requested ids that do not exist or are outside the caller's namespaces."
    )


class NeighborsOutput(BaseModel):
    entities: list[EntityOut] = Field(description="Seeds (hop 0) and the entities reached from them.")
    relations: list[RelationOut] = Field(description="Live relations followed between returned entities.")
    missing: list[str] = Field(default_factory=list, description="Seed ids that are unknown or not readable.")


class RecalledEpisodeOut(BaseModel):
    episode: Episode
    uri: str
    score: float
    reasons: list[str] = Field(default_factory=list)
    entities: list[Hit] = Field(default_factory=list, description="What the episode mentions (readable ones only).")
    facts: list[MemoryFact] = Field(default_factory=list, description="The facts it states, each saying if it holds.")
    valid_to: datetime | None = Field(default=None, description="When it stopped holding, if it did.")
    superseded_by: str | None = Field(default=None, description="The episode that replaced it, if one did.")
    retired_reason: str | None = Field(default=None, description="superseded, corrected, duplicate or expired.")


class RecallOutput(BaseModel):
    query: str
    agent_id: str
    episodes: list[RecalledEpisodeOut]


class RememberOutput(BaseModel):
    episode: Episode
    uri: str
    warnings: list[str] = Field(
        default_factory=list,
        description="What knowledge extraction could not do for this event (it is stored all the same).",
    )


class SourceOut(BaseModel):
    """One source: how it is declared, what the store holds from it and how fresh that is."""

    name: str
    registered: bool = Field(description="Declared in aesop.toml or sources.toml.")
    kind: str | None = None
    namespace: str | None = None
    identity: str | None = Field(default=None, description="The server or folder the source was ingested from.")
    items: int = Field(default=0, description="Source items tracked for incremental re-ingest.")
    entities: int = 0
    relations: int = 0
    quarantined: int = Field(default=0, description="Items set aside because they could not be mapped.")
    status: str | None = Field(default=None, description="Outcome of the last ingest run (ok, failed, interrupted).")
    last_run_at: str | None = None
    last_ok_at: str | None = None
    age_seconds: float | None = Field(default=None, description="Seconds since the last successful run ended.")
    last_run: dict[str, Any] | None = None


class StatsOut(BaseModel):
    """Store statistics as the caller may see them: totals and the change-log position are left out
    for callers limited to some namespaces."""

    backend: str
    last_seq: int | None = Field(
        default=None, description="Change-log position (every namespace's writes move it); callers reading all only."
    )
    namespaces: dict[str, int]
    entities: int
    relations: int | None = None
    live_relations: int | None = None
    vectors: int | None = None
    entity_types: dict[str, int] | None = None
    relation_types: dict[str, int] | None = None


class SourcesOutput(BaseModel):
    sources: list[SourceOut]
    stats: StatsOut
    complete: bool = Field(
        default=True, description="False when the scan for unregistered sources stopped at its size limit."
    )


# -- memory-server shapes ----------------------------------------------------------------------------
MemoryName = Annotated[Printable, Field(max_length=MAX_MEMORY_NAME_CHARS, description="The name of the entity")]
# A name that is only looked up (opened, deleted, given observations): any text, as the memory
# server takes it; one that no entity can have (a NUL in it, say) finds nothing.
MemoryLookupName = Annotated[str, Field(max_length=MAX_MEMORY_NAME_CHARS)]
Observation = Annotated[str, Field(max_length=MAX_OBSERVATION_CHARS)]


class MemoryEntity(BaseModel):
    name: MemoryName
    entityType: Annotated[str, Field(max_length=MAX_MEMORY_TYPE_CHARS, description="The type of the entity")]
    observations: Annotated[
        list[Observation],
        Field(
            max_length=MAX_OBSERVATIONS,
            description="An array of observation contents associated with the entity",
        ),
    ]


class MemoryRelation(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    from_: Annotated[
        Printable,
        Field(
            alias="from",
            max_length=MAX_MEMORY_NAME_CHARS,
            description="The name of the entity where the relation starts",
        ),
    ]
    to: Annotated[
        Printable,
        Field(max_length=MAX_MEMORY_NAME_CHARS, description="The name of the entity where the relation ends"),
    ]
    relationType: Annotated[str, Field(max_length=MAX_MEMORY_TYPE_CHARS, description="The type of the relation")]


class ObservationAddition(BaseModel):
    entityName: Annotated[MemoryLookupName, Field(description="The name of the entity to add the observations to")]
    contents: Annotated[
        list[Observation], Field(max_length=MAX_OBSERVATIONS, description="An array of observation contents to add")
    ]


class ObservationDeletion(BaseModel):
    entityName: Annotated[MemoryLookupName, Field(description="The name of the entity containing the observations")]
    observations: Annotated[
        list[Observation], Field(max_length=MAX_OBSERVATIONS, description="An array of observations to delete")
    ]


class AddedObservations(BaseModel):
    entityName: str
    addedObservations: list[str]


class MemoryGraphOutput(BaseModel):
    entities: list[MemoryEntity]
    relations: list[MemoryRelation]


class CreateEntitiesOutput(BaseModel):
    entities: list[MemoryEntity]


class CreateRelationsOutput(BaseModel):
    relations: list[MemoryRelation]


class AddObservationsOutput(BaseModel):
    results: list[AddedObservations]


class SuccessOutput(BaseModel):
    success: bool
    message: str


__all__ = [
    "ENTITY_URI_TEMPLATE",
    "MEMORY_GRAPH_URI",
    "STATS_URI",
    "AddObservationsOutput",
    "AddedObservations",
    "CreateEntitiesOutput",
    "CreateRelationsOutput",
    "EntityOut",
    "GetEntitiesOutput",
    "Hit",
    "MemoryEntity",
    "MemoryGraphOutput",
    "MemoryLookupName",
    "MemoryRelation",
    "NeighborsOutput",
    "ObservationAddition",
    "ObservationDeletion",
    "Provenance",
    "RecallOutput",
    "RecalledEpisodeOut",
    "RelationOut",
    "RememberOutput",
    "SearchOutput",
    "SourceOut",
    "SourcesOutput",
    "StatsOut",
    "SuccessOutput",
    "TokenBudget",
    "entity_uri",
]
