"""Per-call overhead of observability: MCP tool calls through the engine's server (in-memory MCP
transport, so the network does not hide the difference) with tracing off and on.

    python -m benchmarks.observability [--calls 300] [--out benchmarks/results]

Modes, measured on the same engine and data, interleaved in rounds so machine load hits each alike:
- `off`: no OTEL_* variables (the default): spans are no-ops; metrics and the request id still run.
- `on`: tracing on with the SDK's batch processor exporting to an in-process exporter that drops
  the spans (the cost of making and queueing spans, without a collector's network time).
Tools: `sources` (a cheap call: the overhead is most visible) and `search` (a typical call).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from tqdm import tqdm

from aesoperator import ContextEngine
from aesoperator.serve.server import build_server
from aesoperator.telemetry import tracing

ROUNDS = 5
CALLS = {"sources": {}, "search": {"query": "which compiler did the team review", "k": 5}}


class DroppingExporter(SpanExporter):
    """Accepts spans and throws them away (counts them, to show they were made)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _engine(data: Path) -> ContextEngine:
    docs = data.parent / "docs"
    docs.mkdir(exist_ok=True)
    for i in range(200):
        (docs / f"note{i}.md").write_text(
            f"# Note {i}\nThe team reviewed compiler design {i % 17} with Grace Hopper in week {i % 52}.\n"
        )
    engine = ContextEngine.open(data_dir=data)
    engine.ingest_path(docs, name="docs")
    return engine


async def _timed_calls(server: Any, tool: str, n: int) -> list[float]:
    times = []
    async with Client(server) as client:
        await client.call_tool(tool, CALLS[tool])  # warm
        for _ in range(n):
            t0 = time.perf_counter()
            result = await client.call_tool(tool, CALLS[tool])
            times.append((time.perf_counter() - t0) * 1000)
            assert not result.is_error
    return times


def _set_mode(mode: str, exporter: DroppingExporter) -> None:
    if mode == "on":  # the batch processor, as an OTLP setup has it
        tracing.configure_tracing(exporter, batch=True)
    else:
        tracing.shutdown_tracing()


def _span_cost_ns(exporter: DroppingExporter, n: int = 20_000) -> dict[str, float]:
    """Nanoseconds per `with span(...)` block: the cost every instrumented place pays."""
    costs = {}
    for mode in ("off", "on"):
        _set_mode(mode, exporter)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            with tracing.span("bench", {"aesop.n": 1}):
                pass
        costs[mode] = round((time.perf_counter_ns() - t0) / n, 1)
    tracing.shutdown_tracing()
    return costs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per tool, mode and round")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        engine = _engine(data)
        # no audit log: its fsync per call would bury the difference being measured
        server = build_server(engine, None, warm=False)
        exporter = DroppingExporter()
        samples: dict[tuple[str, str], list[float]] = {}
        jobs = [(r, tool, mode) for r in range(ROUNDS) for tool in CALLS for mode in ("off", "on")]
        for _, tool, mode in tqdm(jobs, desc="rounds"):
            _set_mode(mode, exporter)
            samples.setdefault((tool, mode), []).extend(anyio.run(_timed_calls, server, tool, args.calls))
        tracing.shutdown_tracing()
        engine.close()
    span_ns = _span_cost_ns(exporter)
    rows = []
    for tool in CALLS:
        off, on = samples[(tool, "off")], samples[(tool, "on")]
        p50_off, p50_on = statistics.median(off), statistics.median(on)
        rows.append(
            {
                "tool": tool,
                "calls_per_mode": len(off),
                "p50_ms_off": round(p50_off, 3),
                "p50_ms_on": round(p50_on, 3),
                "mean_ms_off": round(statistics.fmean(off), 3),
                "mean_ms_on": round(statistics.fmean(on), 3),
                "p50_overhead_ms": round(p50_on - p50_off, 3),
            }
        )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {
        "command": "python -m benchmarks.observability --calls " + str(args.calls),
        "commit": commit,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "spans_exported": exporter.spans,
        "span_block_ns": span_ns,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "observability-latest.json").write_text(json.dumps(report, indent=1))
    lines = [
        f"# Observability overhead per MCP call ({report['time']}, commit {commit})",
        "",
        f"`{report['command']}`; in-memory MCP transport, no audit log; {exporter.spans} spans exported (dropped).",
        "",
        f"One `with span(...)` block: {span_ns['off']} ns with tracing off, {span_ns['on']} ns with it on.",
        "",
        "| tool | calls per mode | p50 ms, tracing off | p50 ms, tracing on | p50 overhead ms | mean ms off | mean ms on |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['tool']} | {r['calls_per_mode']} | {r['p50_ms_off']} | {r['p50_ms_on']} | "
            f"{r['p50_overhead_ms']} | {r['mean_ms_off']} | {r['mean_ms_on']} |"
        )
    (args.out / "observability-latest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
