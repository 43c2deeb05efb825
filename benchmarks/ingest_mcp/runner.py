"""`python -m benchmarks.ingest_mcp`: ingest throughput from the filesystem and git MCP servers.

Each source is ingested through `ingest_source` into a fresh embedded engine, in phases: a cold
ingest, a re-run with nothing changed, and re-runs after real changes. For every run it records
items/s, the pipeline's stage seconds (extract = waiting for the next record, map, embed, store)
and the MCP calls (counted, summed, and as "busy" wall time with at least one call in flight),
and writes `results/ingest-mcp-latest.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aesoperator import ContextEngine
from aesoperator.config import Settings
from aesoperator.graph_schema.models import Entity
from aesoperator.ingest import mcp_ingest
from aesoperator.ingest.adapters.filesystem import FilesystemAdapter
from aesoperator.ingest.pipeline import IngestReport
from aesoperator.ingest.progress import RichProgress
from aesoperator.ingest.sources import SourceDefinition
from benchmarks.ingest_mcp import gitrepo
from benchmarks.ingest_mcp.timing import CallStats, timed_connections

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"
SCHEMA = "aesoperator-ingest-mcp/1"
FS_SERVER = "@modelcontextprotocol/server-filesystem"
console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest_mcp",
        description="Ingest throughput from the filesystem and git MCP servers, with the time per stage.",
    )
    p.add_argument("--tree", type=Path, help="folder of real files (default: this Python's standard library)")
    p.add_argument("--repo", type=Path, help="git repository, used through a local clone (default: one is made)")
    p.add_argument("--limit", type=int, default=3000, help="files taken from the tree (default 3000)")
    p.add_argument("--commits", type=int, default=1000, help="commits of the made repository (default 1000)")
    p.add_argument("--max-commits", type=int, help="the git adapter's max_commits option (default: none)")
    p.add_argument(
        "--embed-files",
        type=int,
        default=60,
        help="files (spread over the selection) of the extra filesystem run with embedding (default 60)",
    )
    p.add_argument("--no-embed", action="store_true", help="never embed (the git runs embed by default)")
    p.add_argument(
        "--no-extraction-share",
        dest="extraction_share",
        action="store_false",
        help="run the filesystem ingest with embedding once (with extraction) instead of without, with and "
        "without knowledge extraction",
    )
    p.add_argument("--skip-fs", action="store_true", help="leave out the filesystem server")
    p.add_argument("--skip-git", action="store_true", help="leave out the git server")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the results go (default benchmarks/results)")
    p.add_argument("--tmp", type=Path, help="parent of the temporary work folder (default: system temp)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if args.limit < 10:
        p.error("--limit must be at least 10")
    if args.commits < 20:
        p.error("--commits must be at least 20")
    return args


def default_tree() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


# -- measuring one run -------------------------------------------------------------------------
def measure(
    engine: ContextEngine, definition: SourceDefinition, phase: str, embed: bool, note: str = ""
) -> dict[str, Any]:
    stats = CallStats()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with timed_connections(stats), RichProgress() as progress:
        report = mcp_ingest.ingest_source(engine, definition, progress=progress, embed=embed)
    wall = time.perf_counter() - started
    run = summarize(definition, phase, embed, report, stats, wall, note)
    run["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return run


def summarize(
    definition: SourceDefinition,
    phase: str,
    embed: bool,
    report: IngestReport,
    stats: CallStats,
    wall: float,
    note: str,
) -> dict[str, Any]:
    pipeline = max(report.seconds, 1e-9)
    stages = {k: round(v, 4) for k, v in report.stage_seconds.items()}
    share = {k: round(v / pipeline, 4) for k, v in report.stage_seconds.items()}
    share["mcp_busy"] = round(stats.busy_seconds / pipeline, 4)
    return {
        "source": definition.kind,
        "phase": phase,
        "note": note,
        "embed": embed,
        "items": report.records_seen,
        "changed": report.records_changed,
        "unchanged": report.records_unchanged,
        "removed": report.records_removed,
        "skipped": len(report.skipped),
        "quarantined": report.quarantined,
        "entities_written": report.entities_written,
        "relations_written": report.relations_written,
        "entities_deleted": report.entities_deleted,
        "relations_expired": report.relations_expired,
        "texts_embedded": report.texts_embedded,
        "pipeline_seconds": round(report.seconds, 4),
        "wall_seconds": round(wall, 4),
        "session_seconds": round(wall - report.seconds, 4),  # server start and stop, index refresh
        "items_per_s": round(report.records_seen / pipeline, 1),
        "changed_per_s": round(report.records_changed / pipeline, 1),
        "entities_per_s": round(report.entities_written / pipeline, 1),
        "stage_seconds": stages,
        "share": share,
        "mcp": stats.as_dict(),
    }


def open_engine(work: Path, name: str, extractor: Literal["default", "none"] = "default") -> ContextEngine:
    return ContextEngine.open(settings=Settings(data_dir=work / f"data-{name}", extractor=extractor))


# -- filesystem --------------------------------------------------------------------------------
def fs_definition(name: str, folder: Path) -> SourceDefinition:
    from tests.mcp_servers import npm_server_bin

    command = npm_server_bin(FS_SERVER)
    return SourceDefinition(
        name=name,
        kind="filesystem",
        command=command[0],
        args=[*command[1:], str(folder)],
        exclude=["site-packages"],
        timeout_seconds=120,
    )


def pick_files(tree: Path, limit: int) -> list[Path]:
    """The first `limit` files of `tree` (sorted walk) that the filesystem adapter would read."""
    probe = FilesystemAdapter(SourceDefinition(name="probe", kind="filesystem", command="-", exclude=["site-packages"]))
    chosen: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(tree):
        rel_dir = Path(dirpath).relative_to(tree).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        dirnames[:] = sorted(d for d in dirnames if probe.wanted_directory(f"{rel_dir}/{d}".lstrip("/")))
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}".lstrip("/")
            path = Path(dirpath) / name
            if probe.wanted_file(rel) and path.is_file() and not path.is_symlink():
                size = path.stat().st_size
                if 0 < size <= probe.max_file_bytes:
                    chosen.append(path)
                    if len(chosen) >= limit:
                        return chosen
    return chosen


def copy_files(tree: Path, files: list[Path], dest: Path) -> int:
    total = 0
    for path in files:
        target = dest / path.relative_to(tree)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        total += path.stat().st_size
    return total


def change_tree(folder: Path, rng: random.Random, edit_share: float = 0.01) -> dict[str, int]:
    """Edit ~1% of the files (a line appended), delete a few, add a few."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    edits = rng.sample(files, max(1, int(len(files) * edit_share)))
    for path in edits:
        with path.open("a", encoding="utf-8", errors="replace") as handle:
            handle.write("\n# benchmark edit: reviewed for the ingest run\n")
    rest = [p for p in files if p not in set(edits)]
    deletes = rng.sample(rest, max(1, len(files) // 500))
    for path in deletes:
        path.unlink()
    added = max(1, len(files) // 500)
    for i in range(added):
        (folder / f"benchmark_added_{i}.md").write_text(f"# Added {i}\n\nA new note about tide tables.\n")
    return {"edited": len(edits), "deleted": len(deletes), "added": added}


def filesystem_runs(args: argparse.Namespace, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    tree = (args.tree or default_tree()).resolve()
    files = pick_files(tree, args.limit)
    folder = work / "tree" / tree.name
    size = copy_files(tree, files, folder)
    info = {"tree": str(tree), "files": len(files), "bytes": size}
    console.print(f"[bold]filesystem[/]: {len(files)} files ({size / 1e6:.1f} MB) from {tree}")
    runs = []
    definition = fs_definition("bench-fs", folder)
    engine = open_engine(work, "fs")
    try:
        runs.append(measure(engine, definition, "cold", embed=False, note=f"{len(files)} files"))
        runs.append(measure(engine, definition, "unchanged", embed=False))
        changes = change_tree(folder, random.Random(args.seed))
        note = ", ".join(f"{v} {k}" for k, v in changes.items())
        runs.append(measure(engine, definition, "changed", embed=False, note=note))
    finally:
        engine.close()
    if not args.no_embed and args.embed_files > 0:
        step = max(1, len(files) // args.embed_files)
        subset = files[::step][: args.embed_files]
        small = work / "tree-embed" / tree.name
        copy_files(tree, subset, small)
        # The same files without, with and again without knowledge extraction, each on a fresh
        # engine: the mean of the runs without is the reference for what extraction adds.
        plan: list[tuple[str, Literal["default", "none"]]] = [("a", "none"), ("b", "default"), ("c", "none")]
        timed: list[dict[str, Any]] = []
        for tag, extractor in plan if args.extraction_share else [("a", "default")]:
            engine = open_engine(work, f"fs-embed-{tag}", extractor)
            try:
                engine.embedder.embed(["warm up the model"])  # model loading is not ingest time
                if engine.knowledge is not None:  # nor is loading the NER model
                    engine.knowledge.process(
                        [Entity(id="warm:note", type="Note", name="warm", text="Ada Lovelace met Babbage.")]
                    )
                note = f"{len(subset)} files, extraction {'on' if extractor == 'default' else 'off'}"
                run = measure(engine, fs_definition(f"bench-fs-embed-{tag}", small), "cold", embed=True, note=note)
                run["extractor"] = extractor
                timed.append(run)
                runs.append(run)
            finally:
                engine.close()
        if len(timed) == 3:
            info["extraction"] = extraction_added(timed)
    return runs, info


def extraction_added(timed: list[dict[str, Any]]) -> dict[str, Any]:
    """What extraction added to the ingest with embedding: runs without, with, without."""
    without = (timed[0]["pipeline_seconds"] + timed[2]["pipeline_seconds"]) / 2
    with_ = timed[1]
    return {
        "files": timed[1]["items"],
        "without_seconds": [timed[0]["pipeline_seconds"], timed[2]["pipeline_seconds"]],
        "with_seconds": with_["pipeline_seconds"],
        "added": round(with_["pipeline_seconds"] / without - 1, 4),
        "knowledge_stage_seconds": with_["stage_seconds"].get("knowledge", 0.0),
        "texts_embedded": [t["texts_embedded"] for t in timed],
        "entities_written": [t["entities_written"] for t in timed],
    }


# -- git ---------------------------------------------------------------------------------------
def git_definition(repo: Path, max_commits: int | None) -> SourceDefinition:
    options: dict[str, Any] = {"max_commits": max_commits} if max_commits else {}
    return SourceDefinition(
        name="bench-git",
        kind="git",
        command=sys.executable,
        args=["-m", "mcp_server_git", "--repository", str(repo)],
        options=options,
        timeout_seconds=120,
    )


def make_repo(args: argparse.Namespace, work: Path) -> tuple[Path, dict[str, Any]]:
    repo = work / "repo"
    if args.repo is not None:
        gitrepo.clone(args.repo.resolve(), repo)
        return repo, {"origin": str(args.repo.resolve()), "made": False}
    tree = (args.tree or default_tree()).resolve()
    sources = [(p.relative_to(tree).as_posix(), p.read_bytes()) for p in pick_files(tree, args.commits * 2)]
    with Progress(
        TextColumn("[bold]make repository"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("commits", total=args.commits)
        made = gitrepo.generate(repo, sources, args.commits, seed=args.seed, advance=lambda n: bar.advance(task, n))
    return repo, {"origin": f"made from {tree}", "made": True, **made}


def git_runs(args: argparse.Namespace, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    repo, info = make_repo(args, work)
    count = gitrepo.git(repo, "rev-list", "--branches", "--count")
    branches = gitrepo.git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()
    info.update({"commits": int(count), "branches": branches})
    console.print(f"[bold]git[/]: {count} commits on {len(branches)} branches ({info['origin']})")
    embed = not args.no_embed
    definition = git_definition(repo, args.max_commits)
    runs = []
    if embed:  # the same cold ingest without embedding: what MCP, mapping and storing cost alone
        engine = open_engine(work, "git-no-embed")
        try:
            runs.append(measure(engine, definition, "cold", embed=False, note=f"{count} commits"))
        finally:
            engine.close()
    engine = open_engine(work, "git")
    try:
        if embed:
            engine.embedder.embed(["warm up the model"])
        runs.append(measure(engine, definition, "cold", embed=embed, note=f"{count} commits"))
        runs.append(measure(engine, definition, "unchanged", embed=embed))
        current = gitrepo.git(repo, "rev-parse", "--abbrev-ref", "HEAD")
        for i in range(10):
            gitrepo.commit_files(
                repo,
                {f"bench/new_{i}.md": f"# Change {i}\n\nTide table correction {i}.\n"},
                f"Correct tide table {i}",
                gitrepo.AUTHORS[i % len(gitrepo.AUTHORS)],
            )
        runs.append(measure(engine, definition, "changed", embed=embed, note=f"10 new commits on {current}"))
        others = [b for b in branches if b != current]
        if others:
            gitrepo.git(repo, "branch", "-f", others[0], f"{current}~3")
            runs.append(measure(engine, definition, "changed", embed=embed, note=f"branch {others[0]} moved"))
    finally:
        engine.close()
    return runs, info


# -- report ------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Ingest from MCP servers",
        "",
        f"Run {results['started_at']} on {results['machine'].get('cpu_model', '?')} "
        f"({results['machine'].get('usable_cores', '?')} cores), Python {results['machine'].get('python', '?')}.",
        "",
    ]
    for source, info in results["sources"].items():
        shown = ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("branches", "extraction"))
        lines.append(f"- **{source}**: " + shown)
    for source, info in results["sources"].items():
        x = info.get("extraction")
        if x:
            lines.append(
                f"- **{source}, knowledge extraction**: {x['files']} files ingested with embedding in "
                f"{x['without_seconds'][0]:.1f} s and {x['without_seconds'][1]:.1f} s without extraction, "
                f"{x['with_seconds']:.1f} s with it: **{x['added']:+.1%}** (target at most +25%); the knowledge "
                f"stage (NER, rules, code symbols, resolution) took {x['knowledge_stage_seconds']:.1f} s; "
                f"texts embedded {x['texts_embedded'][0]} → {x['texts_embedded'][1]}, "
                f"entities {x['entities_written'][0]} → {x['entities_written'][1]}"
            )
    lines += [
        "",
        "| source | phase | what | embed | items | changed | pipeline s | items/s | changed/s | MCP calls | "
        "MCP busy | extract | map | embed | store | session s | load |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"]:
        s = r["share"]
        lines.append(
            f"| {r['source']} | {r['phase']} | {r['note']} | {'yes' if r['embed'] else 'no'} | {r['items']} | "
            f"{r['changed']} | {r['pipeline_seconds']:.2f} | {r['items_per_s']:.0f} | {r['changed_per_s']:.0f} | "
            f"{r['mcp']['total_calls']} | {_pct(s['mcp_busy'])} | {_pct(s['extract'])} | {_pct(s['map'])} | "
            f"{_pct(s['embed'])} | {_pct(s['store'])} | {r['session_seconds']:.1f} | "
            f"{r['load_average'][0]:.1f} |"
        )
    lines += [
        "",
        "Shares are of the pipeline's wall time (`pipeline s`). *extract* is the time the pipeline waited for "
        "the next record (MCP round trips and adapter work that did not overlap anything); *map*, *embed* "
        "run on the pipeline thread; *store* runs on a writer thread alongside the next batch, and *MCP busy* "
        "(wall time with at least one call in flight) on the server's event loop, so they overlap the others. "
        "*session s* is the rest of `ingest_source`: starting and stopping the server, refreshing the index. "
        "*load* is the machine's 1-minute load average when the run started: other work on the machine "
        "slows every stage, embedding most.",
        "",
        "MCP calls per run:",
        "",
    ]
    for r in results["runs"]:
        calls = ", ".join(f"{k} {v}" for k, v in r["mcp"]["calls"].items())
        lines.append(f"- {r['source']} {r['phase']} ({r['note'] or '-'}): {calls}")
    if results["errors"]:
        lines += ["", "Errors:", "", *[f"- {e}" for e in results["errors"]]]
    return "\n".join(lines) + "\n"


def print_table(results: dict[str, Any]) -> None:
    table = Table(title="ingest from MCP servers")
    for col in (
        "source",
        "phase",
        "what",
        "items",
        "changed",
        "s",
        "items/s",
        "MCP",
        "extract",
        "map",
        "embed",
        "store",
    ):
        table.add_column(col)
    for r in results["runs"]:
        s = r["share"]
        table.add_row(
            r["source"],
            r["phase"],
            r["note"],
            str(r["items"]),
            str(r["changed"]),
            f"{r['pipeline_seconds']:.2f}",
            f"{r['items_per_s']:.0f}",
            _pct(s["mcp_busy"]),
            _pct(s["extract"]),
            _pct(s["map"]),
            _pct(s["embed"]),
            _pct(s["store"]),
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from benchmarks.speed.measure import machine_info

    results: dict[str, Any] = {
        "schema": SCHEMA,
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "sources": {},
        "runs": [],
        "errors": [],
    }
    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, Callable[[argparse.Namespace, Path], tuple[list[dict[str, Any]], dict[str, Any]]]]] = []
    if not args.skip_fs:
        jobs.append(("filesystem", filesystem_runs))
    if not args.skip_git:
        jobs.append(("git", git_runs))
    with tempfile.TemporaryDirectory(prefix="aesop-ingest-mcp-", dir=args.tmp) as tmp:
        for name, job in jobs:
            try:
                runs, info = job(args, Path(tmp) / name)
            except Exception as exc:  # report it, and go on with the other server
                console.print_exception()
                results["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            results["sources"][name] = info
            results["runs"].extend(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest-mcp-latest.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (args.out / "ingest-mcp-latest.md").write_text(markdown(results))
    print_table(results)
    console.print(f"wrote {args.out / 'ingest-mcp-latest.json'} and .md")
    return 1 if results["errors"] else 0
