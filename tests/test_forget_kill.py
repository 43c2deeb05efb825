"""SIGKILL in the middle of a purge: the memory is either whole or gone, never half, and the next
open finishes an erasure whose store transaction committed (indexes resynced, files scrubbed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.forget_support import MARKER, traces

pytestmark = [pytest.mark.slow]

AGENT = "ops"

# The child purges with the real engine; the only change is that the step named by argv[2] blocks
# after announcing itself: "before" is the erasing store write (nothing committed yet), "after"
# is the renewal of the derived indexes (the store transaction committed, nothing scrubbed yet).
_CHILD = """
import sys, time
from pathlib import Path
from aesoperator import ContextEngine
from aesoperator.engine.context import EngineCore
from aesoperator.engine.stores.embedded import EmbeddedGraphStore

data, step, signal_file, query = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]

def pause():
    signal_file.write_text(step)
    time.sleep(3600)

if step == "before":
    original = EmbeddedGraphStore.write
    def write(self, batch):
        if batch.erase:
            pause()
        return original(self, batch)
    EmbeddedGraphStore.write = write
else:
    EngineCore._renew_indexes = lambda self: pause()

engine = ContextEngine.open(data_dir=data)
engine.forget("ops", query=query, purge=True)
"""


def _seed(make_engine: Callable[..., Any], data: Path) -> tuple[str, list[str]]:
    engine = make_engine(data)
    marked = engine.remember(f"{MARKER} moved to Lisbon and runs the harbour ferry", agent_id=AGENT, session_id="s")
    others = [
        engine.remember("The coffee machine on floor 3 is broken again", agent_id=AGENT, session_id="s").id,
        engine.remember("Lunch order for the ops team: two pizzas", agent_id=AGENT, session_id="s").id,
    ]
    engine.rebuild_index()  # saved indexes hold the marker
    engine.close()
    return marked.id, others


def _kill_at(step: str, data: Path, tmp_path: Path) -> None:
    signal_file = tmp_path / f"reached-{step}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESOP_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", AESOP_CONFIG=os.devnull)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(data), step, str(signal_file), MARKER],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not signal_file.exists():
        time.sleep(0.05)
    stderr = proc.stderr.read() if proc.poll() is not None and proc.stderr else b""
    assert signal_file.exists(), f"the purge never reached {step}: {stderr[-2000:]!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _recalled(engine: Any) -> list[str]:
    query = "who runs the harbour ferry? coffee machine, lunch pizzas"
    return [r.episode.id for r in engine.recall(query, agent_id=AGENT, k=10).episodes]


def test_kill_before_the_store_transaction_leaves_the_memory_whole(
    make_engine: Callable[..., Any], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    marked, others = _seed(make_engine, data)
    _kill_at("before", data, tmp_path)
    engine = make_engine(data)
    assert not engine.store.erasure_pending()
    assert engine.get_entities([marked])[0].text.startswith(MARKER)
    assert set(_recalled(engine)) == {marked, *others}
    assert marked in engine.index and marked in engine.keywords
    # the purge, run again to the end, erases it
    engine.forget(AGENT, query=MARKER, purge=True)
    engine.close()
    assert traces(data) == []


def test_kill_after_the_store_transaction_is_finished_at_the_next_open(
    make_engine: Callable[..., Any], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    marked, others = _seed(make_engine, data)
    _kill_at("after", data, tmp_path)
    left = traces(data)
    assert any(t.startswith("index/") for t in left), left  # the saved indexes were not renewed yet

    engine = make_engine(data)  # opening finishes the erasure
    assert not engine.store.erasure_pending()
    assert engine.get_entities([marked]) == []
    assert set(_recalled(engine)) == set(others)
    assert marked not in engine.index and marked not in engine.keywords
    assert len(engine.index) == engine.stats().vectors and len(engine.keywords) == engine.stats().entities
    engine.close()
    assert traces(data) == []
