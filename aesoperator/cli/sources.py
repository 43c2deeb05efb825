"""`aesop sources ...` and `aesop watch`: MCP servers as sources, and keeping them in sync."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from aesoperator.cli.app import _emit, _engine, app, err, out, state
from aesoperator.cli.interrupts import stop_on_first_interrupt
from aesoperator.errors import AesopError

# -- MCP sources ---------------------------------------------------------------------------------
sources_app = typer.Typer(
    name="sources",
    help="Register MCP servers as sources and see how their ingests went.",
    no_args_is_help=True,
)
app.add_typer(sources_app, name="sources")


def _registry() -> Any:
    from aesoperator.config import load_settings
    from aesoperator.ingest.registry import SourceRegistry

    return SourceRegistry.for_settings(load_settings(data_dir=state.data_dir, graph=state.graph))


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise AesopError(f"{what} {value!r}: write KEY=VALUE")
        pairs[key.strip()] = rest
    return pairs


def _option_value(text: str) -> Any:
    """JSON when it parses (numbers, booleans, lists, tables), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _run_line(run: dict[str, Any] | None) -> str:
    if not run:
        return "never ingested"
    when = str(run.get("finished_at", ""))[:19].replace("T", " ")
    if run.get("status") != "ok":
        return f"{run.get('status')} {when}: {run.get('error', '')}"
    return (
        f"ok {when} in {run.get('seconds', 0):.1f}s: {run.get('records_seen', 0)} items "
        f"({run.get('records_changed', 0)} changed, {run.get('records_unchanged', 0)} unchanged, "
        f"{run.get('records_removed', 0)} removed), {run.get('quarantined', 0)} quarantined"
    )


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="Source name (letters, digits, '.', '_', '-').")],
    kind: Annotated[str, typer.Option("--kind", help="Adapter: filesystem, git, postgres, sqlite, memory, ...")],
    command: Annotated[str | None, typer.Option("--command", help="Executable of a stdio MCP server.")] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option("--arg", help="Argument for --command (repeatable; write --arg=--flag for values with '-')."),
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="Endpoint of a streamable HTTP MCP server.")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace (access scope) for what is ingested.")] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Adapter option KEY=VALUE (JSON values allowed; repeatable).")
    ] = None,
    credential: Annotated[
        list[str] | None,
        typer.Option(
            "--credential", help="PURPOSE=ENV_VAR, e.g. bearer_token=GITHUB_TOKEN: the variable's NAME is stored."
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="NAME=VALUE for a stdio server (repeatable); write secrets as ${ENV_VAR}."),
    ] = None,
    cwd: Annotated[str | None, typer.Option(help="Working directory of a stdio server.")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Glob of items to include (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Glob of items to exclude (repeatable).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per call (default 60).")] = None,
    retries: Annotated[int | None, typer.Option(help="Reconnects per call when the server fails (default 3).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a source of the same name.")] = False,
) -> None:
    """Register an MCP server as a source (kept in <data-dir>/sources.toml, without secrets)."""
    from aesoperator.ingest.registry import definition_from_table

    table: dict[str, Any] = {
        "kind": kind,
        "command": command,
        "args": list(arg or []),
        "url": url,
        "env": _pairs(env, "--env"),
        "cwd": cwd,
        "credentials": _pairs(credential, "--credential"),
        "options": {k: _option_value(v) for k, v in _pairs(option, "--option").items()},
        "include": list(include or []),
        "exclude": list(exclude or []),
        "namespace": namespace,
        "timeout_seconds": timeout,
        "retries": retries,
    }
    definition = definition_from_table(name, {k: v for k, v in table.items() if v is not None}, "aesop sources add")
    path = _registry().add(definition, replace=replace)
    from aesoperator.ingest.client import transport_identity

    _emit(
        {"added": name, "file": str(path), "definition": definition.public_view()},
        lambda: out.print(
            f"[green]added[/] {escape(name)} ({definition.kind}: {escape(transport_identity(definition))}) "
            f"to {escape(str(path))}; ingest it with `aesop ingest {escape(name)}`"
        ),
    )


@sources_app.command("list")
def sources_list() -> None:
    """Registered sources, where they are declared, and their last run."""
    from aesoperator.ingest.client import transport_identity
    from aesoperator.ingest.mcp_ingest import last_run

    entries = _registry().entries()
    with _engine() as engine:
        runs = {name: last_run(engine.store, name) for name in entries}
    rows = [
        {
            "name": name,
            "kind": e.definition.kind,
            "transport": transport_identity(e.definition),
            "namespace": e.definition.namespace,
            "declared_in": str(e.path),
            "last_run": runs[name],
        }
        for name, e in entries.items()
    ]

    def render() -> None:
        if not rows:
            out.print("no sources; add one with `aesop sources add NAME --kind KIND --command CMD` or --url URL")
            return
        table = Table(title="MCP sources")
        for column in ("name", "kind", "transport", "namespace", "declared in", "last run"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                escape(row["name"]),
                row["kind"],
                escape(row["transport"]),
                escape(row["namespace"]),
                escape(Path(row["declared_in"]).name),
                escape(_run_line(row["last_run"])),
            )
        out.print(table)

    _emit(rows, render)


@sources_app.command("status")
def sources_status(
    name: Annotated[str | None, typer.Argument(help="One source (default: every registered source).")] = None,
) -> None:
    """Last run, counts, and quarantined items with their reasons."""
    from aesoperator.ingest.registry import source_status

    entries = _registry().entries()
    with _engine() as engine:
        statuses = [source_status(engine.store, n) for n in ([name] if name else list(entries))]
    if name and name not in entries and statuses[0]["identity"] is None:
        raise AesopError(f"no source named {name!r}: it is not registered and nothing was ingested under that name")

    def render() -> None:
        if not statuses:
            out.print("no sources; add one with `aesop sources add`")
        for st in statuses:
            entry = entries.get(st["source"])
            kind = entry.definition.kind if entry else "not registered"
            out.print(f"[bold]{escape(st['source'])}[/] [dim]({kind}) {escape(st['identity'] or '')}[/]")
            out.print(f"  last run: {escape(_run_line(st['last_run']))}")
            out.print(f"  tracks {st['items']} items → {st['entities']} entities, {st['relations']} relations")
            quarantine = st["quarantined"]
            if quarantine:
                out.print(f"  [yellow]quarantined ({len(quarantine)}):[/]")
                for q in quarantine[:20]:
                    out.print(f"    {escape(q['key'])}: {escape(q['reason'])} [dim]{q['at']}[/]")
                if len(quarantine) > 20:
                    out.print(f"    … and {len(quarantine) - 20} more")

    _emit(statuses if name is None else statuses[0], render)


@sources_app.command("remove")
def sources_remove(
    name: Annotated[str, typer.Argument(help="The source to remove.")],
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete its entities, relations and sync state from the store.")
    ] = False,
) -> None:
    """Unregister a source; with --purge, also delete everything it brought in."""
    from aesoperator.ingest.registry import purge_source

    registry = _registry()
    entry = registry.entries().get(name)
    if entry is None and not purge:
        raise AesopError(f"no source named {name!r}; `aesop sources list` shows the registered ones")
    if entry is not None and (entry.origin == "sources.toml" or not purge):
        registry.remove(name)
    deleted = None
    if purge:
        with _engine() as engine:
            deleted = purge_source(engine.store, name)
    note = f" (still declared in {entry.path})" if entry is not None and entry.origin == "aesop.toml" else ""
    _emit(
        {"removed": name, "unregistered": entry is not None and not note, "entities_deleted": deleted},
        lambda: out.print(
            f"[green]removed[/] {escape(name)}"
            + (f": deleted {deleted} entities" if deleted is not None else "")
            + escape(note)
        ),
    )


