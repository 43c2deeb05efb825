"""Search latency beside the reference memory server (`@modelcontextprotocol/server-memory`).

One job per size (`kind: memory_server`), on a fresh data directory:

1. the first `size` entities of the benchmark stream and their relations become memory-server
   entities (name, entityType, observations = the entity's text) and relations
   (`datagen.memory_graph`);
2. they are loaded into the reference server and into `aesop serve --stdio` with the same
   `create_entities` / `create_relations` calls (500 items per call, the tools' limit), over the
   same MCP client; ours answers once its store commits and embeds in the background, and the
   job then waits (polling the `sources` tool's vector count) until every entity has its vector,
   timing that catch-up apart; our server's RSS is read at start, right after the load (before
   anything needs the model) and after the queries;
3. the same queries go, round-robin, to the reference `search_nodes`, our `search_nodes` and our
   `search` tool (hybrid, query embedding included), then, with the server stopped, to
   `ContextEngine.search` in this process on the same data directory.

Two kinds of query: the real questions, and one keyword taken from each question
(`datagen.keyword_queries`), because the reference matches the whole query as a substring and so
finds nothing for most questions. Latency is the client's wall time per call after warm-up; the
servers' CPU time is read from /proc around each measured block (its tick is 10 ms, so only the
mean over a block is given).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks import datagen
from benchmarks.speed.measure import PhaseMeter, progress, summarize

REFERENCE_PACKAGE = "@modelcontextprotocol/server-memory"
LOAD_BATCH = 500  # items per create_entities / create_relations call: the tools' limit
WARMUP_CALLS = 5
CATCH_UP_TIMEOUT_S = 3600.0
CATCH_UP_POLL_S = 0.5
CALL_TIMEOUT_S = 600.0
MAX_RESPONSE_BYTES = 500_000_000  # a keyword the reference matches everywhere returns the graph
REPO_ROOT = Path(__file__).resolve().parents[2]
# Before each call: wait for the servers to be idle this long (CPU time is read in 10 ms ticks).
IDLE_QUIET_S = 0.02
IDLE_POLL_S = 0.005
IDLE_MAX_S = 0.5

REFERENCE = "reference search_nodes"
OURS_NODES = "ours search_nodes"
OURS_SEARCH = "ours search"
ENGINE = "ours ContextEngine.search"
ENGINE_STAGES = "ours ContextEngine.search stages"
SYSTEMS = (REFERENCE, OURS_NODES, OURS_SEARCH, ENGINE, ENGINE_STAGES)
SYSTEM_LABELS = {
    REFERENCE: "reference `search_nodes` (MCP stdio)",
    OURS_NODES: "ours `search_nodes` (MCP stdio)",
    OURS_SEARCH: "ours `search` (MCP stdio, hybrid)",
    ENGINE: "ours `ContextEngine.search` (in-process)",
    ENGINE_STAGES: "ours `ContextEngine.search` stages, without the query embedding",
}
KINDS = ("question", "keyword")


@dataclass
class Calls:
    """What one system did over one kind of query."""

    wall_ms: list[float] = field(default_factory=list)
    results: list[int] = field(default_factory=list)
    response_bytes: list[int] = field(default_factory=list)
    cpu_s: float = 0.0  # the answering process's CPU time over the measured calls
    cpu_measured: bool = True
    idle_wait_s: float = 0.0  # waited before the calls for the servers to be idle (not in wall_ms)

    def as_dict(self, cpu_of: str) -> dict[str, Any]:
        n = len(self.wall_ms)
        out: dict[str, Any] = {
            "wall_ms": summarize(self.wall_ms),
            "results": summarize([float(r) for r in self.results]),
            "with_results": round(sum(r > 0 for r in self.results) / n, 3) if n else 0.0,
            "cpu_ms_per_call": round(self.cpu_s * 1000 / n, 3) if n and self.cpu_measured else None,
            "cpu_of": cpu_of,
        }
        if self.response_bytes:
            out["response_kb"] = summarize([b / 1024 for b in self.response_bytes])
        if n and self.idle_wait_s:
            out["idle_wait_ms_per_call"] = round(self.idle_wait_s * 1000 / n, 2)
        return out


def _process_cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


async def _until_idle(pids: Sequence[int]) -> float:
    """Wait until no server process has used CPU for IDLE_QUIET_S (at most IDLE_MAX_S); returns
    the seconds waited. The reference keeps working for a while after it answers (garbage
    collection after re-reading its file), and on two cores that work would otherwise land on
    whichever call comes next: every call, to either server, starts on an idle machine."""
    started = time.perf_counter()
    last = sum(_process_cpu(p) for p in pids)
    quiet_since = started
    while time.perf_counter() - started < IDLE_MAX_S:
        await asyncio.sleep(IDLE_POLL_S)
        now = sum(_process_cpu(p) for p in pids)
        if now != last:
            last, quiet_since = now, time.perf_counter()
        elif time.perf_counter() - quiet_since >= IDLE_QUIET_S:
            break
    return time.perf_counter() - started


def reference_command() -> list[str]:
    """The reference server's command, installed with npm into the test cache if needed."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.mcp_servers import npm_server_bin

    try:
        return npm_server_bin(REFERENCE_PACKAGE)
    except BaseException as exc:  # the helper skips the way pytest does when node or npm is missing
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise RuntimeError(f"cannot run {REFERENCE_PACKAGE}: {type(exc).__name__}: {exc}") from None


