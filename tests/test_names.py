"""Every class name in the package is unique, so a name says which class it is."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import aesoperator

PACKAGE = Path(aesoperator.__file__).parent


def class_definitions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                found[node.name].append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_the_walk_sees_the_package() -> None:
    names = class_definitions()
    assert "EmbeddedGraphStore" in names and "FilesystemAdapter" in names


def test_no_two_classes_share_a_name() -> None:
    clashes = {name: places for name, places in class_definitions().items() if len(places) > 1}
    assert not clashes, "class names defined more than once (rename so each says what it is): " + "; ".join(
        f"{name} at {', '.join(places)}" for name, places in sorted(clashes.items())
    )
