"""Evidence recall within a token budget: the share of a question's gold evidence items whose text
appears in the packed context an agent receives at a budget of 500, 1,000, 2,000 and 4,000
tokens (cl100k), next to recall@k.

Each engine system answers with `ContextEngine.search(question, k=20, token_budget=B)` and its
`context_text()` — the text MCP `search` answers with. The memory-server baseline's
`search_nodes` entities go through the same packer (`fit_context`).

Two figures, side by side, so that neither stands alone:

- whole item: an item counts when its whole text, whitespace collapsed, is in the context (a
  passage the packer shortened or excerpted does not);
- evidence sentences: where the dataset names the sentences that are the evidence (SciFact's
  rationale sentences, HotpotQA's supporting facts), an item counts when every sentence of one of
  its evidence sets is in the context; an item without them (LoCoMo, MuSiQue, SciFact claims whose
  cited abstract has no rationale) counts only whole, as in the first figure.

Given each question's ranking, the items the dataset names evidence sentences for are also
reported apart, next to their own recall@10: on SciFact a third of the gold items are cited
abstracts without a rationale, which count only when all of a ~300-token abstract is shown, so the
second figure mixes how well the packer keeps evidence with how many whole abstracts fit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from statistics import mean, median
from typing import Any

from aesoperator.engine.packing import estimate_tokens, fit_context
from aesoperator.engine.results import SearchHit, SearchResult
from benchmarks.quality.datasets import Dataset, Question

BUDGETS = (500, 1000, 2000, 4000)


def normalise(text: str) -> str:
    return " ".join(text.split())


def gold_texts(ds: Dataset) -> dict[tuple[str | None, str], str]:
    """The text of every item by (conversation or None, key), as it would appear in a context."""
    if ds.kind == "documents":
        return {(None, d.key): normalise(d.text) for d in ds.docs}
    return {(t.conversation, t.key): normalise(t.text) for t in ds.turns}


def evidence_share(context: str, question: Question, texts: dict[tuple[str | None, str], str]) -> float:
    """The share of the question's gold items whose whole text is in `context`."""
    flat = normalise(context)
    found = [texts.get((question.scope, g), "\0") in flat for g in question.gold]
    return sum(found) / len(found) if found else 0.0


def sentence_share(context: str, question: Question, texts: dict[tuple[str | None, str], str]) -> float:
    """The share of the question's gold items whose evidence is in `context`: every sentence of
    one of its evidence sets when the dataset names them, else the whole text."""
    flat = normalise(context)

    def found(key: str) -> bool:
        sets = question.evidence.get(key)
        if not sets:
            return texts.get((question.scope, key), "\0") in flat
        return any(all(normalise(sentence) in flat for sentence in evidence) for evidence in sets)

    hits = [found(g) for g in question.gold]
    return sum(hits) / len(hits) if hits else 0.0


Row = tuple[Question, float, float]  # the question, its whole-item share, its evidence-sentence share


def summarise(rows: Sequence[Row]) -> dict[str, Any]:
    by_category: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for q, whole, sentences in rows:
        by_category[q.category].append((whole, sentences))
    return {
        "overall": mean(r[1] for r in rows) if rows else 0.0,
        "overall_sentences": mean(r[2] for r in rows) if rows else 0.0,
        "by_category": {
            c: {
                "n": len(v),
                "evidence_recall": mean(w for w, _ in v),
                "evidence_recall_sentences": mean(s for _, s in v),
            }
            for c, v in sorted(by_category.items())
        },
    }


def _row(context: str, q: Question, texts: dict[tuple[str | None, str], str]) -> Row:
    return q, evidence_share(context, q, texts), sentence_share(context, q, texts)


def named_items(context: str, question: Question, top10: set[str]) -> list[tuple[bool, bool]]:
    """For each gold item the dataset names evidence sentences for: (in the top 10, every
    sentence of one of its evidence sets in `context`)."""
    flat = normalise(context)
    return [
        (key in top10, any(all(normalise(sentence) in flat for sentence in evidence) for evidence in sets))
        for key, sets in question.evidence.items()
        if key in question.gold and sets
    ]


