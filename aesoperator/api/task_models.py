"""What a task is and what running it gives back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aesoperator.api.server import MCPServer


class ContextItem(BaseModel):
    """One piece of assembled context, with where it came from and why it was chosen."""

    id: str
    type: str
    name: str
    text: str
    score: float = 0.0
    reasons: list[str] = Field(default_factory=list)
    source: str
    namespace: str
    uri: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class SourceSync(BaseModel):
    server: str
    status: Literal["ok", "failed", "skipped"]
    records_changed: int = 0
    records_seen: int = 0
    seconds: float = 0.0
    error: str | None = None


class TaskContext(BaseModel):
    """What an operator is given."""

    task: str
    task_id: str
    inputs: dict[str, Any]
    items: list[ContextItem]
    facts: list[str] = Field(default_factory=list)
    live: dict[str, Any] = Field(default_factory=dict, description="Read live from the servers (e.g. table schemas).")
    text: str = ""


class TaskResult(BaseModel):
    """The outcome of `execute_task`: the assembled context with provenance, what the operator
    returned (if one ran), and what was synced and remembered."""

    task: str
    task_id: str
    status: Literal["completed", "context_only", "failed"]
    operator_ran: bool
    operator: str | None = None
    output: Any = None
    message: str
    error: str | None = None
    context: list[ContextItem]
    facts: list[str] = Field(default_factory=list)
    live: dict[str, Any] = Field(default_factory=dict)
    context_text: str
    tokens_used: int = 0
    sources: list[SourceSync] = Field(default_factory=list)
    episodes: list[str] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime


class Task(BaseModel):
    """A unit of work with the servers whose context it needs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    mcp_context: list[MCPServer | str] = Field(default_factory=list)
    inputs: dict[str, Any] = Field(default_factory=dict)
    operator: Callable[[TaskContext], Any] | None = Field(default=None, exclude=True)
    namespace: str = Field(default="tasks", description="Where the task's episodes are remembered.")
    agent_id: str = "aesoperator"
    token_budget: int | None = None
    k: int = Field(default=12, ge=1, le=200)
    sync: bool = True
