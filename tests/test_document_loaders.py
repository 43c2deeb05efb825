"""Document loaders one by one: structure kept (pages, headings, tables with their header, sheets,
slides, chapters, no page furniture), format told by magic bytes, and every kind of bad file
(password, corrupt, truncated, too many pages, zip bomb, too many entries or cells, scanned,
legacy Office, missing library) quarantined with its reason without stopping the ingest."""

from __future__ import annotations

import io
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aesoperator.errors import DocumentError
from aesoperator.ingest.document_chunks import chunk_document
from aesoperator.ingest.loaders.model import LoaderLimits
from aesoperator.ingest.loaders.registry import document_format, load_document
from aesoperator.ingest.pipeline import quarantined
from benchmarks.documents import corpus as c

pytest.importorskip("pypdf")
pytest.importorskip("reportlab")


def load(name: str, data: bytes, limits: LoaderLimits | None = None) -> Any:
    fmt = document_format(name, data)
    assert fmt is not None, name
    return load_document(fmt, data, limits or LoaderLimits())


def written(tmp_path: Path, name: str) -> bytes:
    path = tmp_path / name
    c.WRITERS[name](path)
    return path.read_bytes()


# -- structure -------------------------------------------------------------------------------------
def test_pdf_pages_and_headings(tmp_path: Path) -> None:
    doc = load("history.pdf", written(tmp_path, "history.pdf"))
    assert doc.format == "pdf" and doc.title == "Regional metal works"
    assert [u.number for u in doc.units] == [1, 2, 3]
    assert [next(b.text for b in u.blocks if b.kind == "heading") for u in doc.units] == [
        "Introduction",
        "The Ostrava Foundry",
        "Bell Casting",
    ]
    chunks = chunk_document(doc, max_chars=300, overlap_chars=40)
    assert {ch.unit_number for ch in chunks} == {1, 2, 3}
    assert all(ch.last_unit_number == ch.unit_number for ch in chunks)  # never across a page
    assert all(
        ch.heading == ["Introduction", "The Ostrava Foundry", "Bell Casting"][ch.unit_number - 1] for ch in chunks
    )
    for ch in chunks:  # the character range is where the text sits in the page's text
        assert 0 <= ch.char_start < ch.char_end
    assert max(len(ch.text) for ch in chunks) <= 300 + 40


def test_a_setting_lets_chunks_span_pages(tmp_path: Path) -> None:
    doc = load("roadmap.pptx", written(tmp_path, "roadmap.pptx"))
    apart = chunk_document(doc, max_chars=1200)
    together = chunk_document(doc, max_chars=1200, across_units=True)
    assert len(apart) == 3 and len(together) == 1
    assert (together[0].unit_number, together[0].last_unit_number) == (1, 3)


def test_docx_table_keeps_its_header_in_every_chunk() -> None:
    import docx

    document = docx.Document()
    document.add_heading("Tide table", level=1)
    table = document.add_table(rows=1, cols=3)
    for cell, text in zip(table.rows[0].cells, ("Date", "High water", "Low water"), strict=True):
        cell.text = text
    for day in range(1, 61):
        cells = table.add_row().cells
        for cell, text in zip(cells, (f"2027-03-{day:02d}", f"0{day % 10}:12", f"1{day % 10}:40"), strict=True):
            cell.text = text
    out = io.BytesIO()
    document.save(out)
    doc = load("tides.docx", out.getvalue())
    chunks = chunk_document(doc, max_chars=300)
    assert len(chunks) > 3
    assert all(ch.text.splitlines()[-1].startswith("2027-03-") for ch in chunks)
    assert all("Date | High water | Low water" in ch.text for ch in chunks)
    assert all(ch.heading == "Tide table" for ch in chunks)
    rows = [ch.rows for ch in chunks if ch.rows is not None]
    assert rows[0][0] == 2 and rows[-1][1] == 61  # the table's rows, numbered from its header (row 1)


def test_docx_pages_follow_page_breaks(tmp_path: Path) -> None:
    doc = load("handbook.docx", written(tmp_path, "handbook.docx"))
    by_page = {u.number: " ".join(b.text or " ".join(r.cells[0] for r in b.rows) for b in u.blocks) for u in doc.units}
    assert "condenser pump" in by_page[1] and "Karin Holm" in by_page[2]
    table = next(b for b in doc.units[0].blocks if b.kind == "table")
    assert table.header is not None and table.header.cells == ("Item", "Warranty", "Supplier")


