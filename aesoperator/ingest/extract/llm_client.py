"""Chat completion clients for the LLM extractor: the OpenAI-compatible HTTP API, and MCP
sampling (the host's model, when the engine runs as an MCP server for a host that offers it).

Both return the answer text and the tokens it cost, and raise `SourceError` with a message that
names the endpoint and what went wrong (down, timed out, rate limited past the retries, refused).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from aesoperator.errors import SourceError

MAX_BACKOFF_S = 30.0


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    text: str
    tokens: int  # 0 when the endpoint does not say (MCP sampling): the caller estimates
    refusal: str | None = None
    model: str = ""  # the model that answered, when the endpoint names it


class ChatClient(Protocol):
    @property
    def label(self) -> str: ...

    def complete(self, system: str, user: str, schema: dict[str, Any], max_tokens: int) -> ChatAnswer: ...


class OpenAIChatClient:
    """POST {base_url}/chat/completions with a JSON-schema response format; retries 429 and 5xx
    (honouring Retry-After) and timeouts, with exponential backoff."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url:
            raise SourceError(
                "the LLM extractor needs llm_base_url (an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1)"
            )
        if not model:
            raise SourceError("the LLM extractor needs llm_model (the model name the API serves)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self.sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers)

    @property
    def label(self) -> str:
        return f"{self.base_url} ({self.model})"

    def complete(self, system: str, user: str, schema: dict[str, Any], max_tokens: int) -> ChatAnswer:
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "response_format": {"type": "json_schema", "json_schema": schema},
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.post(url, json=body)
            except httpx.TimeoutException:
                last = f"no answer within {self._http.timeout.read}s"
            except httpx.HTTPError as exc:
                last = f"cannot reach it ({type(exc).__name__}: {exc})"
            else:
                if response.status_code == 200:
                    return self._answer(response)
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in (408, 409, 429) and response.status_code < 500:
                    break
                retry_after = response.headers.get("retry-after")
                if retry_after and attempt < self.max_retries:
                    self.sleep(
                        min(float(retry_after) if retry_after.replace(".", "").isdigit() else 1.0, MAX_BACKOFF_S)
                    )
                    continue
            if attempt < self.max_retries:
                self.sleep(min(0.5 * 2**attempt, MAX_BACKOFF_S))
        raise SourceError(f"LLM endpoint {self.label} failed after {self.max_retries + 1} attempts: {last}")

    def _answer(self, response: httpx.Response) -> ChatAnswer:
        try:
            data = response.json()
            message = data["choices"][0]["message"]
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SourceError(f"LLM endpoint {self.label} answered in an unknown shape: {exc}") from None
        tokens = int(usage.get("total_tokens") or 0)
        if message.get("refusal"):
            return ChatAnswer("", tokens, refusal=str(message["refusal"]))
        return ChatAnswer(str(message.get("content") or ""), tokens)

    def close(self) -> None:
        self._http.close()


SampleFn = Callable[[str, str, int], ChatAnswer]
# A whole answer fenced as a Markdown code block: models asked for JSON in the prompt often do that.
_FENCED = re.compile(r"\A\s*```[a-zA-Z]*\s*\n(.*?)\n\s*```\s*\Z", re.DOTALL)


class SamplingChatClient:
    """MCP sampling: `sample(system, user, max_tokens) -> ChatAnswer` asks the connected host's
    model (`aesoperator.serve.sampling_bridge` wires it to the client session's `create_message`).
    The schema goes into the prompt, since sampling has no response-format parameter, and an answer
    fenced as a code block is unwrapped."""

    def __init__(self, sample: SampleFn, label: str = "MCP sampling") -> None:
        self._sample = sample
        self._label = label

    @property
    def label(self) -> str:
        return self._label

    def complete(self, system: str, user: str, schema: dict[str, Any], max_tokens: int) -> ChatAnswer:
        prompt = f"{system}\nThe JSON schema of the answer:\n{json.dumps(schema['schema'])}"
        try:
            answer = self._sample(prompt, user, max_tokens)
        except SourceError:
            raise
        except Exception as exc:  # the host refused or the session closed
            raise SourceError(f"{self._label} failed: {type(exc).__name__}: {exc}") from None
        fenced = _FENCED.match(answer.text)
        return ChatAnswer(fenced.group(1), answer.tokens, answer.refusal, answer.model) if fenced else answer


def estimate_tokens(texts: Sequence[str]) -> int:
    """A cautious token estimate (4 characters a token) for budgeting before a call."""
    return sum(len(t) for t in texts) // 4 + 1
