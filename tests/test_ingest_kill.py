"""SIGKILL in the middle of an ingest: the data dir stays openable, every committed batch is whole,
and running the ingest again completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aesoperator.engine.stores.embedded import EmbeddedGraphStore

FILES = 1500


def _make_tree(root: Path) -> None:
    for i in range(FILES):
        folder = root / f"part{i // 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note{i:04d}.md").write_text(f"# Note {i}\n\nItem {i} of the inventory, shelf {i % 37}.\n")


def _check_whole_batches(store: EmbeddedGraphStore) -> int:
    items = {k: v for k, v in store.source_items("tree").items() if k != "__source__"}
    for state in items.values():
        found = store.get_entities(list(state.entity_ids))
        assert len(found) == len(state.entity_ids), f"half-written item {state.key}"
    files = [e for batch in store.iter_entities(types=["File"]) for e in batch]
    assert {e.properties["path"] for e in files} == set(items), "a file entity without its sync state"
    return len(items)


def test_sigkill_mid_ingest_leaves_whole_batches_and_resumes(tmp_path: Path) -> None:
    tree, data = tmp_path / "tree", tmp_path / "data"
    _make_tree(tree)
    env = {**os.environ, "AESOP_WRITE_BATCH_SIZE": "60", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "aesoperator.cli", "--data-dir", str(data), "ingest", str(tree), "--no-embed"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if (data / "graph.sqlite").exists():
            store = EmbeddedGraphStore(data)
            committed = len(store.source_items("tree"))
            store.close()
            if committed > 50:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed; make the tree larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    store = EmbeddedGraphStore(data)
    done = _check_whole_batches(store)
    assert 0 < done < FILES
    store.close()

    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    store = EmbeddedGraphStore(data)
    assert _check_whole_batches(store) == FILES
    assert store.stats().entity_types["File"] == FILES
    store.close()
