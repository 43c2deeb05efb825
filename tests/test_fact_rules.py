"""Fact rules: the common ways people state memory facts, found deterministically, and nothing
where a sentence only looks like one; the extractor's first person becomes the item's speaker."""

from __future__ import annotations

import pytest

from aesoperator.graph_schema.facts import SELF_KEY, canonical_predicate, is_single_valued
from aesoperator.graph_schema.knowledge import KnowledgeBatch
from aesoperator.graph_schema.models import Entity
from aesoperator.ingest.extract.default import DefaultExtractor
from aesoperator.ingest.extract.fact_rules import fact_matches
from aesoperator.ingest.extract.stage import KnowledgeExtractionStage

SELF = "I"

FOUND: list[tuple[str, list[tuple[str, str, str]]]] = [
    ("I live in Paris.", [(SELF, "LIVES_IN", "Paris")]),
    ("I just moved to Berlin last month.", [(SELF, "LIVES_IN", "Berlin")]),
    ("I've relocated to New York City.", [(SELF, "LIVES_IN", "New York City")]),
    ("I'm based in London these days.", [(SELF, "LIVES_IN", "London")]),
    ("Alice lives in Rio de Janeiro with her cat.", [("Alice", "LIVES_IN", "Rio de Janeiro")]),
    ("Yesterday Kim moved to Lisbon.", [("Kim", "LIVES_IN", "Lisbon")]),
    ("My home is in Toronto.", [(SELF, "LIVES_IN", "Toronto")]),
    ("I work at Google as a data scientist.", [(SELF, "WORKS_AT", "Google"), (SELF, "HAS_ROLE", "data scientist")]),
    ("I joined Stripe in March.", [(SELF, "WORKS_AT", "Stripe")]),
    ("I started a new job at Acme Corp.", [(SELF, "WORKS_AT", "Acme Corp")]),
    ("Tom works for the BBC.", [("Tom", "WORKS_AT", "BBC")]),
    ("Dana is the CTO of Initech.", [("Dana", "HAS_ROLE", "CTO"), ("Dana", "WORKS_AT", "Initech")]),
    (
        "Sam is a nurse at St Mary's Hospital.",
        [("Sam", "HAS_ROLE", "nurse"), ("Sam", "WORKS_AT", "St Mary's Hospital")],
    ),
    ("I'm now a senior engineer.", [(SELF, "HAS_ROLE", "senior engineer")]),
    ("My role is tech lead on the payments team.", [(SELF, "HAS_ROLE", "tech lead")]),
    ("I was promoted to engineering manager.", [(SELF, "HAS_ROLE", "engineering manager")]),
    ("Alice became the team lead.", [("Alice", "HAS_ROLE", "team lead")]),
    ("The status of the migration is blocked.", [("migration", "HAS_STATUS", "blocked")]),
    ("The migration's status is done now.", [("migration", "HAS_STATUS", "done")]),
    ("Project Apollo status: on hold", [("Project Apollo", "HAS_STATUS", "on hold")]),
    ("My status is away.", [(SELF, "HAS_STATUS", "away")]),
    ("Priya is the owner of the billing service.", [("billing service", "OWNED_BY", "Priya")]),
    ("The billing service is now owned by Marco.", [("billing service", "OWNED_BY", "Marco")]),
    ("Ownership of the search cluster moved to Lena.", [("search cluster", "OWNED_BY", "Lena")]),
    ("Kim owns the deploy pipeline.", [("deploy pipeline", "OWNED_BY", "Kim")]),
    ("Postgres is now on version 16.2.", [("Postgres", "HAS_VERSION", "16.2")]),
    ("The version of the API gateway is 2.4.1.", [("API gateway", "HAS_VERSION", "2.4.1")]),
    ("We upgraded Postgres to 17.0 yesterday.", [("Postgres", "HAS_VERSION", "17.0")]),
    ("Hi! I moved to Oslo. Then Ana joined Spotify.", [(SELF, "LIVES_IN", "Oslo"), ("Ana", "WORKS_AT", "Spotify")]),
]

