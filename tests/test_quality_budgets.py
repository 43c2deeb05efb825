"""Evidence recall within a budget (`benchmarks/quality/budgets.py`): the whole-item and
evidence-sentence figures, and the items with named evidence reported apart next to their own
recall@10, on a small dataset whose packed contexts are written by hand."""

from __future__ import annotations

from aesoperator.engine.results import SearchHit, SearchResult
from benchmarks.quality import budgets
from benchmarks.quality.datasets import Dataset, Doc, Question

RATIONALE = "Aspirin lowered the risk by a third."
DOCS = [
    Doc("a", "Trial A", f"Background of trial A. {RATIONALE} Methods were standard."),
    Doc("b", "Review B", "A review that cites trials without saying what they found."),
    Doc("c", "Trial C", "Unrelated findings on sleep."),
]
QUESTION = Question(
    "q1", "Does aspirin lower the risk?", gold={"a", "b"}, category="claim", evidence={"a": [[RATIONALE]]}
)


def _result(*texts: str) -> SearchResult:
    hits = [
        SearchHit(id=f"doc:{i}", type="Document", name=f"d{i}", text=t, score=1.0, namespace="default", source="t")
        for i, t in enumerate(texts)
    ]
    return SearchResult(query=QUESTION.text, hits=hits, token_budget=10_000)


def test_items_with_named_evidence_are_reported_apart_with_their_own_recall() -> None:
    dataset = Dataset("tiny", "documents", docs=DOCS, questions=[QUESTION])
    contexts = {
        # a small budget shows the rationale sentence of a only; a large one shows a and b whole
        100: _result(f"… {RATIONALE} …"),
        1000: _result(DOCS[0].text, DOCS[1].text),
    }
    found = budgets.measure_search(
        lambda q, budget: contexts[budget],
        dataset,
        [QUESTION],
        lambda text: len(text.split()),
        budgets=(100, 1000),
        rankings={"q1": ["c", "a", "b"]},
    )
    small, large = found["by_budget"]["100"], found["by_budget"]["1000"]
    assert small["overall"] == 0.0  # neither item whole
    assert small["overall_sentences"] == 0.5  # a by its rationale; b has none, so only whole
    assert large["overall"] == 1.0 and large["overall_sentences"] == 1.0
    assert small["named_items"] == {"n": 1, "recall@10": 1.0, "evidence": 1.0}
    entry = {"systems": {"engine": {"overall": {"recall@10": 1.0}, "by_category": {}, "evidence": found}}}
    text = "\n".join(budgets.markdown("tiny", entry))
    assert "only the 1 gold items the dataset names evidence sentences for" in text
    assert "| engine | 1.000 | 1.000 | 1.000 | +0.000 |" in text


def test_without_rankings_nothing_is_reported_apart() -> None:
    dataset = Dataset("tiny", "documents", docs=DOCS, questions=[QUESTION])
    found = budgets.measure_search(
        lambda q, budget: _result(DOCS[0].text), dataset, [QUESTION], lambda text: 1, budgets=(100,)
    )
    assert "named_items" not in found["by_budget"]["100"]
    entry = {"systems": {"engine": {"overall": {"recall@10": 1.0}, "by_category": {}, "evidence": found}}}
    assert not any("names evidence sentences for" in line for line in budgets.markdown("tiny", entry))


def test_a_gold_item_outside_the_top_ten_lowers_the_named_recall() -> None:
    assert budgets.named_items(RATIONALE, QUESTION, top10={"b"}) == [(False, True)]
    assert budgets.named_items("nothing relevant", QUESTION, top10={"a"}) == [(True, False)]
