"""`aesop`: ingest, search, remember and recall from the terminal."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from aesoperator.errors import AesopError

app = typer.Typer(
    name="aesop",
    help="A knowledge-graph context engine for AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)


class _State:
    data_dir: Path | None = None
    graph: str | None = None
    as_json: bool = False


state = _State()


@app.callback()
def _global(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", "-d", help="Data directory (default .aesop or AESOP_DATA_DIR).")] = None,
    graph: Annotated[str | None, typer.Option("--graph", help="'embedded' or a Neo4j URI (neo4j://host:7687).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    state.data_dir = data_dir
    state.graph = graph
    state.as_json = as_json


@contextmanager
def _engine() -> Iterator[Any]:
    from aesoperator.engine.context import ContextEngine

    engine = ContextEngine.open(data_dir=state.data_dir, graph=state.graph)
    try:
        yield engine
    finally:
        engine.close()


def _emit(payload: Any, render: Callable[[], None]) -> None:
    if state.as_json:
        sys.stdout.write(json.dumps(payload, indent=2, default=str, ensure_ascii=False) + "\n")
    else:
        render()


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise AesopError(f"--as-of {value!r} is not an ISO date or time (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)") from None
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return moment


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="A folder of text, Markdown or code files.")],
    name: Annotated[str | None, typer.Option(help="Source name (default: the folder's name).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace (access scope) for what is ingested.")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Glob of files to include (repeatable).")] = None,
    no_embed: Annotated[bool, typer.Option("--no-embed", help="Store text only; embed later with rebuild-index.")] = False,
) -> None:
    """Ingest a local folder (incremental: unchanged files are skipped)."""
    from aesoperator.ingest.progress import NoProgress, RichProgress

    with _engine() as engine:
        report = engine.ingest_path(
            path, name=name, namespace=namespace, embed=not no_embed, include=include or (),
            progress=NoProgress() if state.as_json else RichProgress(),
        )  # fmt: skip
    payload = {k: v for k, v in report.__dict__.items() if k != "skipped"}
    payload["skipped"] = [{"key": s.key, "reason": s.reason} for s in report.skipped]

    def render() -> None:
        out.print(
            f"[green]ingested[/] {report.source}: {report.records_seen} files "
            f"({report.records_changed} new or changed, {report.records_unchanged} unchanged, "
            f"{report.records_removed} removed) → {report.entities_written} entities, "
            f"{report.relations_written} relations, {report.texts_embedded} embedded in {report.seconds:.1f}s"
        )
        for s in report.skipped[:20]:
            out.print(f"  [yellow]skipped[/] {s.key}: {s.reason}")
        if len(report.skipped) > 20:
            out.print(f"  … and {len(report.skipped) - 20} more skipped")

    _emit(payload, render)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 5,
    hops: Annotated[int, typer.Option(help="Graph expansion depth (0 = off).")] = 1,
    type_: Annotated[list[str] | None, typer.Option("--type", help="Only these entity types (repeatable).")] = None,
    namespace: Annotated[list[str] | None, typer.Option(help="Only these namespaces (repeatable).")] = None,
    as_of: Annotated[str | None, typer.Option(help="Answer as of this time (ISO).")] = None,
    budget: Annotated[int | None, typer.Option(help="Token budget for the context.")] = None,
    context: Annotated[bool, typer.Option("--context", help="Print the packed context text.")] = False,
) -> None:
    """Hybrid search: ranked, explained results with provenance."""
    with _engine() as engine:
        result = engine.search(
            query, k=k, hops=hops, types=type_, namespaces=namespace, as_of=_parse_time(as_of), token_budget=budget
        )

    def render() -> None:
        if not result.hits:
            out.print("no results")
            return
        for i, hit in enumerate(result.hits, 1):
            origin = hit.provenance.uri if hit.provenance else hit.source
            out.print(f"[bold]{i}. {hit.name}[/]  [dim]{hit.type} · score {hit.score:.4f} · {origin}[/]")
            out.print(f"   [cyan]why:[/] {'; '.join(hit.reasons)}")
            snippet = " ".join(hit.text.split())[:240]
            out.print(f"   {snippet}")
        if context:
            out.rule("context")
            out.print(result.context_text(), markup=False)
        stages = ", ".join(f"{s} {v:.1f}" for s, v in result.timings_ms.items())
        out.print(f"[dim]{result.tokens_used}/{result.token_budget} tokens · ms: {stages}[/]")

    _emit(result.model_dump(mode="json"), render)


@app.command()
def remember(
    content: Annotated[str, typer.Argument(help="What to remember.")],
    agent: Annotated[str, typer.Option("--agent", help="Agent id.")],
    session: Annotated[str | None, typer.Option("--session", help="Session id.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Task id.")] = None,
) -> None:
    """Store a memory episode for an agent."""
    with _engine() as engine:
        episode = engine.memory.remember(content, agent, session, task_id=task)
    _emit(
        episode.model_dump(mode="json"),
        lambda: out.print(f"[green]remembered[/] {episode.id} (mentions {len(episode.mentions)} entities)"),
    )


@app.command()
def recall(
    query: Annotated[str, typer.Argument(help="What to recall.")],
    agent: Annotated[str, typer.Option("--agent", help="Agent id.")],
    session: Annotated[str | None, typer.Option("--session", help="Only this session.")] = None,
    k: Annotated[int, typer.Option("-k", help="How many episodes.")] = 5,
) -> None:
    """Recall an agent's relevant episodes and the entities they mention."""
    with _engine() as engine:
        result = engine.memory.recall(query, agent, session_id=session, k=k)

    def render() -> None:
        if not result.episodes:
            out.print("nothing recalled")
        for r in result.episodes:
            when = r.episode.created_at.strftime("%Y-%m-%d %H:%M")
            out.print(f"[bold]{when}[/] [dim]{r.episode.session_id or ''} · {r.score:.4f}[/] {r.episode.content}")
            out.print(f"   [cyan]why:[/] {'; '.join(r.reasons)}")
            if r.entities:
                out.print("   [cyan]mentions:[/] " + ", ".join(e.name for e in r.entities))

    _emit(result.model_dump(mode="json"), render)


