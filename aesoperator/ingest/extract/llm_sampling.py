"""The LLM extractor over MCP sampling: the model of the MCP client that called the engine's server.

Each tool call of the engine's MCP server opens a `SamplingScope` (`serve/sampling_bridge.py`) that
carries how to ask the calling client's model, or why it cannot be asked (no sampling capability,
a protocol without server-to-client requests, no client at all). Extraction runs synchronously in
the tool's worker thread and finds the scope in a context variable, so concurrent calls from
different clients each use their own client's model, token budget and warnings.

`SamplingExtractor` is the engine's extractor for `extractor = "llm"` with
`llm_transport = "sampling"`. With a usable scope it is an `LlmExtractor` over that client, one per
tool call (the call is the unit of the token budget, as an ingest is over HTTP); otherwise the
default offline extractor runs and the reason is said once in the log and in the call's warnings.
Its signature follows which of the two runs, so the cache never hands one's results to the other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aesoperator.graph_schema.knowledge import EntityExtractor, ItemExtraction, TextItem
from aesoperator.ingest.extract.default import DefaultExtractor
from aesoperator.ingest.extract.llm import LlmExtractor
from aesoperator.ingest.extract.llm_client import SampleFn, SamplingChatClient

if TYPE_CHECKING:
    from aesoperator.config import Settings

log = logging.getLogger(__name__)

HOST_MODEL = "host"  # the model name in the signature when llm_model names no preference
NO_CLIENT = "no MCP client is calling (sampling is used when the engine serves MCP to a host that offers it)"
MAX_LOGGED_REASONS = 100


@dataclass
class SamplingScope:
    """One tool call's way to the client's model (`sample`), or why there is none (`unavailable`)."""

    sample: SampleFn | None
    unavailable: str = ""
    label: str = "MCP sampling"
    warnings: list[str] = field(default_factory=list)  # for the tool result, each said once
    notes: list[str] = field(default_factory=list)  # for the extraction stage, which clears them
    extractor: LlmExtractor | None = None

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning("%s", message)


_SCOPE: ContextVar[SamplingScope | None] = ContextVar("aesop_sampling_scope", default=None)
_logged_reasons: set[str] = set()
_logged_lock = threading.Lock()


@contextmanager
def sampling_scope(scope: SamplingScope) -> Iterator[SamplingScope]:
    """Make `scope` the current one for this context (and the worker threads it starts)."""
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def sampling_warnings() -> list[str]:
    """The warnings extraction gave in the current scope (none outside one)."""
    scope = _SCOPE.get()
    return list(scope.warnings) if scope is not None else []


def _log_reason_once(message: str) -> None:
    """A client without sampling calls again and again: its reason is logged once per process."""
    with _logged_lock:
        if message in _logged_reasons or len(_logged_reasons) >= MAX_LOGGED_REASONS:
            return
        _logged_reasons.add(message)
    log.warning("%s", message)


class SamplingExtractor:
    """`EntityExtractor` that asks the calling MCP client's model, or runs `fallback` without one."""

    name = "llm"

    def __init__(
        self, fallback: EntityExtractor, model: str = HOST_MODEL, token_budget: int = 200_000, batch_items: int = 8
    ) -> None:
        self.fallback = fallback
        self.model = model
        self.token_budget = token_budget
        self.batch_items = batch_items
        self._notes: list[str] = []  # outside any scope (an ingest from the CLI)
        self._fallback_noted = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SamplingExtractor:
        return cls(
            DefaultExtractor(use_model=True),
            settings.llm_model or HOST_MODEL,
            settings.llm_token_budget,
            settings.llm_batch_items,
        )

    @property
    def signature(self) -> str:
        scope = _SCOPE.get()
        if scope is None or scope.sample is None:
            return self.fallback.signature
        return self._llm(scope, scope.sample).signature

    @property
    def notes(self) -> list[str]:
        scope = _SCOPE.get()
        return scope.notes if scope is not None else self._notes

    def begin_run(self) -> None:
        scope = _SCOPE.get()
        if scope is not None and scope.extractor is not None:
            scope.extractor.begin_run()
        self._fallback_noted = False
        self.fallback.begin_run()

    def _llm(self, scope: SamplingScope, sample: SampleFn) -> LlmExtractor:
        if scope.extractor is None:
            client = SamplingChatClient(sample, scope.label)
            scope.extractor = LlmExtractor(client, self.model, self.token_budget, self.batch_items, "sampling")
        return scope.extractor

    def extract(self, items: Sequence[TextItem]) -> list[ItemExtraction]:
        scope = _SCOPE.get()
        if scope is None or scope.sample is None:
            return self._offline(items)
        llm = self._llm(scope, scope.sample)
        results = llm.extract(items)
        for note in llm.notes:
            scope.warn(note)
            scope.notes.append(note)
        llm.notes.clear()
        for result in results:
            if result.error is not None:
                scope.warn(f"not extracted through {scope.label}: {result.error}")
        return results

    def _offline(self, items: Sequence[TextItem]) -> list[ItemExtraction]:
        scope = _SCOPE.get()
        reason = scope.unavailable if scope is not None and scope.unavailable else NO_CLIENT
        message = f"llm extractor: {reason}; the default offline extractor ran instead"
        if scope is not None:
            if message not in scope.warnings:
                scope.warnings.append(message)
                scope.notes.append(message)
        elif not self._fallback_noted:
            self._fallback_noted = True
            self._notes.append(message)
        _log_reason_once(message)
        results = self.fallback.extract(items)
        fallback_notes = getattr(self.fallback, "notes", None)
        if isinstance(fallback_notes, list):
            self.notes.extend(fallback_notes)
            fallback_notes.clear()
        return results


__all__ = ["HOST_MODEL", "SamplingExtractor", "SamplingScope", "sampling_scope", "sampling_warnings"]