def _package_version(command: list[str]) -> str | None:
    for parent in Path(command[-1]).parents:
        manifest = parent / "package.json"
        if manifest.is_file():
            try:
                return str(json.loads(manifest.read_text())["version"])
            except (OSError, ValueError, KeyError):
                return None
    return None


def _child_env() -> dict[str, str]:
    """What our server needs from this environment: offline model, thread settings, import path."""
    keep = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HOME", "PYTHONPATH")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")})
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _definition(name: str, command: list[str], env: dict[str, str]) -> Any:
    from aesoperator.ingest.sources import SourceDefinition

    return SourceDefinition(
        name=name,
        kind="memory",
        command=command[0],
        args=command[1:],
        env={**env, "PATH": os.environ.get("PATH", "")},
        timeout_seconds=CALL_TIMEOUT_S,
        max_response_bytes=MAX_RESPONSE_BYTES,
        retries=0,
    )


def _new_child(before: set[int]) -> int:
    """The pid of the server process started since `before` was taken."""
    fresh = [p.pid for p in psutil.Process().children() if p.pid not in before]
    if len(fresh) != 1:
        raise RuntimeError(f"expected one new server process, found {len(fresh)}")
    return fresh[0]


def _count(payload: Any, key: str) -> int:
    return len(payload.get(key, [])) if isinstance(payload, dict) else 0


@dataclass
class _Server:
    conn: Any
    pid: int


async def _load(server: _Server, graph: datagen.MemoryGraphData, what: str) -> dict[str, Any]:
    """create_entities then create_relations, LOAD_BATCH items per call; returns the timing."""
    created = {"entities": 0, "relations": 0}
    calls = 0
    c0 = _process_cpu(server.pid)
    t0 = time.perf_counter()
    with progress() as bar:
        for tool, key, items in (
            ("create_entities", "entities", graph.entities),
            ("create_relations", "relations", graph.relations),
        ):
            task = bar.add_task(f"{what}: {tool}", total=len(items))
            for start in range(0, len(items), LOAD_BATCH):
                batch = items[start : start + LOAD_BATCH]
                result = await server.conn.call_tool(tool, {key: batch})
                created[key] += _count(_payload(result), key)
                calls += 1
                bar.advance(task, len(batch))
    seconds = time.perf_counter() - t0
    if created["entities"] != len(graph.entities):
        raise RuntimeError(f"{what} created {created['entities']} of {len(graph.entities)} entities")
    return {
        "seconds": round(seconds, 3),
        "calls": calls,
        "entities_created": created["entities"],
        "relations_created": created["relations"],
        "entities_per_s": round(len(graph.entities) / seconds, 1),
        "server_cpu_seconds": round(_process_cpu(server.pid) - c0, 3),
    }


