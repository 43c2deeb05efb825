"""Extraction results by (extractor signature, content hash of the text), in one SQLite file.

Text that has been read once is never read again by the same extractor: a file whose other
chunks changed, a re-ingest, or a second source carrying the same text costs a lookup. For the
LLM extractor this is what makes re-ingest free.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aesoperator.engine.data_dir import create_private_file, make_private_dir
from aesoperator.engine.stores.out_of_space import reraise_if_out_of_space
from aesoperator.errors import StoreError
from aesoperator.graph_schema.knowledge import ItemExtraction, Mention, MentionRelation


def _encode(result: ItemExtraction) -> str:
    return json.dumps(
        {
            "m": [
                [m.start, m.end, m.text, m.type, m.key, m.extractor, m.confidence, list(m.aliases)]
                for m in result.mentions
            ],
            "r": [[r.src, r.dst, r.type, r.start, r.end, r.extractor, r.confidence] for r in result.relations],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _decode(item_id: str, raw: str) -> ItemExtraction:
    data: dict[str, Any] = json.loads(raw)
    return ItemExtraction(
        item_id,
        [Mention(m[0], m[1], m[2], m[3], m[4], m[5], m[6], tuple(m[7])) for m in data["m"]],
        [MentionRelation(*r) for r in data["r"]],
    )


class ExtractionCache:
    """Thread-safe; `path=None` keeps the cache in memory (for one process). The file and its
    directory are made private to the owner (0600, 0700) like the rest of the data dir; the file
    exists at 0600 before SQLite opens it, so its -wal and -shm files follow."""

    def __init__(self, path: Path | None) -> None:
        try:
            if path is not None:
                make_private_dir(path.parent)
                create_private_file(path)
            self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS extraction (signature TEXT, hash TEXT, result TEXT, "
                "PRIMARY KEY (signature, hash))"
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the extraction cache {path}: {exc}") from exc
        self._lock = threading.Lock()
        self._path = path

    def get(self, signature: str, pairs: Sequence[tuple[str, str]]) -> dict[str, ItemExtraction]:
        """item id -> cached result, for the (item id, content hash) pairs that are cached."""
        out: dict[str, ItemExtraction] = {}
        by_hash: dict[str, list[str]] = {}
        for item_id, digest in pairs:
            by_hash.setdefault(digest, []).append(item_id)
        hashes = list(by_hash)
        with self._lock:
            for start in range(0, len(hashes), 500):
                part = hashes[start : start + 500]
                rows = self._db.execute(
                    f"SELECT hash, result FROM extraction WHERE signature = ? AND hash IN ({','.join('?' * len(part))})",
                    [signature, *part],
                ).fetchall()
                for digest, raw in rows:
                    for item_id in by_hash[digest]:
                        out[item_id] = _decode(item_id, raw)
        return out

    def put(self, signature: str, results: Iterable[tuple[str, ItemExtraction]]) -> None:
        """Record results; a write that fails (a full disk) is a StoreError and leaves the cache as it was."""
        rows = [(signature, digest, _encode(r)) for digest, r in results if r.error is None]
        try:
            with self._lock, self._db:
                self._db.executemany("INSERT OR REPLACE INTO extraction VALUES (?, ?, ?)", rows)
        except sqlite3.Error as exc:
            where = self._path.parent if self._path is not None else Path(".")
            reraise_if_out_of_space(
                exc, where, f"write the extraction cache {self._path}", "the cache was rolled back to what it held"
            )
            raise StoreError(f"cannot write the extraction cache {self._path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
