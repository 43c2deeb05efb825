"""The embedder the settings ask for: ONNX Runtime when it can run, torch otherwise.

`embedding_backend = "onnx"` (or "onnx-int8") uses `OnnxEmbedder`; when onnxruntime is missing,
the model's pipeline cannot run on onnx, or the export cannot be made or written, the reason is
logged and the torch `Embedder` is used instead. Its vectors are stored under another key, so a
store filled by the other backend is caught by `vector_backend.check_vector_backend` rather than
mixed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aesoperator.config import Settings, load_settings
from aesoperator.engine.embeddings import Embedder
from aesoperator.engine.onnx_embeddings import OnnxEmbedder
from aesoperator.engine.onnx_export import Precision, user_cache_dir
from aesoperator.errors import ConfigError

log = logging.getLogger(__name__)


def _writable(directory: Path) -> bool:
    """Whether `directory` exists and is writable, or could be created."""
    current = directory
    while not current.exists():
        if current.parent == current:
            return False
        current = current.parent
    return current.is_dir() and os.access(current, os.W_OK | os.X_OK)


def onnx_cache_dir(settings: Settings) -> Path:
    """Where exports are cached: the setting, else the user cache dir when writable, else the data dir."""
    if settings.embedding_onnx_cache_dir is not None:
        return settings.embedding_onnx_cache_dir.expanduser()
    user = user_cache_dir()
    return user if _writable(user) else settings.data_dir / "models" / "onnx"


def document_precision(settings: Settings) -> Precision:
    """The precision stored vectors are embedded at under an onnx backend."""
    return "int8" if settings.embedding_backend == "onnx-int8" else "fp32"


def query_precision(settings: Settings) -> Precision | None:
    """The precision queries are embedded at when it differs from the stored vectors' (None: the same).

    Raises:
        ConfigError: `embedding_query_backend` asks for int8 queries over a backend other than "onnx".
    """
    if settings.embedding_query_backend == "same" or settings.embedding_backend == "onnx-int8":
        return None
    if settings.embedding_backend != "onnx":
        raise ConfigError(
            f'embedding_query_backend "onnx-int8" needs embedding_backend "onnx", not {settings.embedding_backend!r}'
        )
    return "int8"


def make_embedder(settings: Settings) -> Embedder:
    """The configured embedder; the ONNX one has its export ready (made now if not cached).

    Args:
        settings: the engine settings (`embedding_model`, `embedding_backend`,
            `embedding_query_backend`, `embedding_device`, `embedding_batch_size`,
            `embedding_onnx_cache_dir`).

    Returns:
        An `OnnxEmbedder`, or the torch `Embedder` when the backend is "torch" or onnx cannot run.

    Raises:
        ConfigError: the model itself is not available, or int8 queries are asked over a backend
            other than "onnx".
    """
    queries = query_precision(settings)
    if settings.embedding_backend != "torch":
        try:
            embedder = OnnxEmbedder(
                settings.embedding_model,
                batch_size=settings.embedding_batch_size,
                device=settings.embedding_device,
                precision=document_precision(settings),
                cache_dir=onnx_cache_dir(settings),
                query_precision=queries,
            )
            embedder.ensure_export()
            return embedder
        except ConfigError as exc:
            log.warning("embedding with torch instead of %s: %s", settings.embedding_backend, exc)
    return Embedder(
        settings.embedding_model, batch_size=settings.embedding_batch_size, device=settings.embedding_device
    )


def main() -> None:
    """Export the configured model for the configured backend now (`python -m
    aesoperator.engine.embedder_factory`, run by scripts/setup.sh) so the first search does not pay it."""
    settings = load_settings()
    precision = document_precision(settings)
    embedder = OnnxEmbedder(
        settings.embedding_model,
        precision=precision,
        cache_dir=onnx_cache_dir(settings),
        query_precision=query_precision(settings),
    )
    print(f"onnx export of {settings.embedding_model} ({precision}): {embedder.ensure_export()}")


if __name__ == "__main__":
    main()
