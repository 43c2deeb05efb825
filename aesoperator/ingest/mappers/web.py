"""Web pages (as a browser MCP server's accessibility snapshot shows them) to graph items.

`parse_snapshot` reads the answer of Playwright MCP's `browser_snapshot` tool: a "### Page" section
("- Page URL: ...", "- Page Title: ...", "- HTTP status: ..." when it is an error) and the
page's accessibility tree as YAML lines such as

    - heading "Welcome" [level=1] [ref=e2]
    - paragraph [ref=e3]: Sourdough notes.
    - link "Menu" [ref=e4] [cursor=pointer]:
      - /url: /menu.html

What the page shows becomes its text (headings as "#" lines, a link or button by its name, the
text of every other node), and the `/url` of each link becomes a link. Because the tree is taken
from the rendered page, text that scripts put there is included.

Each page is a `Page` (`<source>:page:<url>`) whose text is its title and content; a page longer
than `chunk_chars` also gets `Chunk` entities (Page CONTAINS Chunk) and keeps only its head.
A page LINKS_TO the crawled pages it links to (see `links.py`). Text is kept verbatim: whatever a
page says is data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from aesoperator.errors import MappingError
from aesoperator.graph_schema.ids import content_hash, entity_id, relation_id
from aesoperator.graph_schema.models import MAX_NAME_CHARS, MAX_TEXT_CHARS, Entity, Provenance, Relation
from aesoperator.ingest.chunking import chunk_text
from aesoperator.ingest.mappers.links import LINKS_KIND, Declared, map_links
from aesoperator.ingest.records import MappedItem, SourceRecord, required

DEFAULT_CHUNK_CHARS = 1200
CHUNK_OVERLAP_CHARS = 150
# `- role "name" [attr] [attr]: text`; the name is a JSON-style quoted string
NODE = re.compile(
    r'^(?P<role>[A-Za-z][\w-]*)(?: "(?P<name>(?:[^"\\]|\\.)*)")?(?P<attrs>(?: \[[^\]]*\])*)(?::(?: (?P<text>.*))?)?$'
)
LEVEL = re.compile(r"\[level=(\d)\]")
NAMED_ROLES = frozenset(
    {"link", "button", "img", "image", "checkbox", "radio", "tab", "menuitem", "option", "textbox", "combobox"}
)
SKIP_ROLES = frozenset({"generic", "group", "list", "navigation", "main", "banner", "contentinfo", "region"})


def normalise_url(url: str) -> str:
    """A URL as a page identity: scheme and host lower-cased, default port and fragment dropped."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def origin(url: str) -> str:
    parts = urlsplit(normalise_url(url))
    return f"{parts.scheme}://{parts.netloc}"


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
            return decoded if isinstance(decoded, str) else value
        except ValueError:
            return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


@dataclass
class Snapshot:
    url: str | None = None
    title: str = ""
    status: str | None = None  # "404 File not found" when the page answered with an error
    lines: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # absolute, normalised, in page order

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def failed(self) -> bool:
        return self.status is not None and self.status[:1] in ("4", "5")


def parse_snapshot(answer: str) -> Snapshot:
    """The page URL, title, status, visible text and links of a `browser_snapshot` answer."""
    snap = Snapshot()
    in_tree = False
    for raw in answer.splitlines():
        line = raw.rstrip()
        if not in_tree:
            if line.startswith("- Page URL: "):
                snap.url = line[len("- Page URL: ") :].strip()
            elif line.startswith("- Page Title: "):
                snap.title = line[len("- Page Title: ") :].strip()
            elif line.startswith("- HTTP status: "):
                snap.status = line[len("- HTTP status: ") :].strip()
            elif line.startswith("```yaml"):
                in_tree = True
            continue
        if line.startswith("```"):
            in_tree = False
            continue
        item = line.lstrip()
        if not item.startswith("- "):
            continue
        item = item[2:]
        if item.startswith("/url:"):
            href = _unquote(item[len("/url:") :])
            if href and snap.url:
                target = urljoin(snap.url, href)
                if urlsplit(target).scheme in ("http", "https"):
                    normal = normalise_url(target)
                    if normal not in snap.links:
                        snap.links.append(normal)
            continue
        if item.startswith("/"):  # other properties (/placeholder, ...)
            continue
        if item.startswith("text: "):
            text = _unquote(item[len("text: ") :])
            if text:
                snap.lines.append(text)
            continue
        match = NODE.match(item)
        if match is None:
            continue
        role = match.group("role")
        name = _unquote(f'"{match.group("name")}"') if match.group("name") is not None else ""
        text = _unquote(match.group("text") or "")
        if role == "heading" and name:
            level = LEVEL.search(match.group("attrs") or "")
            snap.lines.append("#" * int(level.group(1) if level else 2) + " " + name)
        elif role in NAMED_ROLES and name:
            snap.lines.append(name if not text or text == name else f"{name}: {text}")
        elif text:
            snap.lines.append(text)
        elif name and role not in SKIP_ROLES:
            snap.lines.append(name)
    return snap


