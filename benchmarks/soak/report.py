"""Turning the soak's samples into numbers, a Markdown report and a plot.

- per tool: calls, errors and latency percentiles over the whole run;
- per window (`window_s` seconds of the run): p50 and p95 per tool, so drift shows as a trend;
- drift: p50 and p95 in the first third of the run against the last third;
- the server's RSS: first and last sample, maximum, growth and the least-squares slope.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Sample:
    at_s: float  # seconds since the measured run started
    tool: str
    ms: float


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    array = np.asarray(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "p99": round(float(np.percentile(array, 99)), 2),
        "max": round(float(array.max()), 2),
    }


def per_tool(samples: list[Sample], errors: dict[str, int]) -> dict[str, Any]:
    by_tool: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        by_tool[s.tool].append(s.ms)
    tools = sorted(set(by_tool) | set(errors))
    return {
        t: {"calls": len(by_tool[t]) + errors.get(t, 0), "errors": errors.get(t, 0), **(percentiles(by_tool[t]) or {})}
        for t in tools
    }


def windows(samples: list[Sample], seconds: float, window_s: float) -> list[dict[str, Any]]:
    count = max(1, int(np.ceil(seconds / window_s)))
    buckets: list[dict[str, list[float]]] = [defaultdict(list) for _ in range(count)]
    for s in samples:
        buckets[min(count - 1, int(s.at_s // window_s))][s.tool].append(s.ms)
    out = []
    for i, bucket in enumerate(buckets):
        stats = {tool: percentiles(values) for tool, values in sorted(bucket.items())}
        out.append(
            {
                "start_s": round(i * window_s, 1),
                "end_s": round(min(seconds, (i + 1) * window_s), 1),
                "calls": sum(len(v) for v in bucket.values()),
                "tools": {tool: {"n": st["n"], "p50": st["p50"], "p95": st["p95"]} for tool, st in stats.items() if st},
            }
        )
    return out


def drift(samples: list[Sample], seconds: float) -> dict[str, Any]:
    """p50/p95 per tool in the first third of the run and in the last third, and their ratios."""
    third = seconds / 3
    first: dict[str, list[float]] = defaultdict(list)
    last: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        if s.at_s < third:
            first[s.tool].append(s.ms)
        elif s.at_s >= seconds - third:
            last[s.tool].append(s.ms)
    out: dict[str, Any] = {}
    for tool in sorted(set(first) & set(last)):
        a, b = percentiles(first[tool]), percentiles(last[tool])
        assert a is not None and b is not None
        out[tool] = {
            "first_third": {"n": a["n"], "p50": a["p50"], "p95": a["p95"]},
            "last_third": {"n": b["n"], "p50": b["p50"], "p95": b["p95"]},
            "p50_ratio": round(b["p50"] / a["p50"], 2) if a["p50"] > 0 else None,
            "p95_ratio": round(b["p95"] / a["p95"], 2) if a["p95"] > 0 else None,
        }
    return out


def rss_summary(points: list[tuple[float, float]]) -> dict[str, Any]:
    """RSS samples (seconds, MB) of the server: growth and slope (MB per minute, least squares)."""
    if not points:
        return {"samples": []}
    times = np.asarray([p[0] for p in points])
    mb = np.asarray([p[1] for p in points])
    slope = float(np.polyfit(times / 60, mb, 1)[0]) if len(points) >= 3 and times[-1] > times[0] else None
    half = times >= times[-1] / 2
    late = float(np.polyfit(times[half] / 60, mb[half], 1)[0]) if half.sum() >= 3 and np.ptp(times[half]) > 0 else None
    return {
        "samples": [[round(t, 1), round(m, 1)] for t, m in points],
        "start_mb": round(float(mb[0]), 1),
        "end_mb": round(float(mb[-1]), 1),
        "max_mb": round(float(mb.max()), 1),
        "growth_mb": round(float(mb[-1] - mb[0]), 1),
        "slope_mb_per_min": None if slope is None else round(slope, 2),
        "second_half_slope_mb_per_min": None if late is None else round(late, 2),
    }


# -- output -------------------------------------------------------------------------------------------
def _shown(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def markdown(result: dict[str, Any]) -> str:
    config, totals, rss, audit = result["config"], result["totals"], result["rss"], result["audit"]
    minutes = config["minutes"]
    lines = ["# Soak: mixed reads and writes over authenticated streamable HTTP (loopback)", ""]
    if config["short_run"]:
        lines += [
            f"**Short run: {minutes:g} minutes, not the standard {config['standard_minutes']}.** "
            f"The full run is `python -m benchmarks.soak` ({config['standard_minutes']} minutes).",
            "",
        ]
    lines += [
        f"Run {result['started']} on {result['machine']['cpus']} CPUs ({result['machine']['platform']}), "
        f"Python {result['machine']['python']}; load average at the start "
        f"{', '.join(str(x) for x in result['machine']['load_average_at_start'])} (1, 5, 15 min).",
        "",
        f"`aesop serve --http` (audit log on, static bearer tokens) on 127.0.0.1 with "
        f"{result['setup']['entities']:,} entities ({result['setup']['source']}); {config['clients']} MCP clients, "
        f"each with its own token and connection, calling a weighted mix of tools for {minutes:g} minutes "
        f"({config['think_ms']} ms pause between a client's calls).",
        "",
        f"**Errors: {totals['errors']}** of {totals['calls']:,} calls ({totals['calls_per_s']} calls/s). "
        f"**Server RSS:** {_shown(rss.get('start_mb'), ' MB')} at the start, {_shown(rss.get('end_mb'), ' MB')} "
        f"at the end (max {_shown(rss.get('max_mb'), ' MB')}, growth {_shown(rss.get('growth_mb'), ' MB')}; "
        f"slope {_shown(rss.get('slope_mb_per_min'), ' MB/min')} over the run, "
        f"{_shown(rss.get('second_half_slope_mb_per_min'), ' MB/min')} over its second half). "
        f"The store grew from {result['store']['entities_before']:,} to {result['store']['entities_after']:,} "
        "entities (memories and memory-graph items), which accounts for part of any growth.",
        "",
        f"**Audit log:** `aesop audit verify` {'verified' if audit.get('ok') else 'FAILED'} "
        f"{audit.get('records', '?'):,} records" + ("" if audit.get("ok") else f" ({audit.get('problem')})") + ".",
        "",
        "| tool | calls | errors | p50 ms | p95 ms | p99 ms | p95 first third | p95 last third | drift (p95 ratio) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, st in totals["per_tool"].items():
        d = result["drift"].get(tool, {})
        lines.append(
            f"| {tool} | {st['calls']} | {st['errors']} | {st.get('p50', '-')} | {st.get('p95', '-')} | "
            f"{st.get('p99', '-')} | {d.get('first_third', {}).get('p95', '-')} | "
            f"{d.get('last_third', {}).get('p95', '-')} | {d.get('p95_ratio', '-')} |"
        )
    if result["errors"]["samples"]:
        lines += ["", "Errors (first few):", ""]
        lines += [f"- `{e}`" for e in result["errors"]["samples"]]
    lines += [
        "",
        f"Latency per tool over time, in windows of {config['window_s']:g} s, and the server's RSS: "
        f"`{result['files']['plot']}`. Clients and server share the machine, so the numbers are a floor "
        "for the server, not its ceiling.",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    tools = sorted({t for w in result["windows"] for t in w["tools"]})
    colors = plt.get_cmap("tab20")
    for i, tool in enumerate(tools):
        xs = [(w["start_s"] + w["end_s"]) / 120 for w in result["windows"] if tool in w["tools"]]
        ys = [w["tools"][tool]["p95"] for w in result["windows"] if tool in w["tools"]]
        top.plot(xs, ys, marker=".", label=tool, color=colors(i % 20))
    top.set_ylabel("p95 latency per window (ms)")
    top.set_yscale("log")
    top.legend(fontsize=7, ncol=3)
    top.set_title(f"Soak: {result['config']['clients']} clients, {result['config']['minutes']:g} min")
    samples = result["rss"].get("samples", [])
    bottom.plot([s[0] / 60 for s in samples], [s[1] for s in samples], color="black")
    bottom.set_ylabel("server RSS (MB)")
    bottom.set_xlabel("minutes into the run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
