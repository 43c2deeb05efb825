"""`python -m benchmarks.load`: calls/s and latency of `search` over authenticated HTTP on loopback.

1. Builds a graph of `--entities` entities from the evaluation corpora (or, without them, from
   this repository's source files), embeds it and builds the vector index.
2. Issues one static token per client (`read:default tool:search`).
3. For each limiter setting (off, then `--limit` per principal) starts the server in a child
   process on 127.0.0.1 and, for each client count, runs that many concurrent MCP clients, each
   with its own token and connection, calling `search` (k=5) with real questions until
   `--calls` calls were made or `--seconds` passed. A rate-limited client waits the retry-after it
   was given before calling again, as a well-behaved client would.
4. The flood scenario (`flood.py`): a bystander's latency alone and while another token floods
   the server from a separate process, ignoring its retry-afters; the target is at most 2x.
5. Writes `results/load-<UTC timestamp>.json`, `results/load-latest.json` and `load-latest.md`.

Everything stays on 127.0.0.1 and every loop is bounded in calls and time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "aesoperator-load/1"
SCOPES = ["read:default", "tool:search"]
FALLBACK_QUERIES = [
    "How are bearer tokens verified?",
    "audit log hash chain",
    "token bucket rate limit",
    "hybrid search with graph expansion",
    "How does ingestion skip unchanged files?",
    "Neo4j store schema and indexes",
    "memory episodes for an agent",
    "what is a namespace",
]


# -- data -----------------------------------------------------------------------------------------
def prepare(work: Path, entities: int, evaldata: Path) -> tuple[Path, list[str], dict[str, Any]]:
    """A data dir with `entities` entities, embedded and indexed, and the questions to ask."""
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    data_dir = work / "data"
    started = time.perf_counter()
    engine = ContextEngine.open(settings=Settings(data_dir=data_dir))
    try:
        if (evaldata / "hotpotqa").is_dir():
            from aesoperator.engine.stores.base import WriteBatch
            from benchmarks import datagen

            corpus = datagen.load_corpus(evaldata)
            written = 0
            for ents, rels in datagen.batches(datagen.GraphStream(corpus).items(entities), 1000):
                engine.store.write(WriteBatch(entities=ents, relations=rels))
                written += len(ents)
            queries = [q.text for q in datagen.load_queries(evaldata)]
            source = f"evaluation corpora ({evaldata})"
        else:
            engine.ingest_path(ROOT / "aesoperator", name="code", namespace="default", embed=False)
            written = engine.stats().entities
            queries = list(FALLBACK_QUERIES)
            source = "this repository's aesoperator/ sources (evaluation corpora not found)"
        embed_started = time.perf_counter()
        embedded = engine.embed_missing()
        engine.rebuild_index()
        embed_seconds = time.perf_counter() - embed_started
        stats = engine.stats()
    finally:
        engine.close()
    setup = {
        "source": source,
        "entities": stats.entities,
        "relations": stats.relations,
        "vectors": stats.vectors,
        "written": written,
        "embedded": embedded,
        "embed_and_index_seconds": round(embed_seconds, 1),
        "setup_seconds": round(time.perf_counter() - started, 1),
    }
    return data_dir, queries, setup


def issue_tokens(data_dir: Path, count: int) -> list[str]:
    from aesoperator.security.tokens import TokenStore

    store = TokenStore.in_data_dir(data_dir)
    return [store.add(f"client-{i:02d}", SCOPES, rotate=True).token for i in range(count)]


# -- the server process ---------------------------------------------------------------------------
class ServerProcess:
    """`python -m benchmarks.load.serve` in a child process, stopped with SIGINT."""

    def __init__(self, data_dir: Path, limit: str | None, work: Path) -> None:
        self.ready = work / f"ready-{limit or 'off'}".replace("/", "_").replace(":", "_")
        self.ready.unlink(missing_ok=True)
        self.log_path = work / (self.ready.name + ".log")
        command = [sys.executable, "-m", "benchmarks.load.serve", "--data-dir", str(data_dir)]
        command += ["--ready-file", str(self.ready)] + (["--limit", limit] if limit else [])
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.exists():
                return self.ready.read_text().strip()
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the server did not start (see {self.log_path}):\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


# -- the clients ----------------------------------------------------------------------------------
@asynccontextmanager
async def mcp_client(url: str, token: str) -> AsyncIterator[Any]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


_RETRY_TEXT = re.compile(r"retry after ([0-9.]+)")


def retry_after(result: Any) -> float | None:
    """The retry-after of a rate-limited tool result (from its `_meta`, else its text)."""
    meta = json.dumps(result.meta or {}, default=str)
    found = re.search(r'"retry_after":\s*([0-9.eE+-]+)', meta)
    if found:
        return float(found.group(1))
    text = " ".join(getattr(c, "text", "") for c in result.content)
    match = _RETRY_TEXT.search(text)
    return float(match.group(1)) if match and "rate limited" in text else None


def summarize(values: list[float]) -> dict[str, float] | None:
    import numpy as np

    if not values:
        return None
    ms = np.asarray(values) * 1000
    return {
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p95": round(float(np.percentile(ms, 95)), 2),
        "mean": round(float(ms.mean()), 2),
        "max": round(float(ms.max()), 2),
    }


async def run_level(
    url: str, tokens: list[str], clients: int, max_calls: int, seconds: float, queries: list[str]
) -> dict[str, Any]:
    import anyio

    counter = itertools.count()
    ok: list[float] = []
    limited: list[float] = []
    errors: list[str] = []
    connected = 0
    all_connected = anyio.Event()
    go = anyio.Event()
    clock: dict[str, float] = {}

    async def worker(i: int) -> None:
        nonlocal connected
        async with mcp_client(url, tokens[i]) as client:
            await client.call_tool("search", {"query": "warm up", "k": 5})  # not measured
            connected += 1
            if connected == clients:
                all_connected.set()
            await go.wait()
            while True:
                n = next(counter)
                if n >= max_calls or time.perf_counter() >= clock["deadline"]:
                    return
                started = time.perf_counter()
                try:
                    result = await client.call_tool("search", {"query": queries[n % len(queries)], "k": 5})
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                elapsed = time.perf_counter() - started
                if not result.is_error:
                    ok.append(elapsed)
                    continue
                wait = retry_after(result)
                if wait is None:
                    errors.append(" ".join(getattr(c, "text", "") for c in result.content)[:200])
                    continue
                limited.append(elapsed)
                await anyio.sleep(max(0.0, min(wait, clock["deadline"] - time.perf_counter())))

    async with anyio.create_task_group() as tg:
        for i in range(clients):
            tg.start_soon(worker, i)
        with anyio.fail_after(120):
            await all_connected.wait()
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + seconds
        go.set()
    elapsed = time.perf_counter() - clock["start"]
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "calls_ok": len(ok),
        "rate_limited": len(limited),
        "errors": len(errors),
        "error_samples": errors[:3],
        "calls_per_s": round(len(ok) / elapsed, 1),
        "answered_per_s": round((len(ok) + len(limited)) / elapsed, 1),
        "latency_ms": summarize(ok),
        "rate_limited_latency_ms": summarize(limited),
    }


# -- report ---------------------------------------------------------------------------------------
def markdown(result: dict[str, Any]) -> str:
    setup, config = result["setup"], result["config"]
    lines = [
        "# Load: `search` over authenticated streamable HTTP (loopback)",
        "",
        f"Run {result['started']} on {result['machine']['cpus']} CPUs ({result['machine']['platform']}), "
        f"Python {result['machine']['python']}; load average at the start "
        f"{', '.join(str(x) for x in result['machine']['load_average_at_start'])} (1, 5, 15 min).",
        "",
        f"Graph: {setup['entities']:,} entities, {setup['relations']:,} relations, {setup['vectors']:,} vectors "
        f"from {setup['source']}. Each client has its own static token and connection and calls `search` "
        f"(k=5) with real questions; at most {config['calls']} calls or {config['seconds']} s per row. "
        f"The server (one process, audit log on) and the clients (one process) share the machine.",
        "",
        "| rate limit | clients | calls/s | p50 ms | p95 ms | ok | rate-limited | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        latency = run["latency_ms"] or {}
        lines.append(
            f"| {run['limit'] or 'off'} | {run['clients']} | {run['calls_per_s']} | {latency.get('p50', '-')} | "
            f"{latency.get('p95', '-')} | {run['calls_ok']} | {run['rate_limited']} | {run['errors']} |"
        )
    lines += [
        "",
        "calls/s counts successful calls. With the limit on, every client is its own principal with its own "
        f"bucket ({config['limit']}); a refused call is answered at once with a retry-after, which the client "
        "waits before calling again, so successful calls/s approach clients × rate when the server has room.",
        "",
        f"Audit log after the run: {result['audit']['records']:,} records, chain "
        f"{'verified' if result['audit']['ok'] else 'BROKEN: ' + str(result['audit']['problem'])}.",
        "",
    ]
    if result.get("flood"):
        from benchmarks.load import flood

        lines += flood.markdown(result["flood"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="1,8,32", help="concurrent client counts (default 1,8,32)")
    parser.add_argument("--calls", type=int, default=600, help="calls per row at most (default 600)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per row at most (default 10)")
    parser.add_argument("--limit", default="2/s:2", help="per-principal limit of the 'on' runs (default 2/s:2)")
    parser.add_argument("--entities", type=int, default=2000, help="graph size (default 2000)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "evaldata", help="evaluation data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results folder")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary data dir")
    parser.add_argument("--smoke", action="store_true", help="a quick check: 300 entities, 1 and 4 clients, 3 s")
    parser.add_argument("--flood", action=argparse.BooleanOptionalAction, default=True, help="run the flood scenario")
    parser.add_argument("--flood-only", action="store_true", help="only the flood scenario")
    parser.add_argument("--flood-seconds", type=float, default=10.0, help="seconds per flood phase (default 10)")
    parser.add_argument("--flood-clients", type=int, default=16, help="connections of the flooding token (16)")
    parser.add_argument("--flood-limit", default="5/s:5", help="per-principal limit in the flood (default 5/s:5)")
    parser.add_argument(
        "--bystander-interval", type=float, default=0.25, help="seconds between the bystander's calls (0.25)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.calls, args.seconds, args.entities = "1,4", 60, 3.0, 300
        args.flood_seconds = min(args.flood_seconds, 3.0)
    levels = [int(c) for c in args.clients.split(",") if c.strip()]
    if not levels or min(levels) < 1 or max(levels) > 256:
        parser.error("--clients: counts between 1 and 256")
    if args.calls < 1 or not 0 < args.seconds <= 600:
        parser.error("--calls must be positive and --seconds between 0 and 600")

    import anyio

    from aesoperator.security.audit import AuditLog
    from aesoperator.security.ratelimit import Limit

    Limit.parse(args.limit)  # fail early on a bad --limit
    limit = args.limit
    started = datetime.now(UTC)
    load_at_start = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews the numbers
    with tempfile.TemporaryDirectory(prefix="aesop-load-", dir=args.tmp) as tmp:
        work = Path(tmp)
        print(f"preparing {args.entities} entities …", flush=True)
        data_dir, queries, setup = prepare(work, args.entities, args.data)
        print(f"  {setup['entities']} entities, {setup['vectors']} vectors in {setup['setup_seconds']} s", flush=True)
        tokens = issue_tokens(data_dir, max(levels))
        runs: list[dict[str, Any]] = []
        for setting in () if args.flood_only else (None, limit):
            server = ServerProcess(data_dir, setting, work)
            try:
                url = server.wait_ready()
                print(f"server up at {url} (rate limit {setting or 'off'})", flush=True)
                for clients in levels:
                    row = anyio.run(run_level, url, tokens, clients, args.calls, args.seconds, queries)
                    row["limit"] = setting
                    runs.append(row)
                    latency = row["latency_ms"] or {}
                    print(
                        f"  {clients:>3} clients: {row['calls_per_s']:>7} calls/s  p50 {latency.get('p50', '-')} ms  "
                        f"p95 {latency.get('p95', '-')} ms  ({row['calls_ok']} ok, {row['rate_limited']} limited, "
                        f"{row['errors']} errors)",
                        flush=True,
                    )
            finally:
                server.stop()
        flood_result = run_flood(args, data_dir, queries, work) if args.flood or args.flood_only else None
        report = AuditLog.in_data_dir(data_dir).verify()
    result = {
        "schema": SCHEMA,
        "started": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": load_at_start,
        },
        "config": {
            "clients": levels,
            "calls": args.calls,
            "seconds": args.seconds,
            "limit": limit,
            "entities": args.entities,
            "smoke": args.smoke,
            "tool": "search",
            "arguments": {"k": 5},
            "transport": "streamable HTTP (2026-07-28, JSON responses) on 127.0.0.1, static bearer tokens",
        },
        "setup": setup,
        "runs": runs,
        "flood": flood_result,
        "audit": {"records": report.records, "ok": report.ok, "problem": report.problem},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(result, indent=2) + "\n"
    (args.out / f"load-{stamp}.json").write_text(text)
    (args.out / "load-latest.json").write_text(text)
    (args.out / "load-latest.md").write_text(markdown(result))
    print(f"wrote {args.out / 'load-latest.json'} and load-latest.md", flush=True)
    return 0 if report.ok and not any(r["errors"] for r in runs) else 1


def run_flood(args: argparse.Namespace, data_dir: Path, queries: list[str], work: Path) -> dict[str, Any]:
    """The flood scenario against a server with `--flood-limit` per principal (see flood.py)."""
    from aesoperator.security.tokens import TokenStore
    from benchmarks.load import flood

    store = TokenStore.in_data_dir(data_dir)
    bystander = store.add("bystander", SCOPES, rotate=True).token
    flooder = store.add("flood", SCOPES, rotate=True).token
    server = ServerProcess(data_dir, args.flood_limit, work)
    try:
        url = server.wait_ready()
        print(f"flood scenario: server up at {url} (rate limit {args.flood_limit})", flush=True)
        result = flood.run_scenario(
            url,
            bystander,
            flooder,
            limit=args.flood_limit,
            clients=args.flood_clients,
            seconds=args.flood_seconds,
            interval=args.bystander_interval,
            queries=queries,
            work=work,
            root=ROOT,
            server_pid=server.proc.pid,
        )
    finally:
        server.stop()
    quiet, flooded = result["quiet"]["latency_ms"] or {}, result["flooded"]["latency_ms"] or {}
    print(
        f"  bystander p50 {quiet.get('p50')} -> {flooded.get('p50')} ms, p95 {quiet.get('p95')} -> "
        f"{flooded.get('p95')} ms (ratio {result['ratio']['p50']} / {result['ratio']['p95']}); flood answered "
        f"{(result['flood'] or {}).get('answered_per_s')} /s; server CPU {result['server_cpu_s']} s",
        flush=True,
    )
    return result


if __name__ == "__main__":
    sys.exit(main())