@app.command()
def watch(
    source: Annotated[str, typer.Argument(help="A registered MCP source whose server offers resource subscriptions.")],
    no_embed: Annotated[
        bool, typer.Option("--no-embed", help="Store text only; embed later with rebuild-index.")
    ] = False,
) -> None:
    """Ingest a source, then re-ingest it whenever the server reports a resource update (Ctrl-C stops)."""
    from aesoperator.ingest.mcp_ingest import WatchEvent
    from aesoperator.ingest.progress import NoProgress, RichProgress

    def on_event(event: WatchEvent) -> None:
        report = event.report
        if state.as_json:
            line: dict[str, Any] = {"event": event.kind, "source": event.source, "uris": event.uris}
            line["message"] = event.message
            if report is not None:
                line["report"] = {k: v for k, v in report.__dict__.items() if k != "skipped"}
            sys.stdout.write(json.dumps(line, default=str) + "\n")
            sys.stdout.flush()
            return
        if event.kind == "subscribed":
            out.print(f"[cyan]watching[/] {len(event.uris)} resources of {escape(event.source)} (Ctrl-C stops)")
        elif event.kind == "reconnecting":
            out.print(f"[yellow]reconnecting[/]: {escape(event.message)}")
        elif report is not None:
            what = "ingested" if event.kind == "ingested" else f"updated {len(event.uris)} resources,"
            out.print(
                f"[green]{what}[/] {escape(event.source)}: {report.records_changed} changed, "
                f"{report.records_unchanged} unchanged, {report.records_removed} removed, "
                f"{report.quarantined} quarantined in {report.seconds:.1f}s"
            )

    def stopping() -> None:
        err.print("stopping after the current run (Ctrl-C again to abort)")

    with _engine() as engine, stop_on_first_interrupt(stopping) as stop:
        with contextlib.suppress(KeyboardInterrupt):  # the second Ctrl-C
            engine.watch_source(
                source,
                stop=stop,
                on_event=on_event,
                embed=not no_embed,
                progress=NoProgress() if state.as_json else RichProgress(),
            )
        err.print("stopped watching")
