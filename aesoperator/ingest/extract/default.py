"""The default extractor: the deterministic rules plus the spaCy NER model, offline.

Overlapping findings are settled by priority (an exact rule — e-mail, URL, handle, issue, date,
acronym — wins over the model, the model over the spans facts name, and those over the
code-identifier rule); relations are the acronym definitions the rules found, the facts prose
states (`fact_rules`: "I moved to Berlin", "Kim works at Acme") and co-occurrence within a
sentence (the first person, which only facts use, takes no part in it).
"""

from __future__ import annotations

from collections.abc import Sequence

from aesoperator.graph_schema.facts import SELF_KEY
from aesoperator.graph_schema.knowledge import PROSE, ItemExtraction, Mention, MentionRelation, TextItem
from aesoperator.ingest.extract.fact_rules import FACT_RULE, fact_matches, fact_relations
from aesoperator.ingest.extract.ner import MIN_LATIN_SHARE, SpacyNer, latin_share
from aesoperator.ingest.extract.rules import RULES, rule_mentions
from aesoperator.ingest.extract.sentences import co_occurrences

RULES_VERSION = "2"
MAX_ITEM_CHARS = 200_000
MAX_CONTROL_SHARE = 0.05


def binary_reason(text: str) -> str | None:
    """Why `text` is not text (NUL bytes, many control characters), or None."""
    sample = text[:4000]
    if "\x00" in sample:
        return "holds NUL bytes: binary data, not text"
    controls = sum(1 for c in sample if ord(c) < 32 and c not in "\n\r\t\f")
    if sample and controls / len(sample) > MAX_CONTROL_SHARE:
        return f"{controls} of its first {len(sample)} characters are control characters: binary data, not text"
    return None


def _priority(m: Mention) -> int:
    if m.extractor.startswith(f"{RULES}:code"):
        return 0
    if m.extractor == FACT_RULE:  # a fact's subject or object: the model's reading of the span wins
        return 1
    if m.extractor.startswith(RULES):
        return 3
    return 2


def _inside(inner: Mention, outer: Mention) -> bool:
    """Whether `inner` lies within `outer` and is shorter."""
    return outer.start <= inner.start and inner.end <= outer.end and inner.end - inner.start < outer.end - outer.start


def settle_overlaps(mentions: Sequence[Mention]) -> list[Mention]:
    """Keep, among overlapping mentions, the one of highest priority (then the longest)."""
    ranked = sorted(mentions, key=lambda m: (-_priority(m), -(m.end - m.start), m.start))
    kept: list[Mention] = []
    for m in ranked:
        if all(m.end <= k.start or m.start >= k.end for k in kept):
            kept.append(m)
    return sorted(kept, key=lambda m: (m.start, m.end))


class DefaultExtractor:
    """Rules + NER (or rules alone with `use_model=False`)."""

    def __init__(self, use_model: bool = True, ner: SpacyNer | None = None) -> None:
        self.use_model = use_model
        self.ner = ner or (SpacyNer() if use_model else None)
        self.name = "default" if use_model else "rules"
        self.notes: list[str] = []

    @property
    def signature(self) -> str:
        model = self.ner.signature if self.ner is not None else "none"
        return f"{self.name}:rules-{RULES_VERSION}:{model}"

    def begin_run(self) -> None:
        """Nothing to reset: the model has no per-ingest limit."""

    def extract(self, items: Sequence[TextItem]) -> list[ItemExtraction]:
        results = [ItemExtraction(item.id) for item in items]
        model_inputs: list[int] = []
        for pos, item in enumerate(items):
            reason = binary_reason(item.text)
            if reason is not None:
                results[pos].error = reason
                continue
            if len(item.text) > MAX_ITEM_CHARS:
                self.notes.append(f"{item.id}: text capped at {MAX_ITEM_CHARS} of {len(item.text)} characters")
            if self.ner is not None and item.kind == PROSE:
                if latin_share(item.text) >= MIN_LATIN_SHARE:
                    model_inputs.append(pos)
                else:
                    self.notes.append(f"{item.id}: mostly in a script the NER model was not trained on; rules only")
        found = self.ner.mentions([items[p].text for p in model_inputs]) if self.ner is not None else []
        from_model = dict(zip(model_inputs, found, strict=True))
        for pos, item in enumerate(items):
            if results[pos].error is not None:
                continue
            text = item.text[:MAX_ITEM_CHARS]
            ruled, definitions = rule_mentions(text, item.kind)
            model = [m for m in from_model.get(pos, []) if m.type != "DateTime" or any(c.isdigit() for c in m.text)]
            facts = fact_matches(text) if item.kind == PROSE else []
            stated = [m for f in facts for m in (f.subject, f.object)]
            # the model's reading of a fact's span wins, unless it runs past the words ("Alice: Bob")
            model = [m for m in model if not any(_inside(f, m) for f in stated)]
            mentions = settle_overlaps(ruled + stated + model)
            index = {(m.start, m.end): i for i, m in enumerate(mentions)}
            relations: list[MentionRelation] = []
            for d in definitions:
                short, long = index.get((d.short.start, d.short.end)), index.get((d.long.start, d.long.end))
                if short is not None and long is not None:
                    relations.append(MentionRelation(short, long, "ACRONYM_OF", d.start, d.end, f"{RULES}:acronym"))
            relations += [
                r
                for r in co_occurrences(text, mentions, self.name)
                if mentions[r.src].key != SELF_KEY and mentions[r.dst].key != SELF_KEY
            ]
            relations += fact_relations(facts, mentions)
            results[pos].mentions = mentions
            results[pos].relations = relations
        return results
