"""Shared fixtures: one embedding model per test session, engines on temporary data dirs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("AESOP_CONFIG", None)

pytest_plugins = ["tests.neo4j_support", "tests.postgres_support"]


@pytest.fixture(scope="session")
def embedder() -> object:
    """The real default model, loaded once for the whole session."""
    from aesoperator.engine.embeddings import Embedder

    return Embedder()


@pytest.fixture
def make_engine(tmp_path: Path, embedder: object) -> Iterator[Callable[..., object]]:
    """Build ContextEngines on the embedded store; each call may name its own data dir."""
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    opened: list[ContextEngine] = []

    def factory(data_dir: Path | None = None, **overrides: object) -> ContextEngine:
        settings = Settings(data_dir=data_dir or tmp_path / "data", **overrides)  # type: ignore[arg-type]
        engine = ContextEngine.open(settings=settings, embedder=embedder)  # type: ignore[arg-type]
        opened.append(engine)
        return engine

    yield factory
    for engine in opened:
        with contextlib.suppress(Exception):
            engine.close()
