"""`aesop entities ...` and `aesop code`: the entities in the graph, their merges, and code symbols."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from aesoperator.cli.app import _emit, _engine, app, out

entities_app = typer.Typer(
    help="The people, organisations, places, systems and concepts in the graph, and their merges.",
    no_args_is_help=True,
)
app.add_typer(entities_app, name="entities")


@entities_app.command("list")
def entities_list(
    query: Annotated[str | None, typer.Argument(help="Only names containing this.")] = None,
    type_: Annotated[list[str] | None, typer.Option("--type", help="Only these types (repeatable).")] = None,
    namespace: Annotated[list[str] | None, typer.Option(help="Only these namespaces (repeatable).")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 50,
) -> None:
    """Entities, merged across sources, most mentioned first."""
    with _engine() as engine:
        found = engine.entities(query, types=type_, namespaces=namespace, limit=limit)

    def render() -> None:
        table = Table(title="entities")
        for col in ("name", "type", "mentions", "merged", "sources", "id"):
            table.add_column(col)
        for e in found:
            table.add_row(
                escape(e.name), e.type, str(e.mentions), str(len(e.members)), ", ".join(e.sources), escape(e.id)
            )
        out.print(table)

    _emit([e.model_dump(mode="json") for e in found], render)


@entities_app.command("show")
def entities_show(
    name: Annotated[str, typer.Argument(help="A name (case-insensitive) or an id.")],
    namespace: Annotated[list[str] | None, typer.Option(help="Only these namespaces (repeatable).")] = None,
) -> None:
    """One entity: its names, sources, the items that mention it, its relations and merges."""
    with _engine() as engine:
        profile = engine.entity(name, namespaces=namespace)

    def render() -> None:
        e = profile.entity
        out.print(f"[bold]{escape(e.name)}[/] [dim]{e.type} · {e.namespace} · {escape(e.id)}[/]")
        out.print(f"  names: {escape(', '.join(e.names))}")
        out.print(f"  sources: {', '.join(e.sources)} · members: {len(e.members)}")
        out.print(f"[cyan]mentioned by[/] ({len(profile.mentions)})")
        for m in profile.mentions[:30]:
            out.print(
                f"  {escape(m.item_name)} [dim]{m.item_type} · {escape(m.text)!r} at {m.spans[:3]} · {m.extractor}[/]"
            )
        out.print(f"[cyan]relations[/] ({len(profile.relations)})")
        for r in profile.relations[:30]:
            arrow = "→" if r.direction == "out" else "←"
            out.print(f"  {r.type} {arrow} {escape(r.other_name)} [dim]{r.other_type} {escape(r.evidence[:120])}[/]")
        out.print(f"[cyan]merges[/] ({len(profile.merges)})")
        for m in profile.merges:
            state_ = "" if m.live else " [red](undone)[/]"
            out.print(
                f"  {m.kind} {escape(m.a_name)} = {escape(m.b_name)}: {m.rule} {m.score:.2f}{state_} [dim]{m.id}[/]"
            )

    _emit(profile.model_dump(mode="json"), render)


@entities_app.command("merges")
def entities_merges(
    namespace: Annotated[list[str] | None, typer.Option(help="Only these namespaces (repeatable).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include undone merges and refusals.")] = False,
) -> None:
    """Every merge decision: the two entities, the rule, its score and evidence."""
    with _engine() as engine:
        found = engine.merges(namespace, include_undone=all_)

    def render() -> None:
        table = Table(title="merge decisions")
        for col in ("id", "a", "b", "rule", "score", "evidence", "live"):
            table.add_column(col)
        for m in found:
            table.add_row(
                m.id, escape(m.a_name), escape(m.b_name), m.rule, f"{m.score:.2f}", escape(m.evidence[:80]), str(m.live)
            )
        out.print(table)

    _emit([m.model_dump(mode="json") for m in found], render)


@entities_app.command("unmerge")
def entities_unmerge(decision: Annotated[str, typer.Argument(help="A merge decision id (see `merges`).")]) -> None:
    """Undo a merge; resolution will not merge the two again."""
    with _engine() as engine:
        info = engine.unmerge(decision)
    _emit(
        info.model_dump(mode="json"),
        lambda: out.print(f"[green]unmerged[/] {escape(info.a_name)} and {escape(info.b_name)} ({info.id})"),
    )


@app.command("code")
def code_symbol(
    name: Annotated[str, typer.Argument(help="A symbol: qualified (pkg.mod.func) or its last part.")],
    namespace: Annotated[list[str] | None, typer.Option(help="Only these namespaces (repeatable).")] = None,
) -> None:
    """Where a code symbol is defined, and what calls, imports or inherits it."""
    with _engine() as engine:
        reports = engine.code_symbol(name, namespaces=namespace)

    def render() -> None:
        for r in reports:
            s = r.symbol
            where = f"{s.path}:{s.start_line}-{s.end_line}" if s.path else "not defined in the ingested code"
            out.print(f"[bold]{escape(s.qualified_name)}[/] [dim]{s.type} · {escape(where)}[/]")
            if s.signature:
                out.print(f"  {escape(s.signature)}")
            for link in r.incoming:
                out.print(f"  ← {link.type} {escape(link.symbol.qualified_name)} [dim]line {link.line}[/]")
            for link in r.outgoing:
                out.print(f"  → {link.type} {escape(link.symbol.qualified_name)} [dim]line {link.line}[/]")

    _emit([r.model_dump(mode="json") for r in reports], render)