async def _catch_up(server: _Server, entities: int) -> dict[str, Any]:
    """Wait until the server's store holds a vector for each of `entities` (the background
    embedding has caught up); returns how long that took after the load was answered."""
    t0 = time.perf_counter()
    c0 = _process_cpu(server.pid)
    vectors = 0
    with progress() as bar:
        task = bar.add_task("ours: background embedding", total=entities)
        while time.perf_counter() - t0 < CATCH_UP_TIMEOUT_S:
            stats = _payload(await server.conn.call_tool("sources", {})).get("stats", {})
            vectors = int(stats.get("vectors") or 0)
            bar.update(task, completed=min(vectors, entities))
            if vectors >= entities:
                break
            await asyncio.sleep(CATCH_UP_POLL_S)
    seconds = time.perf_counter() - t0
    return {
        "seconds": round(seconds, 3),
        "vectors": vectors,
        "entities_per_s": round(entities / seconds, 1) if seconds else None,
        "server_cpu_seconds": round(_process_cpu(server.pid) - c0, 3),
        "complete": vectors >= entities,
    }


def _rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 1024**2, 1)


def _payload(result: Any) -> Any:
    if isinstance(result.structured, dict):
        return result.structured
    return json.loads(result.text or "{}")


# (system, tool, arguments for one query text, key of the result list)
_McpSystem = tuple[str, str, Callable[[str], dict[str, Any]], str]


async def _query_round_robin(
    servers: dict[str, _Server], systems: Sequence[_McpSystem], texts: Sequence[str], label: str
) -> dict[str, Calls]:
    """Each query to every system in turn, so a change in machine load hits all of them alike."""
    calls = {name: Calls() for name, *_ in systems}
    cpu0 = {name: _process_cpu(servers[name].pid) for name, *_ in systems}
    pids = sorted({servers[name].pid for name, *_ in systems})
    with progress() as bar:
        task = bar.add_task(label, total=len(texts))
        for text in texts:
            for name, tool, args, key in systems:
                calls[name].idle_wait_s += await _until_idle(pids)
                t0 = time.perf_counter()
                result = await servers[name].conn.call_tool(tool, args(text))
                wall = (time.perf_counter() - t0) * 1000
                rec = calls[name]
                rec.wall_ms.append(wall)
                rec.results.append(_count(_payload(result), key))
                rec.response_bytes.append(int(result.size))
            bar.advance(task)
    for name, *_ in systems:
        # Our two tools share one server process: its CPU time is split by the calls' wall time.
        calls[name].cpu_s = _process_cpu(servers[name].pid) - cpu0[name]
    shared: dict[int, list[str]] = {}
    for name, *_ in systems:
        shared.setdefault(servers[name].pid, []).append(name)
    for names in shared.values():
        if len(names) > 1:
            total_cpu = calls[names[0]].cpu_s
            total_wall = sum(sum(calls[n].wall_ms) for n in names) or 1.0
            for n in names:
                calls[n].cpu_s = total_cpu * sum(calls[n].wall_ms) / total_wall
    return calls


