"""Looking for erased text in every file of a data directory, byte by byte."""

from __future__ import annotations

from pathlib import Path

# Distinctive enough that no model, tokenizer or stemmer output contains it by chance.
MARKER = "Qorvexaline Thistlewhump"
MARKER_WORDS = ("Qorvexaline", "Thistlewhump")


def needles(text: str) -> list[bytes]:
    """The byte forms a text may take in a file: UTF-8 and UTF-16 (both byte orders), as written
    and lower-cased (SQLite FTS terms, normalised names and knowledge ids are lower-case)."""
    forms = {text, text.lower(), text.upper()}
    out: list[bytes] = []
    for form in forms:
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            out.append(form.encode(encoding))
    return out


def traces(root: Path, texts: tuple[str, ...] = (MARKER, *MARKER_WORDS)) -> list[str]:
    """`path: text (encoding form)` for every file under `root` holding any form of `texts`
    (case-insensitive for UTF-8: the file is also searched lower-cased)."""
    found: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        lowered = data.lower()
        for text in texts:
            for needle in needles(text):
                if needle in data or needle.lower() in lowered:
                    found.append(f"{path.relative_to(root)}: {text!r}")
                    break
    return found
