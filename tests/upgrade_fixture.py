"""A small data dir written by one release, kept in tests/fixtures/ to prove later releases open it.

`python -m tests.upgrade_fixture` (from the repository root, with the engine of the release to
record) writes `tests/fixtures/datadir_<version>.tar.gz` and its description
`tests/fixtures/datadir_<version>.json`: the schema versions it was written with, its counts, and
the searches and recalls it must keep answering. tests/test_upgrade_path.py opens every such
fixture with the current code. Record one for each release whose store schema is about to change.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from aesoperator.context import ContextEngine
from aesoperator.engine.stores.embedded_schema import STORE_SCHEMA_VERSION
from aesoperator.version import __version__

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Each document has a word no other has, so a search for it has one right answer in any release.
DOCUMENTS = {
    "glaciers.md": "# Glaciers\n\nThe Vatnajokull ice cap feeds outlet glaciers that calve into the lagoon.\n",
    "bread.md": "# Sourdough\n\nA levain of flour and water ferments overnight before the dough is shaped.\n",
    "notes/rockets.txt": "Staging: the first stage of the Saturn rocket burned kerosene and liquid oxygen.\n",
}
SEARCHES = {"Vatnajokull ice cap": "Vatnajokull", "levain ferments overnight": "levain", "Saturn kerosene": "Saturn"}
MEMORIES = [("ops", "s1", "Kim rotated the staging database password on Monday")]
RECALLS = {"who rotated the password?": "Kim rotated"}


def fixture_paths(version: str) -> tuple[Path, Path]:
    """The archive and the description of the fixture written by `version`."""
    return FIXTURES / f"datadir_{version}.tar.gz", FIXTURES / f"datadir_{version}.json"


def write_data_dir(data_dir: Path, docs_dir: Path) -> dict[str, Any]:
    """Ingest DOCUMENTS and remember MEMORIES into `data_dir`; what it holds, for the description."""
    for relative, text in DOCUMENTS.items():
        path = docs_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    engine = ContextEngine.open(data_dir=data_dir)
    try:
        engine.ingest_path(docs_dir)
        for agent, session, content in MEMORIES:
            engine.remember(content, agent, session)
        stats = engine.stats()
    finally:
        engine.close()
    return {
        "aesoperator": __version__,
        "store_schema_version": STORE_SCHEMA_VERSION,
        "entities": stats.entities,
        "relations": stats.relations,
        "vectors": stats.vectors,
        "searches": SEARCHES,
        "recalls": {query: {"agent_id": MEMORIES[0][0], "expect": text} for query, text in RECALLS.items()},
    }


def record() -> tuple[Path, Path]:
    """Write the fixture of the installed release into tests/fixtures/."""
    archive, description = fixture_paths(__version__)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "data"
        facts = write_data_dir(data_dir, Path(scratch) / "docs")
        with tarfile.open(archive, "w:gz") as tar:
            # the whole data dir as the release left it (graph store, indexes, extraction cache),
            # but for lock files; the ingest above writes no keys, tokens or audit log
            for path in sorted(data_dir.rglob("*")):
                if path.is_file() and path.name != ".lock":
                    tar.add(path, arcname=f"data/{path.relative_to(data_dir)}")
    description.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return archive, description


if __name__ == "__main__":
    for written in record():
        print(written)
