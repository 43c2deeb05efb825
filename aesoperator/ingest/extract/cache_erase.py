"""Erasing texts from the extraction cache (`cache/extraction.sqlite`).

The cache keeps what extraction found in a text (mention strings, spans) under the content hash
of the text, for every extractor signature. Erasing a text deletes its rows under every
signature with `secure_delete` on, then VACUUMs the file and truncates its WAL, so neither freed
pages nor journal frames keep the extracted strings. With no texts it only scrubs the file (what
finishing an interrupted purge needs: the texts are gone from the store by then).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from aesoperator.errors import StoreError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.graph_schema.models import Entity
from aesoperator.ingest.extract.stage import extraction_text, item_kind

CHUNK = 500


def cache_digest(entity: Entity) -> str:
    """The key the extraction stage caches an item's results under (see `KnowledgeExtractionStage`)."""
    return content_hash(f"{item_kind(entity)}\x1f{extraction_text(entity)}")


def erase_cached_texts(path: Path, items: Sequence[Entity]) -> int:
    """Delete the cached extractions of `items`' texts and scrub the cache file.

    Args:
        path: The cache file (nothing is done when it does not exist).
        items: The entities whose text is erased.

    Returns:
        How many cached results were deleted.

    Raises:
        StoreError: The cache could not be changed (it is as it was), or its write-ahead log could
            not be truncated because another connection was reading it.
    """
    if not path.exists():
        return 0
    digests = sorted({cache_digest(e) for e in items})
    try:
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the extraction cache {path} to erase from it: {exc}") from exc
    try:
        conn.execute("PRAGMA secure_delete = ON").fetchall()
        deleted = 0
        if digests:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(digests), CHUNK):
                    part = digests[start : start + CHUNK]
                    marks = ",".join("?" * len(part))
                    deleted += conn.execute(f"DELETE FROM extraction WHERE hash IN ({marks})", part).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        conn.execute("VACUUM")
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            raise StoreError(
                f"could not truncate the write-ahead log of the extraction cache {path}: another connection is "
                "reading it; forget again once it is idle"
            )
        return deleted
    except sqlite3.Error as exc:
        raise StoreError(f"cannot erase from the extraction cache {path}: {exc}") from exc
    finally:
        conn.close()
