"""Sentence spans without a model, and the co-occurrence relations they give."""

from __future__ import annotations

import re
from collections.abc import Sequence

from aesoperator.graph_schema.knowledge import Mention, MentionRelation

CO_OCCURS = "CO_OCCURS_WITH"
MAX_MENTIONS_PER_SENTENCE = 12
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(\[])|\n\s*\n|\n(?=\s*(?:[-*#>]|\d+\.)\s)")
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|etc|vs|Dr|Mr|Mrs|Ms|Prof|St|Inc|Ltd|Fig|al|No)\.$")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence: split after . ! ? before a capital or digit, at blank lines
    and before list items; common abbreviations (e.g., Dr., et al.) do not end a sentence."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if _ABBREVIATION.search(text, max(start, m.start() - 6), m.start()):
            continue
        if text[start : m.start()].strip():
            spans.append((start, m.start()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def co_occurrences(text: str, mentions: Sequence[Mention], extractor: str) -> list[MentionRelation]:
    """CO_OCCURS_WITH between the distinct entities (key and type) mentioned in one sentence,
    with the sentence as evidence; the first mention of each entity in the sentence stands for it."""
    order = sorted(range(len(mentions)), key=lambda i: mentions[i].start)
    out: list[MentionRelation] = []
    pos = 0
    for start, end in sentence_spans(text):
        firsts: dict[tuple[str, str], int] = {}
        while pos < len(order) and mentions[order[pos]].start < end:
            i = order[pos]
            if mentions[i].start >= start:
                firsts.setdefault((mentions[i].type, mentions[i].key), i)
            pos += 1
        members = sorted(firsts.values())[:MAX_MENTIONS_PER_SENTENCE]
        for a_pos, a in enumerate(members):
            for b in members[a_pos + 1 :]:
                out.append(MentionRelation(a, b, CO_OCCURS, start, end, extractor, 0.5))
    return out
