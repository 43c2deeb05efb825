"""`aesop forget`: retire memories, or erase them with --purge; each change is audited."""

from __future__ import annotations

import getpass
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from aesoperator.cli.app import _emit, _engine, app, err, out

if TYPE_CHECKING:
    from aesoperator.engine.forget import ForgetReport

CLI_KIND = "cli"
PURGE_RECORD = "forget.purge"


def _describe(report: ForgetReport, engine: Any) -> None:
    """What a forget will change, on stderr (stdout stays the result, JSON with --json)."""
    verb = {"retire": "retire", "purge": "ERASE"}[report.mode]
    err.print(
        f"{verb} in [bold]{escape(report.namespace)}[/]: {len(report.episodes)} memories, "
        f"{len(report.entities)} other entities, {report.relations} relations"
    )
    for episode in engine.get_entities(report.episodes[:20], [report.namespace]):
        err.print(f"  {escape(episode.id)}  [dim]{escape(episode.text[:100])}[/]")
    if len(report.episodes) > 20:
        err.print(f"  ... and {len(report.episodes) - 20} more")


def _audit(engine: Any, arguments: dict[str, Any], report: ForgetReport, started: float) -> None:
    """One `forget` record for the change and, for a purge, a `forget.purge` record of the
    erasure (counts only); arguments are digested under the audit key."""
    who = f"{CLI_KIND}:{getpass.getuser()}"
    from aesoperator.security.audit import AuditLog

    with AuditLog.in_data_dir(engine.settings.data_dir) as log:
        latency = (time.perf_counter() - started) * 1000
        log.append(
            principal=who, kind=CLI_KIND, tool="forget", arguments=arguments, decision="allow",
            result_count=report.count, latency_ms=latency,
        )  # fmt: skip
        if report.mode == "purge":
            erased = {"namespace": report.namespace, "episodes": len(report.episodes), "entities": len(report.entities)}
            log.append(
                principal=who, kind=CLI_KIND, tool=PURGE_RECORD, arguments=erased, decision="allow",
                result_count=report.count, latency_ms=latency,
            )  # fmt: skip


@app.command()
def forget(
    episode_id: Annotated[str | None, typer.Argument(help="An episode id (as remember and recall show it).")] = None,
    query: Annotated[
        str | None, typer.Option("--query", help="Forget the episodes whose content contains this text.")
    ] = None,
    entity: Annotated[
        str | None, typer.Option("--entity", help="Forget what is about this entity (a name or an id).")
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Agent id (its namespace agent:<id> is meant).")] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="The memory namespace (default: the agent's).")
    ] = None,
    purge: Annotated[
        bool, typer.Option("--purge", help="Erase: nothing of the memories stays in the data directory.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Forget memories: by default retire them (recall and search stop returning them; --as-of an
    earlier time and their history still show them); with --purge erase them for good. Shows what
    will be forgotten and asks first unless --yes. Every forget is written to the audit log."""
    started = time.perf_counter()
    selection: dict[str, Any] = {
        "ids": [episode_id] if episode_id else [],
        "query": query,
        "entity": entity,
        "namespace": namespace,
        "purge": purge,
    }
    with _engine() as engine:
        preview = engine.forget(agent, dry_run=True, **selection)
        if not yes:
            _describe(preview, engine)
            if preview.count or preview.relations:
                typer.confirm("Go ahead?", abort=True, err=True)
        report = engine.forget(agent, **selection)
        _audit(engine, {"agent_id": agent, **selection}, report, started)

    def render() -> None:
        done = {"retire": "retired", "purge": "erased"}[report.mode]
        out.print(
            f"[green]{done}[/] {len(report.episodes)} memories, {len(report.entities)} other entities and "
            f"{report.relations} relations in {escape(report.namespace)}"
        )

    _emit(report.model_dump(mode="json"), render)
