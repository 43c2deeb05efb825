"""Progress bars for notebook cells.

`NotebookProgress` is a `ProgressReporter` (what `ingest_source`, `ingest_path`, `add_documents`
and `embed_missing` accept) drawn with tqdm; `progress_bar(iterable)` wraps a loop of your own.
The bars are text on stderr: Jupyter redraws them in place while the cell runs, and a notebook
executed without a browser (nbclient, `jupyter nbconvert --execute`) keeps their final state.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.std import tqdm

T = TypeVar("T")


def _bar(total: int | None, description: str) -> Any:
    return tqdm(total=total, desc=description, unit="item", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)


class NotebookProgress:
    """A `ProgressReporter` shown as a tqdm bar; one bar per started stage."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, description: str, total: int | None) -> None:
        self.finish()
        self._bar = _bar(total, description)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_bar(iterable: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
    """Iterate `iterable` with a progress bar (`total` defaults to its length when it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = _bar(total, description)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
