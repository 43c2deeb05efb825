"""The LLM extractor against a local server that replays recorded chat-completion answers
(structured, malformed, refused, rate limited, failing, slow), through the real ingest pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aesoperator.ingest.documents import DocumentInput
from aesoperator.ingest.pipeline import quarantined
from tests.llm_replay import ReplayState, llm_replay_server

DOCS = [
    DocumentInput(title="Kim", text="Kim Lee works for Acme Bakery in Lisbon. The bakery opened in 2019."),
    DocumentInput(title="Oven", text="Kim Lee maintains the Oven Controller firmware."),
]


@pytest.fixture
def replay() -> Iterator[tuple[str, ReplayState]]:
    with llm_replay_server() as server:
        yield server


def llm_engine(make_engine: Callable[..., Any], url: str, **overrides: Any) -> Any:
    settings: dict[str, Any] = {
        "extractor": "llm",
        "llm_base_url": url,
        "llm_model": "gpt-4o-mini",
        "llm_max_retries": 2,
        "llm_timeout_s": 5.0,
    }
    return make_engine(**{**settings, **overrides})


def test_llm_answer_becomes_entities_and_typed_relations(
    make_engine: Callable[..., Any], replay: tuple[str, ReplayState]
) -> None:
    url, state = replay
    engine = llm_engine(make_engine, url)
    report = engine.add_documents(DOCS, source="llmdocs")
    assert report.knowledge_items == 2 and len(state.requests) == 1
    body = state.requests[0]["body"]
    assert body["model"] == "gpt-4o-mini" and body["response_format"]["type"] == "json_schema"
    assert "Kim Lee works for Acme Bakery" in body["messages"][1]["content"]
    names = {e.name: e.type for e in engine.entities()}
    assert names["Kim Lee"] == "Person" and names["Acme Bakery"] == "Organization" and names["Lisbon"] == "Place"
    assert names["Oven Controller"] == "Product"  # the answer's "system" mapped onto the vocabulary
    assert "Atlantis" not in names  # named by the model, absent from the text: not kept
    profile = engine.entity("Kim Lee")
    works = [r for r in profile.relations if r.type == "WORKS_FOR"]
    assert works and works[0].other_name == "Acme Bakery" and "works for" in works[0].evidence
    assert not any(r.type == "LOCATED_IN" for r in profile.relations + engine.entity("Lisbon").relations)
    # re-ingest and the same text under another source cost nothing: the cache answers
    engine.add_documents(DOCS, source="llmdocs")
    again = engine.add_documents(DOCS, source="llmdocs2")
    assert again.knowledge_items_cached == 2 and len(state.requests) == 1


@pytest.mark.parametrize(
    ("answers", "complaint"),
    [
        (["malformed", "malformed"], "does not fit the schema"),
        (["refusal"], "refused"),
        (["server_error"] * 3, "HTTP 500"),
    ],
)
def test_bad_answers_quarantine_the_items_and_the_next_run_retries(
    make_engine: Callable[..., Any], replay: tuple[str, ReplayState], answers: list[str], complaint: str
) -> None:
    url, state = replay
    engine = llm_engine(make_engine, url)
    state.queue.extend(answers)
    report = engine.add_documents(DOCS, source="llmdocs")
    assert report.records_changed == 2 and report.quarantined == 2
    reasons = [reason for _, reason, _ in quarantined(engine.store.source_items("llmdocs"))]
    assert len(reasons) == 2 and all(complaint in r and "the item itself is stored" in r for r in reasons)
    assert len(engine.get_entities(["llmdocs:doc:Kim", "llmdocs:doc:Oven"])) == 2
    retry = engine.add_documents(DOCS, source="llmdocs")
    assert retry.records_changed == 2 and retry.quarantined == 0
    assert quarantined(engine.store.source_items("llmdocs")) == []
    assert "Kim Lee" in {e.name for e in engine.entities()}


def test_rate_limit_is_retried_after_the_servers_delay(
    make_engine: Callable[..., Any], replay: tuple[str, ReplayState]
) -> None:
    url, state = replay
    engine = llm_engine(make_engine, url)
    state.queue.append("rate_limited")
    report = engine.add_documents(DOCS, source="llmdocs")
    assert report.quarantined == 0 and len(state.requests) == 2


def test_slow_or_absent_endpoint_is_reported(make_engine: Callable[..., Any], replay: tuple[str, ReplayState]) -> None:
    url, state = replay
    state.queue.append("timeout")
    slow = llm_engine(make_engine, url, llm_timeout_s=0.5, llm_max_retries=0)
    report = slow.add_documents(DOCS, source="llmdocs")
    reasons = [r for _, r, _ in quarantined(slow.store.source_items("llmdocs"))]
    assert report.quarantined == 2 and all("no answer within" in r for r in reasons)
    down = llm_engine(make_engine, "http://127.0.0.1:9/v1", llm_max_retries=0, data_dir=slow.settings.data_dir / "x")
    report = down.add_documents(DOCS, source="llmdocs")
    reasons = [r for _, r, _ in quarantined(down.store.source_items("llmdocs"))]
    assert report.quarantined == 2 and all("cannot reach" in r for r in reasons)
    assert any("llm extractor" in n for n in report.knowledge_notes) or reasons


def test_token_budget_stops_cleanly_and_says_so(
    make_engine: Callable[..., Any], replay: tuple[str, ReplayState]
) -> None:
    url, state = replay
    engine = llm_engine(make_engine, url, llm_token_budget=2_500, llm_batch_items=1)
    report = engine.add_documents(DOCS, source="llmdocs")
    assert len(state.requests) == 1
    assert any("token budget of 2500 spent" in n for n in report.knowledge_notes)
    reasons = [r for _, r, _ in quarantined(engine.store.source_items("llmdocs"))]
    assert len(reasons) == 1 and "budget spent" in reasons[0]
    retry = engine.add_documents(DOCS, source="llmdocs")  # a new ingest, a new budget
    assert retry.records_changed == 1 and len(state.requests) == 2
    assert quarantined(engine.store.source_items("llmdocs")) == []


def test_missing_settings_are_named(make_engine: Callable[..., Any]) -> None:
    from aesoperator.errors import SourceError

    engine = make_engine(extractor="llm", llm_base_url="", llm_model="m")
    with pytest.raises(SourceError, match="llm_base_url"):
        _ = engine.knowledge
