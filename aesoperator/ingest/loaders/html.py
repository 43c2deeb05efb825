"""Saved web pages (and EPUB chapters) through lxml (BSD-3-Clause): the main text, its headings
and tables, without the page furniture.

Boilerplate goes first: scripts, styles, forms, `nav`/`header`/`footer`/`aside`, elements whose
ARIA role or class/id says navigation, banner, cookie notice, sidebar or share bar, and hidden
elements. Then the main part is chosen: `main`, `[role=main]` or the `article` with the most text,
else the body. Lists that are mostly links (menus the markup did not label) are dropped too.
"""

from __future__ import annotations

import re
from typing import Any

from aesoperator.errors import DocumentError
from aesoperator.ingest.loaders.model import (
    DocumentBlock,
    DocumentUnit,
    LoadedDocument,
    LoaderLimits,
    TableRow,
    TextBudget,
    corrupt,
    missing_library,
    over_limit,
)

WHAT = "HTML page"
_DROP_TAGS = (
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "form", "button", "select",
    "nav", "header", "footer", "aside", "menu", "dialog", "head",
)  # fmt: skip
_DROP_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar", "dialog"})
_BOILERPLATE = re.compile(
    r"(^|[\s_-])(nav|navbar|menu|breadcrumbs?|sidebar|footer|header|cookies?|consent|banner|share|social|"
    r"advert|ads|promo|related|subscribe|newsletter|skip-link)([\s_-]|$)",
    re.IGNORECASE,
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = frozenset({"p", "li", "pre", "blockquote", "dt", "dd", "figcaption", "address", "caption", "summary"})
_CONTAINERS = frozenset({"ul", "ol", "dl"})
LINK_LIST_RATIO = 0.6


def _text(element: Any) -> str:
    return " ".join(element.text_content().split())


def _is_boilerplate(element: Any) -> bool:
    if element.get("hidden") is not None or element.get("aria-hidden") == "true":
        return True
    if (element.get("role") or "").lower() in _DROP_ROLES:
        return True
    label = f"{element.get('class') or ''} {element.get('id') or ''}"
    return bool(label.strip()) and _BOILERPLATE.search(label) is not None


_NEVER_DROPPED = frozenset({"html", "body", "main", "article"})
_KEPT_IN_CONTENT = frozenset({"header", "footer"})  # an article's own header holds its title


def _in_content(element: Any) -> bool:
    return any(a.tag in ("article", "main") for a in element.iterancestors())


def _doomed(element: Any) -> bool:
    tag = element.tag
    if not isinstance(tag, str) or tag in _NEVER_DROPPED:
        return False
    if tag in _KEPT_IN_CONTENT and _in_content(element):
        return False
    if tag in _DROP_TAGS:
        return True
    if not _is_boilerplate(element):
        return False
    if element.get("role") is None and _in_content(element):
        found = _BOILERPLATE.search(f"{element.get('class') or ''} {element.get('id') or ''}")
        return found is None or found.group(2).lower() not in _KEPT_IN_CONTENT  # "article-header" stays
    return True


def _strip(root: Any) -> None:
    doomed = [e for e in root.iter() if _doomed(e)]
    for element in doomed:
        if element.getparent() is not None:
            element.drop_tree()


def _main(root: Any) -> Any:
    for path in ("//main", "//*[@role='main']"):
        found = root.xpath(path)
        if found:
            return found[0]
    articles = root.xpath("//article")
    if articles:
        return max(articles, key=lambda a: len(a.text_content()))
    body = root.find("body")
    return body if body is not None else root


def _link_list(element: Any) -> bool:
    total = len(_text(element))
    if total == 0:
        return True
    linked = sum(len(_text(a)) for a in element.iter("a"))
    return linked / total >= LINK_LIST_RATIO


def _table(element: Any) -> DocumentBlock | None:
    rows: list[TableRow] = []
    for i, tr in enumerate(element.iter("tr"), 1):
        cells = tuple(_text(c) for c in tr if isinstance(c.tag, str) and c.tag in ("td", "th"))
        if any(cells):
            rows.append(TableRow(cells, number=i))
    if not rows:
        return None
    return DocumentBlock("table", header=rows[0], rows=tuple(rows[1:]))


_INLINE = frozenset(
    {"a", "span", "em", "strong", "b", "i", "u", "code", "small", "sup", "sub", "mark", "abbr", "time", "q"}
)


def html_blocks(root: Any, budget: TextBudget, max_cells: int) -> list[DocumentBlock]:
    """The blocks of an already stripped element, in document order. The walk is iterative, so
    deeply nested markup cannot exhaust the stack; an element's tail text joins its parent's flow."""
    blocks: list[DocumentBlock] = []
    loose: list[str] = []
    cells = 0

    def flush() -> None:
        text = " ".join(" ".join(loose).split())
        loose.clear()
        if text:
            blocks.append(DocumentBlock("text", budget.take(text)))

    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        element, closing = stack.pop()
        tag = element.tag if isinstance(element.tag, str) else ""
        if closing:
            if tag not in _INLINE:
                flush()
            if element is not root and element.tail and element.tail.strip():
                loose.append(element.tail)
            continue
        if tag in _HEADINGS:
            flush()
            text = _text(element)
            if text:
                blocks.append(DocumentBlock("heading", budget.take(text), level=_HEADINGS[tag]))
        elif tag == "table":
            flush()
            table = _table(element)
            if table is not None:
                cells += sum(len(r.cells) for r in (table.header, *table.rows) if r is not None)
                if cells > max_cells:
                    raise over_limit(WHAT, f"more than {max_cells:,} table cells", "document_max_cells", max_cells)
                budget.take(" ".join(c for r in table.rows for c in r.cells))
                blocks.append(table)
        elif tag in _CONTAINERS and element is not root and _link_list(element):
            pass  # a menu the markup did not label
        elif tag in _BLOCKS:
            flush()
            text = _text(element)
            if text:
                blocks.append(DocumentBlock("text", budget.take(text)))
        else:
            if tag not in _INLINE:
                flush()
            if tag == "br":
                loose.append("\n")
            elif element.text and element.text.strip():
                loose.append(element.text)
            stack.append((element, True))
            stack.extend((child, False) for child in reversed(element) if isinstance(child.tag, str))
            continue
        stack.append((element, True))
    flush()
    return blocks


def parse_html(data: bytes) -> Any:
    try:
        import lxml.html
    except ImportError:
        raise missing_library("HTML", "lxml") from None
    try:
        return lxml.html.document_fromstring(data)
    except Exception as exc:  # lxml.etree.ParserError and friends
        raise corrupt(WHAT, exc) from None


def page_title(root: Any) -> str | None:
    title = root.find(".//title")
    text = " ".join((title.text_content() if title is not None else "").split())
    return text or None


class HtmlLoader:
    format = "html"

    def load(self, data: bytes, limits: LoaderLimits) -> LoadedDocument:
        root = parse_html(data)
        title = page_title(root)
        _strip(root)
        blocks = html_blocks(_main(root), TextBudget(WHAT, limits), limits.max_cells)
        if not blocks:
            raise DocumentError("no main text in the HTML page", kind="no-text")
        if title is None:
            title = next((b.text for b in blocks if b.kind == "heading"), None)
        return LoadedDocument(self.format, [DocumentUnit("document", 1, name=title, blocks=blocks)], title=title)
