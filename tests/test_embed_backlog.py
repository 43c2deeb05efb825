"""The background embedder waits for a pause in writes before it takes the cores, however long it
has been idle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aesoperator.engine.embed_backlog import EmbeddingBacklog
from aesoperator.engine.stores.base import WriteBatch
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.graph_schema.models import Entity

QUIET = 1.5
MAX_DELAY = 3.0


def test_a_write_long_after_an_idle_start_still_waits_for_a_pause(tmp_path: Path, embedder: Any) -> None:
    """The notify at start finds nothing to embed; it must not start the `max_delay_seconds`
    clock, or the first write after that long would be embedded at once, while writes go on."""
    embedder.embed(["load the model before the clock matters"])
    store = EmbeddedGraphStore(tmp_path / "store")
    backlog = EmbeddingBacklog(
        store,
        lambda: embedder,
        "default",
        lambda entity: True,
        tmp_path / "backlog.json",
        quiet_seconds=QUIET,
        max_delay_seconds=MAX_DELAY,
    )
    try:
        time.sleep(MAX_DELAY + 0.3)
        ferry = Entity(id="ferry", type="Vessel", name="Ferry", text="sails from the harbour at dawn")
        result = store.write(WriteBatch(entities=[ferry]))
        backlog.notify(result.seq, [ferry.id])
        time.sleep(0.3)
        assert store.vector_count(embedder.model_name) == 0  # still inside the pause
        assert backlog.wait(timeout=60)
        assert store.vector_count(embedder.model_name) == 1
    finally:
        backlog.close()
        store.close()
