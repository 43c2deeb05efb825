"""The flood scenario: does one client over its rate limit slow everyone else down?

`run_scenario` measures a bystander (one MCP client with its own token, calling `search` at a
steady pace below the limit) twice against the same server: quietly, then while a flooding client
(one token, `--flood-clients` concurrent connections, calling `search` as fast as answers come
back and ignoring every retry-after) runs in a separate process. It reports the bystander's p50
and p95 in both phases and their ratio; the target is a ratio of at most 2.

`python -m benchmarks.load.flood --url URL --token T --clients 16 --seconds S --ready R --out O` is
that flooding process: it connects all its clients, writes the ready file, floods until the time
is up and writes its counts to the out file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET_RATIO = 2.0


# -- the flooding process ---------------------------------------------------------------------------
async def flood(url: str, token: str, clients: int, seconds: float, ready: Path) -> dict[str, Any]:
    """`clients` concurrent connections calling `search` as fast as answers come back until the
    time is up; a connection that is refused (its start-up requests count against the limit too)
    is tried again at once, as a flooder would."""
    import anyio

    from benchmarks.load.__main__ import mcp_client

    counts = {"ok": 0, "limited": 0, "refused_connections": 0, "errors": 0}
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            try:
                async with mcp_client(url, token) as client:
                    while time.perf_counter() < deadline:
                        result = await client.call_tool("search", {"query": "flood", "k": 5})
                        counts["limited" if result.is_error else "ok"] += 1
            except Exception as exc:
                text = repr(exc)
                counts["refused_connections" if "rate limited" in text else "errors"] += 1

    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(worker)
        ready.write_text("flooding")
    elapsed = time.perf_counter() - started
    return {**counts, "seconds": round(elapsed, 2), "answered_per_s": round(sum(counts.values()) / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load.flood")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import anyio

    result = anyio.run(flood, args.url, args.token, args.clients, args.seconds, args.ready)
    args.out.write_text(json.dumps(result))
    return 0


# -- the scenario -----------------------------------------------------------------------------------
async def bystander(url: str, token: str, seconds: float, interval: float, queries: list[str]) -> dict[str, Any]:
    """One client calling `search` every `interval` seconds for `seconds`; its latencies."""
    import anyio

    from benchmarks.load.__main__ import mcp_client, summarize

    latencies: list[float] = []
    failures: list[str] = []
    async with mcp_client(url, token) as client:
        await client.call_tool("search", {"query": "warm up", "k": 5})  # not measured
        deadline = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            result = await client.call_tool("search", {"query": queries[n % len(queries)], "k": 5})
            elapsed = time.perf_counter() - started
            if result.is_error:
                failures.append(" ".join(getattr(c, "text", "") for c in result.content)[:200])
            else:
                latencies.append(elapsed)
            n += 1
            await anyio.sleep(max(0.0, interval - elapsed))
    return {
        "calls": len(latencies),
        "failures": len(failures),
        "failure_samples": failures[:3],
        "latency_ms": summarize(latencies),
    }


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(pid: int | None, phase: Any) -> tuple[dict[str, Any], float | None]:
    """Run `phase()` and return its result and the server's CPU seconds meanwhile."""
    before = cpu_seconds(pid) if pid else None
    result = phase()
    after = cpu_seconds(pid) if pid else None
    return result, (round(after - before, 2) if before is not None and after is not None else None)


def run_scenario(
    url: str,
    bystander_token: str,
    flood_token: str,
    *,
    limit: str,
    clients: int,
    seconds: float,
    interval: float,
    queries: list[str],
    work: Path,
    root: Path,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Quiet phase, then flood phase, against the server at `url` (see the module docstring);
    with `server_pid`, also the server's CPU time in each phase."""
    import anyio

    quiet, quiet_cpu = _measured(
        server_pid, lambda: anyio.run(bystander, url, bystander_token, seconds, interval, queries)
    )
    ready, out = work / "flood-ready", work / "flood-out.json"
    ready.unlink(missing_ok=True)
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "benchmarks.load.flood", "--url", url, "--token", flood_token]
    # the flood outlasts the measured phase (2 s to settle, then `seconds`) and ends by itself
    command += ["--clients", str(clients), "--seconds", str(seconds + 3), "--ready", str(ready), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    log_path = work / "flood.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the flooding client did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.1)
            time.sleep(2.0)  # let the flood reach its steady state
            flooded, flood_cpu = _measured(
                server_pid, lambda: anyio.run(bystander, url, bystander_token, seconds, interval, queries)
            )
        finally:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    flood_counts = json.loads(out.read_text()) if out.exists() else None
    ratios = {}
    for stat in ("p50", "p95"):
        before = (quiet["latency_ms"] or {}).get(stat)
        during = (flooded["latency_ms"] or {}).get(stat)
        ratios[stat] = round(during / before, 2) if before and during else None
    within = all(r is not None and r <= TARGET_RATIO for r in ratios.values())
    return {
        "limit": limit,
        "flood_clients": clients,
        "seconds": seconds,
        "bystander_interval_s": interval,
        "quiet": quiet,
        "flooded": flooded,
        "flood": flood_counts,
        "server_cpu_s": {"quiet": quiet_cpu, "flooded": flood_cpu},
        "ratio": ratios,
        "target_ratio": TARGET_RATIO,
        "within_target": within,
    }


def markdown(result: dict[str, Any]) -> list[str]:
    quiet, flooded = result["quiet"]["latency_ms"] or {}, result["flooded"]["latency_ms"] or {}
    flood = result["flood"] or {}
    cpu = result.get("server_cpu_s") or {}
    return [
        "## Flood: does a client over its limit slow the others?",
        "",
        f"A bystander with its own token calls `search` every {result['bystander_interval_s'] * 1000:.0f} ms for "
        f"{result['seconds']:g} s, first alone, then while one token floods from a separate process with "
        f"{result['flood_clients']} concurrent connections, ignoring every retry-after (limit {result['limit']} "
        "per principal, audit log on).",
        "",
        "| bystander | calls | p50 ms | p95 ms |",
        "|---|---:|---:|---:|",
        f"| quiet | {result['quiet']['calls']} | {quiet.get('p50', '-')} | {quiet.get('p95', '-')} |",
        f"| during the flood | {result['flooded']['calls']} | {flooded.get('p50', '-')} | {flooded.get('p95', '-')} |",
        f"| ratio (target ≤ {result['target_ratio']:g}) | | {result['ratio']['p50']} | {result['ratio']['p95']} |",
        "",
        f"The flood was answered {flood.get('answered_per_s', '-')} times a second ({flood.get('ok', '-')} calls "
        f"within the limit, {flood.get('limited', '-')} calls and {flood.get('refused_connections', '-')} "
        f"connections refused, {flood.get('errors', '-')} errors); refusals are "
        "counted and written to the audit log in aggregate, once a second. "
        + ("Within the target." if result["within_target"] else "**Outside the target.**"),
        "",
        f"Server CPU time in each {result['seconds']:g} s phase: {cpu.get('quiet', '-')} s quiet, "
        f"{cpu.get('flooded', '-')} s during the flood. Clients and server share the machine: the flooding "
        "process itself takes CPU the server and the bystander would otherwise have.",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
