"""`aesop`: ingest, search, remember and recall from the terminal."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from aesoperator.errors import AesopError

err = Console(stderr=True)


class _AesopCommands(TyperGroup):
    """The `aesop` group: an AesopError from any command is one red line on stderr and exit 1,
    the same whether the app runs as a program or in-process (typer's CliRunner)."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        try:
            return super().invoke(ctx)
        except AesopError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="aesop",
    cls=_AesopCommands,
    help="A knowledge-graph context engine for AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()


class _CliState:
    data_dir: Path | None = None
    graph: str | None = None
    as_json: bool = False


state = _CliState()


@app.callback()
def _global(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", "-d", help="Data directory (default .aesop or AESOP_DATA_DIR).")
    ] = None,
    graph: Annotated[str | None, typer.Option("--graph", help="'embedded' or a Neo4j URI (neo4j://host:7687).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    state.data_dir = data_dir
    state.graph = graph
    state.as_json = as_json


@contextmanager
def _engine() -> Iterator[Any]:
    from aesoperator.context import ContextEngine

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
        raise AesopError(
            f"--as-of {value!r} is not an ISO date or time (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return moment


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "~", "/")) or "/" in text or os.sep in text


@app.command()
def ingest(
    source: Annotated[
        str,
        typer.Argument(
            help="A registered MCP source (see `aesop sources list`) or a folder of text, Markdown or code files. "
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
    context: Annotated[bool, typer.Option("--context", help="Print the packed context text.")] = False,
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
        else:
            assert query is not None
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


# -- MCP sources ---------------------------------------------------------------------------------
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

    with _engine() as engine:
        try:
            engine.watch_source(
                source,
                on_event=on_event,
                embed=not no_embed,
                progress=NoProgress() if state.as_json else RichProgress(),
            )
        except KeyboardInterrupt:
            err.print("stopped watching")


# -- access tokens and the audit log -------------------------------------------------------------
tokens_app = typer.Typer(
    name="tokens",
    help="Static bearer tokens for the HTTP server (kept hashed in <data-dir>/tokens.json).",
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="tokens")
audit_app = typer.Typer(
    name="audit",
    help="The hash-chained audit log of tool calls (<data-dir>/audit.log).",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")


def _data_dir() -> Path:
    from aesoperator.config import load_settings

    return load_settings(data_dir=state.data_dir, graph=state.graph).data_dir


def _token_store() -> Any:
    from aesoperator.security.tokens import TokenStore

    return TokenStore.in_data_dir(_data_dir())


@tokens_app.command("add")
def tokens_add(
    name: Annotated[str, typer.Argument(help="Principal name the token stands for (shows in the audit log).")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="read:<namespace>, write:<namespace>, source:<name> or tool:<name>; * for all (repeatable).",
        ),
    ],
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime such as 12h, 30d or 2w (default: no expiry).")
    ] = None,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Revoke NAME's current token(s) and issue a new one in one step.")
    ] = False,
) -> None:
    """Issue a token; it is printed once and only its salted digest is stored."""
    from aesoperator.security.tokens import parse_duration

    issued = _token_store().add(name, scope, parse_duration(expires_in) if expires_in else None, rotate=rotate)
    view = issued.record.public_view()

    def render() -> None:
        out.print(
            f"[green]issued[/] token {issued.record.id} for {escape(name)} ({escape(' '.join(issued.record.scopes))})"
        )
        if issued.record.expires:
            out.print(f"expires {view['expires']}")
        out.print("[bold]copy it now, it is not shown again:[/]")
        sys.stdout.write(issued.token + "\n")

    _emit({"token": issued.token, **view}, render)


@tokens_app.command("list")
def tokens_list(
    all_: Annotated[bool, typer.Option("--all", help="Also show revoked and expired tokens.")] = False,
) -> None:
    """Issued tokens (names, scopes, expiry, status); never the tokens themselves."""
    rows = [t.public_view() for t in _token_store().tokens()]
    if not all_:
        rows = [r for r in rows if r["status"] == "active"]

    def render() -> None:
        if not rows:
            out.print("no tokens; issue one with `aesop tokens add NAME --scope read:default --scope tool:search`")
            return
        table = Table(title="static tokens")
        for column in ("name", "id", "scopes", "created", "expires", "status"):
            table.add_column(column)
        for r in rows:
            table.add_row(
                escape(r["name"]),
                r["id"],
                escape(" ".join(r["scopes"])),
                (r["created"] or "")[:19],
                (r["expires"] or "never")[:19],
                r["status"],
            )
        out.print(table)

    _emit(rows, render)


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str, typer.Argument(help="Principal name (all its tokens) or one token id.")],
) -> None:
    """Revoke tokens; a running server refuses them from its next request."""
    revoked = _token_store().revoke(name)
    _emit(
        [t.public_view() for t in revoked],
        lambda: out.print(
            f"[green]revoked[/] {len(revoked)} token(s) of {escape(name)}: " + ", ".join(t.id for t in revoked)
        ),
    )


_KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="The audit key (default: the audit_key_file setting, AESOP_AUDIT_KEY_FILE, else <data-dir>/audit.key).",
    ),
]
# `aesop audit verify` exit codes, by report status
AUDIT_EXIT_CODES = {"intact": 0, "broken": 1, "unverifiable": 2, "upgrade_needed": 3}


