"""Who is calling and what they may do.

A principal's rights come from scope strings (OAuth2 scopes in JWTs, or the scopes given to a
static token or to a stdio configuration):

- `read:<namespace>`   read entities, relations and memories of a namespace (`read:*` = all)
- `write:<namespace>`  create, change and delete in a namespace (`write:*` = all); forgetting a
                       memory (retiring it, history kept) is a change
- `purge:<namespace>`  erase memories of a namespace for good (`forget` with `purge`), which also
                       needs `write:<namespace>`: a separate scope, so a token that may write
                       cannot destroy history unless it is given this too (`purge:*` = all)
- `source:<name>`      see and ingest a source (`source:*` = all)
- `tool:<name>`        call a tool (`tool:*` = all); without any tool scope every tool allowed by
                       the read/write scopes may be called

Namespace filters are handed to the store, which applies them inside its queries, so a result
outside the principal's namespaces is never produced, not merely hidden afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from aesoperator.errors import ConfigError, PermissionDenied

ALL = "*"
_SCOPE_RE = re.compile(
    r"^(read|write|purge|source|tool):[A-Za-z0-9*._/@:-]{1,128}$"
)  # ":" allows agent:<id> namespaces


def validate_scopes(scopes: Sequence[str]) -> list[str]:
    """Check scope strings against the grammar (`read:`, `write:`, `purge:`, `source:`, `tool:`)."""
    bad = [s for s in scopes if not _SCOPE_RE.match(s)]
    if bad:
        raise ConfigError(
            f"invalid scope(s) {bad}: write read:<namespace>, write:<namespace>, purge:<namespace>, source:<name> "
            "or tool:<name> (use * for all)"
        )
    return list(dict.fromkeys(scopes))


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    kind: Literal["static", "jwt", "stdio", "anonymous"] = "static"
    read: frozenset[str] = frozenset()
    write: frozenset[str] = frozenset()
    purge: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    tools: frozenset[str] = frozenset({ALL})
    scopes: tuple[str, ...] = ()

    @classmethod
    def from_scopes(cls, principal_id: str, scopes: Iterable[str], kind: str = "static") -> Principal:
        read: set[str] = set()
        write: set[str] = set()
        purge: set[str] = set()
        sources: set[str] = set()
        tools: set[str] = set()
        kept: list[str] = []
        for scope in scopes:
            prefix, _, rest = scope.partition(":")
            if not rest:
                continue  # scopes of other resource servers are ignored, not errors
            target = {"read": read, "write": write, "purge": purge, "source": sources, "tool": tools}.get(prefix)
            if target is None:
                continue
            target.add(rest)
            kept.append(scope)
        return cls(
            id=principal_id,
            kind=kind,  # type: ignore[arg-type]
            read=frozenset(read | write),  # writing a namespace implies reading it
            write=frozenset(write),
            purge=frozenset(purge),
            sources=frozenset(sources),
            tools=frozenset(tools or {ALL}),
            scopes=tuple(kept),
        )

    @classmethod
    def full_access(cls, principal_id: str = "local", kind: str = "stdio") -> Principal:
        return cls.from_scopes(principal_id, ["read:*", "write:*", "purge:*", "source:*", "tool:*"], kind)

    # -- checks ---------------------------------------------------------------------------------
    def can_call(self, tool: str) -> bool:
        return ALL in self.tools or tool in self.tools

    def require_tool(self, tool: str) -> None:
        if not self.can_call(tool):
            raise PermissionDenied(f"principal {self.id!r} may not call tool {tool!r}")

    def read_namespaces(self, requested: Sequence[str] | None = None) -> list[str] | None:
        """The namespaces a read may touch: the requested ones that are allowed (all allowed ones
        when none are requested). `None` means unrestricted (the principal reads everything).
        Raises PermissionDenied if a requested namespace is not readable."""
        if ALL in self.read:
            return list(requested) if requested else None
        if requested:
            denied = [ns for ns in requested if ns not in self.read]
            if denied:
                raise PermissionDenied(f"principal {self.id!r} may not read namespace(s) {denied}")
            return list(requested)
        if not self.read:
            raise PermissionDenied(f"principal {self.id!r} has no read scope")
        return sorted(self.read)

    def require_write(self, namespace: str) -> None:
        if ALL not in self.write and namespace not in self.write:
            raise PermissionDenied(f"principal {self.id!r} may not write namespace {namespace!r}")

    def require_purge(self, namespace: str) -> None:
        """Erasing needs `purge:<namespace>` and `write:<namespace>`."""
        self.require_write(namespace)
        if ALL not in self.purge and namespace not in self.purge:
            raise PermissionDenied(
                f"principal {self.id!r} may not erase (purge) in namespace {namespace!r}: that needs the scope "
                f"purge:{namespace} besides write:{namespace}; without it, forget retires memories instead"
            )

    def can_see_source(self, source: str) -> bool:
        return ALL in self.sources or source in self.sources