async def _serve_and_query(
    spec: dict[str, Any],
    graph: datagen.MemoryGraphData,
    queries: dict[str, list[str]],
    warmup: list[str],
    meter: PhaseMeter,
    out: dict[str, Any],
) -> dict[str, dict[str, Calls]]:
    from aesoperator.ingest.client import open_connection

    work = Path(spec["work_dir"])
    ref_cmd = reference_command()
    out["reference"] = {"package": REFERENCE_PACKAGE, "version": _package_version(ref_cmd), "command": ref_cmd}
    ours_cmd = [sys.executable, "-m", "aesoperator.cli", "--data-dir", str(work / "aesop"), "serve", "--stdio"]
    out["ours_command"] = ["aesop", *ours_cmd[3:]]
    k, hops = int(spec["k"]), int(spec["hops"])
    systems: list[_McpSystem] = [
        (REFERENCE, "search_nodes", lambda q: {"query": q}, "entities"),
        (OURS_NODES, "search_nodes", lambda q: {"query": q}, "entities"),
        (OURS_SEARCH, "search", lambda q: {"query": q, "k": k, "hops": hops}, "hits"),
    ]
    ref_env = {"MEMORY_FILE_PATH": str(work / "reference" / "memory.jsonl")}
    (work / "reference").mkdir(parents=True, exist_ok=True)
    before = {p.pid for p in psutil.Process().children()}
    async with open_connection(_definition("memory-reference", ref_cmd, ref_env)) as ref_conn:
        await ref_conn.connect()
        ref = _Server(ref_conn, _new_child(before))
        before = {p.pid for p in psutil.Process().children()}
        t0 = time.perf_counter()
        embed_writes = str(spec.get("embed_writes", "background"))
        out["ours_embed_writes"] = embed_writes
        ours_env = {**_child_env(), "AESOP_EMBED_WRITES": embed_writes}
        async with open_connection(_definition("aesop-serve", ours_cmd, ours_env)) as ours_conn:
            await ours_conn.connect()
            out["ours_start_seconds"] = round(time.perf_counter() - t0, 3)
            ours = _Server(ours_conn, _new_child(before))
            out["ours_server_rss_start_mb"] = _rss_mb(ours.pid)
            with meter.phase("load_reference"):
                out["load"] = {"reference": await _load(ref, graph, "reference")}
            with meter.phase("load_ours"):
                out["load"]["ours"] = await _load(ours, graph, "ours")
            out["ours_server_rss_after_load_mb"] = _rss_mb(ours.pid)  # before the model is needed
            for tool, args in (("search_nodes", {"query": "no such text 7f3a"}), ("open_nodes", {"names": ["x"]})):
                await ours.conn.call_tool(tool, args)  # memory-tool reads: they never load the model
            out["ours_server_rss_after_memory_reads_mb"] = _rss_mb(ours.pid)
            if embed_writes == "background":
                with meter.phase("catch_up_ours"):
                    out["load"]["ours_catch_up"] = await _catch_up(ours, len(graph.entities))
            servers = {REFERENCE: ref, OURS_NODES: ours, OURS_SEARCH: ours}
            for text in warmup:
                for name, tool, args, _ in systems:
                    await servers[name].conn.call_tool(tool, args(text))
            measured: dict[str, dict[str, Calls]] = {}
            for kind in KINDS:
                with meter.phase(f"mcp_{kind}"):
                    measured[kind] = await _query_round_robin(servers, systems, queries[kind], f"{kind} queries, MCP")
            out["ours_server_rss_mb"] = _rss_mb(ours.pid)
            out["reference_server_rss_mb"] = _rss_mb(ref.pid)
    return measured


def _in_process(
    spec: dict[str, Any], queries: dict[str, list[str]], warmup: list[str], meter: PhaseMeter
) -> dict[str, tuple[Calls, Calls]]:
    """`ContextEngine.search` per kind of query: its wall time, and the sum of its stages' own
    timings without the query embedding (what the engine costs beyond the model)."""
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    k, hops = int(spec["k"]), int(spec["hops"])
    engine = ContextEngine.open(settings=Settings(data_dir=Path(spec["work_dir"]) / "aesop"))
    try:
        for text in warmup:
            engine.search(text, k=k, hops=hops)
        out: dict[str, tuple[Calls, Calls]] = {}
        for kind in KINDS:
            rec, stages = Calls(), Calls(cpu_measured=False)
            with meter.phase(f"engine_{kind}"), progress() as bar:
                task = bar.add_task(f"{kind} queries, in-process", total=len(queries[kind]))
                for text in queries[kind]:
                    c0, t0 = time.process_time(), time.perf_counter()
                    result = engine.search(text, k=k, hops=hops)
                    rec.wall_ms.append((time.perf_counter() - t0) * 1000)
                    rec.cpu_s += time.process_time() - c0
                    rec.results.append(len(result.hits))
                    stages.wall_ms.append(sum(v for s, v in result.timings_ms.items() if s != "embed"))
                    stages.results.append(len(result.hits))
                    bar.advance(task)
            out[kind] = (rec, stages)
        return out
    finally:
        engine.close()


