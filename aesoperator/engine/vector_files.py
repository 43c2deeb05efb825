"""The vector index on disk: one directory per index, a manifest as the commit point.

::

    manifest.json                 the commit point, written last
    ns-g000007-00000.faiss        one FAISS file per namespace ...
    ns-g000007-00000.ids.json     ... and the entity ids of its rows, in FAISS order

A save writes new files for the namespaces that changed (named by a new generation, so files the
current manifest names are never overwritten), then atomically replaces the manifest, then deletes
files no manifest names any more. A crash at any point leaves the previous or the new state whole.
Reading checks every file against the manifest's checksums and raises `IndexLoadError` on anything
unusable; `VectorIndex.save`/`load` (vectors.py) put these pieces together.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss

from aesoperator.engine.data_dir import make_private_dir, open_private_lock, open_private_write
from aesoperator.engine.index_files import TMP_MARK, IndexLoadError, sha256_file, tmp_path, write_bytes_atomic
from aesoperator.engine.vector_parts import HASHTABLE, Part, ivf_codes, part_kind

try:  # advisory lock so two processes never save into one directory at once
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"
PART_PREFIX = "ns-"


def write_faiss_atomic(path: Path, index: faiss.Index) -> str:
    """Write a FAISS index through a temp file.

    The bytes pass through Python's file I/O rather than FAISS's own: FAISS only prints a failed
    close to stderr, so a disk that fills up at the final flush would leave a truncated file behind
    a checksum that matches it. Here every write error (ENOSPC, EFBIG) raises OSError.

    Args:
        path: The file to (re)place.
        index: The FAISS index to write.

    Returns:
        The sha256 (hex) of what was written.

    Raises:
        OSError: The write failed; the temp file is removed and `path` is untouched.
    """
    tmp = tmp_path(path)
    digest = hashlib.sha256()
    try:
        with open_private_write(tmp) as handle:

            def write(chunk: bytes) -> int:
                handle.write(chunk)
                digest.update(chunk)
                return len(chunk)

            faiss.write_index(index, faiss.PyCallbackIOWriter(write))  # type: ignore[attr-defined]
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest()


@contextlib.contextmanager
def dir_lock(directory: Path) -> Iterator[None]:
    """Hold the directory's advisory lock (creating the directory if needed).

    Args:
        directory: The index directory.

    Returns:
        A context manager that holds an exclusive `flock` on `directory/.lock` (a no-op off POSIX).
    """
    make_private_dir(directory)
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open_private_lock(directory / LOCK_NAME) as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_part(
    directory: Path, stem: str, ns: str, part: Part, ids: list[str], written: list[Path]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Write one namespace's FAISS file and ids file.

    Args:
        directory: The index directory.
        stem: The file stem (generation and position), e.g. "ns-g000007-00000".
        ns: The namespace.
        part: Its sub-index.
        ids: The entity ids of its rows, in FAISS storage order.
        written: Each file's path is appended before it is written, so a failed save can remove it.

    Returns:
        (the manifest entry, file name -> sha256 of the two files).

    Raises:
        OSError: A write failed (a full disk, say).
    """
    file_name, ids_name = f"{stem}.faiss", f"{stem}.ids.json"
    ids_doc = {"namespace": ns, "ids": ids}
    ids_bytes = json.dumps(ids_doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    written += [directory / file_name, directory / ids_name]
    checksums = {file_name: write_faiss_atomic(directory / file_name, part)}
    write_bytes_atomic(directory / ids_name, ids_bytes)
    checksums[ids_name] = hashlib.sha256(ids_bytes).hexdigest()
    entry = {"file": file_name, "ids_file": ids_name, "count": int(part.ntotal), "kind": part_kind(part)}
    if (codes := ivf_codes(part)) is not None:
        entry["codes"] = codes
    return entry, checksums


def remove_unreferenced(directory: Path, keep: set[str]) -> None:
    """Delete namespace files not in `keep` and leftover temp files; errors are ignored.

    Args:
        directory: The index directory.
        keep: The file names the current manifest names.
    """
    for path in directory.iterdir():
        name = path.name
        ours = name.startswith(PART_PREFIX) and name.endswith((".faiss", ".ids.json"))
        if (ours and name not in keep) or (TMP_MARK in name and name.startswith(".")):
            with contextlib.suppress(OSError):
                path.unlink()


def read_manifest(directory: Path, model: str, dim: int) -> dict[str, Any]:
    """Read and check the manifest of the index in `directory`.

    Args:
        directory: The index directory.
        model: The embedding model the caller indexes.
        dim: The vector dimension the caller indexes.

    Returns:
        The manifest, its shape checked.

    Raises:
        IndexLoadError: It is missing, unreadable, malformed, of another format version, or saved
            for another model or dimension.
    """
    path = directory / MANIFEST_NAME
    if not path.exists():
        raise IndexLoadError(f"no index on disk at {directory}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexLoadError(f"manifest unreadable ({path}): {exc}") from None
    if not isinstance(manifest, dict):
        raise IndexLoadError(f"manifest unreadable ({path}): not a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexLoadError(f"manifest format_version {version!r} is not {FORMAT_VERSION}")
    if manifest.get("model") != model:
        raise IndexLoadError(f"index was built for model {manifest.get('model')!r}, not {model!r}")
    if manifest.get("dim") != dim:
        raise IndexLoadError(f"index holds {manifest.get('dim')!r}-dimensional vectors, not {dim}")
    seq = manifest.get("store_seq")
    shapes_ok = (
        isinstance(manifest.get("namespaces"), dict)
        and isinstance(manifest.get("checksums"), dict)
        and isinstance(manifest.get("count"), int)
        and (seq is None or isinstance(seq, int))
        and all(
            isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("ids_file"), str)
            for e in manifest["namespaces"].values()
        )
    )
    if not shapes_ok:
        raise IndexLoadError(f"manifest unreadable ({path}): missing or malformed fields")
    return manifest


def _checked(directory: Path, name: str, checksums: dict[str, str]) -> Path:
    path = directory / name
    if Path(name).name != name:
        raise IndexLoadError(f"manifest names a file outside the index directory: {name!r}")
    if not path.is_file():
        raise IndexLoadError(f"index file missing: {name}")
    expected = checksums.get(name)
    if expected is None:
        raise IndexLoadError(f"manifest has no checksum for {name}")
    if sha256_file(path) != expected:
        raise IndexLoadError(f"checksum mismatch: {name}")
    return path


def read_part(
    directory: Path, ns: str, entry: dict[str, Any], checksums: dict[str, str], dim: int, nprobe: int, codes: str
) -> tuple[Part, list[str]]:
    """Read one namespace's sub-index and ids, checked against the manifest.

    Args:
        directory: The index directory.
        ns: The namespace.
        entry: Its manifest entry ("file", "ids_file", "count").
        checksums: The manifest's file name -> sha256.
        dim: The vector dimension expected.
        nprobe: Lists an IVF sub-index searches (a search-time setting, not stored in the file).
        codes: How an IVF sub-index must store its vectors ('sq8' or 'flat').

    Returns:
        (the sub-index, the entity ids of its rows in storage order).

    Raises:
        IndexLoadError: A file is missing, outside the directory, damaged, of the wrong kind,
            codes or dimension, or the ids do not match the vectors.
    """
    faiss_path = _checked(directory, entry["file"], checksums)
    ids_path = _checked(directory, entry["ids_file"], checksums)
    try:
        part: Part = faiss.read_index(str(faiss_path))
    except Exception as exc:  # FAISS raises RuntimeError on damaged files
        raise IndexLoadError(f"FAISS could not read {entry['file']}: {exc}") from None
    if (found := ivf_codes(part)) is not None and part.metric_type == faiss.METRIC_INNER_PRODUCT:
        if found != codes:  # the setting changed since the save: rebuilt with the codes asked for
            raise IndexLoadError(f"{entry['file']} holds IVF codes {found!r}, the settings ask for {codes!r}")
        if part.direct_map.type != HASHTABLE:
            part.set_direct_map_type(HASHTABLE)
        part.nprobe = nprobe
    elif not isinstance(part, faiss.IndexIDMap2):
        raise IndexLoadError(f"{entry['file']} is neither an id-mapped exact index nor an IVF index")
    if part.d != dim:
        raise IndexLoadError(f"{entry['file']} is not a {dim}-dimensional index")
    try:
        doc = json.loads(ids_path.read_text(encoding="utf-8"))
        ids = doc["ids"]
        if doc.get("namespace") != ns or not all(isinstance(i, str) for i in ids):
            raise ValueError("namespace or ids do not match the manifest")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexLoadError(f"id file {entry['ids_file']} unreadable: {exc}") from None
    if len(ids) != part.ntotal or entry.get("count", part.ntotal) != part.ntotal:
        raise IndexLoadError(f"{entry['file']} holds {part.ntotal} vectors but its id file lists {len(ids)}")
    return part, ids
