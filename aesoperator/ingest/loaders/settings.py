"""The document limits a `Settings` asks for."""

from __future__ import annotations

from aesoperator.config import Settings
from aesoperator.ingest.loaders.model import LoaderLimits


def document_limits(settings: Settings) -> LoaderLimits:
    return LoaderLimits(
        max_pages=settings.document_max_pages,
        max_uncompressed_bytes=settings.document_max_uncompressed_bytes,
        max_zip_entries=settings.document_max_zip_entries,
        max_cells=settings.document_max_cells,
        max_chars=settings.document_max_chars,
    )
