"""Web pages through a browser MCP server (Playwright MCP, `@playwright/mcp`).

The adapter crawls breadth first from `options.start_urls`: for each page it calls the server's
`browser_navigate` and then `browser_snapshot`, and reads the rendered page's title, text and links
from the accessibility snapshot (`mappers/web.py`), so content that scripts add is seen as a reader
sees it. Links are followed while they stay within the allowed origins, up to `max_depth` links
away from a start URL and `max_pages` pages in all. A page that redirects is stored under the URL
it ends at; a page that ends outside the allowed origins, or answers with an HTTP error, is not
stored; one the browser cannot load is skipped with the reason.

Incremental: every page has to be loaded to know whether it changed, so each run visits the
pages again; a page's version is a hash of its title, text and links, and only pages whose
version moved are mapped and embedded again. Pages no longer reached are removed.

Options:
    start_urls:      required: where the crawl starts (http or https)
    allowed_origins: origins ("https://docs.example.com") pages may be read from; default: the
                     start URLs' origins. Nothing outside them is ever navigated to.
    max_pages:       at most this many pages per run (default 50)
    max_depth:       links followed from a start URL (default 2; 0 reads the start URLs only)
    chunk_chars:     pages with longer text also get Chunk entities (default 1200)
    navigate_tool / snapshot_tool: the server's tool names (default browser_navigate / browser_snapshot)

Run the server headless against a browser that is already installed, e.g. `@playwright/mcp
--headless --isolated --executable-path /usr/bin/chromium --no-sandbox --config <file>` with
`browser.launchOptions.args` holding "--disable-background-networking" and friends, and keep its
`--allowed-origins` in line with `allowed_origins` (it is advisory in the server, binding here).
Give it `--output-dir` (or a `cwd`): it writes a snapshot file per navigation there.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.errors import ConfigError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.ingest.adapters.base import McpConnection, unchanged
from aesoperator.ingest.client import McpCallError
from aesoperator.ingest.mappers.links import Declared, declared_from_state, links_key, links_record
from aesoperator.ingest.mappers.web import (
    DEFAULT_CHUNK_CHARS,
    WebIds,
    WebMapper,
    declared_links,
    normalise_url,
    origin,
    parse_snapshot,
)
from aesoperator.ingest.records import SkippedRecord, SourceRecord
from aesoperator.ingest.sources import SourceDefinition

VERSION = "web1"


def _count(source: str, options: Mapping[str, Any], name: str, default: int, least: int) -> int:
    value = options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(f"source {source!r}: options.{name} must be an integer of at least {least}, got {value!r}")
    return value


class WebAdapter:
    kind = "web"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        name, options = definition.name, definition.options
        starts = options.get("start_urls")
        if (
            not isinstance(starts, list)
            or not starts
            or not all(
                isinstance(u, str) and urlsplit(u).scheme in ("http", "https") and urlsplit(u).hostname for u in starts
            )
        ):
            raise ConfigError(
                f"source {name!r}: options.start_urls must list http(s) URLs, e.g. start_urls = ['https://docs.example.com/']"
            )
        self.start_urls = list(dict.fromkeys(normalise_url(u) for u in starts))
        allowed = options.get("allowed_origins")
        if allowed is None:
            self.allowed = {origin(u) for u in self.start_urls}
        elif (
            isinstance(allowed, list) and allowed and all(isinstance(o, str) and urlsplit(o).hostname for o in allowed)
        ):
            self.allowed = {origin(o) for o in allowed}
        else:
            raise ConfigError(
                f"source {name!r}: options.allowed_origins must list origins such as 'https://example.com'"
            )
        outside = [u for u in self.start_urls if origin(u) not in self.allowed]
        if outside:
            raise ConfigError(f"source {name!r}: start URLs outside allowed_origins: {', '.join(outside)}")
        self.max_pages = _count(name, options, "max_pages", 50, 1)
        self.max_depth = _count(name, options, "max_depth", 2, 0)
        chunk_chars = _count(name, options, "chunk_chars", DEFAULT_CHUNK_CHARS, 100)
        self.navigate_tool = str(options.get("navigate_tool", "browser_navigate"))
        self.snapshot_tool = str(options.get("snapshot_tool", "browser_snapshot"))
        self.mapper = WebMapper(name, definition.namespace, chunk_chars)
        self.ids = WebIds(name)
        self.skipped: list[SkippedRecord] = []

    def allowed_url(self, url: str) -> bool:
        return urlsplit(url).scheme in ("http", "https") and origin(url) in self.allowed

    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        queue: deque[tuple[str, int]] = deque((u, 0) for u in self.start_urls)
        queued = set(self.start_urls)
        present: dict[str, str] = {}  # URL (requested or final) -> entity id of a stored page
        declared: dict[str, tuple[Declared, str]] = {}
        stored: set[str] = set()
        while queue and len(stored) < self.max_pages:
            requested, depth = queue.popleft()
            key = f"page:{requested}"
            try:
                await conn.call_tool(self.navigate_tool, {"url": requested})
                snap = parse_snapshot((await conn.call_tool(self.snapshot_tool, {})).text)
            except McpCallError as exc:
                self.skipped.append(SkippedRecord(key, f"the browser could not load {requested}: {exc}"))
                state = previous.get(key)
                if state is not None:
                    present[requested] = self.ids.page(requested)
                    declared[key] = (declared_from_state(previous.get(links_key(key))), requested)
                continue
            final = normalise_url(snap.url or requested)
            if snap.failed or not self.allowed_url(final):
                continue  # a broken link or a redirect out of bounds: nothing to store
            present[requested] = self.ids.page(final)
            if final in stored:
                continue  # reached again through a redirect
            stored.add(final)
            present[final] = self.ids.page(final)
            key = f"page:{final}"
            for link in snap.links:
                if depth < self.max_depth and link not in queued and self.allowed_url(link):
                    queued.add(link)
                    queue.append((link, depth + 1))
            payload = {
                "url": final,
                "requested": requested,
                "title": snap.title,
                "text": snap.text,
                "links": snap.links,
                "depth": depth,
            }
            digest = content_hash(json.dumps([snap.title, snap.text, snap.links, depth, requested], ensure_ascii=False))
            version = f"{VERSION}:{digest}"
            declared[key] = (declared_links(payload, self.ids), final)
            state = previous.get(key)
            if state is not None and state.content_hash == version:
                yield unchanged(state, final)
            else:
                yield SourceRecord(key, "page", version, payload, final)

        for key, (links, uri) in declared.items():
            record = links_record(key, links, present, uri, previous)
            if record is not None:
                yield record
