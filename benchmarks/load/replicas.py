"""`python -m benchmarks.load.replicas`: `search` calls/s over HTTP with one and with two
`aesop serve --http` replicas on one Neo4j, under the same client load, plus each replica's RSS
and CPU use and the machine's load average.

The Neo4j database named by `--neo4j-uri` (password in `AESOP_NEO4J_PASSWORD`) is EMPTIED first:
point it at a throwaway one (`tools/neo4j-local/run.sh`). A third process ingests `--corpus`;
then for 1 and 2 replicas, `--clients` concurrent MCP clients (spread over the replicas, one
connection and token each) call `search` for `--seconds`. Everything stays on 127.0.0.1 and every
loop is bounded in time. Writes `results/replicas-latest.json` and `results/replicas-latest.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from benchmarks.load.replica_fleet import Neo4jTarget, Replica, aesop_argv, issue_token, replica_env

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
QUERIES = [
    "How does the Neo4j store lock the change counter?",
    "schema constraints and indexes",
    "erase an entity and its vectors",
    "read entities by id in a namespace",
    "relation types uniqueness constraint",
    "change log pages after a sequence number",
]


async def _client(replica: Replica, token: str, until: float, latencies: list[float]) -> None:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
        Client(streamable_http_client(replica.url, http_client=http)) as client,
    ):
        n = 0
        while time.monotonic() < until:
            started = time.perf_counter()
            result = await client.call_tool("search", {"query": QUERIES[n % len(QUERIES)], "k": 5})
            if result.is_error:
                raise RuntimeError(f"search failed on {replica.url}: {result.content}")
            latencies.append(time.perf_counter() - started)
            n += 1


async def _load(replicas: list[Replica], tokens: list[str], clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    until = time.monotonic() + seconds
    async with anyio.create_task_group() as tg:
        for i in range(clients):
            tg.start_soon(_client, replicas[i % len(replicas)], tokens[i % len(replicas)], until, latencies)
    return latencies


async def _visible_seconds(writer: Replica, wtoken: str, reader: Replica, rtoken: str) -> dict[str, float]:
    """Seconds from a `create_entities` answer on `writer` until `reader`'s `search` finds the
    entity by a word of its text (keyword channel) and by a paraphrase (vector channel, after the
    writer's background embedding)."""
    name = f"Quorvane Lighthouse {int(time.time() * 1000) % 100000}"
    entity = {"name": name, "entityType": "place", "observations": [f"{name} guides trawlers past the reef"]}
    checks = {"keyword": "trawlers reef", "vector": "a beacon that steers fishing boats away from rocks"}
    headers = {"Authorization": f"Bearer {rtoken}"}
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {wtoken}"}, timeout=60) as whttp,
        Client(streamable_http_client(writer.url, http_client=whttp)) as wclient,
        httpx2.AsyncClient(headers=headers, timeout=60) as rhttp,
        Client(streamable_http_client(reader.url, http_client=rhttp)) as rclient,
    ):
        await wclient.call_tool("create_entities", {"entities": [entity]})
        written = time.monotonic()
        seen: dict[str, float] = {}
        while len(seen) < len(checks) and time.monotonic() - written < 60:
            for channel, query in checks.items():
                if channel in seen:
                    continue
                result = await rclient.call_tool("search", {"query": query, "k": 10, "hops": 0})
                for hit in (result.structured_content or {}).get("hits", []):
                    if hit["name"] == name and any(r.startswith(channel) for r in hit["reasons"]):
                        seen[channel] = round(time.monotonic() - written, 3)
            await anyio.sleep(0.02)
        return seen


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` so far, 0 when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def run_case(
    work: Path, target: Neo4jTarget, count: int, clients: int, seconds: float, neo4j_pid: int | None
) -> dict[str, Any]:
    """Start `count` replicas, warm them, load them, measure, stop them."""
    replicas = [Replica(work / f"replica-{count}-{i}", target) for i in range(count)]
    tokens = [issue_token(r.data_dir) for r in replicas]
    try:
        for replica in replicas:
            replica.start()
        anyio.run(_load, replicas, tokens, len(replicas), 3.0)  # warm: model, indexes
        cpu_before = [r.cpu_seconds() for r in replicas]
        load_before = os.getloadavg()[0]
        busy_before, client_before = machine_busy(), time.process_time()
        neo4j_before = process_cpu(neo4j_pid) if neo4j_pid else 0.0
        started = time.monotonic()
        latencies = anyio.run(_load, replicas, tokens, clients, seconds)
        elapsed = time.monotonic() - started
        cpu = [r.cpu_seconds() - c for r, c in zip(replicas, cpu_before, strict=True)]
        busy_after = machine_busy()
        client_cpu = time.process_time() - client_before
        neo4j_cpu = process_cpu(neo4j_pid) - neo4j_before if neo4j_pid else None
        latencies.sort()
        visible = anyio.run(_visible_seconds, replicas[0], tokens[0], replicas[-1], tokens[-1]) if count > 1 else {}
        return {
            "write_visible_on_other_s": visible,
            "replicas": count,
            "clients": clients,
            "seconds": round(elapsed, 2),
            "calls": len(latencies),
            "calls_per_s": round(len(latencies) / elapsed, 2),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
            "p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 1) if latencies else None,
            "rss_mib": [round(r.rss_mib(), 1) for r in replicas],
            "cpu_percent": [round(100 * c / elapsed, 1) for c in cpu],
            "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "client_cpu_percent": round(100 * client_cpu / elapsed, 1),
            "neo4j_cpu_percent": None if neo4j_cpu is None else round(100 * neo4j_cpu / elapsed, 1),
            "machine_busy_percent": round(
                100 * (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1]), 1
            ),
        }
    finally:
        for replica in replicas:
            replica.stop()


def markdown(result: dict[str, Any]) -> str:
    notes: list[str] = []
    lines = [
        f"search over HTTP, {result['clients']} clients, {result['seconds_per_case']:.0f} s per case, "
        f"{result['entities']} entities in Neo4j ({result['cpus']} CPUs)",
        "",
        "| replicas | calls/s | p50 ms | p95 ms | RSS per replica (MiB) | CPU per replica (%) | client CPU (%) "
        "| Neo4j CPU (%) | machine busy (%) | load avg 1m (before, after) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in result["cases"]:
        if case["write_visible_on_other_s"]:
            seen = case["write_visible_on_other_s"]
            notes.append(
                f"A `create_entities` through replica 1 was found through replica 2 after {seen.get('keyword')} s "
                f"(keyword channel) and {seen.get('vector')} s (vector channel, after the writer's background "
                "embedding)."
            )
        lines.append(
            f"| {case['replicas']} | {case['calls_per_s']} | {case['p50_ms']} | {case['p95_ms']} | "
            f"{', '.join(map(str, case['rss_mib']))} | {', '.join(map(str, case['cpu_percent']))} | "
            f"{case['client_cpu_percent']} | {case['neo4j_cpu_percent']} | {case['machine_busy_percent']} | "
            f"{case['loadavg_1m'][0]}, {case['loadavg_1m'][1]} |"
        )
    return "\n".join([*lines, "", *notes]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load.replicas")
    parser.add_argument("--neo4j-uri", required=True, help="a THROWAWAY database: it is emptied first")
    parser.add_argument("--neo4j-user", default="neo4j")
    parser.add_argument("--corpus", type=Path, default=ROOT / "aesoperator" / "engine" / "stores")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--neo4j-pid", type=int, default=None, help="the Neo4j process, to report its CPU use")
    args = parser.parse_args(argv)
    target = Neo4jTarget(args.neo4j_uri, args.neo4j_user, os.environ.get("AESOP_NEO4J_PASSWORD", ""))

    from neo4j import GraphDatabase

    with (
        GraphDatabase.driver(args.neo4j_uri, auth=(target.user, target.password)) as driver,
        driver.session() as session,
    ):  # an implicit transaction: the only kind that runs CALL ... IN TRANSACTIONS
        session.run("MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()
    with tempfile.TemporaryDirectory(prefix="aesop-replicas-") as tmp:
        work = Path(tmp)
        subprocess.run(
            aesop_argv(work / "ingester", target, "ingest", str(args.corpus)), env=replica_env(target), check=True
        )
        with GraphDatabase.driver(args.neo4j_uri, auth=(target.user, target.password)) as driver:
            records, _, _ = driver.execute_query("MATCH (e:Entity) RETURN count(e) AS n")
            entities = int(records[0]["n"])
        cases = [run_case(work, target, n, args.clients, args.seconds, args.neo4j_pid) for n in (1, 2)]
    result = {
        "schema": "aesoperator-replicas/1",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "entities": entities,
        "seconds_per_case": args.seconds,
        "clients": args.clients,
        "cases": cases,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replicas-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "replicas-latest.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
