"""`aesop update`, `aesop history` and `aesop memory compact`: keeping an agent's memory true."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from aesoperator.cli.app import _emit, _engine, app, out

memory_app = typer.Typer(help="Memory hygiene: duplicate episodes and expired ones.", no_args_is_help=True)
app.add_typer(memory_app, name="memory")


@app.command()
def update(
    episode_id: Annotated[str, typer.Argument(help="The episode to correct (an id `recall --json` shows).")],
    content: Annotated[str, typer.Argument(help="What the episode should say.")],
) -> None:
    """Correct a remembered episode: a new version supersedes it from now on; history keeps the old one."""
    with _engine() as engine:
        result = engine.update_memory(episode_id, content)

    def render() -> None:
        out.print(f"[green]updated[/] {escape(result.replaced)} -> {escape(result.episode.id)}")
        if result.retracted_facts:
            out.print(f"   [cyan]withdrawn facts:[/] {len(result.retracted_facts)}")

    _emit(result.model_dump(mode="json"), render)


@app.command()
def history(
    target: Annotated[str, typer.Argument(help="An episode id, a fact id, or an entity's name or id.")],
    namespace: Annotated[list[str] | None, typer.Option(help="Only these namespaces (repeatable).")] = None,
) -> None:
    """Every version of a memory, a fact or what is remembered about an entity, with times and evidence."""
    with _engine() as engine:
        found = engine.memory_history(target, namespaces=namespace)

    def render() -> None:
        for e in found.entries:
            since = e.valid_from.strftime("%Y-%m-%d %H:%M") if e.valid_from else "?"
            until = e.valid_to.strftime("%Y-%m-%d %H:%M") if e.valid_to else "now"
            state = "[green]current[/]" if e.current else f"[yellow]{e.retired_reason or 'ended'}[/]"
            if e.kind == "episode":
                out.print(f"[bold]v{e.version}[/] {since} → {until} {state} {escape(e.content or '')}")
            else:
                what = f"{e.subject_name or e.subject} {e.predicate} {e.object_name or e.object}"
                out.print(f"  {since} → {until} {state} {escape(what)}")
                for ev in e.evidence:
                    out.print(f"     [dim]evidence:[/] {escape(ev.content[:120])}")

    _emit(found.model_dump(mode="json"), render)


@memory_app.command("compact")
def compact(
    agent: Annotated[str | None, typer.Option("--agent", help="The agent whose memory to compact.")] = None,
    namespace: Annotated[str | None, typer.Option(help="The namespace (default: the agent's, agent:<id>).")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Carry it out (default: only report).")] = False,
) -> None:
    """Report duplicate episodes (merged into the earliest, which counts them) and episodes past their
    time-to-live; with --apply, merge and retire them (history keeps them)."""
    if agent is None and namespace is None:
        raise typer.BadParameter("give --agent or --namespace")
    with _engine() as engine:
        report = engine.compact_memory(agent, namespace=namespace, apply=apply)

    def render() -> None:
        verb = "merged" if report.applied else "would merge"
        out.print(f"{report.episodes} live episodes in {', '.join(report.namespaces)}")
        for g in report.duplicates:
            out.print(f"  {verb} {len(g.merged)} into {escape(g.keep)} ({g.count}×, {g.reason}): {escape(g.content)}")
        if report.expired:
            out.print(f"  {'retired' if report.applied else 'would retire'} {len(report.expired)} expired episodes")
        if not report.applied and (report.duplicates or report.expired):
            out.print("[dim]dry run: add --apply to carry it out[/]")

    _emit(report.model_dump(mode="json"), render)
