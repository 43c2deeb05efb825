"""Source definitions: which MCP server to talk to, how, and what to make of it.

The shape follows common MCP client configs (`command`, `args`, `env`, `url`), plus the
adapter (`kind`) that knows the server's tools and maps their results, include/exclude rules,
the namespace everything lands in, and adapter options. Credentials are named, never stored:
`credentials` maps a purpose (e.g. "bearer_token") to the name of an environment variable.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from aesoperator.config import resolve_env_values
from aesoperator.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SourceDefinition(BaseModel):
    """One MCP source. Exactly one of `command` (stdio) or `url` (streamable HTTP) is set."""

    name: str
    kind: str = Field(description="The adapter that reads it: a key of aesoperator.ingest.adapters.kinds.ADAPTERS.")
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="Values may reference ${VAR} from the environment.")
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    credentials: dict[str, str] = Field(
        default_factory=dict,
        description="purpose -> environment variable NAME, e.g. {'bearer_token': 'GITHUB_TOKEN'}",
    )
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    namespace: str = "default"
    options: dict[str, Any] = Field(default_factory=dict, description="Adapter options (roots, allowed_tables, ...).")
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    max_response_bytes: int = Field(default=20_000_000, ge=1024)
    retries: int = Field(default=3, ge=0, le=10)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(f"source name {v!r}: use letters, digits, '.', '_' or '-' (at most 64)")
        return v

    @model_validator(mode="after")
    def _one_transport(self) -> SourceDefinition:
        if bool(self.command) == bool(self.url):
            raise ValueError(f"source {self.name!r} needs exactly one of command (stdio) or url (streamable HTTP)")
        return self

    def resolved_env(self) -> dict[str, str]:
        """`env` with ${VAR} references filled from this process's environment.

        Returns:
            The environment variables to give the server process.

        Raises:
            ConfigError: A referenced variable is not set.
        """
        return resolve_env_values(self.env, f"source {self.name!r}")

    def secret(self, purpose: str) -> str | None:
        """The credential for `purpose`, read from the environment variable the definition names."""
        var = self.credentials.get(purpose)
        if var is None:
            return None
        value = os.environ.get(var)
        if not value:
            raise ConfigError(f"source {self.name!r}: environment variable {var} ({purpose}) is not set")
        return value

    def public_view(self) -> dict[str, Any]:
        """The definition without secrets: env values and header values are masked."""
        data = self.model_dump()
        data["env"] = {k: ("${…}" if "$" in v else "***") for k, v in self.env.items()}
        data["headers"] = {k: "***" for k in self.headers}
        return data
