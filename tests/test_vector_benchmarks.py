"""`benchmarks.speed.vector_build` builds the vector index from a kept store in the checkout it is
given and reports its memory, time and answers; `benchmarks.speed.vector_codes` compares exact
search with IVF over float32 and 8-bit codes on a dataset's real embeddings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.graph_schema.models import Entity
from benchmarks.quality.datasets import Dataset, Doc, Question
from benchmarks.speed import vector_build, vector_codes

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
def test_vector_build_reports_the_build_of_the_checkout_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = np.random.default_rng(3).standard_normal((400, 16)).astype(np.float32)
    with EmbeddedGraphStore(tmp_path / "store") as store:
        entities = [Entity(id=f"e{i:04d}", type="Document", name=f"e{i}", text="t") for i in range(400)]
        store.upsert(entities, vectors={e.id: (f"h{i}", rows[i]) for i, e in enumerate(entities)}, vector_model="m")
    out = tmp_path / "report.json"
    argv = ["vector_build", "--data-dir", str(tmp_path / "store"), "--tree", str(ROOT), "--queries", "20"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out)])
    vector_build.main()
    (run,) = json.loads(out.read_text())["runs"]
    assert run["vectors"] == 400 and run["kinds"] == {"default": "flat"}
    assert run["agreement_with_exact_at_10"] == 1.0  # exact search below vector_exact_max
    assert run["index_disk_bytes"] > 400 * 16 * 4 and run["build_seconds"] > 0 and run["tree"] == str(ROOT)


@pytest.mark.timeout(300)
def test_vector_codes_compares_exact_and_both_ivf_codes_on_real_embeddings(tmp_path: Path) -> None:
    topics = ["rivers", "volcanoes", "violins", "chess", "bread", "comets", "glaciers", "jazz"]
    docs = [
        Doc(f"d{i}", f"{t} {i}", f"A note number {i} about {t} and their history.") for i, t in enumerate(topics * 8)
    ]
    questions = [Question(f"q{i}", f"Tell me about {t}", {f"d{i}"}, "single") for i, t in enumerate(topics)]
    result = vector_codes.run_dataset(Dataset("tiny", "documents", docs=docs, questions=questions), tmp_path)
    assert result["items"] == 64 and result["exact"]["agreement_with_exact_at_10"] == 1.0
    ivf = {name: r for name, r in result.items() if name.startswith("ivf-")}
    assert {name.split(",")[0] for name in ivf} == {"ivf-flat", "ivf-sq8"}
    flat_bytes = max(r["bytes_per_vector"] for name, r in ivf.items() if name.startswith("ivf-flat"))
    sq8_bytes = max(r["bytes_per_vector"] for name, r in ivf.items() if name.startswith("ivf-sq8"))
    assert sq8_bytes < flat_bytes
    assert (tmp_path / "tiny.npz").exists()  # embeddings cached for the next run
