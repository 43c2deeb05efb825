"""What the graph holds: entities, relations, episodes and their provenance.

These pydantic models are the boundary every source, store and API goes through. Validation here
is what keeps bad input out: non-JSON-safe properties, empty text, oversize fields and malformed
type names are rejected with a message that names the offending item.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from aesoperator.graph_schema.ids import relation_id
from aesoperator.graph_schema.vocabulary import check_type_name

MAX_NAME_CHARS = 1_000
MAX_TEXT_CHARS = 200_000
MAX_PROPERTIES_BYTES = 256 * 1024
MAX_ID_CHARS = 1_024
DEFAULT_NAMESPACE = "default"

JsonValue = Any  # checked by `_check_json_safe`; pydantic's recursive JsonValue is slow on hot paths

# Control characters (C0, DEL, C1) and lone surrogates: never part of an agent's labels (agent,
# session, task, namespace of an episode) nor of what MCP callers name (serve/schemas.py), which
# must read back as written and print as one line. Entities and relations themselves may hold any
# text a source has (Neo4j stores it); the embedded store refuses what it cannot hold (NUL).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# What no id or name may hold: NUL (SQLite's JSON functions end a string there, so such an id could
# not be looked up) and lone surrogates (not encodable as UTF-8).
UNSTORABLE_CHARACTERS = re.compile(r"[\x00\ud800-\udfff]")
# The published form of a label's rule (a JSON Schema pattern).
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime | None) -> str | None:
    """Canonical UTC ISO-8601 text with microseconds: sorts lexicographically in time order."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _check_json_safe(value: Any, path: str = "properties") -> None:
    if value is None or isinstance(value, bool | str | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path} holds a non-finite number ({value}); JSON cannot carry it")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json_safe(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path} has a non-string key {key!r}")
            _check_json_safe(item, f"{path}.{key}")
        return
    raise ValueError(f"{path} holds a {type(value).__name__}, which is not JSON-safe")


def _check_properties(props: dict[str, Any]) -> dict[str, Any]:
    _check_json_safe(props)
    size = len(json.dumps(props, ensure_ascii=False))
    if size > MAX_PROPERTIES_BYTES:
        raise ValueError(f"properties are {size} bytes as JSON; the limit is {MAX_PROPERTIES_BYTES}")
    return props


def _bad_character(found: re.Match[str], what: str, value: str) -> ValueError:
    code = ord(found.group())
    kind = "a lone surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
    return ValueError(
        f"{what} {value[:80]!r} contains U+{code:04X} ({kind}) at position {found.start()}; use printable text"
    )


def check_label(value: str, what: str) -> str:
    """Refuse control characters in a label (a namespace, source, agent, session or task id)."""
    found = CONTROL_CHARACTERS.search(value)
    if found is not None:
        raise _bad_character(found, what, value)
    return value


def check_storable(value: str, what: str) -> str:
    """Refuse NUL and lone surrogates, which no id or name can hold."""
    found = UNSTORABLE_CHARACTERS.search(value)
    if found is not None:
        raise _bad_character(found, what, value)
    return value


def _check_id(value: str, what: str) -> str:
    if not value or not value.strip():
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise ValueError(f"{what} is {len(value)} characters; the limit is {MAX_ID_CHARS}")
    return value


class Provenance(BaseModel):
    """Where a fact came from, so every answer can point back to its source."""

    model_config = ConfigDict(frozen=True)

    uri: str
    fetched_at: datetime = Field(default_factory=utcnow)
    version: str | None = Field(default=None, description="etag, commit sha, content hash...")


class Entity(BaseModel):
    """A node of the graph. `text` is what gets embedded and keyword-indexed."""

    id: str
    type: str
    name: str
    text: str
    properties: dict[str, JsonValue] = Field(default_factory=dict)
    source: str = "manual"
    provenance: Provenance | None = None
    namespace: str = DEFAULT_NAMESPACE
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_id(v, "entity id")

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        return check_type_name(v, "entity type")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("entity name must not be empty")
        if len(v) > MAX_NAME_CHARS:
            raise ValueError(f"entity name is {len(v)} characters; the limit is {MAX_NAME_CHARS}")
        return v

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("entity text must not be empty (it is what gets searched)")
        if len(v) > MAX_TEXT_CHARS:
            raise ValueError(f"entity text is {len(v)} characters; the limit is {MAX_TEXT_CHARS}")
        return v

    @field_validator("properties")
    @classmethod
    def _props(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_properties(v)

    @field_validator("namespace", "source")
    @classmethod
    def _short_label(cls, v: str) -> str:
        if not v or len(v) > 200:
            raise ValueError("namespace and source must be 1 to 200 characters")
        return v


class Relation(BaseModel):
    """A typed, directed edge with bi-temporal validity.

    `valid_from`/`valid_to` say when the fact held in the world; `recorded_at`/`expired_at` say
    when the store learnt and retired it. A fact that changes is expired, not deleted.
    """

    id: str = ""
    type: str
    src: str
    dst: str
    properties: dict[str, JsonValue] = Field(default_factory=dict)
    source: str = "manual"
    provenance: Provenance | None = None
    namespace: str = DEFAULT_NAMESPACE
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    recorded_at: datetime | None = None
    expired_at: datetime | None = None

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        return check_type_name(v, "relation type")

    @field_validator("src", "dst")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        return _check_id(v, "relation endpoint")

    @field_validator("properties")
    @classmethod
    def _props(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_properties(v)

    @model_validator(mode="after")
    def _default_id(self) -> Relation:
        if not self.id:
            self.id = relation_id(self.type, self.src, self.dst)
        return self

    def is_live(self, as_of: datetime | None = None) -> bool:
        """True if the relation holds at `as_of` (now when None)."""
        if as_of is None:
            if self.expired_at is not None:
                return False
            return self.valid_to is None or self.valid_to > utcnow()
        start = self.valid_from or self.recorded_at
        if start is not None and start > as_of:
            return False
        end = self.valid_to or self.expired_at
        return end is None or end > as_of


class Episode(BaseModel):
    """One memory event of an agent. Stored as an entity of type `Episode`."""

    id: str = ""
    content: str
    agent_id: str
    session_id: str | None = None
    task_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    namespace: str | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    mentions: list[str] = Field(default_factory=list, description="ids of entities the episode names")

    @field_validator("content")
    @classmethod
    def _content(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("episode content must not be empty")
        if len(v) > MAX_TEXT_CHARS:
            raise ValueError(f"episode content is {len(v)} characters; the limit is {MAX_TEXT_CHARS}")
        return v

    @field_validator("agent_id")
    @classmethod
    def _agent(cls, v: str) -> str:
        if not v.strip() or len(v) > 200:
            raise ValueError("agent_id must be 1 to 200 characters")
        return check_label(v, "agent_id")

    @field_validator("session_id", "task_id", "namespace")
    @classmethod
    def _labels(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else check_label(v, str(info.field_name))

    @field_validator("metadata")
    @classmethod
    def _meta(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_properties(v)


Direction = Literal["out", "in", "both"]
