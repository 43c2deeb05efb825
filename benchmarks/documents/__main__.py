"""Document loader throughput: `python -m benchmarks.documents [--scale 1.0] [--repeat 3]`.

For each format a file is written with the format's own library (`corpus.py`), then loaded and
chunked `--repeat` times (the best run counts): pages (or slides, sheets' rows, chapters) per
second, MB per second and chunks per second. Then the whole set is ingested with
`ContextEngine.ingest_path` without embedding (files per second through sniffing, loading,
chunking, mapping and the store), and once more to show that unchanged files cost only hashing.

Writes `benchmarks/results/documents-latest.json` and `.md`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aesoperator.ingest.document_chunks import chunk_document
from aesoperator.ingest.loaders.model import LoaderLimits
from aesoperator.ingest.loaders.registry import document_format, load_document
from benchmarks.documents import corpus

RESULTS = Path(__file__).resolve().parents[1] / "results"
WORDS = [
    "harbour",
    "pilot",
    "tide",
    "chart",
    "ferry",
    "quay",
    "beacon",
    "survey",
    "ledger",
    "archive",
    "bronze",
    "foundry",
    "delta",
    "river",
    "glacier",
    "crane",
    "cargo",
    "manifest",
    "depot",
    "schedule",
    "inspection",
    "valve",
    "pump",
    "gauge",
    "keeper",
]


def sentence(i: int, n: int = 14) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)).capitalize() + "."


def paragraph(i: int, sentences: int = 6) -> str:
    return " ".join(sentence(i + k) for k in range(sentences))


def make_pdf(pages: int) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "b.pdf"
        corpus.write_pdf(path, [(f"Section {p}", [paragraph(p * 5 + k) for k in range(4)]) for p in range(pages)])
        return path.read_bytes()


def make_docx(pages: int) -> bytes:
    import docx
    from docx.enum.text import WD_BREAK

    document = docx.Document()
    for p in range(pages):
        document.add_heading(f"Chapter {p}", level=1)
        for k in range(4):
            document.add_paragraph(paragraph(p * 5 + k))
        table = document.add_table(rows=1, cols=3)
        for cell, text in zip(table.rows[0].cells, ("Item", "Count", "Place"), strict=True):
            cell.text = text
        for r in range(5):
            for cell, text in zip(table.add_row().cells, (WORDS[r], str(r * p), WORDS[-r]), strict=True):
                cell.text = text
        document.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_pptx(slides: int) -> bytes:
    from pptx import Presentation

    deck = Presentation()
    for s in range(slides):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = f"Slide {s}"
        slide.placeholders[1].text = "\n".join(sentence(s * 4 + k) for k in range(4))
        slide.notes_slide.notes_text_frame.text = paragraph(s, 2)
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def make_xlsx(rows: int) -> bytes:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    for name in ("Stock", "Orders"):
        sheet = book.create_sheet(name)
        sheet.append(["id", "item", "place", "count", "price", "note"])
        for r in range(rows // 2):
            sheet.append([r, WORDS[r % len(WORDS)], WORDS[(r * 3) % len(WORDS)], r % 97, r * 0.25, sentence(r, 6)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def make_csv(rows: int) -> bytes:
    lines = ["id,item,place,count,note"] + [
        f"{r},{WORDS[r % len(WORDS)]},{WORDS[(r * 3) % len(WORDS)]},{r % 97},{sentence(r, 6)}" for r in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def make_html(sections: int) -> bytes:
    body = "".join(
        f"<h2>Section {s}</h2>" + "".join(f"<p>{paragraph(s * 4 + k)}</p>" for k in range(4)) for s in range(sections)
    )
    nav = "<nav><ul>" + "".join(f'<li><a href="/{w}">{w}</a></li>' for w in WORDS) + "</ul></nav>"
    page = f"<!DOCTYPE html><html><head><title>Long page</title></head><body>{nav}<main>{body}</main>"
    return (page + "<footer>footer</footer></body></html>").encode()


def make_epub(chapters: int) -> bytes:
    return corpus.epub_bytes(
        [(f"Chapter {c}", " ".join(paragraph(c * 5 + k) for k in range(5))) for c in range(chapters)]
    )


def units(name: str, data: bytes) -> int:
    doc = load_document(document_format(name, data) or "", data, LoaderLimits(max_cells=10_000_000))
    if doc.format in ("xlsx", "csv"):
        return sum(len(b.rows) + 1 for u in doc.units for b in u.blocks)
    return len(doc.units)


def measure(name: str, data: bytes, repeat: int) -> dict[str, Any]:
    fmt = document_format(name, data)
    assert fmt is not None
    limits = LoaderLimits(max_cells=10_000_000, max_pages=10_000)
    best = float("inf")
    chunks = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        doc = load_document(fmt, data, limits)
        chunks = len(chunk_document(doc))
        best = min(best, time.perf_counter() - t0)
    count = units(name, data)
    unit = "rows" if fmt in ("xlsx", "csv") else {"pptx": "slides", "epub": "chapters"}.get(fmt, "pages")
    if count == 1:
        unit = unit.rstrip("s")
    return {
        "file": name,
        "format": fmt,
        "bytes": len(data),
        "units": count,
        "unit": unit,
        "chunks": chunks,
        "seconds": round(best, 4),
        "units_per_s": round(count / best, 1),
        "mb_per_s": round(len(data) / best / 1e6, 2),
        "chunks_per_s": round(chunks / best, 1),
    }


def ingest_run(folder: Path) -> dict[str, Any]:
    from aesoperator import ContextEngine
    from aesoperator.config import Settings

    with tempfile.TemporaryDirectory() as data:
        engine = ContextEngine.open(
            settings=Settings(data_dir=Path(data), extractor="none", document_max_cells=10_000_000)
        )
        try:
            t0 = time.perf_counter()
            first = engine.ingest_path(folder, embed=False)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = engine.ingest_path(folder, embed=False)
            warm = time.perf_counter() - t0
        finally:
            engine.close()
    files = first.records_seen
    return {
        "files": files,
        "bytes": sum(p.stat().st_size for p in folder.iterdir()),
        "entities": first.entities_written,
        "skipped": [s.reason for s in first.skipped],
        "first_seconds": round(cold, 3),
        "files_per_s": round(files / cold, 2),
        "unchanged_seconds": round(warm, 3),
        "unchanged_files": again.records_unchanged,
        "map_seconds": round(first.stage_seconds["map"], 3),
        "store_seconds": round(first.stage_seconds["store"], 3),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Document loader throughput",
        "",
        f"`{result['command']}` · commit {result['commit']} · {result['machine']} · load average at start "
        f"{result['load_average']}",
        "",
        "Load + chunk (1,200 characters) of one file, best of the repeats:",
        "",
        "| file | format | size | units | chunks | seconds | units/s | MB/s | chunks/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["formats"]:
        lines.append(
            f"| {row['file']} | {row['format']} | {row['bytes'] / 1e6:.2f} MB | {row['units']:,} {row['unit']} | "
            f"{row['chunks']:,} | {row['seconds']:.3f} | {row['units_per_s']:,} | {row['mb_per_s']} | "
            f"{row['chunks_per_s']:,} |"
        )
    ingest = result["ingest"]
    lines += [
        "",
        f"`ContextEngine.ingest_path` of the {ingest['files']} files ({ingest['bytes'] / 1e6:.1f} MB) without "
        f"embedding or knowledge extraction: {ingest['first_seconds']} s ({ingest['files_per_s']} files/s; "
        f"{ingest['map_seconds']} s loading, chunking and mapping, {ingest['store_seconds']} s writing "
        f"{ingest['entities']:,} entities); again, unchanged: {ingest['unchanged_seconds']} s "
        f"({ingest['unchanged_files']} files hashed, none loaded).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="Size of the files (1.0: 100 pages, 20k rows...).")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "documents-latest.json")
    args = parser.parse_args()
    n = max(1, int(100 * args.scale))
    makers: dict[str, Callable[[], bytes]] = {
        "report.pdf": lambda: make_pdf(n),
        "manual.docx": lambda: make_docx(n),
        "deck.pptx": lambda: make_pptx(n),
        "ledger.xlsx": lambda: make_xlsx(200 * n),
        "log.csv": lambda: make_csv(200 * n),
        "page.html": lambda: make_html(n),
        "book.epub": lambda: make_epub(n),
    }
    folder = Path(tempfile.mkdtemp(prefix="aesop-doc-bench-"))
    try:
        rows = []
        for name, make in tqdm(makers.items(), desc="formats", unit="file"):
            data = make()
            (folder / name).write_bytes(data)
            rows.append(measure(name, data, args.repeat))
        with tqdm(total=1, desc="ingest_path", unit="run") as bar:
            ingest = ingest_run(folder)
            bar.update()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {
        "command": f"python -m benchmarks.documents --scale {args.scale:g} --repeat {args.repeat}",
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "formats": rows,
        "ingest": ingest,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
