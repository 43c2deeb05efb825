"""`python -m benchmarks.soak`: a long run of mixed reads and writes against `aesop serve --http`.

1. Builds a graph of `--entities` entities (the load benchmark's `prepare`: the evaluation corpora,
   or this repository's sources without them), embedded and indexed, in a temporary data dir.
2. Issues one static token per client: read the graph, read and write its own agent memory and
   the memory graph.
3. Starts `aesop serve --http` (audit log on) on 127.0.0.1 in a child process.
4. Runs `--clients` MCP clients (own token and connection each, one process) for `--minutes`
   minutes. Each calls a weighted mix of search, recall, remember, get_entities, neighbors and the
   memory-server tools (workload.py), with `--think-ms` between its calls; every call must
   succeed. The server's RSS is sampled throughout; a progress bar shows the run.
5. Stops the server (SIGINT), runs `aesop audit verify`, and writes `soak-<UTC>.json`,
   `soak-latest.json`, `soak-latest.md` and `soak-latest.png` into `--out`.

Exits non-zero if any call failed or the audit log does not verify. Everything stays on
127.0.0.1, and the run ends by itself after `--minutes`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.soak import report
from benchmarks.soak.report import Sample
from benchmarks.soak.server import AesopServer, audit_verify
from benchmarks.soak.workload import ClientWorkload, scopes_of

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "aesoperator-soak/1"
STANDARD_MINUTES = 30
MEMORY_NAMESPACE = "memory-graph"  # `aesop serve`'s default for the memory-server tools
RSS_EVERY_S = 2.0
# `aesop serve` stopped by SIGINT shuts down cleanly and exits 130, as after Ctrl-C.
CLEAN_EXITS = (0, 130)
MAX_ERROR_SAMPLES = 20


class Run:
    """What the clients record while the run goes on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = 0.0
        self.samples: list[Sample] = []
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.rss: list[tuple[float, float]] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def failed(self, tool: str, what: str) -> None:
        self.errors[tool] += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(f"{tool} at {self.elapsed():.1f} s: {' '.join(what.split())[:300]}")


