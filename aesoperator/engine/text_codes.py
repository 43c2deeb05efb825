"""Small integer codes for repeated strings (namespaces, types), so columns hold int32 codes
instead of a string object per row."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class TextCodes:
    """Strings numbered in the order first seen: `code_of` maps a string to its code, `text`
    a code back to its string."""

    def __init__(self) -> None:
        self.code_of: dict[str, int] = {}
        self.text: list[str] = []

    def code(self, text: str) -> int:
        """The code of `text`, given a new one when first seen."""
        code = self.code_of.get(text)
        if code is None:
            code = self.code_of[text] = len(self.text)
            self.text.append(text)
        return code

    def codes(self, texts: Iterable[str]) -> np.ndarray:
        """The int32 codes of those of `texts` already seen (one not seen matches nothing)."""
        known = [self.code_of[t] for t in texts if t in self.code_of]
        return np.asarray(known, dtype=np.int32)
