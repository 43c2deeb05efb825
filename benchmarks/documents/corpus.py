"""A small corpus of real document files, written with the formats' own libraries (reportlab for
PDF, python-docx, python-pptx, openpyxl) or built byte by byte (EPUB is a zip of XHTML, HTML is
text), each holding facts whose page, slide, sheet or chapter is known.

`FACTS` lists them: a question, the file, the unit its answer sits on and a phrase of the answer.
The tests ingest the corpus and check that the top hit for each question points to that unit;
the throughput benchmark makes larger files with the same writers.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Fact:
    question: str
    file: str
    fragment: str  # what the chunk's provenance fragment starts with: "page=3", "slide=2", "sheet=Prices"
    phrase: str  # a phrase of the evidence


FACTS: tuple[Fact, ...] = (
    Fact("When was the Ostrava foundry founded?", "history.pdf", "page=2", "founded in 1828"),
    Fact("What alloy does the bell casting use?", "history.pdf", "page=3", "bronze of 78 percent copper"),
    Fact("Who maintains the tidal gauges in Esbjerg?", "handbook.docx", "page=2", "Karin Holm"),
    Fact("How long is the warranty on the condenser pump?", "handbook.docx", "page=1", "condenser pump"),
    Fact("What is the quarterly target for the Lisbon office?", "roadmap.pptx", "slide=2", "Lisbon"),
    Fact("Which risk did the speaker notes mention about the glacier survey?", "roadmap.pptx", "slide=3", "crevasse"),
    Fact("What does a box of saffron threads cost?", "prices.xlsx", "sheet=Spices", "Saffron threads"),
    Fact("How many staff work at the Tromsø depot?", "prices.xlsx", "sheet=Depots", "Tromsø"),
    Fact("Which ferry route does the Aurora vessel serve?", "fleet.csv", "rows=", "Aurora"),
    Fact("How do lighthouse keepers calibrate the foghorn?", "saved-page.html", "char=", "calibrate the foghorn"),
    Fact("Where did the cartographer Ines Duarte draw the river delta?", "atlas.epub", "chapter=2", "river delta"),
)

LOREM = (
    "The committee reviewed the archive and recorded the minutes of each meeting in the ledger. "
    "Routine correspondence about supplies, schedules and repairs filled most of the pages. "
)


def write_pdf(path: Path, pages: list[tuple[str, list[str]]], title: str = "") -> None:
    """A PDF with one page per (heading, paragraphs): the heading set large and bookmarked."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    if title:
        pdf.setTitle(title)
    _, height = A4
    for number, (heading, paragraphs) in enumerate(pages, 1):
        pdf.setFont("Helvetica-Bold", 18)
        pdf.drawString(60, height - 70, heading)
        pdf.bookmarkPage(f"p{number}")
        pdf.addOutlineEntry(heading, f"p{number}", level=0)
        pdf.setFont("Helvetica", 10)
        y = height - 100
        for paragraph in paragraphs:
            line = ""
            for word in paragraph.split():
                if len(line) + len(word) > 90:
                    pdf.drawString(60, y, line)
                    y -= 14
                    line = ""
                line = f"{line} {word}".strip()
            if line:
                pdf.drawString(60, y, line)
                y -= 24
        pdf.showPage()
    pdf.save()


def history_pdf(path: Path) -> None:
    write_pdf(
        path,
        [
            ("Introduction", ["This report describes the metal works of the region. " + LOREM * 3]),
            (
                "The Ostrava Foundry",
                ["The Ostrava foundry was founded in 1828 by the brothers Kral on the bank of the river. " + LOREM * 2],
            ),
            (
                "Bell Casting",
                ["Bell casting uses a bronze of 78 percent copper and 22 percent tin, poured at dusk. " + LOREM * 2],
            ),
        ],
        title="Regional metal works",
    )