def _ratios(systems: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Reference over ours, per percentile and per CPU time: above 1 means ours is faster."""
    ref = systems[REFERENCE]
    out: dict[str, dict[str, float | None]] = {}
    for name in (OURS_NODES, OURS_SEARCH, ENGINE, ENGINE_STAGES):
        mine = systems[name]
        row: dict[str, float | None] = {}
        for p in ("p50", "p95", "p99"):
            a, b = ref["wall_ms"].get(p), mine["wall_ms"].get(p)
            row[p] = round(a / b, 2) if a is not None and b else None
        a_cpu, b_cpu = ref.get("cpu_ms_per_call"), mine.get("cpu_ms_per_call")
        row["cpu"] = round(a_cpu / b_cpu, 2) if a_cpu is not None and b_cpu else None
        out[name] = row
    return out


def run_memory_server_job(spec: dict[str, Any]) -> dict[str, Any]:
    size = int(spec["size"])
    work = Path(spec["work_dir"])
    meter = PhaseMeter()
    out: dict[str, Any] = {"backend": "embedded", "size": size, "k": spec["k"], "hops": spec["hops"]}
    with meter.phase("build"):
        data_dir = Path(spec["data_dir"])
        corpus = datagen.load_corpus(data_dir)
        graph = datagen.memory_graph(datagen.GraphStream(corpus), size)
        questions = datagen.load_queries(data_dir)
        wanted = int(spec["queries"])
        if len(questions) < wanted + WARMUP_CALLS:
            raise ValueError(f"only {len(questions)} questions in {data_dir}; ask for fewer --queries")
        texts = [" ".join([e["name"], *e["observations"]]) for e in graph.entities]
        keywords = datagen.keyword_queries(questions[:wanted], texts)
    out["entities"] = len(graph.entities)
    out["relations"] = len(graph.relations)
    queries = {"question": [q.text for q in questions[:wanted]], "keyword": [kw for _, kw in keywords]}
    out["queries"] = {
        "question": {"n": len(queries["question"])},
        "keyword": {
            "n": len(queries["keyword"]),
            "from_questions": wanted,
            "examples": [{"question": q.text, "keyword": kw} for q, kw in keywords[:5]],
        },
    }
    warmup = [q.text for q in questions[wanted : wanted + WARMUP_CALLS]]
    measured = asyncio.run(_serve_and_query(spec, graph, queries, warmup, meter, out))
    with meter.phase("engine_open_and_warm"):
        engine_calls = _in_process(spec, queries, warmup, meter)
    for kind in KINDS:
        systems: dict[str, Any] = {}
        for name, rec in measured[kind].items():
            systems[name] = rec.as_dict("the server process")
        systems[ENGINE] = engine_calls[kind][0].as_dict("this process")
        systems[ENGINE_STAGES] = engine_calls[kind][1].as_dict("not measured")
        agree = sum(
            a == b for a, b in zip(measured[kind][REFERENCE].results, measured[kind][OURS_NODES].results, strict=True)
        )
        out["queries"][kind].update(
            {
                "systems": systems,
                "ratios": _ratios(systems),
                "search_nodes_same_count": agree,
            }
        )
    out["phases"] = meter.as_dict()
    meter.close()
    if not spec.get("keep_data"):
        shutil.rmtree(work / "aesop", ignore_errors=True)
        shutil.rmtree(work / "reference", ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run this job alone: `python -m benchmarks.speed.memory_server --size 10k`; writes the raw
    result as JSON and a short summary (load, catch-up, RSS, `search_nodes` ratios) as Markdown."""
    import argparse
    import tempfile

    from benchmarks.speed.runner import parse_size

    p = argparse.ArgumentParser(prog="python -m benchmarks.speed.memory_server", description=main.__doc__)
    p.add_argument("--size", type=parse_size, default=10_000, help="entities (default 10k)")
    p.add_argument("--queries", type=int, default=200, help="questions timed (default 200)")
    p.add_argument("--data", type=Path, default=None, help="evaluation data folder (default ../shared/evaldata)")
    p.add_argument(
        "--embed-writes",
        choices=("background", "sync", "off"),
        default="background",
        help="our server's AESOP_EMBED_WRITES (default background: the job waits for the catch-up before querying)",
    )
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "memory-server-latest")
    args = p.parse_args(argv)
    data_dir = (args.data or datagen.default_data_dir(REPO_ROOT)).resolve()
    with tempfile.TemporaryDirectory(prefix="aesop-memory-server-") as work:
        spec = {
            "embed_writes": args.embed_writes,
            "size": args.size,
            "work_dir": work,
            "data_dir": str(data_dir),
            "queries": args.queries,
            "k": 10,
            "hops": 1,
        }
        result = run_memory_server_job(spec)
    result["command"] = "python -m benchmarks.speed.memory_server " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(summary_markdown(result))
    print(summary_markdown(result))
    return 0


