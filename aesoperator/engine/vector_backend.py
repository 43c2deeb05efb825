"""A store's vectors come from one embedding backend at a time.

A stored vector's key names its vector space, not the code that computed it: torch and fp32 ONNX
compute the same function (cosine ≥ 0.9999 on every benchmark text), so both store under the bare
model name and a store embedded by one is searched by the other without re-embedding. A backend
whose vectors differ (int8 weights) stores under the model name plus the backend, so one FAISS
index never holds two spaces. What remains is a store filled in one space and searched in the
other: its index would hold only what was embedded since the switch. `check_vector_backend`
refuses that with the command that re-embeds the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aesoperator.errors import EmbeddingBackendMismatch

BACKEND_SEPARATOR = "+"
SUFFIXED_BACKENDS = ("onnx-int8", "onnx")
# Backends that compute the model's own vectors: they share its bare name as their key.
EXACT_BACKENDS = frozenset({"torch", "onnx"})


def vector_key(model_name: str, backend: str) -> str:
    """The name vectors are stored under: the bare model name for backends that compute the
    model's own vectors (torch, fp32 ONNX), the model name plus the backend for those that
    approximate them ("all-MiniLM-L6-v2+onnx-int8")."""
    return model_name if backend in EXACT_BACKENDS else f"{model_name}{BACKEND_SEPARATOR}{backend}"


def split_vector_key(key: str) -> tuple[str, str]:
    """(model name, backend) of a stored vector key; a bare model name reads as torch (the same
    space as fp32 ONNX)."""
    for backend in SUFFIXED_BACKENDS:
        suffix = f"{BACKEND_SEPARATOR}{backend}"
        if key.endswith(suffix):
            return key[: -len(suffix)], backend
    return key, "torch"


def _backend_setting(backend: str) -> str:
    return f'embedding_backend = "{backend}"'


def check_vector_backend(store: Any, key: str, have: int) -> None:
    """Raise when another backend of the same model has more vectors in `store` than `key` has.

    Args:
        store: the graph store (stores that cannot list or count vectors are not checked).
        key: the storage name of the configured embedder's vectors.
        have: how many vectors of `key` the index holds after its sync.

    Raises:
        EmbeddingBackendMismatch: the store was embedded by another backend and not re-embedded.
    """
    lister: Callable[[], list[str]] | None = getattr(store, "vector_models", None)
    counter: Callable[[str], int] | None = getattr(store, "vector_count", None)
    if lister is None:
        return
    model, backend = split_vector_key(key)
    for other in lister():
        other_model, other_backend = split_vector_key(other)
        if other == key or other_model != model:
            continue
        theirs = counter(other) if counter is not None else None
        if (theirs is None and have == 0) or (theirs is not None and theirs > have):
            raise EmbeddingBackendMismatch(
                f"the store's vectors for {model} were made by the {other_backend} backend "
                f"({theirs if theirs is not None else 'some'} vectors) and the engine is set to {backend} "
                f"({have} vectors): vectors of two backends are not mixed. Run `aesop rebuild-index` to embed "
                f"the store with {backend} (the {other_backend} vectors are kept), or set "
                f"{_backend_setting(other_backend)} (AESOP_EMBEDDING_BACKEND={other_backend}) to go on with them."
            )
