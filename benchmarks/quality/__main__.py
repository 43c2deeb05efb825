"""python -m benchmarks.quality [--data DIR] [--json OUT] [--smoke] [--budgets 500,1000] [--answer-tokens]

Ingests each dataset through the engine's normal API (documents as entities, conversation turns
as episodes), asks every question with each system and reports recall@k, nDCG@10 and MRR of the
gold evidence per dataset and per question category, with plots; evidence recall within token
budgets (`budgets.py`, on by default); and, with `--answer-tokens`, the tokens of each MCP tool's
answer next to the reference memory server's (`answer_tokens.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks.quality import answer_tokens, budgets
from benchmarks.quality.datasets import Dataset, Question, load_all
from benchmarks.quality.metrics import mean, score
from benchmarks.quality.systems import ENGINE_SYSTEMS, MemoryServerBaseline, ranker, searcher

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "evaldata"
console = Console(stderr=True)

# Published numbers for the same dataset and metric (different split or size: a reference only).
PUBLISHED: dict[tuple[str, str], list[tuple[str, float, str]]] = {
    ("scifact", "ndcg@10"): [
        ("BM25", 0.665, "BEIR (Thakur et al., 2021), SciFact test split, 300 claims"),
        ("all-MiniLM-L6-v2", 0.645, "MTEB leaderboard, SciFact test split, 300 claims"),
    ],
}


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


def shrink(ds: Dataset, questions: int, extra_docs: int) -> Dataset:
    """A small but faithful subset: the first questions, every gold item they need, plus others."""
    ds.questions = ds.questions[:questions]
    needed = {g for q in ds.questions for g in q.gold}
    if ds.kind == "documents":
        others = [d for d in ds.docs if d.key not in needed][:extra_docs]
        ds.docs = [d for d in ds.docs if d.key in needed] + others
    else:
        scopes = {q.scope for q in ds.questions}
        ds.turns = [t for t in ds.turns if t.conversation in scopes][: max(extra_docs, 1) * 4]
        keys = {t.key for t in ds.turns}
        ds.questions = [q for q in ds.questions if q.gold <= keys] or ds.questions[:1]
    return ds


def ingest(engine: Any, ds: Dataset) -> float:
    from aesoperator.graph_schema.models import Episode
    from aesoperator.ingest.documents import DocumentInput

    started = time.perf_counter()
    with _progress() as bar:
        if ds.kind == "documents":
            task = bar.add_task(f"ingest {ds.name}", total=len(ds.docs))

            class Reporter:
                def start(self, description: str, total: int | None) -> None:
                    pass

                def advance(self, n: int = 1) -> None:
                    bar.advance(task, n)

                def finish(self) -> None:
                    pass

            engine.add_documents(
                (DocumentInput(key=d.key, title=d.title, text=d.text) for d in ds.docs),
                source=ds.name,
                progress=Reporter(),
                total=len(ds.docs),
            )
        else:
            task = bar.add_task(f"ingest {ds.name}", total=len(ds.turns))
            by_conv: dict[str, list[Episode]] = defaultdict(list)
            for t in ds.turns:
                by_conv[t.conversation].append(
                    Episode(
                        id=f"{t.conversation}/{t.key}",
                        content=t.text,
                        agent_id=f"locomo-{t.conversation}",
                        session_id=t.session,
                        created_at=t.when.replace(tzinfo=UTC),
                        metadata={"speaker": t.speaker, "dia_id": t.key},
                    )
                )
            for episodes in by_conv.values():
                for start in range(0, len(episodes), 256):
                    part = episodes[start : start + 256]
                    engine.memory.remember_many(part, detect_mentions=False)
                    bar.advance(task, len(part))
    engine.refresh_index(save=True)
    return time.perf_counter() - started


def evaluate(rankings: dict[str, list[str]], questions: list[Question]) -> dict[str, Any]:
    per_cat: dict[str, list[dict[str, float]]] = defaultdict(list)
    rows = []
    for q in questions:
        row = score(rankings.get(q.qid, []), q.gold)
        rows.append(row)
        per_cat[q.category].append(row)
    return {
        "n": len(rows),
        "overall": mean(rows),
        "by_category": {c: {"n": len(r), **mean(r)} for c, r in sorted(per_cat.items())},
    }


def memory_server_command() -> list[str] | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    sys.path.insert(0, str(REPO))
    from tests.mcp_servers import npm_server_bin

    return npm_server_bin("@modelcontextprotocol/server-memory")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    datasets, notes = load_all(Path(args.data), args.datasets)
    report: dict[str, Any] = {"data": str(args.data), "notes": notes, "datasets": {}, "machine": machine_info()}
    systems = [s for s in args.systems if s in ENGINE_SYSTEMS]
    baseline_cmd = memory_server_command() if "memory-server" in args.systems else None
    if "memory-server" in args.systems and baseline_cmd is None:
        notes.append("memory-server: node/npm not found, baseline skipped")
    for ds in datasets:
        if args.smoke:
            shrink(ds, questions=5, extra_docs=25)
        elif args.limit_questions:
            ds.questions = ds.questions[: args.limit_questions]
        workdir = Path(tempfile.mkdtemp(prefix=f"aesop-quality-{ds.name}-"))
        engine = ContextEngine.open(settings=Settings(data_dir=workdir))
        entry: dict[str, Any] = {"questions": len(ds.questions), "notes": ds.notes[:20], "systems": {}}
        # gold items for which the dataset names the evidence sentences (the rest count whole)
        entry["sentence_evidence"] = sum(len(q.evidence) for q in ds.questions)
        try:
            entry["ingest_seconds"] = round(ingest(engine, ds), 2)
            entry["items"] = len(ds.docs) or len(ds.turns)
            for system in systems:
                rank = ranker(engine, ds, system)
                rankings: dict[str, list[str]] = {}
                t0 = time.perf_counter()
                with _progress() as bar:
                    task = bar.add_task(f"{ds.name} · {system}", total=len(ds.questions))
                    for q in ds.questions:
                        rankings[q.qid] = rank(q)
                        bar.advance(task)
                result = evaluate(rankings, ds.questions)
                result["ms_per_query"] = round((time.perf_counter() - t0) * 1000 / max(1, len(ds.questions)), 2)
                if args.budgets:
                    with _progress() as bar:
                        task = bar.add_task(f"{ds.name} · {system} · budgets", total=len(ds.questions))
                        result["evidence"] = budgets.measure_search(
                            searcher(engine, ds, system),
                            ds,
                            ds.questions,
                            engine.count_tokens,
                            args.budgets,
                            functools.partial(bar.advance, task),
                            rankings,
                        )
                entry["systems"][system] = result
            if baseline_cmd is not None:
                baseline = MemoryServerBaseline(baseline_cmd)
                try:
                    t0 = time.perf_counter()
                    with _progress() as bar:
                        task = bar.add_task(f"{ds.name} · memory-server", total=len(ds.questions))
                        rankings = baseline.run(ds, ds.questions, functools.partial(bar.advance, task))
                    result = evaluate(rankings, ds.questions)
                    result["ms_per_query"] = round((time.perf_counter() - t0) * 1000 / max(1, len(ds.questions)), 2)
                    if args.budgets:
                        result["evidence"] = budgets.measure_found(
                            baseline.found, ds, ds.questions, engine.count_tokens, args.budgets
                        )
                    entry["systems"]["memory-server"] = result
                    if args.answer_tokens:
                        answer_tokens.load_memory_graph(engine, ds)
                        entry["answer_tokens"] = {
                            "ours": asyncio.run(
                                answer_tokens.measure_ours(engine, ds, ds.questions, engine.count_tokens)
                            ),
                            "reference": answer_tokens.reference_stats(baseline.answers, engine.count_tokens),
                        }
                finally:
                    baseline.close()
        finally:
            engine.close()
            shutil.rmtree(workdir, ignore_errors=True)
        report["datasets"][ds.name] = entry
        if args.partial is not None:  # a long run keeps what it has measured so far
            args.partial.write_text(json.dumps(report, indent=2))
    return report


def machine_info() -> dict[str, Any]:
    import faiss
    import sentence_transformers
    import torch

    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Retrieval quality", ""]
    metrics = ["recall@1", "recall@5", "recall@10", "recall@20", "ndcg@10", "mrr", "all@10"]
    for name, entry in report["datasets"].items():
        lines += [f"## {name} ({entry['questions']} questions, {entry.get('items', '?')} items)", ""]
        lines.append("| system | " + " | ".join(metrics) + " | ms/query |")
        lines.append("|---" * (len(metrics) + 2) + "|")
        for system, res in entry["systems"].items():
            cells = [f"{res['overall'].get(m, 0):.3f}" for m in metrics]
            lines.append(f"| {system} | " + " | ".join(cells) + f" | {res['ms_per_query']} |")
        lines.append("")
        cats = sorted({c for res in entry["systems"].values() for c in res["by_category"]})
        if len(cats) > 1:
            lines.append("recall@10 by category:")
            lines.append("")
            lines.append(
                "| system | "
                + " | ".join(
                    f"{c} (n={next(iter(entry['systems'].values()))['by_category'].get(c, {}).get('n', 0)})"
                    for c in cats
                )
                + " |"
            )
            lines.append("|---" * (len(cats) + 1) + "|")
            for system, res in entry["systems"].items():
                cells = [f"{res['by_category'].get(c, {}).get('recall@10', 0):.3f}" for c in cats]
                lines.append(f"| {system} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += budgets.markdown(name, entry)
        if "answer_tokens" in entry:
            lines += answer_tokens.markdown(name, entry["answer_tokens"]["ours"], entry["answer_tokens"]["reference"])
        for (ds_name, metric), refs in PUBLISHED.items():
            if ds_name == name:
                for label, value, source in refs:
                    lines.append(f"- published {metric} for {label}: {value:.3f} ({source})")
                lines.append("")
    if report["notes"]:
        lines += ["Notes:", *[f"- {n}" for n in report["notes"]], ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: list[str] = []
    names = list(report["datasets"])
    if not names:
        return files
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for system, res in report["datasets"][name]["systems"].items():
            ks = [1, 5, 10, 20]
            ax.plot(ks, [res["overall"].get(f"recall@{k}", 0) for k in ks], marker="o", label=system)
        ax.set_title(name)
        ax.set_xlabel("k")
        ax.set_ylabel("recall@k")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = out / "quality-recall-at-k.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path.name)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder laid out like ../shared/evaldata")
    parser.add_argument("--datasets", default="locomo,musique,hotpotqa,scifact")
    parser.add_argument("--systems", default="bm25,vector,hybrid,engine,memory-server")
    parser.add_argument("--limit-questions", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few questions per dataset, seconds not minutes")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--json", default=None, help="also write the JSON report here")
    parser.add_argument(
        "--budgets",
        default=",".join(str(b) for b in budgets.BUDGETS),
        help="token budgets for evidence recall within a budget ('' to skip)",
    )
    parser.add_argument(
        "--answer-tokens",
        action="store_true",
        help="also count the tokens of each MCP tool's answer, ours and the reference memory server's",
    )
    parser.add_argument("--tag", default=None, help="name of the report files (default quality-latest)")
    args = parser.parse_args(argv)
    args.budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.partial = None if args.smoke else out / "quality-partial.json"
    report = run(args)
    if args.partial is not None:
        args.partial.unlink(missing_ok=True)
    report["command"] = "python -m benchmarks.quality " + " ".join(argv if argv is not None else sys.argv[1:])
    tag = args.tag or ("quality-smoke" if args.smoke else "quality-latest")
    (out / f"{tag}.json").write_text(json.dumps(report, indent=2))
    md = markdown(report)
    if not args.smoke and args.tag is None:  # the plot is of the full run
        report["plots"] = plot(report, out)
        md += "\n" + "\n".join(f"![{p}]({p})" for p in report["plots"]) + "\n"
    (out / f"{tag}.md").write_text(md)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
