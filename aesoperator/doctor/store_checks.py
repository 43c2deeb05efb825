"""Checks of the store and the indexes derived from it: schema and package versions, the saved
vector and keyword indexes against the store's change log (position and counts, files present
and intact)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from aesoperator.config import Settings
from aesoperator.doctor.findings import Finding
from aesoperator.engine.context import keyword_index_dir, vector_index_dir
from aesoperator.engine.index_files import sha256_file
from aesoperator.engine.stores import GraphStore, open_store
from aesoperator.engine.stores.embedded import DB_FILE
from aesoperator.engine.stores.embedded_schema import STORE_SCHEMA_VERSION
from aesoperator.errors import AesopError
from aesoperator.version import __version__

MANIFEST = "manifest.json"
REBUILD = "aesop rebuild-index"


def _embedded_db(settings: Settings) -> Path:
    return settings.data_dir / DB_FILE


@contextmanager
def _store_if_any(settings: Settings) -> Iterator[GraphStore | None]:
    """The configured store, or None when the embedded one does not exist yet (never created here)."""
    if not settings.uses_neo4j and not _embedded_db(settings).exists():
        yield None
        return
    store = open_store(settings)
    try:
        yield store
    finally:
        store.close()


def versions(settings: Settings) -> list[Finding]:
    """The package version, the embedding model, and the store's schema against what this package reads."""
    name = "versions"
    found = [Finding(check=name, ok=True, message=f"aesoperator {__version__}, model {settings.embedding_model}")]
    if settings.uses_neo4j:
        return found  # the Neo4j schema version is checked when the store opens (see the store check)
    db = _embedded_db(settings)
    if not db.exists():
        return found
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.Error as exc:
        return [*found, Finding(check=name, ok=False, message=f"{db} cannot be read as a store: {exc}")]
    stored = int(row[0]) if row else None
    if stored is None or stored > STORE_SCHEMA_VERSION:
        return [
            *found,
            Finding(
                check=name,
                ok=False,
                message=f"{db} has store schema {stored}, this package reads {STORE_SCHEMA_VERSION}",
                fix="pip install -U aesoperator",
            ),
        ]
    return [*found, Finding(check=name, ok=True, message=f"store schema {stored} (this package reads {stored})")]


def _manifest(directory: Path) -> dict[str, Any] | str:
    """The index manifest in `directory`, or why it cannot be read."""
    path = directory / MANIFEST
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no saved index at {directory}"
    except (OSError, ValueError) as exc:
        return f"{path} is unreadable ({exc})"
    return value if isinstance(value, dict) else f"{path} is not a JSON object"


def _damaged_files(directory: Path, checksums: dict[str, str]) -> list[str]:
    problems = []
    for file, digest in sorted(checksums.items()):
        path = directory / file
        if not path.is_file():
            problems.append(f"{file} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{file} does not match its checksum")
    return problems


def _position(name: str, what: str, index_seq: Any, store_seq: int) -> Finding | None:
    """A finding about the index's change-log position against the store's (None: in step)."""
    if not isinstance(index_seq, int):
        return Finding(check=name, ok=False, message=f"the {what} records no store position", fix=REBUILD)
    if index_seq > store_seq:
        return Finding(
            check=name,
            ok=False,
            message=f"the {what} reflects store change {index_seq} but the store is at {store_seq}: it was saved "
            "for another (or a restored) store, and would answer with items the store no longer holds",
            fix=REBUILD,
        )
    if index_seq < store_seq:
        return Finding(
            check=name,
            ok=True,
            message=f"the {what} is {store_seq - index_seq} change(s) behind the store; the next open catches up",
        )
    return None


def vector_index(settings: Settings) -> list[Finding]:
    """The saved FAISS index of the configured model: its files, position and count against the store."""
    name = "vector index"
    try:
        with _store_if_any(settings) as store:
            if store is None:
                return [Finding(check=name, ok=True, message="no store yet: nothing to index")]
            seq, stats = store.last_seq(), store.stats()
    except AesopError as exc:
        return [Finding(check=name, ok=False, message=f"the store cannot be opened: {exc}")]
    directory = vector_index_dir(settings, settings.embedding_model)
    manifest = _manifest(directory)
    if isinstance(manifest, str):
        if stats.vectors == 0:
            return [Finding(check=name, ok=True, message="no vectors stored yet")]
        return [
            Finding(
                check=name,
                ok=False,
                message=f"{manifest}, though the store holds {stats.vectors} vectors: the next open "
                "rebuilds the index from all of them (slow on a large store)",
                fix=REBUILD,
            )
        ]
    if manifest.get("model") != settings.embedding_model:
        return [
            Finding(
                check=name,
                ok=False,
                message=f"the index at {directory} was built with model {manifest.get('model')!r}, "
                f"the settings name {settings.embedding_model!r}",
                fix=REBUILD,
            )
        ]
    damaged = _damaged_files(directory, manifest.get("checksums") or {})
    if damaged:
        return [
            Finding(
                check=name,
                ok=False,
                message=f"the index at {directory} is damaged: {'; '.join(damaged)}",
                fix=REBUILD,
            )
        ]
    position = _position(name, "vector index", manifest.get("store_seq"), seq)
    if position is not None:
        return [position]
    count = manifest.get("count")
    if count != stats.vectors:
        return [
            Finding(
                check=name,
                ok=False,
                message=f"the vector index holds {count} vectors at store change {seq}, the store {stats.vectors}",
                fix=REBUILD,
            )
        ]
    return [Finding(check=name, ok=True, message=f"{count} vectors, in step with the store (change {seq})")]


def keyword_index(settings: Settings) -> list[Finding]:
    """The saved in-memory keyword index (keyword_index = "memory"): its file and position."""
    name = "keyword index"
    if settings.keyword_index != "memory":
        return [Finding(check=name, ok=True, message="keyword search uses the store's own full-text index")]
    try:
        with _store_if_any(settings) as store:
            if store is None:
                return [Finding(check=name, ok=True, message="no store yet: nothing to index")]
            seq = store.last_seq()
    except AesopError as exc:
        return [Finding(check=name, ok=False, message=f"the store cannot be opened: {exc}")]
    directory = keyword_index_dir(settings)
    manifest = _manifest(directory)
    if isinstance(manifest, str):
        return [Finding(check=name, ok=True, message=f"{manifest}: built from the store at the next search")]
    file, digest = manifest.get("file"), manifest.get("sha256")
    damaged = _damaged_files(directory, {file: digest}) if isinstance(file, str) and isinstance(digest, str) else []
    if damaged:
        return [
            Finding(
                check=name,
                ok=False,
                message=f"the keyword index at {directory} is damaged: {'; '.join(damaged)}",
                fix=REBUILD,
            )
        ]
    position = _position(name, "keyword index", manifest.get("store_seq"), seq)
    if position is not None:
        return [position]
    return [
        Finding(
            check=name, ok=True, message=f"{manifest.get('count')} documents, in step with the store (change {seq})"
        )
    ]
