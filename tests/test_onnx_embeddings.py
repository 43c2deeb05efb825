"""The ONNX Runtime embedding backend: same vectors as torch, stored apart, torch as the fallback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aesoperator import ContextEngine
from aesoperator.config import Settings
from aesoperator.engine.embedder_factory import make_embedder
from aesoperator.engine.embeddings import DEFAULT_MODEL, Embedder
from aesoperator.engine.onnx_embeddings import OnnxEmbedder
from aesoperator.engine.vector_backend import split_vector_key, vector_key
from aesoperator.errors import ConfigError, EmbeddingBackendMismatch
from aesoperator.graph_schema.models import Entity

REPO = Path(__file__).resolve().parents[1]

# Real text of several kinds: prose, a claim, a code comment, a name, a long paragraph (truncated
# at the model's 256 tokens) and a non-English line.
TEXTS = [
    "Hybrid retrieval fuses keyword, vector and graph channels before packing the context.",
    "Aspirin reduces the risk of myocardial infarction in adults over sixty.",
    "def rebuild_index(self) -> SyncReport:  # rebuild FAISS from the stored vectors",
    "Marie Curie",
    " ".join(["The engine stores entities, relations and vectors in one transaction."] * 60),
    "Der schnelle braune Fuchs springt über den faulen Hund.",
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_fp32(onnx_cache: Path) -> OnnxEmbedder:
    embedder = OnnxEmbedder(cache_size=0, cache_dir=onnx_cache)
    embedder.ensure_export()
    return embedder


def test_onnx_vectors_match_torch(onnx_fp32: OnnxEmbedder, onnx_cache: Path, embedder: Embedder) -> None:
    readme = [p.strip() for p in (REPO / "README.md").read_text(encoding="utf-8").split("\n\n") if len(p) > 80]
    texts = TEXTS + readme[:40]
    torch_rows = embedder.embed(texts)
    onnx_rows = onnx_fp32.embed(texts)
    assert onnx_rows.shape == torch_rows.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(onnx_rows, axis=1), 1.0, atol=1e-5)
    cosine = (torch_rows * onnx_rows).sum(axis=1)
    assert cosine.min() > 0.9999, cosine.min()
    query = onnx_fp32.embed_query(TEXTS[0])
    assert float(query @ torch_rows[0]) > 0.9999

    int8 = OnnxEmbedder(cache_size=0, cache_dir=onnx_cache, precision="int8")
    int8_rows = int8.embed(texts)
    int8_cosine = (torch_rows * int8_rows).sum(axis=1)
    assert int8_cosine.mean() > 0.98 and int8_cosine.min() > 0.95, (int8_cosine.mean(), int8_cosine.min())
    # Nearest neighbours agree: each text is closest to itself across backends.
    assert (np.argmax(int8_rows @ torch_rows.T, axis=1) == np.arange(len(texts))).all()


def test_export_is_cached_and_keyed(onnx_fp32: OnnxEmbedder, onnx_cache: Path) -> None:
    directory = onnx_fp32.ensure_export()
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model_name"] == DEFAULT_MODEL and manifest["precision"] == "fp32"
    assert manifest["revision"] in directory.name and "onnx-fp32" in directory.name
    before = (directory / "model.onnx").stat().st_mtime_ns
    again = OnnxEmbedder(cache_dir=onnx_cache)
    assert again.ensure_export() == directory  # found, not exported again
    assert (directory / "model.onnx").stat().st_mtime_ns == before
    assert not [p for p in onnx_cache.iterdir() if p.name.startswith(".")]  # no scratch left behind
    # fp32 ONNX computes torch's vectors (test above), so both store them under the model's name
    assert onnx_fp32.model_name == vector_key(DEFAULT_MODEL, "onnx") == vector_key(DEFAULT_MODEL, "torch")
    assert vector_key(DEFAULT_MODEL, "onnx-int8") == "all-MiniLM-L6-v2+onnx-int8"
    assert split_vector_key("all-MiniLM-L6-v2+onnx-int8") == (DEFAULT_MODEL, "onnx-int8")
    assert split_vector_key(DEFAULT_MODEL) == (DEFAULT_MODEL, "torch")


def _entities(n: int) -> list[Entity]:
    topics = ["rivers of Europe", "protein folding", "jazz in New Orleans", "volcanoes of Iceland"]
    return [
        Entity(id=f"doc:{i}", type="Document", name=f"Note {i}", text=f"A note about {topics[i % 4]}, number {i}.")
        for i in range(n)
    ]


def test_backend_switch_is_refused_until_rebuilt(tmp_path: Path, onnx_cache: Path) -> None:
    data = tmp_path / "data"
    with ContextEngine.open(settings=Settings(data_dir=data, embedding_backend="torch")) as engine:
        engine.upsert(_entities(12))
        assert engine.search("volcanoes", k=3).hits
    # fp32 ONNX searches torch's vectors as they are: the same space, the same key
    fp32 = Settings(data_dir=data, embedding_backend="onnx", embedding_onnx_cache_dir=onnx_cache)
    with ContextEngine.open(settings=fp32) as engine:
        assert engine.embedder.model_name == DEFAULT_MODEL
        hits = engine.search("volcanoes of Iceland", k=3).hits
        assert hits and "Iceland" in hits[0].text
    int8 = Settings(data_dir=data, embedding_backend="onnx-int8", embedding_onnx_cache_dir=onnx_cache)
    with ContextEngine.open(settings=int8) as engine:
        assert engine.embedder.model_name == "all-MiniLM-L6-v2+onnx-int8"
        with pytest.raises(EmbeddingBackendMismatch, match="aesop rebuild-index"):
            engine.search("volcanoes", k=3)
        engine.upsert(_entities(14)[12:])  # new writes under the new backend do not make it whole
        with pytest.raises(EmbeddingBackendMismatch, match="torch backend"):
            engine.search("volcanoes", k=3)
        assert engine.embed_missing() == 12
        engine.rebuild_index()
        hits = engine.search("volcanoes of Iceland", k=3).hits
        assert hits and "Iceland" in hits[0].text
        models = engine.store.vector_models()
        assert models == ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2+onnx-int8"]
    # Back to torch: its 12 vectors are fewer than int8's 14, so it is refused too.
    with (
        ContextEngine.open(settings=Settings(data_dir=data, embedding_backend="torch")) as engine,
        pytest.raises(EmbeddingBackendMismatch, match="onnx-int8 backend"),
    ):
        engine.search("volcanoes", k=3)


def test_falls_back_to_torch_when_export_impossible(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    not_a_dir = tmp_path / "cache-is-a-file"
    not_a_dir.write_text("occupied", encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", embedding_backend="onnx", embedding_onnx_cache_dir=not_a_dir)
    with caplog.at_level(logging.WARNING, logger="aesoperator.engine.embedder_factory"):
        embedder = make_embedder(settings)
    assert type(embedder) is Embedder and embedder.model_name == DEFAULT_MODEL
    assert "embedding with torch instead of onnx" in caplog.text and str(not_a_dir) in caplog.text


def test_falls_back_to_torch_without_onnxruntime(tmp_path: Path) -> None:
    # A fresh interpreter in which onnxruntime cannot be imported (None in sys.modules is Python's
    # documented way to block an import), as on an installation without it.
    script = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from aesoperator.config import Settings\n"
        "from aesoperator.engine.embedder_factory import make_embedder\n"
        "from aesoperator.engine.onnx_embeddings import onnx_runtime_available\n"
        f"e = make_embedder(Settings(data_dir={str(tmp_path / 'data')!r}, embedding_backend='onnx'))\n"
        "print(onnx_runtime_available(), type(e).__name__, e.model_name, e.embed_query('hello').shape)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "Embedder", DEFAULT_MODEL, "(384,)"]
    assert "needs onnxruntime" in done.stderr


def test_int8_queries_over_fp32_vectors(onnx_fp32: OnnxEmbedder, onnx_cache: Path, tmp_path: Path) -> None:
    """`embedding_query_backend = "onnx-int8"`: documents are embedded (and stored) as by the fp32
    backend, queries by the int8 export, close enough to rank the same texts first."""
    settings = Settings(data_dir=tmp_path, embedding_query_backend="onnx-int8", embedding_onnx_cache_dir=onnx_cache)
    mixed = make_embedder(settings)
    assert isinstance(mixed, OnnxEmbedder) and mixed.query_precision == "int8" and mixed.precision == "fp32"
    assert mixed.model_name == onnx_fp32.model_name == DEFAULT_MODEL  # stored vectors keep their key
    assert np.array_equal(mixed.embed(TEXTS), onnx_fp32.embed(TEXTS))
    docs = onnx_fp32.embed(TEXTS)
    for i, text in enumerate(TEXTS):
        fast, exact = mixed.embed_query(text), onnx_fp32.embed_query(text)
        assert 0.98 < float(fast @ exact) < 1.0  # a different model run, not the same one
        assert int(np.argmax(docs @ fast)) == i
    with pytest.raises(ConfigError, match='needs embedding_backend "onnx"'):
        make_embedder(settings.model_copy(update={"embedding_backend": "torch"}))
