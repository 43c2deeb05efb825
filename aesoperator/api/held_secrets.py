"""Source definitions whose credentials are held in memory, as the API caller gave them."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import PrivateAttr

from aesoperator.ingest.sources import SourceDefinition


class HeldSecretsDefinition(SourceDefinition):
    """A source definition whose credentials are values held in memory (from the API caller),
    not environment variables; and whose kind may name any adapter module."""

    kind: str
    _held: dict[str, str] = PrivateAttr(default_factory=dict)

    def secret(self, purpose: str) -> str | None:
        if purpose in self._held:
            return self._held[purpose]
        return super().secret(purpose)

    def holding(self, secrets: Mapping[str, str]) -> HeldSecretsDefinition:
        self._held = {k: v for k, v in secrets.items() if v}
        return self
