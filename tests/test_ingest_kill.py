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


# The child runs the real CLI; the only change is that reading file number PAUSE_AT blocks after
# announcing itself, so the kill lands mid-ingest on any machine speed, after some batches committed.
PAUSE_AT = 700
_CHILD = """
import sys, time
from pathlib import Path
from aesoperator.ingest.local_files import LocalFolderExtractor
from aesoperator import cli

marker, pause_at = Path(sys.argv[1]), int(sys.argv[2])
original_read = LocalFolderExtractor.read
reads = 0

def read_then_pause(self, path):
    global reads
    reads += 1
    if reads == pause_at:
        marker.write_text("paused")
        time.sleep(3600)
    return original_read(self, path)

LocalFolderExtractor.read = read_then_pause
sys.argv = ["aesop", *sys.argv[3:]]
sys.exit(cli.main())
"""


def test_sigkill_mid_ingest_leaves_whole_batches_and_resumes(tmp_path: Path) -> None:
    tree, data, marker = tmp_path / "tree", tmp_path / "data", tmp_path / "paused"
    _make_tree(tree)
    env = {**os.environ, "AESOP_WRITE_BATCH_SIZE": "60", "HF_HUB_OFFLINE": "1"}
    args = ["--data-dir", str(data), "ingest", str(tree), "--no-embed"]
    child = [sys.executable, "-c", _CHILD, str(marker), str(PAUSE_AT), *args]
    proc = subprocess.Popen(child, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None and not marker.exists():
        time.sleep(0.05)
    assert marker.exists(), (
        f"ingest never reached file {PAUSE_AT}: {proc.stderr.read() if proc.poll() is not None and proc.stderr else b''!r}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    store = EmbeddedGraphStore(data)
    done = _check_whole_batches(store)
    assert 0 < done < FILES
    store.close()

    cmd = [sys.executable, "-m", "aesoperator.cli", *args]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    store = EmbeddedGraphStore(data)
    assert _check_whole_batches(store) == FILES
    assert store.stats().entity_types["File"] == FILES
    store.close()
