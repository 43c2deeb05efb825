"""Results of a speed run as JSON, a Markdown report, plots, and the section of
`benchmarks/README.md` that shows the latest run."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.speed import extraction_share, memory_server_report
from benchmarks.speed.measure import console, machine_line
from benchmarks.speed.targets import query_target_ms

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "benchmarks" / "README.md"
README_START = "<!-- speed-latest:start -->"
README_END = "<!-- speed-latest:end -->"
LATENCY_PNG = "speed-latest-latency.png"
THROUGHPUT_PNG = "speed-latest-throughput.png"
STAGE_ORDER = ("index_sync", "vector", "keyword", "name", "fuse", "load", "expand", "rerank", "pack")
PHASES = ("write", "vectors", "open", "index_build", "keyword_build", "queries")


def _label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _git() -> dict[str, Any]:
    info: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout
        info["uncommitted_changes"] = bool(status.strip())
    return info


def _ok_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in results.get("runs", []) if "error" not in r]


def _stages(runs: list[dict[str, Any]]) -> list[str]:
    seen: set[str] = set()
    for r in runs:
        seen |= set(r["queries"]["stages_ms"])
    seen.discard("embed")
    return [s for s in STAGE_ORDER if s in seen] + sorted(seen - set(STAGE_ORDER))


def _keyword_build(run: dict[str, Any]) -> str:
    kw = run.get("keyword_index")
    return "–" if not kw else f"{kw['seconds']:.1f}"


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "–"
    if isinstance(v, int | float):
        return f"{v:,.{digits}f}"
    return str(v)


def _other_load(results: dict[str, Any]) -> float | None:
    """The highest average number of cores other processes kept busy during a timed phase."""
    timed = {"raw_encode", "raw_encode_again", "ingest_with_embedding", "write", "vectors", "queries"}
    values = [
        rec["cpu_other_cores"]
        for job in [*results.get("embed", {}).values(), *results.get("runs", [])]
        for name, rec in job.get("phases", {}).items()
        if name in timed and "cpu_other_cores" in rec
    ]
    return max(values) if values else None


# -- Markdown ---------------------------------------------------------------------------------
def markdown(results: dict[str, Any], image_prefix: str = "", heading: str = "#") -> str:
    h2 = heading + "#"
    cfg = results["config"]
    data = results["data"]
    git = results.get("git", {})
    lines: list[str] = []
    lines.append(f"{heading} Speed benchmark: latest run")
    lines.append("")
    lines.append(f"- Command: `{results['command']}`")
    when = results["created_at"].replace("T", " ").replace("+00:00", " UTC")
    commit = (
        f" · commit `{git['commit']}`{' + uncommitted changes' if git.get('uncommitted_changes') else ''}"
        if git.get("commit")
        else ""
    )
    lines.append(f"- Run: {when}{commit}")
    lines.append(f"- Machine: {machine_line(results['machine'])}")
    types = ", ".join(f"{k} {v:,}" for k, v in data["entity_types"].items())
    rels = ", ".join(f"{k} {v:,}" for k, v in data["relation_types"].items())
    arts = ", ".join(f"{k} {v:,}" for k, v in data["articles"].items())
    lines.append(
        f"- Data: real texts ({arts} articles); one pass gives {data['cycle_entities']:,} entities ({types}) and "
        f"{data['cycle_relations']:,} relations ({rels}); larger sizes repeat the corpora with deterministic variations "
        f"(other ids, shuffled sentences, other chunk sizes). Seed {cfg['seed']}."
    )
    lines.append(f"- Vectors: {data['vectors']}")
    other = _other_load(results)
    if other is not None:
        cores = results["machine"].get("usable_cores") or 1
        verdict = "quiet" if other < 0.15 * cores else "busy: other work slowed these numbers down"
        lines.append(
            f"- Other load on the machine during the timed phases: {other:.2f} cores on average at most "
            f"(CPU time outside this benchmark and its Neo4j server; {verdict})."
        )
    lines.append("")

    embed = {b: r for b, r in results.get("embed", {}).items() if "error" not in r}
    if embed:
        any_res = next(iter(embed.values()))
        ts = any_res["text_stats"]
        lines.append(f"{h2} Embedding: model rate and ingest with embedding")
        lines.append("")
        lines.append(
            f"The first {any_res['entities']:,} entities of the stream ({', '.join(f'{k} {v}' for k, v in any_res['entity_types'].items())}): "
            f"{ts['mean_words']} words, {ts['mean_tokens']} tokens on average (median {ts['median_tokens']:.0f}; "
            f"{ts['truncated_share'] * 100:.1f}% cut at {ts['max_seq_length']}). all-MiniLM-L6-v2, batch 64, "
            f"{any_res.get('torch_threads')} torch threads."
        )
        warm = any_res.get("store_warm_up")
        if warm:
            lines.append(
                f"Before the timed ingest each store takes {warm['entities']:,} throwaway entities with vectors "
                "(written, then deleted), as a store that has been running a while would have: a Neo4j started "
                "seconds earlier otherwise spends its first batches compiling its write paths."
            )
        lines.append("")
        lines.append(
            "| backend | raw encode (texts/s) | ingest with embedding (entities/s) | ratio | target | query embedding p50 / p95 (ms) |"
        )
        lines.append("|---|---:|---:|---:|---|---:|")
        for b, r in embed.items():
            q = r["query_embed_ms"]
            mark = "✅" if r["ratio_to_raw"] >= 0.9 else "❌"
            lines.append(
                f"| {b} | {r['raw_encode']['texts_per_s']:.1f} | {r['ingest_with_embedding']['entities_per_s']:.1f} | "
                f"{r['ratio_to_raw']:.2f} | ≥ 0.90 {mark} | {q['p50']:.1f} / {q['p95']:.1f} |"
            )
        lines.append("")

    runs = _ok_runs(results)
    if runs:
        lines.append(f"{h2} Ingest without embedding")
        lines.append("")
        lines.append(
            f"`store.write` of batches of {cfg['batch_size']:,} rows (entities + relations); only the write calls are timed. "
            "*With generation* includes building the pydantic models; *per CPU-second* divides by the CPU time the "
            "writes took (this process, plus the Neo4j server's), which other work on the machine inflates far less "
            "than wall time."
        )
        lines.append("")
        lines.append(
            "| backend | size | entities | relations | rows/s | target | entities/s | batch p50 / p95 (ms) | first → last tenth (rows/s) | with generation (rows/s) | per CPU-second |"
        )
        lines.append("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
        for r in runs:
            w = r["write"]
            goal = 20_000 if r["backend"] == "embedded" else 10_000
            mark = "✅" if w["rows_per_s"] >= goal else "❌"
            lines.append(
                f"| {r['backend']} | {_label(r['size'])} | {w['entities']:,} | {w['relations']:,} | {w['rows_per_s']:,.0f} | "
                f"≥ {goal:,} {mark} | {w['entities_per_s']:,.0f} | {w['batch_ms']['p50']:.0f} / {w['batch_ms']['p95']:.0f} | "
                f"{w['first_tenth_rows_per_s']:,.0f} → {w['last_tenth_rows_per_s']:,.0f} | {w['wall_rows_per_s']:,.0f} | "
                f"{_fmt(w.get('rows_per_cpu_s'))} |"
            )
        lines.append("")

        q0 = runs[0]["queries"]
        q_embedder = ", ".join(sorted({str(r.get("embedder", "the torch Embedder")) for r in runs}))
        lines.append(f"{h2} Query latency (ms)")
        lines.append("")
        lines.append(
            f"`ContextEngine.search(question, k={q0['k']}, hops={q0['hops']})` over {q0['n']} real questions "
            f"({', '.join(f'{d} {n}' for d, n in q0['datasets'].items())}), after {5} warm-up queries. "
            "*Total* is the sum of every stage's time except the query embedding (reported on its own). "
            f"Queries are embedded by the engine's configured embedder: {q_embedder}."
        )
        lines.append("")
        lines.append(
            "| backend | size | total p50 | total p95 | total p99 | target (p95) | query embedding p50 / p95 |"
        )
        lines.append("|---|---|---:|---:|---:|---|---:|")
        for r in runs:
            t = r["queries"]["total_excl_embed_ms"]
            e = r["queries"]["embed_ms"]
            limit, binding = query_target_ms(r["size"])
            mark = "✅" if t["p95"] < limit else "❌"
            where = "" if binding else " (set at 100k)"
            lines.append(
                f"| {r['backend']} | {_label(r['size'])} | {t['p50']:.1f} | {t['p95']:.1f} | {t['p99']:.1f} | < {limit:.0f} {mark}{where} | "
                f"{e['p50']:.1f} / {e['p95']:.1f} |"
            )
        lines.append("")
        cached = [r for r in runs if "queries_cached_embedding" in r]
        if cached:
            parts = []
            for r in cached:
                t = r["queries_cached_embedding"]["total_excl_embed_ms"]
                cpu = r["queries_cached_embedding"].get("cpu_ms_per_query", {})
                parts.append(
                    f"{r['backend']} {_label(r['size'])}: {t['p50']:.1f} / {t['p95']:.1f} "
                    f"(CPU time of this process per query p50 {cpu.get('p50', 0):.1f})"
                )
            lines.append(
                "The same questions a second time, with the query vectors already cached (so no model runs just "
                "before the other stages), total p50 / p95: " + "; ".join(parts) + ". A gap to the first pass is "
                "the cost the embedding's threads impose on the stages right after it."
            )
            lines.append("")
        stages = _stages(runs)
        head = " | ".join(f"{r['backend']} {_label(r['size'])}" for r in runs)
        lines.append("Per stage, p50 / p95 / p99 (ms):")
        lines.append("")
        lines.append(f"| stage | {head} |")
        lines.append("|---|" + "---:|" * len(runs))
        for s in [*stages, "embed"]:
            cells = []
            for r in runs:
                v = r["queries"]["stages_ms"].get(s)
                cells.append("–" if not v or not v.get("n") else f"{v['p50']:.2f} / {v['p95']:.2f} / {v['p99']:.2f}")
            name = "embed (not in total)" if s == "embed" else s
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")

        lines.append(f"{h2} Vectors, index and memory")
        lines.append("")
        lines.append(
            "| backend | size | vectors stored/s | open engine (s) | FAISS build (s) | keyword index build (s) | "
            + " | ".join(f"peak RSS {p} (MB)" for p in PHASES)
            + " | store on disk (MB) |"
        )
        lines.append("|---|---|---:|---:|---:|---:|" + "---:|" * len(PHASES) + "---:|")
        for r in runs:
            ph = r["phases"]
            peaks = []
            for p in PHASES:
                rec = ph.get(p, {})
                cell = _fmt(rec.get("peak_rss_mb"))
                if rec.get("server_peak_rss_mb"):
                    cell += f" (+ server {rec['server_peak_rss_mb']:,.0f})"
                peaks.append(cell)
            lines.append(
                f"| {r['backend']} | {_label(r['size'])} | {_fmt(r['vectors']['vectors_per_s'])} | {r['open_seconds']:.1f} | "
                f"{r['index']['seconds']:.1f} | {_keyword_build(r)} | "
                + " | ".join(peaks)
                + f" | {_fmt(r['store'].get('disk_mb'))} |"
            )
        lines.append("")
        lines.append(
            "Peak RSS is the process's high-water mark during each phase (reset at the start of the phase), so it "
            "includes what earlier phases left allocated; for Neo4j the server's own RSS is shown separately."
        )
        lines.append("")

    lines.extend(memory_server_report.markdown(results, h2))
    lines.extend(extraction_share.markdown(results, h2))
    targets = results.get("targets", [])
    if targets:
        lines.append(f"{h2} Targets")
        lines.append("")
        for t in targets:
            mark = "✅" if t["met"] else ("❌" if t.get("binding", True) else "·")
            where = t["backend"] + (f" {_label(t['size'])}" if t.get("size") else "")
            lines.append(
                f"- {mark} {t['name']}, {where}: **{_fmt(t['value'], 2 if t['value'] < 100 else 0)}** (target {t['target']}). {t['detail']}"
            )
        lines.append("")
    if results.get("errors"):
        lines.append(f"{h2} Failed jobs")
        lines.append("")
        for e in results["errors"]:
            lines.append(f"- `{e['job']}`: {e['error']}")
        lines.append("")
    if runs:
        lines.append(f"![Query latency by stage]({image_prefix}{LATENCY_PNG})")
        lines.append("")
        lines.append(f"![Throughput and latency against graph size]({image_prefix}{THROUGHPUT_PNG})")
        lines.append("")
    if memory_server_report.ok_runs(results):
        lines.append(f"![Search beside the reference memory server]({image_prefix}{memory_server_report.PLOT_PNG})")
        lines.append("")
    return "\n".join(lines)


# -- plots ------------------------------------------------------------------------------------
def plot_latency(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _ok_runs(results)
    stages = [*_stages(runs), "total"]
    backends = list(dict.fromkeys(r["backend"] for r in runs))
    sizes = sorted({r["size"] for r in runs})
    fig, axes = plt.subplots(
        len(backends), len(sizes), figsize=(5.2 * len(sizes), 3.6 * len(backends)), squeeze=False, sharey="row"
    )
    for i, b in enumerate(backends):
        for j, s in enumerate(sizes):
            ax = axes[i][j]
            run = next((r for r in runs if r["backend"] == b and r["size"] == s), None)
            if run is None:
                ax.set_axis_off()
                continue
            q = run["queries"]
            p50, p95 = [], []
            for st in stages:
                v = q["total_excl_embed_ms"] if st == "total" else q["stages_ms"].get(st, {})
                p50.append(v.get("p50", 0.0))
                p95.append(v.get("p95", 0.0))
            x = list(range(len(stages)))
            ax.bar([k - 0.2 for k in x], p50, width=0.4, label="p50", color="#4C72B0")
            ax.bar([k + 0.2 for k in x], p95, width=0.4, label="p95", color="#DD8452")
            ax.axhline(50, color="grey", linestyle=":", linewidth=1)
            ax.set_xticks(x)
            ax.set_xticklabels(
                ["total\n(no embed)" if st == "total" else st for st in stages], rotation=45, ha="right", fontsize=8
            )
            emb = q["embed_ms"]
            ax.set_title(
                f"{b}, {_label(s)} entities\nquery embedding p50 {emb['p50']:.0f} / p95 {emb['p95']:.0f} ms (not shown)",
                fontsize=9,
            )
            for k, (a, c) in enumerate(zip(p50, p95, strict=True)):
                if stages[k] == "total":
                    ax.annotate(f"{a:.0f}", (k - 0.2, a), ha="center", va="bottom", fontsize=7)
                    ax.annotate(f"{c:.0f}", (k + 0.2, c), ha="center", va="bottom", fontsize=7)
            ax.set_ylabel("ms")
            ax.grid(axis="y", alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.suptitle(f"Query latency by retrieval stage ({runs[0]['queries']['n']} questions; dotted: 50 ms)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _ok_runs(results)
    backends = list(dict.fromkeys(r["backend"] for r in runs))
    colors = {"embedded": "#4C72B0", "neo4j": "#55A868"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for b in backends:
        rs = sorted((r for r in runs if r["backend"] == b), key=lambda r: r["size"])
        xs = [r["size"] for r in rs]
        c = colors.get(b)
        left.plot(
            xs,
            [r["write"]["rows_per_s"] for r in rs],
            marker="o",
            color=c,
            label=f"{b}: entities + relations (store.write)",
        )
        left.plot(
            xs,
            [r["vectors"]["vectors_per_s"] or 0 for r in rs],
            marker="s",
            linestyle="--",
            color=c,
            alpha=0.6,
            label=f"{b}: vectors",
        )
        goal = 20_000 if b == "embedded" else 10_000
        left.axhline(goal, color=c, linestyle=":", linewidth=1)
        right.plot(xs, [r["queries"]["total_excl_embed_ms"]["p95"] for r in rs], marker="o", color=c, label=f"{b} p95")
        right.plot(
            xs,
            [r["queries"]["total_excl_embed_ms"]["p50"] for r in rs],
            marker="o",
            linestyle="--",
            color=c,
            alpha=0.6,
            label=f"{b} p50",
        )
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("graph size (entities)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("rows per second")
    left.set_title("Ingest without embedding (dotted: target)", fontsize=10)
    left.set_ylim(bottom=0)
    right.axhline(50, color="grey", linestyle=":", linewidth=1)
    right.set_ylabel("ms, all stages but the query embedding")
    right.set_title("Query latency against size (dotted: 50 ms)", fontsize=10)
    right.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- files ------------------------------------------------------------------------------------
def refresh_readme(results: dict[str, Any], readme: Path = README) -> bool:
    if not readme.exists():
        return False
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return False
    body = markdown(results, image_prefix="results/", heading="###")
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    readme.write_text(pattern.sub(lambda _: f"{README_START}\n{body}\n{README_END}", text), encoding="utf-8")
    return True


def write_all(results: dict[str, Any], out: Path, stamp: str, update_readme: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    results.setdefault("git", _git())
    written = []
    payload = json.dumps(results, indent=2, ensure_ascii=False)
    for name in (f"speed-{stamp}.json", "speed-latest.json"):
        (out / name).write_text(payload + "\n", encoding="utf-8")
        written.append(out / name)
    (out / "speed-latest.md").write_text(markdown(results) + "\n", encoding="utf-8")
    written.append(out / "speed-latest.md")
    if _ok_runs(results):
        plot_latency(results, out / LATENCY_PNG)
        plot_throughput(results, out / THROUGHPUT_PNG)
        written += [out / LATENCY_PNG, out / THROUGHPUT_PNG]
    if memory_server_report.plot(results, out / memory_server_report.PLOT_PNG):
        written.append(out / memory_server_report.PLOT_PNG)
    if update_readme and refresh_readme(results):
        written.append(README)
    return written


def print_summary(results: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="speed benchmark")
    for col in ("backend", "size", "write rows/s", "query p50 ms", "query p95 ms", "query p99 ms", "peak RSS MB"):
        table.add_column(col, justify="right")
    for r in _ok_runs(results):
        t = r["queries"]["total_excl_embed_ms"]
        peak = max(p.get("peak_rss_mb", 0) for p in r["phases"].values())
        table.add_row(
            r["backend"],
            _label(r["size"]),
            f"{r['write']['rows_per_s']:,.0f}",
            f"{t['p50']:.1f}",
            f"{t['p95']:.1f}",
            f"{t['p99']:.1f}",
            f"{peak:,.0f}",
        )
    console.print(table)
    for b, e in results.get("embed", {}).items():
        if "error" not in e:
            console.print(
                f"{b}: raw encode {e['raw_encode']['texts_per_s']:.1f} texts/s, ingest with embedding "
                f"{e['ingest_with_embedding']['entities_per_s']:.1f} entities/s, ratio {e['ratio_to_raw']:.2f}"
            )
    for run in memory_server_report.ok_runs(results):
        for kind in ("question", "keyword"):
            q = run["queries"][kind]
            if q.get("n"):
                ratios = ", ".join(f"{name} {r['p50']}x" for name, r in q["ratios"].items())
                console.print(
                    f"memory server {_label(run['size'])}, {kind} queries: reference p50 / ours p50: {ratios}"
                )
    for t in results.get("targets", []):
        mark = "[green]met" if t["met"] else "[red]missed"
        console.print(
            f"  {mark}[/] {t['name']} {t['backend']} {_label(t['size']) if t.get('size') else ''}: {t['value']} (target {t['target']})"
        )
    for e in results.get("errors", []):
        console.print(f"[red]failed[/] {e['job']}: {e['error']}")
