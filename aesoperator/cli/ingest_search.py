"""`aesop ingest`, `search`, `remember`, `recall`, `stats` and `rebuild-index`: a data directory's content."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from aesoperator.cli.app import _emit, _engine, _looks_like_path, _parse_time, app, out, state
from aesoperator.errors import AesopError


@app.command()
def ingest(
    source: Annotated[
        str,
        typer.Argument(
            help="A registered MCP source (see `aesop sources list`), a folder of text, Markdown, code and "
            "document files (PDF, Word, PowerPoint, Excel, CSV, HTML, EPUB), or one such file. "
            "A bare name that is registered means the source; write ./NAME for a folder of that name."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="Source name (default: the folder's name).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace (access scope) for what is ingested.")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Glob of files to include (repeatable).")] = None,
    no_embed: Annotated[
        bool, typer.Option("--no-embed", help="Store text only; embed later with rebuild-index.")
    ] = False,
) -> None:
    """Ingest a registered MCP source or a local folder (incremental: unchanged items are skipped)."""
    from aesoperator.ingest.progress import NoProgress, RichProgress
    from aesoperator.ingest.registry import SourceRegistry

    progress = NoProgress() if state.as_json else RichProgress()
    with _engine() as engine:
        if not _looks_like_path(source) and source in SourceRegistry.for_settings(engine.settings):
            if name or namespace or include:
                raise AesopError(
                    "--name, --namespace and --include apply to folders; a registered source takes its "
                    "namespace and include rules from its definition (aesop sources add ... --replace)"
                )
            report = engine.ingest_source(source, embed=not no_embed, progress=progress)
            unit = "items"
        else:
            report = engine.ingest_path(
                Path(source),
                name=name,
                namespace=namespace,
                embed=not no_embed,
                include=include or (),
                progress=progress,
            )
            unit = "files"
    payload = {k: v for k, v in report.__dict__.items() if k != "skipped"}
    payload["skipped"] = [{"key": s.key, "reason": s.reason} for s in report.skipped]

    def render() -> None:
        out.print(
            f"[green]ingested[/] {escape(report.source)}: {report.records_seen} {unit} "
            f"({report.records_changed} new or changed, {report.records_unchanged} unchanged, "
            f"{report.records_removed} removed) → {report.entities_written} entities, "
            f"{report.relations_written} relations, {report.texts_embedded} embedded in {report.seconds:.1f}s"
        )
        if report.knowledge_items or report.knowledge_items_cached or report.merges:
            out.print(
                f"  knowledge: {report.knowledge_items} items read ({report.knowledge_items_cached} from cache), "
                f"{report.mentions} mentions, {report.knowledge_entities} new entities, {report.merges} merges"
            )
        for note in report.knowledge_notes[:5]:
            out.print(f"  [yellow]note[/] {escape(note)}")
        for s in report.skipped[:20]:
            out.print(f"  [yellow]skipped[/] {escape(s.key)}: {escape(s.reason)}")
        if len(report.skipped) > 20:
            out.print(f"  … and {len(report.skipped) - 20} more skipped")

    _emit(payload, render)


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="What to look for (optional with --about).")] = None,
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 5,
    hops: Annotated[int, typer.Option(help="Graph expansion depth (0 = off).")] = 1,
    type_: Annotated[list[str] | None, typer.Option("--type", help="Only these entity types (repeatable).")] = None,
    namespace: Annotated[list[str] | None, typer.Option(help="Only these namespaces (repeatable).")] = None,
    as_of: Annotated[str | None, typer.Option(help="Answer as of this time (ISO).")] = None,
    budget: Annotated[int | None, typer.Option(help="Token budget for the context.")] = None,
    context: Annotated[
        bool, typer.Option("--context", help="Print the packed context text (what MCP `search` answers with).")
    ] = False,
    about: Annotated[
        str | None, typer.Option("--about", help="Only items that mention this entity (a name or an id).")
    ] = None,
) -> None:
    """Hybrid search: ranked, explained results with provenance."""
    if query is None and about is None:
        raise AesopError("give a query, or --about NAME (or both)")
    with _engine() as engine:
        if about is not None:
            result = engine.search_about(
                about, query, k=k, namespaces=namespace, hops=hops, types=type_, as_of=_parse_time(as_of)
            )
            # packed as MCP `search_about` packs it
            from aesoperator.engine.packing import fit_context

            packed = fit_context(
                result.hits, [], budget or engine.settings.token_budget, count_tokens=engine.count_tokens
            ).to_text()
        else:
            assert query is not None
            result = engine.search(
                query, k=k, hops=hops, types=type_, namespaces=namespace, as_of=_parse_time(as_of), token_budget=budget
            )
            packed = result.context_text()

    def render() -> None:
        if not result.hits:
            out.print("no results")
            return
        for i, hit in enumerate(result.hits, 1):
            origin = hit.provenance.uri if hit.provenance else hit.source
            out.print(f"[bold]{i}. {hit.name}[/]  [dim]{hit.type} · score {hit.score:.4f} · {origin}[/]")
            if hit.properties.get("fragment"):  # a document's page, slide, sheet or chapter
                from aesoperator.engine.context_layout import source_ref

                out.print(f"   [cyan]at:[/] {escape(source_ref(hit))}")
            out.print(f"   [cyan]why:[/] {'; '.join(hit.reasons)}")
            snippet = " ".join(hit.text.split())[:240]
            out.print(f"   {snippet}")
        if context:
            out.rule("context")
            out.print(packed, markup=False, highlight=False, soft_wrap=True)
        stages = ", ".join(f"{s} {v:.1f}" for s, v in result.timings_ms.items())
        out.print(f"[dim]{result.tokens_used}/{result.token_budget} tokens · ms: {stages}[/]")

    _emit({**result.model_dump(mode="json"), "context": packed}, render)


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
    as_of: Annotated[str | None, typer.Option("--as-of", help="What held at this time (ISO date or time).")] = None,
) -> None:
    """Recall an agent's relevant episodes and the entities they mention (what holds now, or --as-of)."""
    with _engine() as engine:
        result = engine.memory.recall(query, agent, session_id=session, k=k, as_of=_parse_time(as_of))

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
    """Rebuild the derived indexes (FAISS from the stored vectors, and the keyword index) from the graph store."""
    with _engine() as engine:
        embedded = engine.embed_missing() if embed_missing else 0
        report = engine.rebuild_index()
    payload = {
        "embedded": embedded,
        **{k: getattr(report, k) for k in ("rebuilt", "reason", "added", "removed", "seconds")},
    }
    _emit(
        payload,
        lambda: out.print(
            f"[green]rebuilt[/] index: {report.added} vectors ({embedded} newly embedded) in {report.seconds:.2f}s"
        ),
    )
