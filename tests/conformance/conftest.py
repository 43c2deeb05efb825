"""The `store` fixture: every conformance test runs once per graph store backend.

Backends:
- ``embedded``: an `EmbeddedGraphStore` in a fresh temporary data directory.
- ``neo4j``: built by the ``neo4j_store_factory`` fixture, which must return a fresh, empty
  store each time it is called. Marked ``neo4j`` so ``-m "not neo4j"`` skips it where no Neo4j
  can be started.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aesoperator.engine.stores.base import GraphStore

BACKENDS = [
    pytest.param("embedded", id="embedded"),
    pytest.param("neo4j", id="neo4j", marks=pytest.mark.neo4j),
]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    if request.param == "embedded":
        from aesoperator.engine.stores.embedded import EmbeddedGraphStore

        built: GraphStore = EmbeddedGraphStore(tmp_path / "data")
    else:
        built = request.getfixturevalue("neo4j_store_factory")()
    try:
        yield built
    finally:
        built.close()