def test_xlsx_sheets_and_csv_rows(tmp_path: Path) -> None:
    doc = load("prices.xlsx", written(tmp_path, "prices.xlsx"))
    assert [u.name for u in doc.units] == ["Spices", "Depots"]
    assert doc.units[0].blocks[0].rows[1].cells == ("Saffron threads", "box", "12.9")
    csv_doc = load("fleet.csv", written(tmp_path, "fleet.csv"))
    aurora = next(r for r in csv_doc.units[0].blocks[0].rows if r.cells[0] == "Aurora")
    assert aurora.number == 21  # its line in the file


def test_html_main_text_without_page_furniture(tmp_path: Path) -> None:
    doc = load("saved-page.html", written(tmp_path, "saved-page.html"))
    text = "\n".join(ch.text for ch in chunk_document(doc))
    assert "calibrate the foghorn" in text and "March | Calibration" in text
    for furniture in ("cookies", "Shop", "Copyright", "Lighthouses", "Buoys", "trackVisit", "font:"):
        assert furniture not in text


def test_html_keeps_an_articles_own_header_and_drops_its_share_bar() -> None:
    page = b"""<html><body class="page-header-fixed"><header class="site-header"><nav>Home Shop</nav></header>
    <article><header class="article-header"><h1>The Quay</h1><p class="byline">By Ana Reis</p></header>
    <p>The quay was rebuilt in 1902.</p><div class="share-bar">Share on social media</div></article>
    <footer>Copyright</footer></body></html>"""
    blocks = load("quay.html", page).units[0].blocks
    assert [(b.kind, b.text) for b in blocks] == [
        ("heading", "The Quay"),
        ("text", "By Ana Reis"),
        ("text", "The quay was rebuilt in 1902."),
    ]


def test_epub_chapters_in_spine_order(tmp_path: Path) -> None:
    doc = load("atlas.epub", written(tmp_path, "atlas.epub"))
    assert doc.title == "Atlas of Coasts"
    assert [(u.number, u.name) for u in doc.units] == [(1, "The Northern Fjords"), (2, "The Southern Delta")]


def test_format_is_told_by_magic_bytes(tmp_path: Path) -> None:
    pdf = written(tmp_path, "history.pdf")
    assert document_format("report.bin", pdf) == "pdf"
    assert document_format("noextension", written(tmp_path, "handbook.docx")) == "docx"
    assert document_format("slides.zip", written(tmp_path, "roadmap.pptx")) == "pptx"
    assert document_format("book", written(tmp_path, "atlas.epub")) == "epub"
    assert document_format("error.pdf", c.SAVED_PAGE.encode()) == "html"  # an HTML page saved as .pdf
    assert document_format("page", c.SAVED_PAGE.encode()) == "html"  # saved without an extension
    assert document_format("notes.txt", b"plain words") is None
    # source code that mentions the magic is still code
    code = b'"""Checks."""\nMAGIC = b"%PDF-"\nPAGE = "<html><body>"\n'
    assert document_format("sniff.py", code) is None
    assert document_format("page.md", b"<html><body>notes</body></html>") is None
    assert document_format("logo.png", b"\x89PNG\r\n\x1a\n" + bytes(100)) is None


