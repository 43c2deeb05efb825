"""Which vectors a search may return, as FAISS reads it: a bitmap over int64 labels.

A search that must leave out every id with a given prefix (the engine's extracted entities, whose
vectors sit among those of the items that mention them) used to fetch eight times more neighbours
and drop them afterwards, which could still come up short. Leaving them out inside the scan asks
for exactly k, and always gets k when there are k others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np


@dataclass
class LabelFilter:
    """The labels a search may return: `allowed[label]`, and the same as a FAISS selector."""

    allowed: np.ndarray  # bool by label; labels at or past its end are not allowed
    _bits: np.ndarray = field(init=False, repr=False)
    selector: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # FAISS reads the bitmap by pointer: it lives as long as this filter.
        self._bits = np.packbits(self.allowed, bitorder="little")
        self.selector = faiss.IDSelectorBitmap(len(self.allowed), faiss.swig_ptr(self._bits))

    def allows(self, labels: np.ndarray) -> np.ndarray:
        """Whether each of `labels` (all below the end of `allowed`) may be returned."""
        return self.allowed[labels]

    def params(self, nprobe: int | None = None) -> Any:
        """Search parameters that apply the filter (an IVF index also needs its `nprobe` here:
        the parameters replace the index's own)."""
        params: Any = faiss.SearchParameters() if nprobe is None else faiss.SearchParametersIVF()
        params.sel = self.selector
        if nprobe is not None:
            params.nprobe = nprobe
        return params


__all__ = ["LabelFilter"]