def summary_markdown(result: dict[str, Any]) -> str:
    load = result["load"]
    ref, ours, catch = load["reference"], load["ours"], load.get("ours_catch_up", {})
    lines = [
        f"# Memory-server tools beside the reference, {result['entities']:,} entities",
        "",
        f"Command: `{result.get('command', '')}`",
        "",
        "| what | reference | ours |",
        "|---|---:|---:|",
        f"| load through create_entities + create_relations (s) | {ref['seconds']:.1f} | {ours['seconds']:.1f} |",
        f"| ours / reference load time | | {ours['seconds'] / ref['seconds']:.2f}x |",
        f"| our AESOP_EMBED_WRITES | – | {result.get('ours_embed_writes', 'background')} |",
        f"| background embedding caught up after the load (s) | – | {catch.get('seconds', float('nan')):.1f} |",
        f"| server RSS at start (MB) | – | {result.get('ours_server_rss_start_mb', 0):,.0f} |",
        f"| server RSS after the load (MB) | – | {result.get('ours_server_rss_after_load_mb', 0):,.0f} |",
        f"| server RSS after memory-tool reads (MB) | – | {result.get('ours_server_rss_after_memory_reads_mb', 0):,.0f} |",
        f"| server RSS after the queries (MB) | {result.get('reference_server_rss_mb', 0):,.0f} | "
        f"{result.get('ours_server_rss_mb', 0):,.0f} |",
        "",
        "| queries | system | p50 (ms) | p95 (ms) | p99 (ms) | reference/ours p50 | reference/ours p95 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        q = result["queries"][kind]
        for name in (REFERENCE, OURS_NODES, OURS_SEARCH):
            wall = q["systems"][name]["wall_ms"]
            ratio = q["ratios"].get(name, {})
            r50 = f"{ratio['p50']:.2f}x" if ratio.get("p50") else "–"
            r95 = f"{ratio['p95']:.2f}x" if ratio.get("p95") else "–"
            lines.append(
                f"| {kind} ({q['n']}) | {SYSTEM_LABELS[name]} | {wall['p50']:.1f} | {wall['p95']:.1f} | "
                f"{wall['p99']:.1f} | {r50} | {r95} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