def _audit_log(key_file: Path | None = None) -> Any:
    from aesoperator.security.audit import AuditLog

    return AuditLog.in_data_dir(_data_dir(), key_path=key_file)


@audit_app.command("verify")
def audit_verify(key_file: _KeyFileOption = None) -> None:
    """Check the hash chain, the signed checkpoint and every record's signature. Exit 0 intact,
    1 broken (naming the first bad record), 2 key missing, 3 previous format (run `aesop audit upgrade`)."""
    report = _audit_log(key_file).verify()

    def render() -> None:
        if report.ok:
            out.print(f"[green]intact[/]: {report.records} records, chain, checkpoint and signatures verified")
        elif report.status == "upgrade_needed":
            err.print(f"[yellow]upgrade needed[/]: {escape(report.problem or '')}")
        elif report.status == "unverifiable":
            err.print(f"[yellow]cannot verify[/]: {escape(report.problem or '')}")
        else:
            err.print(f"[red]audit log broken[/]: {escape(report.problem or '')}")
            out.print(f"{report.records} records verified before the problem")
        for warning in report.warnings:
            err.print(f"[yellow]warning[/]: {escape(warning)}")

    _emit(report.as_dict(), render)
    code = AUDIT_EXIT_CODES.get(str(report.status), 1)
    if code:
        raise typer.Exit(code)


@audit_app.command("init")
def audit_init(key_file: _KeyFileOption = None) -> None:
    """Start the audit log of a data dir: write its first signed checkpoint (and the key, unless
    it exists already, e.g. one kept outside the data dir)."""
    log = _audit_log(key_file)
    log.initialise()
    _emit(
        {"log": str(log.path), "key": str(log.key_path)},
        lambda: out.print(f"[green]started[/] {escape(str(log.path))}, signed with {escape(str(log.key_path))}"),
    )


@audit_app.command("upgrade")
def audit_upgrade(key_file: _KeyFileOption = None) -> None:
    """Seal a log of the previous (unsigned) format: check it, then append a signed record that
    chains to its last one; every later record is signed."""
    record = _audit_log(key_file).upgrade()
    _emit(
        record,
        lambda: out.print(
            f"[green]upgraded[/]: records 1-{record['seq'] - 1} sealed by the signed record {record['seq']}"
        ),
    )


@audit_app.command("tail")
def audit_tail(
    n: Annotated[int, typer.Option("-n", help="How many records.")] = 20,
) -> None:
    """The last records of the audit log (arguments appear only as a digest)."""
    records = _audit_log().tail(n)

    def render() -> None:
        if not records:
            out.print("the audit log is empty")
            return
        table = Table(title="audit log")
        for column in ("seq", "time", "principal", "tool", "decision", "results", "ms", "args sha256"):
            table.add_column(column)
        for r in records:
            decision = str(r.get("decision", ""))
            color = "green" if decision == "allow" else "red"
            times = f" x{r['count']}" if "count" in r else ""  # an aggregate of refusals
            table.add_row(
                str(r.get("seq", "")),
                str(r.get("time", ""))[:23],
                escape(str(r.get("principal", ""))),
                escape(str(r.get("tool", ""))),
                f"[{color}]{escape(decision)}{times}[/]",
                str(r.get("result_count", "")),
                f"{r.get('latency_ms', 0):.1f}",
                str(r.get("args_sha256", ""))[:12],
            )
        out.print(table)

    _emit(records, render)


# -- serving agents over MCP ---------------------------------------------------------------------
def _scope_list(values: list[str] | None) -> list[str]:
    """Scopes given as repeated options and/or comma- or space-separated lists."""
    return [s for value in values or [] for s in value.replace(",", " ").split() if s]


