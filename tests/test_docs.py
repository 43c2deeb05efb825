"""The README keeps up with the code: every `aesop` command and every subpackage is in it.

(After sqlite-utils' tests/test_docs.py: the code is walked, not a list kept by hand, so a new
command or subpackage fails here until the README says what it is.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

import aesoperator
from aesoperator.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PACKAGE = Path(aesoperator.__file__).parent


def command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """`sources add`, `tokens list`, ...: every visible command and subcommand of the app."""
    if path:
        yield " ".join(path)
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        if not sub.hidden:
            yield from command_paths(sub, (*path, name))


COMMANDS = list(command_paths(typer.main.get_command(app)))
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def layout_block() -> str:
    section = README.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_the_walks_see_the_code() -> None:
    assert {"ingest", "search", "doctor", "tokens list", "tokens revoke", "audit verify"} <= set(COMMANDS)
    assert {"engine", "ingest", "graph_schema", "serve"} <= set(SUBPACKAGES)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_readme(command: str) -> None:
    # `aesop tokens list`, also with global options before it: `aesop --json tokens list`
    pattern = r"\baesop(?: --?[\w-]+(?: [^\s-][^\s]*)?)* " + re.escape(command) + r"(?![\w-])"
    assert re.search(pattern, README), f"`aesop {command}` is not in README.md: add it to the Command line section"


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_every_subpackage_is_in_the_readme_layout(subpackage: str) -> None:
    assert re.search(rf"^\s+{re.escape(subpackage)}/", layout_block(), re.MULTILINE), (
        f"aesoperator/{subpackage}/ is not named in README.md's Layout section"
    )
