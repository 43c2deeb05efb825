"""The speed benchmark's smoke run: every section of its JSON is there, with sane numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "evaldata"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not (DATA / "hotpotqa").is_dir(), reason=f"evaluation data not found in {DATA}")
@pytest.mark.timeout(900)  # a minute or two on a quiet machine; several while it is shared
def test_speed_smoke_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed", "--smoke", "--out", str(out), "--tmp", str(tmp_path / "work")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((out / "speed-latest.json").read_text())
    for name in (
        "speed-latest.md",
        "speed-latest-latency.png",
        "speed-latest-throughput.png",
        "speed-latest-memory-server.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert len(list(out.glob("speed-2*.json"))) == 1

    assert result["schema"] == "aesoperator-speed/1"
    assert result["errors"] == []
    assert result["config"]["smoke"] is True
    machine = result["machine"]
    assert machine["usable_cores"] >= 1 and machine["ram_gb"] > 0
    assert machine["packages"]["torch"] and machine["packages"]["faiss-cpu"]
    assert "OPENBLAS_NUM_THREADS" in machine["env"]
    assert result["data"]["cycle_entities"] > 1000

    embed = result["embed"]["embedded"]
    assert embed["entities"] == 64
    assert embed["raw_encode"]["texts_per_s"] > 0
    assert embed["ingest_with_embedding"]["entities_per_s"] > 0
    assert embed["ingest_with_embedding"]["vectors_written"] == 64
    assert 0 < embed["ratio_to_raw"] < 5
    assert embed["query_embed_ms"]["p95"] >= embed["query_embed_ms"]["p50"] > 0

    (run,) = result["runs"]
    assert run["backend"] == "embedded" and run["size"] == 1000
    write = run["write"]
    assert write["entities"] == 1000 and write["relations"] > 0
    assert write["rows_per_s"] > 0 and write["entities_per_s"] > 0
    assert run["vectors"]["vectors"] == 1000 and run["vectors"]["vectors_per_s"] > 0
    assert run["index"]["vectors"] == 1000
    assert run["store"]["entities"] == 1000 and run["store"]["vectors"] == 1000
    queries = run["queries"]
    assert queries["n"] == 20 and queries["mean_hits"] > 0
    for stage in ("vector", "keyword", "name", "fuse", "load", "rerank", "pack"):
        assert stage in queries["stages_ms"], stage
    for name, stats in [*queries["stages_ms"].items(), ("total", queries["total_excl_embed_ms"])]:
        assert stats["p99"] >= stats["p95"] >= stats["p50"] >= 0, name
    assert queries["total_excl_embed_ms"]["p50"] > 0
    for phase in ("write", "vectors", "open", "index_build", "queries"):
        assert run["phases"][phase]["peak_rss_mb"] > 0, phase
        assert run["phases"][phase]["seconds"] >= 0, phase

    names = {(t["name"], t["backend"], t.get("size")) for t in result["targets"]}
    # scale targets, search_nodes and our two searches x two kinds of query, what extraction adds
    assert len(names) == 3 + 6 + 1
    assert any("extraction" in name for name, _, _ in names)
    assert all(isinstance(t["met"], bool) for t in result["targets"])
    assert "Beside the reference memory server" in (out / "speed-latest.md").read_text()

    (mem,) = result["memory_server"]
    assert mem["size"] == 200 and mem["entities"] == 200 and mem["relations"] > 0
    assert mem["reference"]["package"] == "@modelcontextprotocol/server-memory" and mem["reference"]["version"]
    for side in ("reference", "ours"):
        assert mem["load"][side]["entities_created"] == 200, side
        assert mem["load"][side]["relations_created"] > 0, side
    assert mem["load"]["ours_catch_up"]["complete"]  # every entity embedded before the queries
    assert mem["ours_server_rss_start_mb"] > 0
    assert mem["queries"]["question"]["n"] == 20
    assert 0 < mem["queries"]["keyword"]["n"] <= 20
    for kind in ("question", "keyword"):
        q = mem["queries"][kind]
        assert set(q["systems"]) == {
            "reference search_nodes",
            "ours search_nodes",
            "ours search",
            "ours ContextEngine.search",
            "ours ContextEngine.search stages",
        }
        for name, stats in q["systems"].items():
            wall = stats["wall_ms"]
            assert wall["n"] == q["n"] and wall["p99"] >= wall["p95"] >= wall["p50"] > 0, (kind, name)
        # the compatible tool must find exactly what the reference finds
        assert q["search_nodes_same_count"] == q["n"], kind
        for name in ("ours search", "ours ContextEngine.search"):
            assert q["systems"][name]["results"]["max"] <= 10 and q["systems"][name]["with_results"] > 0
        for ratios in q["ratios"].values():
            assert ratios["p50"] > 0 and ratios["p95"] > 0
    # every keyword occurs in the graph, so substring search finds something for each
    assert mem["queries"]["keyword"]["systems"]["reference search_nodes"]["with_results"] == 1.0


@pytest.mark.skipif(not (DATA / "hotpotqa").is_dir(), reason=f"evaluation data not found in {DATA}")
@pytest.mark.timeout(300)  # about half a minute on a quiet machine: two model loads, 6 s of calls
def test_soak_smoke_runs_clean(tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = ["--minutes", "0.1", "--entities", "40", "--out", str(out), "--tmp", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((out / "soak-latest.json").read_text())
    assert result["schema"] == "aesoperator-soak/1"
    assert result["config"]["short_run"] is True and result["config"]["clients"] == 8
    totals = result["totals"]
    assert totals["errors"] == 0 and totals["calls"] > 20, result["errors"]
    for tool in ("search", "recall", "remember", "get_entities", "neighbors", "create_entities", "search_nodes"):
        stats = totals["per_tool"][tool]
        assert stats["calls"] > 0 and stats["p95"] >= stats["p50"] > 0, tool
    assert sum(w["calls"] for w in result["windows"]) == totals["calls"]
    assert result["store"]["entities_after"] > result["store"]["entities_before"] == 40
    rss = result["rss"]
    assert len(rss["samples"]) >= 2 and rss["start_mb"] > 100
    audit = result["audit"]
    assert audit["ok"] is True and audit["exit_code"] == 0 and audit["records"] >= totals["calls"]
    assert result["server"]["clean_stop"] is True
    assert (out / "soak-latest.png").stat().st_size > 0
    assert (out / result["files"]["json"]).is_file()
    assert "Short run" in (out / "soak-latest.md").read_text()
