"""`aesop doctor` and `aesop migrate`: checking an installation and moving its data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from aesoperator.cli.app import _emit, app, err, out, state


@app.command()
def doctor() -> None:
    """Check this installation: file modes (data dir, tokens, audit key), versions (package, model,
    store schema), Neo4j when configured, the vector and keyword indexes against the store, and
    that every registered source answers. Prints each problem in words and the command that fixes
    it; exit 1 on a problem."""
    from aesoperator.config import load_settings
    from aesoperator.doctor import run_checks

    findings = run_checks(load_settings(data_dir=state.data_dir, graph=state.graph))
    problems = [f for f in findings if not f.ok]

    def render() -> None:
        for f in findings:
            mark = "[green]ok[/]" if f.ok else "[red]problem[/]"
            # soft_wrap: paths and the fix command stay on one line, ready to copy
            out.print(f"{mark} {escape(f.check)}: {escape(f.message)}", highlight=False, soft_wrap=True)
        for fix in dict.fromkeys(f.fix for f in problems if f.fix):
            out.print(f"fix: {escape(str(fix))}", highlight=False, soft_wrap=True)
        if problems:
            err.print(f"{len(problems)} problem(s) found")

    _emit({"ok": not problems, "findings": [f.model_dump() for f in findings]}, render)
    if problems:
        raise typer.Exit(1)


@app.command()
def migrate(
    to: Annotated[
        str, typer.Option("--to", help="Target store: a Neo4j URI (neo4j://127.0.0.1:7687) or 'embedded:DIR'.")
    ],
    batch_size: Annotated[int, typer.Option(help="Items per write.")] = 1000,
) -> None:
    """Copy this store (entities, relations, vectors, sync state) into another; resumable, counts verified."""
    from aesoperator.config import load_settings
    from aesoperator.engine.migrate import migrate as run_migration
    from aesoperator.engine.stores import open_store

    settings = load_settings(data_dir=state.data_dir, graph=state.graph)
    if to.startswith("embedded:"):
        target_settings = settings.model_copy(update={"graph": "embedded", "data_dir": Path(to.split(":", 1)[1])})
    else:
        target_settings = load_settings(data_dir=state.data_dir, graph=to)
    source_store = open_store(settings)
    target_store = open_store(target_settings)
    try:
        from aesoperator.ingest.progress import NoProgress, RichProgress

        bar = NoProgress() if state.as_json else RichProgress()
        started = False

        def progress(done: int, total: int) -> None:
            nonlocal started
            if not started:
                bar.start("migrate", total)
                started = True
            bar.advance(done - progress.last)  # type: ignore[attr-defined]
            progress.last = done  # type: ignore[attr-defined]

        progress.last = 0  # type: ignore[attr-defined]
        try:
            report = run_migration(source_store, target_store, batch_size=batch_size, progress=progress)
        finally:
            bar.finish()
    finally:
        source_store.close()
        target_store.close()
    payload = {
        "entities": report.entities,
        "relations": report.relations,
        "vectors": report.vectors,
        "source_items": report.source_items,
        "seconds": round(report.seconds, 2),
    }
    _emit(
        payload,
        lambda: out.print(
            f"[green]migrated[/] {report.entities} entities, {report.relations} relations, "
            f"{sum(report.vectors.values())} vectors, {report.source_items} sync states in {report.seconds:.1f}s "
            "(counts verified)"
        ),
    )