# -- bad files ---------------------------------------------------------------------------------------
BAD_FILES: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "sealed.pdf": (c.encrypted_pdf, "password-protected", "password"),
    "sealed.docx": (c.encrypted_docx, "password-protected", "password"),
    "garbage.pdf": (lambda: b"%PDF-1.4\n" + bytes(range(256)) * 20 + b"\n%%EOF\n", "corrupt", "corrupt PDF"),
    "cut.pdf": (lambda: c.pdf_bytes([("Cut", ["short"])])[:1500], "truncated", "truncated PDF"),
    "cut.docx": (lambda: c.docx_bytes(["cut"])[:3000], "truncated", "truncated Word"),
    "long.pdf": (lambda: c.many_pages_pdf(500), "too-large", "500 pages, over the document_max_pages limit of 300"),
    "bomb.docx": (lambda: c.zip_bomb_docx(30 << 20), "too-large", "a zip bomb?"),
    "crowded.docx": (lambda: c.many_entries_zip(2_000), "too-large", "document_max_zip_entries"),
    "huge.xlsx": (lambda: c.big_sheet_xlsx(400, 10), "too-large", "document_max_cells"),
    "scan.pdf": (c.scanned_pdf, "no-text", "scanned PDF? OCR is not done"),
    "old.doc": (lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "unsupported", "legacy binary Office"),
    "fake.pdf": (lambda: b"just words in a file named .pdf", "corrupt", "no %PDF- header"),
}
LIMITS = LoaderLimits(max_uncompressed_bytes=20_000_000, max_zip_entries=1_000, max_cells=2_000)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_bad_file_fails_with_its_reason(name: str) -> None:
    make, kind, words = BAD_FILES[name]
    data = make()
    tracemalloc.start()
    try:
        with pytest.raises(DocumentError) as caught:
            load(name, data, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.kind == kind
    assert words in str(caught.value)
    assert peak < 64 << 20  # the zip bomb is refused before anything is inflated


def test_bad_files_are_quarantined_and_the_ingest_goes_on(make_engine: Callable[..., Any], tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name, (make, _, _) in BAD_FILES.items():
        (folder / name).write_bytes(make())
    c.history_pdf(folder / "history.pdf")
    engine = make_engine(
        document_max_uncompressed_bytes=20_000_000, document_max_zip_entries=1_000, document_max_cells=2_000
    )
    report = engine.ingest_path(folder)
    assert report.quarantined == len(BAD_FILES)
    reasons = {key: reason for key, reason, _ in quarantined(engine.store.source_items("inbox"))}
    assert set(reasons) == set(BAD_FILES)
    for name, (_, _, words) in BAD_FILES.items():
        assert words in reasons[name]
    hits = engine.search("When was the Ostrava foundry founded?", k=3).hits
    assert hits and hits[0].properties["path"] == "history.pdf"

    # unchanged bad files are not read again; they stay quarantined and are reported as such
    again = engine.ingest_path(folder)
    assert again.records_changed == 0 and again.quarantined == 0
    assert {s.key for s in again.skipped} == set(BAD_FILES)
    assert all(s.reason.endswith("(quarantined; unchanged since)") for s in again.skipped)

    # a repaired file is read and leaves quarantine; a raised limit lets a long file in
    (folder / "cut.docx").write_bytes(c.docx_bytes(["The repaired memo about the harbour crane."]))
    engine.settings.document_max_pages = 600
    repaired = engine.ingest_path(folder)
    left = {key for key, _, _ in quarantined(engine.store.source_items("inbox"))}
    assert "cut.docx" not in left and "long.pdf" not in left and "sealed.pdf" in left
    # the files over other limits are tried again (the limits changed) and quarantined again
    assert repaired.records_changed == 5 and repaired.quarantined == 3
    assert {s.key for s in repaired.skipped if not s.reason.endswith("unchanged since)")} == {
        "bomb.docx",
        "crowded.docx",
        "huge.xlsx",
    }


def test_without_the_library_a_document_is_quarantined_with_the_install_hint(
    make_engine: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    c.history_pdf(folder / "history.pdf")
    engine = make_engine()
    for module in [m for m in sys.modules if m == "pypdf" or m.startswith("pypdf.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "pypdf", None)  # what an environment without pypdf shows
    report = engine.ingest_path(folder)
    assert report.quarantined == 1
    assert "pip install 'aesoperator[documents]'" in report.skipped[0].reason
    monkeypatch.undo()
    later = engine.ingest_path(folder)  # installed since: read again, not left in quarantine
    assert later.records_changed == 1 and later.quarantined == 0
    assert not quarantined(engine.store.source_items("reports"))


@pytest.mark.parametrize("name", sorted(c.WRITERS))
def test_character_ranges_point_at_the_chunk_text(tmp_path: Path, name: str) -> None:
    from aesoperator.ingest.document_chunks import unit_text

    doc = load(name, written(tmp_path, name))
    texts = {u.number: unit_text(u) for u in doc.units}
    for chunk in chunk_document(doc, max_chars=300, overlap_chars=40):
        span = texts[chunk.unit_number][chunk.char_start : chunk.char_end]
        if chunk.rows is None:  # prose: the same words, in order
            assert span.split() == chunk.text.split(), (name, chunk.index)
        else:  # table rows (after the heading that opens them, if any); the chunk repeats the header row
            lines = chunk.text.splitlines()
            assert set(span.splitlines()) - {""} <= set(lines), (name, chunk.index)
            assert span.splitlines()[-1] == lines[-1], (name, chunk.index)