@app.command()
def stats() -> None:
    """Counts of entities, relations, vectors, types and namespaces."""
    with _engine() as engine:
        s = engine.stats()

    def render() -> None:
        table = Table(title=f"aesop store ({s.backend})")
        table.add_column("what")
        table.add_column("count", justify="right")
        table.add_row("entities", str(s.entities))
        table.add_row("relations (live)", f"{s.relations} ({s.live_relations})")
        table.add_row("vectors", str(s.vectors))
        table.add_row("change-log position", str(s.last_seq))
        for t, n in sorted(s.entity_types.items()):
            table.add_row(f"  type {t}", str(n))
        for t, n in sorted(s.relation_types.items()):
            table.add_row(f"  relation {t}", str(n))
        for t, n in sorted(s.namespaces.items()):
            table.add_row(f"  namespace {t}", str(n))
        out.print(table)

    _emit(dataclasses.asdict(s), render)


@app.command("rebuild-index")
def rebuild_index(
    embed_missing: Annotated[bool, typer.Option(help="Embed entities that have no vector yet first.")] = True,
) -> None:
    """Rebuild the FAISS index from the vectors kept in the graph store."""
    with _engine() as engine:
        embedded = engine.embed_missing() if embed_missing else 0
        report = engine.rebuild_index()
    payload = {"embedded": embedded, **{k: getattr(report, k) for k in ("rebuilt", "reason", "added", "removed", "seconds")}}
    _emit(payload, lambda: out.print(f"[green]rebuilt[/] index: {report.added} vectors ({embedded} newly embedded) in {report.seconds:.2f}s"))


def main() -> None:
    try:
        app()
    except AesopError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: committed batches are kept; run the same command again to resume")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
