"""The keyword index on disk: `manifest.json` and one `keywords-gNNNNNN.npz` it names.

The manifest is written last (the commit point) and names the file with its sha256, the
tokenizer and the BM25 weights it was built with. A save always writes a new generation, so a
crash leaves the previous or the new state whole. `KeywordIndex.save`/`load` (keyword_index.py)
put these pieces together.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from aesoperator.engine.data_dir import make_private_dir, open_private_write
from aesoperator.engine.index_files import IndexLoadError, sha256_file
from aesoperator.engine.keyword_postings import COLUMNS

FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
FILE_PREFIX = "keywords-g"


def keyword_file_name(generation: int) -> str:
    """The name of a generation's postings file.

    Args:
        generation: The save's generation number.

    Returns:
        e.g. "keywords-g000007.npz".
    """
    return f"{FILE_PREFIX}{generation:06d}.npz"


def write_keyword_file(
    directory: Path, name: str, arrays: dict[str, np.ndarray], labels: dict[str, Any], written: list[Path]
) -> Path:
    """Write the index's arrays and labels to `directory/name` through a temp file.

    Args:
        directory: The index directory (created if missing).
        name: The file name, from `keyword_file_name`.
        arrays: The numeric columns, saved as they are.
        labels: Ids, names, terms, namespaces and types, saved as one JSON byte array.
        written: Each path is appended before it is written, so a failed save can remove it.

    Returns:
        The path of the written file.

    Raises:
        OSError: A write failed (a full disk, say).
    """
    make_private_dir(directory)
    path = directory / name
    tmp = directory / f".{name}.tmp"
    written += [tmp, path]
    payload: dict[str, Any] = dict(arrays)
    payload["labels"] = np.frombuffer(json.dumps(labels, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    with open_private_write(tmp) as handle:
        np.savez(handle, **payload)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def remove_other_generations(directory: Path, keep: str) -> None:
    """Delete postings files other than `keep`; errors are ignored.

    Args:
        directory: The index directory.
        keep: The file name the current manifest names.
    """
    for old in directory.glob(f"{FILE_PREFIX}*.npz"):
        if old.name != keep:
            with contextlib.suppress(OSError):
                old.unlink()


def read_keyword_manifest(directory: Path, tokenizer: str, weights: tuple[float, float]) -> dict[str, Any]:
    """Read and check the manifest of the keyword index in `directory`.

    Args:
        directory: The index directory.
        tokenizer: The FTS5 tokenizer the caller uses.
        weights: The caller's BM25 column weights (name, text).

    Returns:
        The manifest.

    Raises:
        IndexLoadError: It is missing, unreadable, of another format, or saved with another
            tokenizer or weights.
    """
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexLoadError("no saved keyword index") from exc
    except (OSError, ValueError) as exc:
        raise IndexLoadError(f"unreadable keyword manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise IndexLoadError("keyword manifest of another format")
    if manifest.get("tokenizer") != tokenizer or manifest.get("weights") != list(weights):
        raise IndexLoadError("keyword index saved with another tokenizer or weights")
    return manifest


def read_keyword_file(directory: Path, manifest: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read the postings file a manifest names, checked against its sha256.

    Args:
        directory: The index directory.
        manifest: From `read_keyword_manifest`.

    Returns:
        (the numeric arrays, the labels: ids, names, terms, namespaces, types).

    Raises:
        IndexLoadError: The file is missing, damaged, or its arrays disagree in length.
    """
    path = directory / str(manifest.get("file"))
    try:
        if sha256_file(path) != manifest.get("sha256"):
            raise IndexLoadError(f"keyword index file {path.name} does not match its checksum")
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        labels = json.loads(arrays.pop("labels").tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise IndexLoadError(f"unreadable keyword index file {path.name}: {exc}") from exc
    n = len(labels["ids"])
    if (
        not all(len(arrays[c]) == n for c in COLUMNS)
        or len(labels["names"]) != n
        or len(arrays["starts"]) != len(labels["terms"]) + 1
    ):
        raise IndexLoadError("keyword index arrays disagree in length")
    return arrays, labels