def handbook_docx(path: Path) -> None:
    import docx
    from docx.enum.text import WD_BREAK

    document = docx.Document()
    document.core_properties.title = "Station handbook"
    document.add_heading("Station handbook", level=0)
    document.add_heading("Equipment warranties", level=1)
    document.add_paragraph("Warranties of the station equipment, by item. " + LOREM)
    table = document.add_table(rows=1, cols=3)
    for cell, text in zip(table.rows[0].cells, ("Item", "Warranty", "Supplier"), strict=True):
        cell.text = text
    for row in (("condenser pump", "36 months", "Nordvik AS"), ("wind vane", "12 months", "Aeolus GmbH")):
        cells = table.add_row().cells
        for cell, text in zip(cells, row, strict=True):
            cell.text = text
    document.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    document.add_heading("Staff", level=1)
    document.add_paragraph("The tidal gauges in Esbjerg are maintained by Karin Holm, who checks them weekly. " + LOREM)
    document.save(str(path))


def roadmap_pptx(path: Path) -> None:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[0])
    slide.shapes.title.text = "Roadmap 2027"
    slide.placeholders[1].text = "Plans of the regional offices for the coming year"
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Quarterly targets"
    shape = slide.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2))
    for r, row in enumerate(
        (("Office", "Target"), ("Lisbon", "420 new subscribers"), ("Porto", "180 new subscribers"))
    ):
        for c, text in enumerate(row):
            shape.table.cell(r, c).text = text
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Field work"
    slide.placeholders[1].text = "Glacier survey in July\nBoat maintenance in August"
    slide.notes_slide.notes_text_frame.text = "Risk: a crevasse field blocks the northern route of the glacier survey."
    deck.save(str(path))


def prices_xlsx(path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Spices"
    sheet.append(["Product", "Unit", "Price EUR"])
    for row in (("Black pepper", "jar", 4.5), ("Saffron threads", "box", 12.9), ("Cardamom pods", "bag", 6.2)):
        sheet.append(list(row))
    depots = book.create_sheet("Depots")
    depots.append(["Depot", "Staff", "Opened"])
    for row in (("Bergen", 14, 1998), ("Tromsø", 9, 2004), ("Oslo", 31, 1987)):
        depots.append(list(row))
    book.save(str(path))


def fleet_csv(path: Path) -> None:
    rows = ["vessel,route,built"] + [f"Vessel {i},Route {i},{1990 + i}" for i in range(1, 40)]
    rows.insert(20, "Aurora,Hirtshals to Kristiansand,2011")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


SAVED_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Foghorn care | Coastal Guild</title>
<style>body { font: 12px sans-serif }</style><script>trackVisit();</script></head>
<body>
<header class="site-header"><a href="/">Coastal Guild</a> <nav><ul><li><a href="/a">Home</a></li>
<li><a href="/b">Lighthouses</a></li><li><a href="/c">Shop</a></li></ul></nav></header>
<div id="cookie-banner">We use cookies to improve your visit. Accept all cookies?</div>
<main><article>
<h1>Foghorn care</h1>
<p>Keepers calibrate the foghorn each spring with a reference tone of 180 hertz, measured from the gallery.</p>
<h2>Schedule</h2>
<table><tr><th>Month</th><th>Task</th></tr><tr><td>March</td><td>Calibration</td></tr>
<tr><td>September</td><td>Diaphragm check</td></tr></table>
</article></main>
<aside class="sidebar"><h3>Related</h3><ul><li><a href="/x">Buoys</a></li></ul></aside>
<footer>Copyright Coastal Guild. Shop opening hours and newsletter sign-up.</footer>
</body></html>
"""


def saved_page_html(path: Path) -> None:
    path.write_text(SAVED_PAGE, encoding="utf-8")


def epub_bytes(chapters: list[tuple[str, str]], title: str = "Atlas of Coasts") -> bytes:
    """A minimal valid EPUB 3: mimetype first and stored, container, package, XHTML chapters."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        book.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        items = "".join(
            f'<item id="c{i}" href="text/ch{i}.xhtml" media-type="application/xhtml+xml"/>'
            for i in range(1, len(chapters) + 1)
        )
        spine = "".join(f'<itemref idref="c{i}"/>' for i in range(1, len(chapters) + 1))
        book.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
            f'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}</dc:title>'
            '<dc:identifier id="id">atlas-1</dc:identifier></metadata>'
            f"<manifest>{items}</manifest><spine>{spine}</spine></package>",
        )
        for i, (heading, body) in enumerate(chapters, 1):
            book.writestr(
                f"OEBPS/text/ch{i}.xhtml",
                '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                f"<head><title>{heading}</title></head><body><h1>{heading}</h1><p>{body}</p></body></html>",
            )
    return buffer.getvalue()


