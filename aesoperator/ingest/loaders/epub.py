"""EPUB: a zip of XHTML chapters, read with the standard library's `zipfile` and the HTML loader's
lxml parsing. One unit per chapter in reading order (the package's spine); a chapter's name is its
first heading. The container's XML is parsed with entities and network access turned off. An
EPUB whose chapters are encrypted (`META-INF/encryption.xml`: DRM or font obfuscation of text)
is refused, as such.
"""

from __future__ import annotations

import posixpath
import zipfile
from typing import Any

from aesoperator.errors import DocumentError
from aesoperator.ingest.loaders.html import _main, _strip, html_blocks, page_title, parse_html
from aesoperator.ingest.loaders.model import (
    DocumentUnit,
    LoadedDocument,
    LoaderLimits,
    TextBudget,
    corrupt,
    missing_library,
    over_limit,
    password_protected,
)
from aesoperator.ingest.loaders.zip_guard import open_checked_zip

WHAT = "EPUB book"
_XHTML_TYPES = frozenset({"application/xhtml+xml", "text/html"})


def _xml(archive: zipfile.ZipFile, name: str) -> Any:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        return etree.fromstring(archive.read(name), parser)
    except KeyError:
        raise corrupt(WHAT, f"it has no {name}") from None
    except etree.XMLSyntaxError as exc:
        raise corrupt(WHAT, f"{name}: {exc}") from None


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _spine(archive: zipfile.ZipFile) -> tuple[list[str], str | None]:
    """The chapter files in reading order, and the book's title."""
    container = _xml(archive, "META-INF/container.xml")
    rootfile = next((e.get("full-path") for e in container.iter() if _local(e.tag) == "rootfile"), None)
    if not rootfile:
        raise corrupt(WHAT, "META-INF/container.xml names no package file")
    package = _xml(archive, rootfile)
    base = posixpath.dirname(rootfile)
    manifest: dict[str, tuple[str, str]] = {}
    title: str | None = None
    order: list[str] = []
    for element in package.iter():
        name = _local(element.tag)
        if name == "item" and element.get("id") and element.get("href"):
            manifest[element.get("id")] = (element.get("href"), element.get("media-type") or "")
        elif name == "itemref" and element.get("idref"):
            order.append(element.get("idref"))
        elif name == "title" and title is None and (element.text or "").strip():
            title = " ".join(element.text.split())
    chapters = []
    for idref in order:
        href, media = manifest.get(idref, ("", ""))
        if href and media in _XHTML_TYPES:
            chapters.append(posixpath.normpath(posixpath.join(base, href.split("#", 1)[0])))
    return chapters, title


class EpubLoader:
    format = "epub"

    def load(self, data: bytes, limits: LoaderLimits) -> LoadedDocument:
        try:
            import lxml  # noqa: F401
        except ImportError:
            raise missing_library("EPUB", "lxml") from None
        archive = open_checked_zip(data, WHAT, limits)
        try:
            if "META-INF/encryption.xml" in archive.namelist():
                raise password_protected(f"{WHAT} (its content is encrypted: DRM)")
            chapters, title = _spine(archive)
            if len(chapters) > limits.max_pages:
                raise over_limit(WHAT, f"{len(chapters):,} chapters", "document_max_pages", limits.max_pages)
            budget = TextBudget(WHAT, limits)
            units: list[DocumentUnit] = []
            for number, name in enumerate(chapters, 1):
                try:
                    content = archive.read(name)
                except KeyError:
                    raise corrupt(WHAT, f"its spine names {name}, which it does not hold") from None
                root = parse_html(content)
                chapter_title = page_title(root)
                _strip(root)
                blocks = html_blocks(_main(root), budget, limits.max_cells)
                heading = next((b.text for b in blocks if b.kind == "heading"), None)
                if blocks:
                    units.append(DocumentUnit("chapter", number, name=heading or chapter_title, blocks=blocks))
        except DocumentError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise corrupt(WHAT, exc) from None
        finally:
            archive.close()
        if not units:
            raise DocumentError("no text in any chapter of the EPUB book", kind="no-text")
        return LoadedDocument(self.format, units, title=title)