def result_text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def run_clients(
    url: str, tokens: list[str], queries: list[str], seconds: float, think_s: float, server: AesopServer
) -> Run:
    import anyio
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from benchmarks.load.__main__ import mcp_client

    run = Run(seconds)
    ready = 0
    all_ready = anyio.Event()
    go = anyio.Event()

    async def call(client: Any, work: ClientWorkload, tool: str, arguments: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            result = await client.call_tool(tool, arguments)
        except Exception as exc:
            run.failed(tool, f"{type(exc).__name__}: {exc}")
            return
        ms = (time.perf_counter() - started) * 1000
        if result.is_error:
            run.failed(tool, result_text(result))
            return
        run.samples.append(Sample(started - run.start, tool, ms))
        follow_up = work.absorb(tool, arguments, result.structured_content)
        if follow_up is not None:
            await call(client, work, *follow_up)

    async def client_task(i: int) -> None:
        nonlocal ready
        work = ClientWorkload(i, queries)
        async with mcp_client(url, tokens[i]) as client:
            warm = await client.call_tool("search", {"query": queries[i % len(queries)], "k": 5})  # not measured
            if warm.is_error:
                raise RuntimeError(f"client {i} could not search: {result_text(warm)}")
            ready += 1
            if ready == len(tokens):
                all_ready.set()
            await go.wait()
            deadline = run.start + seconds
            while time.perf_counter() < deadline:
                await call(client, work, *work.next_call())
                if think_s:
                    await anyio.sleep(think_s)

    progress = Progress(
        TextColumn("[bold]soak"),
        BarColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(stderr=True),
    )
    with progress:
        task = progress.add_task("soak", total=seconds, status="connecting")
        async with anyio.create_task_group() as tg:
            for i in range(len(tokens)):
                tg.start_soon(client_task, i)
            with anyio.fail_after(600):
                await all_ready.wait()
            run.start = time.perf_counter()
            go.set()
            while (elapsed := run.elapsed()) < seconds:
                rss = server.rss_mb()
                if rss is not None:
                    run.rss.append((elapsed, rss))
                status = f"{len(run.samples):,} calls, {sum(run.errors.values())} errors, server RSS {rss or 0:.0f} MB"
                progress.update(task, completed=min(elapsed, seconds), status=status)
                await anyio.sleep(min(RSS_EVERY_S, max(0.05, seconds - elapsed)))
            rss = server.rss_mb()
            if rss is not None:
                run.rss.append((run.elapsed(), rss))
            progress.update(task, completed=seconds, status="finishing the last calls")
    return run


def store_entities(data_dir: Path) -> int:
    from aesoperator.engine.stores.embedded import EmbeddedGraphStore

    with EmbeddedGraphStore(data_dir) as store:
        return store.stats().entities


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=STANDARD_MINUTES, help="length of the run (default 30)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent MCP clients (default 8)")
    parser.add_argument("--think-ms", type=float, default=20.0, help="pause between a client's calls (default 20)")
    parser.add_argument("--entities", type=int, default=2000, help="graph size (default 2000)")
    parser.add_argument("--window", type=float, default=None, help="seconds per latency window (default: run/30)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "evaldata", help="evaluation data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results folder")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary data dir")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 24 * 60:
        parser.error("--minutes must be between 0 and 1440")
    if not 1 <= args.clients <= 64:
        parser.error("--clients must be between 1 and 64")
    if args.think_ms < 0 or args.entities < 10:
        parser.error("--think-ms must be >= 0 and --entities at least 10")

    import anyio

    from aesoperator.security.tokens import TokenStore
    from benchmarks.load.__main__ import prepare

    seconds = args.minutes * 60
    window_s = args.window or max(1.0, round(seconds / 30, 1))
    started = datetime.now(UTC)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 1)
        clock = now

    with tempfile.TemporaryDirectory(prefix="aesop-soak-", dir=args.tmp) as tmp:
        work = Path(tmp)
        print(f"preparing {args.entities} entities …", file=sys.stderr, flush=True)
        data_dir, queries, setup = prepare(work, args.entities, args.data)
        phase("prepare_s")
        tokens_store = TokenStore.in_data_dir(data_dir)
        tokens = [
            tokens_store.add(f"soak-{i:02d}", scopes_of(i, MEMORY_NAMESPACE), rotate=True).token
            for i in range(args.clients)
        ]
        entities_before = store_entities(data_dir)
        server = AesopServer(data_dir, ROOT, work / "server.log")
        try:
            url = server.wait_ready()
            phase("server_start_s")
            print(f"aesop serve --http at {url}; {args.clients} clients for {args.minutes:g} min", file=sys.stderr)
            run = anyio.run(run_clients, url, tokens, queries, seconds, args.think_ms / 1000, server)
            phase("clients_s")
        finally:
            exit_code = server.stop()
        phase("server_stop_s")
        audit = audit_verify(data_dir, ROOT)
        phase("audit_verify_s")
        entities_after = store_entities(data_dir)
        server_log = server.log_tail(2000)

    calls = len(run.samples) + sum(run.errors.values())
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "started": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": load_at_start,
        },
        "config": {
            "minutes": args.minutes,
            "standard_minutes": STANDARD_MINUTES,
            "short_run": args.minutes < STANDARD_MINUTES,
            "clients": args.clients,
            "think_ms": args.think_ms,
            "entities": args.entities,
            "window_s": window_s,
            "transport": "streamable HTTP on 127.0.0.1, static bearer tokens, `aesop serve --http` (audit on)",
        },
        "setup": setup,
        "totals": {
            "calls": calls,
            "errors": sum(run.errors.values()),
            "calls_per_s": round(calls / seconds, 1),
            "per_tool": report.per_tool(run.samples, dict(run.errors)),
        },
        "errors": {"by_tool": dict(run.errors), "samples": run.error_samples},
        "windows": report.windows(run.samples, seconds, window_s),
        "drift": report.drift(run.samples, seconds),
        "rss": report.rss_summary(run.rss),
        "store": {"entities_before": entities_before, "entities_after": entities_after},
        "phases": phases,
        "server": {
            "exit_code": exit_code,
            "clean_stop": exit_code in CLEAN_EXITS,
            "log_tail": "" if exit_code in CLEAN_EXITS else server_log,
        },
        "audit": audit,
        "files": {"plot": "soak-latest.png", "json": f"soak-{stamp}.json"},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    (args.out / f"soak-{stamp}.json").write_text(text)
    (args.out / "soak-latest.json").write_text(text)
    report.plot(result, args.out / "soak-latest.png")
    (args.out / "soak-latest.md").write_text(report.markdown(result))
    ok = result["totals"]["errors"] == 0 and bool(audit.get("ok")) and exit_code in CLEAN_EXITS
    print(
        f"{calls:,} calls, {result['totals']['errors']} errors; server RSS {result['rss'].get('start_mb')} -> "
        f"{result['rss'].get('end_mb')} MB; audit {'verified' if audit.get('ok') else 'FAILED'}; "
        f"wrote {args.out / 'soak-latest.md'}",
        file=sys.stderr,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
