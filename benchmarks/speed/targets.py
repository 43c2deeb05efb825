"""Query latency targets of the speed suite, shared by the runner and the report."""

from __future__ import annotations

TARGET_P95_MS = 50.0
TARGET_P95_SIZE = 100_000
# p95 of all stages but the query embedding, by graph size; other sizes are shown against the 100k one.
QUERY_P95_TARGETS_MS = {100_000: 50.0, 1_000_000: 150.0}


def query_target_ms(size: int) -> tuple[float, bool]:
    """The p95 limit for a graph of `size` entities, and whether a target is set at that size."""
    if size in QUERY_P95_TARGETS_MS:
        return QUERY_P95_TARGETS_MS[size], True
    return TARGET_P95_MS, False
