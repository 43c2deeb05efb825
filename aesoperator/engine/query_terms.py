"""Turning free text into the terms the name channel looks up."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[\w][\w.\-/:@#]*[\w]|\w")


def name_candidates(text: str, max_words: int = 5, limit: int = 400) -> list[str]:
    """Every run of 1..max_words consecutive tokens, as typed and with trailing punctuation
    stripped, so that 'what did Alice Smith change in README.md?' can hit 'Alice Smith' and
    'README.md' by exact (case-insensitive) name."""
    tokens = _TOKEN.findall(text)
    grams: dict[str, None] = {}
    for size in range(1, max_words + 1):
        for start in range(0, len(tokens) - size + 1):
            gram = " ".join(tokens[start : start + size])
            if len(gram) >= 2:
                grams.setdefault(gram, None)
            if len(grams) >= limit:
                return list(grams)
    return list(grams)
