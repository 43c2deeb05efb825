"""Export a sentence-transformers model to ONNX once, and find the export again.

An export is a directory holding `model.onnx` (the transformer, returning token states), the
model's `tokenizer.json` and a `manifest.json` with what encoding needs (pooling, maximum length,
padding token). It is keyed by model name, model revision and precision, so a new model version
or a switch between fp32 and int8 never reuses the wrong file.

Exporting needs torch and transformers (both come with sentence-transformers) and, for int8, the
`onnx` package; encoding with an export needs only onnxruntime and tokenizers. The export is
written to a temporary directory beside its final place and renamed into place, so a crash or a
concurrent export never leaves a half-written model behind.

Only pipelines of a transformer, mean or CLS pooling and optional normalisation can be exported
(all-MiniLM-L6-v2 and most sentence-transformers models); anything else raises `ConfigError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from aesoperator.errors import ConfigError

log = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]
EXPORT_FORMAT = 2  # bump when the export procedure changes, so old exports are not reused
OPSET = 17
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
IDENTITY_FILES = ("config.json", "tokenizer.json", "modules.json", "sentence_bert_config.json")


class OnnxManifest(BaseModel):
    """What an export holds and how to encode with it."""

    model_config = ConfigDict(frozen=True)

    format: int
    model_name: str
    revision: str
    precision: Precision
    dim: int
    max_seq_length: int
    pooling: Literal["mean", "cls"]
    pad_token: str
    pad_id: int
    inputs: list[str]
    seconds: float


def user_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/aesoperator/onnx`, by default `~/.cache/aesoperator/onnx`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aesoperator" / "onnx"


def model_revision(model_dir: Path, package: str | None = None) -> str:
    """A short fingerprint of the model files: a package version or hub snapshot when known, plus
    the names, sizes and modification times of the weights and configs (hashing 90 MB of weights
    on every start would cost more than the encoding it saves)."""
    digest = hashlib.blake2b(digest_size=8)
    if package is not None:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
    digest.update(str(model_dir.resolve()).encode())
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and (path.name in IDENTITY_FILES or path.suffix in WEIGHT_SUFFIXES):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def export_key(model_name: str, revision: str, precision: Precision) -> str:
    """The cache directory name of one export: readable name, revision, precision, format."""
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)[-60:]
    return f"{readable}-{revision}-onnx-{precision}-v{EXPORT_FORMAT}"


def read_manifest(export_dir: Path) -> OnnxManifest | None:
    """The manifest of a complete export, or None when the directory holds none."""
    try:
        manifest = OnnxManifest.model_validate_json((export_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.format != EXPORT_FORMAT or not (export_dir / MODEL_FILE).is_file():
        return None
    return manifest


def _pipeline(model_dir: Path) -> tuple[Literal["mean", "cls"], int, int]:
    """(pooling, dimension, maximum sequence length) of an exportable pipeline."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        types = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
        pooling_dir = next(m["path"] for m in modules if str(m["type"]).endswith("Pooling"))
        pooling = json.loads((model_dir / pooling_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise ConfigError(
            f"{model_dir} is not a sentence-transformers model with a pooling layer ({exc}); "
            'set embedding_backend = "torch" to use it'
        ) from exc
    if types[:2] != ["Transformer", "Pooling"] or any(t != "Normalize" for t in types[2:]):
        raise ConfigError(
            f"the model in {model_dir} has the layers {types}; the onnx backend runs only a transformer "
            'with pooling (and normalisation): set embedding_backend = "torch" for this model'
        )
    if pooling.get("pooling_mode_mean_tokens"):
        mode: Literal["mean", "cls"] = "mean"
    elif pooling.get("pooling_mode_cls_token"):
        mode = "cls"
    else:
        raise ConfigError(
            f"the model in {model_dir} pools with {pooling}; the onnx backend supports mean and CLS "
            'pooling: set embedding_backend = "torch" for this model'
        )
    dim = int(pooling.get("word_embedding_dimension") or 0)
    try:
        st_config = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
        max_len = int(st_config.get("max_seq_length") or 512)
    except (OSError, ValueError):
        max_len = 512
    return mode, dim, max_len


def check_exportable(model_dir: Path) -> None:
    """Raise `ConfigError` unless the model's pipeline is one the onnx backend can run."""
    _pipeline(model_dir)
    if not (model_dir / TOKENIZER_FILE).is_file():
        raise ConfigError(
            f"the model in {model_dir} has no {TOKENIZER_FILE} (a fast tokenizer) for the onnx backend: "
            'set embedding_backend = "torch" for this model'
        )


def _pad_token(model_dir: Path) -> str:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            value = json.loads((model_dir / name).read_text(encoding="utf-8")).get("pad_token")
        except (OSError, ValueError):
            continue
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value:
            return value
    return "[PAD]"


def _export_fp32(model_dir: Path, target: Path) -> list[str]:
    """Write the transformer as ONNX to `target`; returns the graph's input names."""
    import inspect

    import torch
    from transformers import AutoModel

    # Eager attention: the scaled-dot-product attention a model otherwise loads with is exported
    # with a NaN guard on the softmax (IsNaN and Where over every attention matrix), a quarter of
    # ONNX Runtime's time on a batch of chunks; eager attention masks by adding to the scores, the
    # same vectors (cosine 0.9999999) 1.1-1.3x faster (format 1 exports did not ask for it).
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()
    accepts = inspect.signature(model.forward).parameters
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in accepts else [])

    class TokenStates(torch.nn.Module):
        """The transformer called by keyword, returning the last hidden states."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(inputs, args, strict=True))).last_hidden_state

    sample = tuple(torch.ones(2, 8, dtype=torch.long) for _ in inputs)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*inputs, "token_states"]}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's notes on shapes it fixes concern inputs without an attention mask; this
        # export always takes one, and the tests compare its vectors with torch's.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TokenStates(),
            sample,
            str(target),
            input_names=inputs,
            output_names=["token_states"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return inputs


def _quantize(source: Path, target: Path) -> None:
    """int8 dynamic quantisation of the weights, one scale per output channel (one scale per
    tensor moved vectors much further from fp32's: mean cosine 0.96 against 0.99)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def export_model(
    model_name: str, model_dir: Path, revision: str, precision: Precision, cache_dir: Path
) -> tuple[Path, OnnxManifest]:
    """Export the model into `cache_dir` unless a complete export is already there.

    Args:
        model_name: the name vectors are stored under (recorded in the manifest).
        model_dir: the sentence-transformers directory.
        revision: `model_revision` of that directory.
        precision: "fp32", or "int8" for dynamically quantised weights.
        cache_dir: the parent of all exports.

    Returns:
        The export's directory and manifest.

    Raises:
        ConfigError: the pipeline cannot be exported, the export failed, or the cache directory
            cannot be written.
    """
    final = cache_dir / export_key(model_name, revision, precision)
    manifest = read_manifest(final)
    if manifest is not None:
        return final, manifest
    pooling, dim, max_len = _pipeline(model_dir)
    check_exportable(model_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache_dir))
    except OSError as exc:
        raise ConfigError(
            f"cannot write the onnx export of {model_name!r} to {cache_dir} ({exc}): set embedding_onnx_cache_dir "
            'to a writable directory, or embedding_backend = "torch"'
        ) from exc
    started = time.perf_counter()
    try:
        log.info("exporting embedding model %s to ONNX (%s) in %s", model_name, precision, final)
        inputs = _export_fp32(model_dir, scratch / f"fp32-{MODEL_FILE}")
        if precision == "int8":
            _quantize(scratch / f"fp32-{MODEL_FILE}", scratch / MODEL_FILE)
            (scratch / f"fp32-{MODEL_FILE}").unlink()
        else:
            (scratch / f"fp32-{MODEL_FILE}").rename(scratch / MODEL_FILE)
        shutil.copyfile(model_dir / TOKENIZER_FILE, scratch / TOKENIZER_FILE)
        from tokenizers import Tokenizer

        pad_token = _pad_token(model_dir)
        pad_id = Tokenizer.from_file(str(scratch / TOKENIZER_FILE)).token_to_id(pad_token)
        manifest = OnnxManifest(
            format=EXPORT_FORMAT,
            model_name=model_name,
            revision=revision,
            precision=precision,
            dim=dim,
            max_seq_length=max_len,
            pooling=pooling,
            pad_token=pad_token,
            pad_id=pad_id if pad_id is not None else 0,
            inputs=inputs,
            seconds=round(time.perf_counter() - started, 2),
        )
        (scratch / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        try:
            scratch.rename(final)
        except OSError:
            # Another process finished the same export first: keep theirs.
            if read_manifest(final) is None:
                raise
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"exporting embedding model {model_name!r} to ONNX failed ({type(exc).__name__}: {exc}); "
            'set embedding_backend = "torch" to embed without onnxruntime'
        ) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("exported %s (%s) in %.1f s", model_name, precision, manifest.seconds)
    return final, manifest
