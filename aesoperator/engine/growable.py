"""A numpy column that grows by amortised doubling, for indexes kept in step with the store."""

from __future__ import annotations

from typing import Any

import numpy as np


class GrowableColumn:
    """A growable numpy column (amortised doubling)."""

    def __init__(self, dtype: Any, values: np.ndarray | None = None) -> None:
        data = np.zeros(1024, dtype=dtype) if values is None else np.asarray(values, dtype=dtype)
        self.data = data if values is None else np.concatenate([data, np.zeros(1024, dtype=dtype)])
        self.size = 0 if values is None else len(values)

    def append(self, value: Any) -> None:
        if self.size == len(self.data):
            self.data = np.concatenate([self.data, np.zeros(len(self.data), dtype=self.data.dtype)])
        self.data[self.size] = value
        self.size += 1

    def extend(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self.data):
            grown = np.zeros(max(end, 2 * len(self.data)), dtype=self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = values
        self.size = end

    def view(self) -> np.ndarray:
        return self.data[: self.size]
