"""Checks on a zip container (DOCX, PPTX, XLSX, EPUB) before any library reads it.

The central directory declares every entry's uncompressed size; Python's `zipfile`, which the
libraries read through, never inflates an entry past its declared size (it stops there and the
CRC check fails), so the declared sizes bound what reading the file can cost. A file whose
entries add up to more than `max_uncompressed_bytes`, or that holds more than `max_zip_entries`
entries, is refused unread: a zip bomb in Office clothing costs a directory listing.
"""

from __future__ import annotations

import io
import zipfile

from aesoperator.ingest.loaders.model import LoaderLimits, corrupt, over_limit, truncated


def open_checked_zip(data: bytes, what: str, limits: LoaderLimits) -> zipfile.ZipFile:
    """The archive, once its entry count and declared sizes are within the limits."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        if data.startswith(b"PK\x03\x04"):
            raise truncated(what, f"the zip container has no complete central directory ({exc})") from None
        raise corrupt(what, f"not a zip container ({exc})") from None
    except (OSError, ValueError, EOFError) as exc:
        raise corrupt(what, exc) from None
    entries = archive.infolist()
    if len(entries) > limits.max_zip_entries:
        raise over_limit(what, f"{len(entries):,} zip entries", "document_max_zip_entries", limits.max_zip_entries)
    declared = sum(e.file_size for e in entries)
    if declared > limits.max_uncompressed_bytes:
        raise over_limit(
            what,
            f"{declared:,} bytes uncompressed from {len(data):,} (a zip bomb?)",
            "document_max_uncompressed_bytes",
            limits.max_uncompressed_bytes,
        )
    if any(e.flag_bits & 0x1 for e in entries):
        raise corrupt(what, "its zip entries are encrypted")
    return archive


def zip_names(data: bytes) -> set[str] | None:
    """The entry names of a zip container, or None when it is not a readable one (for sniffing)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return set(archive.namelist()[:100_000])
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
