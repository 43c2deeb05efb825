"""The quality harness end to end on a small subset, so it cannot rot (the full run is not CI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"


@pytest.mark.skipif(not DATA.is_dir(), reason="evaluation data folder ../shared/evaldata is not beside the repo")
def test_quality_smoke_reports_every_dataset_and_system(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality", "--smoke", "--systems", "bm25,vector,hybrid,engine",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "quality-smoke.json").read_text())
    assert set(report["datasets"]) == {"locomo", "musique", "hotpotqa", "scifact"}
    for name, entry in report["datasets"].items():
        assert entry["questions"] > 0, name
        assert set(entry["systems"]) == {"bm25", "vector", "hybrid", "engine"}
        for system, res in entry["systems"].items():
            overall = res["overall"]
            assert (
                0.0 <= overall["recall@1"] <= overall["recall@5"] <= overall["recall@10"] <= overall["recall@20"] <= 1.0
            )
            assert overall["recall@20"] > 0.0, f"{name}/{system} found no gold at all"