class WebIds:
    def __init__(self, source: str) -> None:
        self.source = source

    def page(self, url: str) -> str:
        return entity_id(self.source, "page", normalise_url(url))

    def chunk(self, url: str, index: int) -> str:
        return entity_id(self.source, "chunk", f"{normalise_url(url)}#{index}")


def declared_links(payload: dict[str, Any], ids: WebIds) -> Declared:
    own = ids.page(required(payload, "url", str))
    return [["LINKS_TO", own, link] for link in payload.get("links", []) if link != normalise_url(payload["url"])]


class WebMapper:
    """Pure: one web record to graph items.

    kinds: "page" {"url", "title", "text", "links", "depth", "requested"}; "links" (see links.py).
    """

    kind = "web"

    def __init__(self, source: str, namespace: str, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> None:
        self.source = source
        self.namespace = namespace
        self.chunk_chars = chunk_chars
        self.ids = WebIds(source)

    def map(self, record: SourceRecord) -> MappedItem:
        if record.kind == "page":
            return self._map_page(record)
        if record.kind == LINKS_KIND:
            return map_links(record, self.source, self.namespace)
        raise MappingError(f"unknown web record kind {record.kind!r}")

    def _entity(self, eid: str, etype: str, name: str, text: str, props: dict[str, Any], version: str) -> Entity:
        name = " ".join(name.split()) or str(props["url"])
        return Entity(
            id=eid,
            type=etype,
            name=name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1] + "…",
            text=text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…",
            properties=props,
            source=self.source,
            provenance=Provenance(uri=str(props["url"]), version=version),
            namespace=self.namespace,
        )

    def _map_page(self, record: SourceRecord) -> MappedItem:
        p = record.payload
        url, title, text = required(p, "url", str), str(p.get("title") or ""), str(p.get("text") or "")
        own = self.ids.page(url)
        head = title or url
        props: dict[str, Any] = {
            "url": url,
            "title": title,
            "depth": p.get("depth"),
            "links": len(p.get("links", [])),
            "chars": len(text),
        }
        if p.get("requested") and p["requested"] != url:
            props["requested"] = p["requested"]
        chunks = chunk_text(text, self.chunk_chars, CHUNK_OVERLAP_CHARS, markdown=True) if text else []
        long_page = len(text) > self.chunk_chars and len(chunks) > 1
        body = chunks[0].text if long_page else text
        out = MappedItem(
            entities=[
                self._entity(own, "Page", head, f"{head}\n\n{body}" if body else head, props, record.content_hash)
            ]
        )
        if long_page:
            for chunk in chunks:
                label = f"{head} › {chunk.heading}" if chunk.heading else f"{head} #{chunk.index + 1}"
                entity = self._entity(
                    self.ids.chunk(url, chunk.index),
                    "Chunk",
                    label,
                    f"{head}\n{chunk.text}",
                    {"url": url, "index": chunk.index, "heading": chunk.heading},
                    content_hash(chunk.text),
                )
                out.entities.append(entity)
                out.relations.append(
                    Relation(
                        id=relation_id("CONTAINS", own, entity.id),
                        type="CONTAINS",
                        src=own,
                        dst=entity.id,
                        source=self.source,
                        namespace=self.namespace,
                    )
                )
        return out
