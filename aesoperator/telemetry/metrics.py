"""Prometheus metrics of this process, in one registry that the metrics endpoint serves.

Counters and histograms are updated where things happen (a finished MCP call, an ingest batch);
what is cheaper to read than to track (index sizes, sync lag, queue depths) is read at scrape
time by collectors registered with `add_collector`. Labels are tool and source names only, whose
number is small and bounded; never principals, ids or content.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Latency buckets from a cached keyword lookup (sub-millisecond) to a cold multi-hop search.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CALLS = Counter(
    "aesop_tool_calls",
    "MCP tool calls and resource reads, by tool and decision.",
    ["tool", "decision"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "aesop_tool_errors", "Calls that ended in an error or were denied, by tool.", ["tool"], registry=REGISTRY
)
RATE_LIMITED = Counter(
    "aesop_rate_limited",
    "Calls and protocol requests refused by the rate limit, by tool (or protocol method).",
    ["tool"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "aesop_tool_call_duration_seconds",
    "Wall time of MCP calls, by tool (admission, the call and its audit record).",
    ["tool"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge("aesop_calls_in_flight", "MCP calls being handled now.", registry=REGISTRY)
INGEST_ITEMS = Counter(
    "aesop_ingest_items", "Source items written by ingest in this process, by source.", ["source"], registry=REGISTRY
)
INGEST_BATCHES = Counter(
    "aesop_ingest_batches", "Ingest batches written in this process, by source.", ["source"], registry=REGISTRY
)
INDEX_SYNCS = Counter(
    "aesop_index_syncs",
    "Derived-index syncs in this process, by index and how (incremental replay of the change log, or rebuild).",
    ["index", "how"],
    registry=REGISTRY,
)
BACKGROUND_EMBEDDED = Counter(
    "aesop_background_embedded",
    "Entities this process embedded in the background after a write (embed_writes = background).",
    registry=REGISTRY,
)

ERROR_DECISIONS = frozenset({"error", "deny"})
# Tool names come from callers: past this many distinct names, new ones are counted as "other",
# so a client sending made-up names cannot grow the label set without bound.
MAX_TOOL_LABELS = 200
OTHER_TOOL = "other"
_tool_labels: set[str] = set()


def tool_label(tool: str) -> str:
    if tool in _tool_labels:
        return tool
    if len(_tool_labels) >= MAX_TOOL_LABELS or len(tool) > 128:
        return OTHER_TOOL
    _tool_labels.add(tool)
    return tool


def observe_call(tool: str, decision: str, seconds: float) -> None:
    """Count one finished call and its latency."""
    tool = tool_label(tool)
    CALLS.labels(tool, decision).inc()
    LATENCY.labels(tool).observe(seconds)
    if decision in ERROR_DECISIONS:
        ERRORS.labels(tool).inc()
    elif decision == "rate_limited":
        RATE_LIMITED.labels(tool).inc()


def observe_rate_limited(method: str) -> None:
    """Count one protocol request (initialize, tools/list, ...) refused for its rate."""
    RATE_LIMITED.labels(tool_label(method)).inc()


def observe_ingest_batch(source: str, items: int) -> None:
    """Count one written ingest batch of `items` source items (rate() of the counter is items/s)."""
    INGEST_BATCHES.labels(source).inc()
    INGEST_ITEMS.labels(source).inc(items)


def add_collector(collector: Collector) -> None:
    REGISTRY.register(collector)


def remove_collector(collector: Collector) -> None:
    with contextlib.suppress(KeyError):  # not registered (already removed)
        REGISTRY.unregister(collector)