def atlas_epub(path: Path) -> None:
    path.write_bytes(
        epub_bytes(
            [
                ("The Northern Fjords", "Surveyors mapped the fjords by boat. " + LOREM),
                (
                    "The Southern Delta",
                    "The cartographer Ines Duarte drew the river delta from a balloon in 1861. " + LOREM,
                ),
            ]
        )
    )


WRITERS = {
    "history.pdf": history_pdf,
    "handbook.docx": handbook_docx,
    "roadmap.pptx": roadmap_pptx,
    "prices.xlsx": prices_xlsx,
    "fleet.csv": fleet_csv,
    "saved-page.html": saved_page_html,
    "atlas.epub": atlas_epub,
}


def build_corpus(folder: Path) -> Path:
    """Write every file of the corpus into `folder` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, write in WRITERS.items():
        write(folder / name)
    return folder


# -- files that must be quarantined, one per failure kind ----------------------------------------------
def encrypted_pdf(password: str = "harbour") -> bytes:
    from pypdf import PdfReader, PdfWriter

    buffer = io.BytesIO()
    write_pdf_to(buffer, [("Sealed", ["Nobody reads this without the password."])])
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(buffer.getvalue())))
    writer.encrypt(user_password=password, owner_password=password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def write_pdf_to(buffer: io.BytesIO, pages: list[tuple[str, list[str]]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "out.pdf"
        write_pdf(path, pages)
        buffer.write(path.read_bytes())


def pdf_bytes(pages: list[tuple[str, list[str]]]) -> bytes:
    buffer = io.BytesIO()
    write_pdf_to(buffer, pages)
    return buffer.getvalue()


def many_pages_pdf(count: int) -> bytes:
    """A real PDF of `count` short pages, written by pypdf from one reportlab page."""
    from pypdf import PdfReader, PdfWriter

    page = PdfReader(io.BytesIO(pdf_bytes([("Long report", ["A page of a very long report."])]))).pages[0]
    writer = PdfWriter()
    for _ in range(count):
        writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def scanned_pdf() -> bytes:
    """Two pages that hold only an image: what a scanner makes."""
    import tempfile

    from PIL import Image
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scan.pdf"
        pdf = canvas.Canvas(str(path), pagesize=A4, invariant=1)
        image = Image.new("L", (200, 280), color=235)
        for _ in range(2):
            pdf.drawImage(ImageReader(image), 40, 40, width=500, height=700)
            pdf.showPage()
        pdf.save()
        return path.read_bytes()


def encrypted_docx(password: str = "harbour") -> bytes:
    """A password-protected .docx as Word writes it (OOXML inside an OLE2 container)."""
    import docx
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("Salaries of the harbour staff.")
    document.save(plain)
    plain.seek(0)
    out = io.BytesIO()
    OOXMLFile(plain).encrypt(password, out)
    return out.getvalue()


def docx_bytes(paragraphs: list[str]) -> bytes:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_bomb_docx(uncompressed_bytes: int) -> bytes:
    """A .docx whose document part inflates to `uncompressed_bytes` of spaces (a few hundred KB
    compressed): the shape of a zip bomb in Office clothing."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(docx_bytes(["cover"]))) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb,
    ):
        for info in source.infolist():
            if info.filename != "word/document.xml":
                bomb.writestr(info, source.read(info.filename))
        part_info = zipfile.ZipInfo("word/document.xml")
        part_info.compress_type = zipfile.ZIP_DEFLATED
        with bomb.open(part_info, "w", force_zip64=True) as part:
            block = b" " * (1 << 20)
            for _ in range(uncompressed_bytes // len(block)):
                part.write(block)
    return out.getvalue()


def many_entries_zip(entries: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx_bytes(["cover"]))) as source, zipfile.ZipFile(out, "w") as crowded:
        for info in source.infolist():
            crowded.writestr(info, source.read(info.filename))
        for i in range(entries):
            crowded.writestr(f"word/media/pad{i}.bin", b"")
    return out.getvalue()


def big_sheet_xlsx(rows: int, columns: int) -> bytes:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Readings")
    sheet.append([f"col{c}" for c in range(columns)])
    for r in range(rows):
        sheet.append([r * columns + c for c in range(columns)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
