"""`aesop`: ingest, search, remember and recall from the terminal."""

from __future__ import annotations

from aesoperator.cli.app import app, err, out, state

# Each module registers its commands on `app` as it is imported: this order is the order `aesop --help` lists them.
# isort: off
from aesoperator.cli import ingest_search, memory_updates, forget, knowledge, sources, serve, explore, admin  # noqa: F401

# isort: on
from aesoperator.cli.serve import AUDIT_EXIT_CODES

__all__ = ["AUDIT_EXIT_CODES", "app", "err", "main", "out", "state"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: committed batches are kept; run the same command again to resume")
        raise SystemExit(130) from None
