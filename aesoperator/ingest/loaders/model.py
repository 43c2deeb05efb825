"""What a document loader returns: the document as units (pages, slides, sheets, chapters) of
blocks (headings, paragraphs, tables), and the limits every loader keeps to.

Units are where provenance points (`#page=12`, `#slide=3`, `#sheet=Name`, `#chapter=2`); blocks
carry the structure chunking keeps (a heading names the section below it, a table keeps its
header row with every piece of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from aesoperator.errors import DocumentError

UnitKind = Literal["page", "slide", "sheet", "chapter", "document"]
BlockKind = Literal["heading", "text", "table"]

DOCUMENTS_EXTRA_HINT = "pip install 'aesoperator[documents]'"


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row of a table: its cells as text and, for sheets and CSV files, its row number."""

    cells: tuple[str, ...]
    number: int | None = None


@dataclass(frozen=True, slots=True)
class DocumentBlock:
    """A heading (with its level, 1 = top), a paragraph, or a table (header row + body rows)."""

    kind: BlockKind
    text: str = ""
    level: int = 0
    header: TableRow | None = None
    rows: tuple[TableRow, ...] = ()


@dataclass(slots=True)
class DocumentUnit:
    """A page, slide, sheet or chapter: numbered from 1, with an optional name (a sheet's name,
    a slide's or chapter's title)."""

    kind: UnitKind
    number: int
    name: str | None = None
    blocks: list[DocumentBlock] = field(default_factory=list)

    def has_text(self) -> bool:
        return any(b.text.strip() or b.rows for b in self.blocks)


@dataclass(slots=True)
class LoadedDocument:
    format: str
    units: list[DocumentUnit]
    title: str | None = None
    notes: list[str] = field(default_factory=list)  # what a reader should know (pages without text, ...)


@dataclass(frozen=True, slots=True)
class LoaderLimits:
    """Bounds that keep one file from exhausting time or memory; a file over one is quarantined
    with the name of the setting to raise."""

    max_pages: int = 300  # pages, slides or chapters
    max_uncompressed_bytes: int = 200_000_000  # the sum of a zip container's entries
    max_zip_entries: int = 10_000
    max_cells: int = 1_000_000  # spreadsheet and CSV cells read
    max_chars: int = 20_000_000  # text extracted from one file

    def signature(self) -> str:
        """Changes when a limit does, so a file quarantined for a limit is tried again."""
        return (
            f"{self.max_pages}|{self.max_uncompressed_bytes}|{self.max_zip_entries}|{self.max_cells}|{self.max_chars}"
        )


class DocumentLoader(Protocol):
    """One per format: bytes in, units out; `DocumentError` for a file it cannot read."""

    format: str

    def load(self, data: bytes, limits: LoaderLimits) -> LoadedDocument: ...


# -- errors, with messages that say what to do --------------------------------------------------------
def password_protected(what: str) -> DocumentError:
    return DocumentError(
        f"password-protected {what}: save a copy without the password to ingest it", kind="password-protected"
    )


def corrupt(what: str, detail: object) -> DocumentError:
    text = " ".join(str(detail).split())[:300] or type(detail).__name__
    return DocumentError(f"corrupt {what}: {text}", kind="corrupt")


def truncated(what: str, detail: str) -> DocumentError:
    return DocumentError(f"truncated {what}: {detail} (an incomplete download or copy?)", kind="truncated")


def over_limit(what: str, amount: str, setting: str, limit: int) -> DocumentError:
    return DocumentError(
        f"{what} is too large: {amount}, over the {setting} limit of {limit:,} "
        f"(raise AESOP_{setting.upper()} to ingest it)",
        kind="too-large",
    )


def missing_library(fmt: str, module: str) -> DocumentError:
    return DocumentError(
        f"reading {fmt} files needs the {module!r} library, which is not installed: {DOCUMENTS_EXTRA_HINT}",
        kind="missing-library",
        retry=True,
    )


class TextBudget:
    """Counts the characters a loader extracts and stops at `LoaderLimits.max_chars`."""

    def __init__(self, what: str, limits: LoaderLimits) -> None:
        self.what = what
        self.limit = limits.max_chars
        self.used = 0

    def take(self, text: str) -> str:
        self.used += len(text)
        if self.used > self.limit:
            raise over_limit(
                self.what, f"more than {self.limit:,} characters of text", "document_max_chars", self.limit
            )
        return text