NOTHING = [
    "We moved to Berlin.",  # who "we" are is not known
    "My sister moved to Rome.",  # not the speaker
    "Paris is the capital of France.",
    "Kim is a friend of Tom.",
    "I love hiking in the mountains.",
    "I think it is on hold.",
    "I moved to a new apartment.",  # no place named
    "It was a great day at the beach.",
]


def _readable(text: str) -> list[tuple[str, str, str]]:
    return [
        (SELF if f.subject.key == SELF_KEY else f.subject.text, f.predicate, f.object.text) for f in fact_matches(text)
    ]


@pytest.mark.parametrize(("text", "expected"), FOUND)
def test_rules_find_the_stated_facts(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert _readable(text) == expected
    for fact in fact_matches(text):  # spans point at the words, evidence is the sentence
        assert text[fact.object.start : fact.object.end] == fact.object.text
        assert fact.start <= fact.subject.start and fact.object.end <= fact.end


@pytest.mark.parametrize("text", NOTHING)
def test_rules_stay_quiet_on_lookalikes(text: str) -> None:
    assert _readable(text) == []


def test_vocabulary_says_which_predicates_hold_one_value() -> None:
    assert is_single_valued("LIVES_IN") and is_single_valued("WORKS_FOR")  # an alias of WORKS_AT
    assert not is_single_valued("VISITED") and not is_single_valued("MENTIONS")
    assert canonical_predicate("EMPLOYED_BY") == "WORKS_AT"


def test_extractor_turns_first_person_into_the_speaker(tmp_path: object) -> None:
    """Through the real extraction stage (rules only): "I" becomes the speaker's Person entity, the
    fact links it to the place, and the episode does not MENTION its own speaker."""
    from pathlib import Path

    from aesoperator.engine.stores.embedded import EmbeddedGraphStore

    store = EmbeddedGraphStore(Path(str(tmp_path)) / "data")
    try:
        stage = KnowledgeExtractionStage(store, DefaultExtractor(use_model=False))
        spoken = Entity(
            id="ep1",
            type="Episode",
            name="turn",
            text="Alice: I moved to Berlin.",
            properties={"agent_id": "bot", "metadata": {"speaker": "Alice"}},
            namespace="agent:bot",
        )
        unspoken = Entity(id="ep2", type="Episode", name="turn", text="I moved to Oslo.", namespace="agent:bot")
        batch: KnowledgeBatch = stage.process([spoken, unspoken])
        people = {e.id: e for e in batch.entities if e.type == "Person"}
        facts = [r for r in batch.relations["ep1"] if r.type == "LIVES_IN"]
        assert len(facts) == 1 and people[facts[0].src].name == "Alice"
        assert not any(r.type == "MENTIONS" and r.dst == facts[0].src for r in batch.relations["ep1"])
        assert [r for r in batch.relations["ep2"] if r.type == "LIVES_IN"] == []  # nobody to be "I"
    finally:
        store.close()


def test_llm_answers_give_the_same_facts() -> None:
    """The LLM extractor's answer: "I" becomes the first person; its WORKS_FOR is a memory fact, the
    vocabulary's WORKS_AT (memory stores it under that name; ingest keeps the model's name)."""
    from aesoperator.ingest.extract.llm_schema import LlmEntity, LlmItem, LlmRelation, to_extraction

    text = "Since May I work for Globex in Austin."
    answer = LlmItem(
        id="ep",
        entities=[LlmEntity(name="I", type="person"), LlmEntity(name="Globex", type="company")],
        relations=[LlmRelation(source="I", target="Globex", type="works for", evidence=text)],
    )
    found = to_extraction("ep", text, answer, "llm:test")
    me, globex = found.mentions
    assert (me.key, text[me.start : me.end]) == (SELF_KEY, "I") and globex.type == "Organization"
    assert [(r.src, r.dst, r.type) for r in found.relations] == [(0, 1, "WORKS_FOR")]
    assert canonical_predicate("WORKS_FOR") == "WORKS_AT" and is_single_valued("WORKS_FOR")