def measure_search(
    search: Callable[[Question, int], SearchResult],
    ds: Dataset,
    questions: Iterable[Question],
    count: Callable[[str], int],
    budgets: Sequence[int] = BUDGETS,
    progress: Callable[[], None] = lambda: None,
    rankings: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Evidence recall of one engine system at each budget, the tokens its contexts used, and how
    far the fast estimate (`estimate_tokens`) is from the real count on those contexts; with
    `rankings` (question id -> item keys, best first), the items with named evidence apart."""
    texts = gold_texts(ds)
    rows: dict[int, list[Row]] = defaultdict(list)
    used: dict[int, list[int]] = defaultdict(list)
    named: dict[int, list[tuple[bool, bool]]] = defaultdict(list)
    ratios: list[float] = []
    for q in questions:
        top10 = set((rankings or {}).get(q.qid, [])[:10])
        for budget in budgets:
            context = search(q, budget).context_text()
            tokens = count(context)
            if tokens > budget:
                raise AssertionError(f"context of {tokens} tokens over a budget of {budget} for {q.qid}")
            rows[budget].append(_row(context, q, texts))
            used[budget].append(tokens)
            if rankings is not None:
                named[budget] += named_items(context, q, top10)
            if tokens:
                ratios.append(estimate_tokens(context) / tokens)
        progress()
    by_budget: dict[str, Any] = {}
    for b in budgets:
        by_budget[str(b)] = {**summarise(rows[b]), "tokens_mean": mean(used[b]) if used[b] else 0}
        if named[b]:
            by_budget[str(b)]["named_items"] = {
                "n": len(named[b]),
                "recall@10": mean(float(top) for top, _ in named[b]),
                "evidence": mean(float(found) for _, found in named[b]),
            }
    return {"by_budget": by_budget, "estimate_over_cl100k": _spread(ratios)}


def measure_found(
    found: dict[str, list[dict[str, Any]]],
    ds: Dataset,
    questions: Iterable[Question],
    count: Callable[[str], int],
    budgets: Sequence[int] = BUDGETS,
) -> dict[str, Any]:
    """Evidence recall of the memory-server baseline: its `search_nodes` entities, best first as it
    listed them, packed by the engine's packer."""
    texts = gold_texts(ds)
    rows: dict[int, list[Row]] = defaultdict(list)
    used: dict[int, list[int]] = defaultdict(list)
    for q in questions:
        hits = [
            SearchHit(
                id=e["name"],
                type=e.get("entityType") or "entity",
                name=e["name"],
                text="\n".join(e.get("observations") or []) or e["name"],
                score=0.0,
                namespace="",
                source="",
            )
            for e in found.get(q.qid, [])
        ]
        for budget in budgets:
            context = fit_context(hits, [], budget, count_tokens=count).to_text()
            rows[budget].append(_row(context, q, texts))
            used[budget].append(count(context))
    return {
        "by_budget": {str(b): {**summarise(rows[b]), "tokens_mean": mean(used[b]) if used[b] else 0} for b in budgets}
    }


def _spread(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "mean": round(mean(ordered), 3),
        "median": round(median(ordered), 3),
        "p5": round(ordered[int(0.05 * (len(ordered) - 1))], 3),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
    }


def _budget_table(systems: dict[str, Any], budgets: list[str], figure: str, title: str) -> list[str]:
    lines = [
        title,
        "",
        "| system | recall@10 | " + " | ".join(f"evidence@{b}" for b in budgets) + " | tokens used @1000 | gap @1000 |",
        "|---" * (len(budgets) + 4) + "|",
    ]
    for system, res in systems.items():
        by_budget = res["evidence"]["by_budget"]
        r10 = res["overall"].get("recall@10", 0.0)
        cells = [f"{by_budget[b].get(figure, 0.0):.3f}" for b in budgets]
        at_1000 = by_budget.get("1000", {})
        gap = f"{at_1000.get(figure, 0.0) - r10:+.3f}" if at_1000 else "-"
        lines.append(
            f"| {system} | {r10:.3f} | " + " | ".join(cells) + f" | {at_1000.get('tokens_mean', 0):.0f} | {gap} |"
        )
    lines.append("")
    return lines


def _named_table(name: str, systems: dict[str, Any], budgets: list[str]) -> list[str]:
    """Evidence sentences of the items the dataset names them for, next to those items' recall@10."""
    measured = {
        s: r["evidence"]["by_budget"]
        for s, r in systems.items()
        if "named_items" in r["evidence"]["by_budget"].get(budgets[0], {})
    }
    if not measured:
        return []
    n = next(iter(measured.values()))[budgets[0]]["named_items"]["n"]
    lines = [
        f"Evidence recall within a token budget ({name}), only the {n} gold items the dataset names evidence"
        " sentences for: share whose sentences (one evidence set) are in the packed context, next to these"
        " items' own recall@10:",
        "",
        "| system | recall@10 of these | " + " | ".join(f"evidence@{b}" for b in budgets) + " | gap @1000 |",
        "|---" * (len(budgets) + 3) + "|",
    ]
    for system, by_budget in measured.items():
        r10 = by_budget[budgets[0]]["named_items"]["recall@10"]
        cells = [
            f"{by_budget[b]['named_items']['evidence']:.3f}" if "named_items" in by_budget[b] else "-" for b in budgets
        ]
        at_1000 = by_budget.get("1000", {}).get("named_items")
        gap = f"{at_1000['evidence'] - r10:+.3f}" if at_1000 else "-"
        lines.append(f"| {system} | {r10:.3f} | " + " | ".join(cells) + f" | {gap} |")
    lines.append("")
    return lines


def markdown(name: str, entry: dict[str, Any]) -> list[str]:
    """The evidence-recall tables of one dataset: per system, and per category at 1,000 tokens."""
    systems = {s: r for s, r in entry["systems"].items() if "evidence" in r}
    if not systems:
        return []
    budgets = list(next(iter(systems.values()))["evidence"]["by_budget"])
    lines = _budget_table(
        systems,
        budgets,
        "overall",
        f"Evidence recall within a token budget ({name}), whole item: share of gold items whose whole text is in"
        " the packed context (cl100k tokens), next to recall@10:",
    )
    if entry.get("sentence_evidence"):
        lines += _budget_table(
            systems,
            budgets,
            "overall_sentences",
            f"Evidence recall within a token budget ({name}), evidence sentences: share of gold items whose"
            " evidence sentences (every sentence of one of its evidence sets; the whole text for an item the"
            " dataset gives none for) are in the packed context, next to recall@10:",
        )
    lines += _named_table(name, systems, budgets)
    cats = sorted(
        {c for r in systems.values() for c in r["evidence"]["by_budget"].get("1000", {}).get("by_category", {})}
    )
    if len(cats) > 1:
        lines += [
            "evidence@1000 by category, whole item (recall@10 in brackets):",
            "",
            "| system | " + " | ".join(cats) + " |",
            "|---" * (len(cats) + 1) + "|",
        ]
        for system, res in systems.items():
            ev = res["evidence"]["by_budget"]["1000"]["by_category"]
            cells = [
                f"{ev.get(c, {}).get('evidence_recall', 0):.3f} ({res['by_category'].get(c, {}).get('recall@10', 0):.3f})"
                for c in cats
            ]
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
        lines.append("")
    ratio = next(
        (
            r["evidence"].get("estimate_over_cl100k")
            for r in systems.values()
            if r["evidence"].get("estimate_over_cl100k")
        ),
        None,
    )
    if ratio:
        lines += [
            f'The fast estimate (`token_counter = "estimate"`) over the cl100k count on these contexts: mean {ratio["mean"]},'
            f" median {ratio['median']}, 5th–95th percentile {ratio['p5']}–{ratio['p95']}.",
            "",
        ]
    return lines


__all__ = ["BUDGETS", "evidence_share", "gold_texts", "markdown", "measure_found", "measure_search", "named_items"]
