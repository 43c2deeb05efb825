"""The document throughput benchmark runs end to end on small files and reports every format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("reportlab")


def test_document_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "documents.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.documents", "--scale", "0.05", "--repeat", "1", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert {row["format"] for row in result["formats"]} == {"pdf", "docx", "pptx", "xlsx", "csv", "html", "epub"}
    assert all(row["units"] > 0 and row["chunks"] > 0 and row["units_per_s"] > 0 for row in result["formats"])
    ingest = result["ingest"]
    assert ingest["files"] == 7 and ingest["skipped"] == [] and ingest["unchanged_files"] == 7
    assert out.with_suffix(".md").read_text().startswith("# Document loader throughput")
