"""The optional LLM extractor: one structured-output call per batch of items, validated against a
schema, bounded by a token budget per ingest.

Results are cached by content hash by the extraction stage (the signature names the model and
the prompt version), so re-ingesting costs nothing. When the budget is spent the extractor stops
cleanly: the remaining items are reported as not extracted (quarantined with that reason, retried
by the next ingest) and a note says how much was spent.

The same extractor runs over MCP sampling (`transport="sampling"`, see `llm_sampling.py`): its
signature and the extractor named on each mention then say so, with the model the host reports.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from aesoperator.errors import SourceError
from aesoperator.graph_schema.knowledge import ItemExtraction, TextItem
from aesoperator.ingest.extract.default import binary_reason
from aesoperator.ingest.extract.llm_client import ChatClient, OpenAIChatClient, estimate_tokens
from aesoperator.ingest.extract.llm_schema import (
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    LlmAnswer,
    response_schema,
    to_extraction,
)
from aesoperator.ingest.extract.sentences import co_occurrences

if TYPE_CHECKING:
    from aesoperator.config import Settings

MAX_ITEM_CHARS = 8_000
ANSWER_TOKENS = 2_000


class LlmExtractor:
    def __init__(
        self,
        client: ChatClient,
        model: str,
        token_budget: int,
        batch_items: int = 8,
        transport: Literal["http", "sampling"] = "http",
    ) -> None:
        self.client = client
        self.model = model
        self.transport = transport
        self.token_budget = token_budget
        self.batch_items = batch_items
        self.tokens_spent = 0
        self.calls = 0
        self.notes: list[str] = []
        self._budget_noted = False

    name = "llm"

    @property
    def signature(self) -> str:
        if self.transport == "sampling":
            return f"llm:sampling:{self.model}:prompt-{PROMPT_VERSION}"
        return f"llm:{self.model}:prompt-{PROMPT_VERSION}"

    def provenance(self, answered_by: str) -> str:
        """The extractor named on mentions and relations: the transport and the model that answered."""
        if self.transport == "sampling":
            return f"llm:sampling:{answered_by or self.model}"
        return f"llm:{self.model}"

    @classmethod
    def from_settings(cls, settings: Settings) -> LlmExtractor:
        client = OpenAIChatClient(
            settings.llm_base_url,
            settings.llm_model,
            api_key=os.environ.get(settings.llm_api_key_env) or None,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )
        return cls(client, settings.llm_model, settings.llm_token_budget, settings.llm_batch_items)

    def begin_run(self) -> None:
        self.tokens_spent = 0
        self._budget_noted = False

    def extract(self, items: Sequence[TextItem]) -> list[ItemExtraction]:
        out: list[ItemExtraction] = []
        for start in range(0, len(items), self.batch_items):
            out.extend(self._batch(items[start : start + self.batch_items]))
        return out

    def _batch(self, items: Sequence[TextItem]) -> list[ItemExtraction]:
        results = {i.id: ItemExtraction(i.id) for i in items}
        readable = []
        for item in items:
            reason = binary_reason(item.text)
            if reason is not None:
                results[item.id].error = reason
            else:
                readable.append(item)
        if not readable:
            return list(results.values())
        payload = json.dumps([{"id": i.id, "text": i.text[:MAX_ITEM_CHARS]} for i in readable], ensure_ascii=False)
        needed = estimate_tokens([SYSTEM_PROMPT, payload]) + ANSWER_TOKENS
        if self.tokens_spent + needed > self.token_budget:
            message = (
                f"LLM token budget spent ({self.tokens_spent} of {self.token_budget} tokens used): "
                "not extracted, retried by the next ingest"
            )
            if not self._budget_noted:
                self.notes.append(f"llm extractor stopped: token budget of {self.token_budget} spent")
                self._budget_noted = True
            for item in readable:
                results[item.id].error = message
            return list(results.values())
        try:
            answer, answered_by = self._ask(payload)
        except SourceError as exc:
            for item in readable:
                results[item.id].error = str(exc)
            return list(results.values())
        by_id = {a.id: a for a in answer.items}
        for item in readable:
            got = by_id.get(item.id)
            if got is None:
                results[item.id].error = f"the LLM answer has no entry for item {item.id!r}"
                continue
            extraction = to_extraction(item.id, item.text, got, self.provenance(answered_by))
            extraction.relations += co_occurrences(item.text, extraction.mentions, "llm")
            results[item.id] = extraction
        return list(results.values())

    def _ask(self, payload: str) -> tuple[LlmAnswer, str]:
        """One call (the answer and the model that gave it); a malformed answer is asked again
        once, then reported."""
        problem = ""
        for _ in range(2):
            answer = self.client.complete(SYSTEM_PROMPT, payload, response_schema(), ANSWER_TOKENS)
            self.calls += 1
            self.tokens_spent += answer.tokens or estimate_tokens([SYSTEM_PROMPT, payload, answer.text])
            if answer.refusal is not None:
                raise SourceError(f"the model at {self.client.label} refused: {answer.refusal[:200]}")
            try:
                return LlmAnswer.model_validate_json(answer.text), answer.model
            except ValidationError as exc:
                problem = f"{exc.errors()[0].get('msg', 'invalid')} in {answer.text[:120]!r}"
        raise SourceError(
            f"the model at {self.client.label} answered with JSON that does not fit the schema: {problem}"
        )