@app.command()
def serve(
    stdio: Annotated[bool, typer.Option("--stdio", help="Serve over stdin/stdout (the default).")] = False,
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP on --host:--port.")] = False,
    host: Annotated[str, typer.Option(help="Address to bind for --http (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for --http (0 = any free port).", min=0, max=65535)] = 8765,
    path: Annotated[str, typer.Option(help="URL path of the MCP endpoint for --http.")] = "/mcp",
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            "--scopes",
            envvar="AESOP_SERVE_SCOPES",
            help="Scopes of the caller where there is no token (stdio, or HTTP with --no-auth): read:NS, "
            "write:NS, source:NAME, tool:NAME ('*' for all); repeatable or comma-separated. Default: full access.",
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="HTTP without bearer tokens (loopback only; every caller gets --scopes)."),
    ] = False,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow --host to be a non-loopback address (needs auth).")
    ] = False,
    rate_limit: Annotated[
        str | None, typer.Option(help="Calls per principal, e.g. 10/s or 600/min:50 (burst 50). Default: none.")
    ] = None,
    audit: Annotated[bool, typer.Option(help="Record every call in <data-dir>/audit.log.")] = True,
    audit_key_file: Annotated[
        Path | None,
        typer.Option(
            "--audit-key-file",
            help="Key that signs the audit log (default: AESOP_AUDIT_KEY_FILE, else <data-dir>/audit.key); keep it "
            "outside the data dir. Created with the log's first checkpoint if missing.",
        ),
    ] = None,
    jwt_issuer: Annotated[
        str | None, typer.Option("--jwt-issuer", help="Also accept OAuth2 JWTs from this issuer (AESOP_JWT_ISSUER).")
    ] = None,
    jwt_audience: Annotated[
        str | None,
        typer.Option("--jwt-audience", help="Audience JWTs must carry (AESOP_JWT_AUDIENCE; default: the MCP URL)."),
    ] = None,
    jwks_url: Annotated[
        str | None, typer.Option("--jwks-url", help="The issuer's JWKS URL, https (AESOP_JWKS_URL).")
    ] = None,
    jwks_file: Annotated[
        Path | None, typer.Option("--jwks-file", help="A JWKS file, re-read when it changes (AESOP_JWKS_FILE).")
    ] = None,
    jwt_algorithm: Annotated[
        list[str] | None,
        typer.Option("--jwt-algorithm", help="Allowed JWT algorithm, repeatable (default RS256 and ES256)."),
    ] = None,
    jwt_leeway: Annotated[
        float | None, typer.Option("--jwt-leeway", help="Seconds of clock skew allowed on exp/nbf (default 30).")
    ] = None,
    warm: Annotated[
        bool, typer.Option(help="Load the embedding model and vector index at start rather than on the first search.")
    ] = True,
    memory_namespace: Annotated[
        str, typer.Option(help="Namespace of the memory-server tools' knowledge graph.")
    ] = "memory-graph",
) -> None:
    """Serve the engine to agents over MCP: search, recall, remember, entities, neighbours, sources and
    the memory server's tools. Stdio by default; --http serves streamable HTTP with bearer tokens
    (`aesop tokens add`)."""
    from aesoperator import security as serve_auth
    from aesoperator.security.audit import AuditLog
    from aesoperator.security.guard import CallGuard
    from aesoperator.security.principal import Principal
    from aesoperator.security.ratelimit import Limit, RateLimiter
    from aesoperator.serve.server import build_server, http_app, run_stdio

    if stdio and http:
        raise AesopError("choose one transport: --stdio or --http")
    given = _scope_list(scopes) or None
    if http and no_auth and (allow_remote or not serve_auth.is_loopback_host(host)):
        raise AesopError("--no-auth serves loopback addresses only: drop --no-auth or bind 127.0.0.1")
    with _engine() as engine:
        data_dir = engine.settings.data_dir
        key_path = audit_key_file or engine.settings.audit_key_file
        guard = CallGuard(
            audit=AuditLog.in_data_dir(data_dir, key_path=key_path) if audit else None,
            limiter=RateLimiter(Limit.parse(rate_limit)) if rate_limit else None,
        )
        try:
            if guard.audit is not None:
                guard.audit.open_for_writing()  # a missing key stops the server here, not at its first call
            if not http:
                resolver = serve_auth.stdio_principal_resolver(given)
                run_stdio(build_server(engine, guard, resolver, memory_namespace=memory_namespace, warm=warm))
                return
            app_: Any
            sock = serve_auth.bind_socket(host, port, allow_remote=allow_remote)
            url = serve_auth.resource_url_for(sock, path)
            if no_auth:
                local = (
                    Principal.from_scopes("local", serve_auth.validate_scopes(given), "static")
                    if given
                    else Principal.full_access("local", "static")
                )
                server = build_server(engine, guard, lambda: local, memory_namespace=memory_namespace, warm=warm)
                app_ = http_app(server, host=host, path=path)
            else:
                jwt = serve_auth.jwt_options(
                    engine.settings,
                    jwt_issuer=jwt_issuer,
                    jwt_audience=jwt_audience,
                    jwks_url=jwks_url,
                    jwks_file=jwks_file,
                    jwt_algorithms=jwt_algorithm,
                    leeway=jwt_leeway,
                )
                verifier = serve_auth.build_verifier(data_dir, resource_url=url, **jwt)
                server = build_server(
                    engine, guard, serve_auth.http_principal_resolver(), memory_namespace=memory_namespace, warm=warm
                )
                issuers = [jwt["jwt_issuer"]] if jwt["jwt_issuer"] else []
                app_ = serve_auth.build_http_app(
                    server, verifier, url, issuers, guard=guard, json_response=False, host=host
                )
            err.print(f"serving MCP at {url}" + (" (no authentication)" if no_auth else ""), highlight=False)
            serve_auth.serve_http(app_, sock)
        finally:
            guard.close()


@app.command()
def doctor() -> None:
    """Check this installation: the data dir and its files must be open to their owner only
    (0700 / 0600). Prints each problem in words and the command that fixes it; exit 1 on a problem."""
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: committed batches are kept; run the same command again to resume")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
