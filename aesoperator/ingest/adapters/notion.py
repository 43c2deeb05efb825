"""A Notion workspace through the Notion MCP server (`@notionhq/notion-mcp-server`, API 2025-09-03).

The server turns each Notion API operation into a tool named `API-<operation>` and answers with
the API's JSON as text; API errors come back as text too (`{"object": "error", ...}`), not as tool
errors, and are treated as errors here. Tools used (all read-only):

- `API-get-users`: names for the people who created or are named in pages (optional: when the
  integration may not read users, people are named by id);
- `API-post-search` (paged with `start_cursor`): every page and data source shared with the
  integration, with `last_edited_time`;
- `API-query-data-source` (paged): the rows of each data source, complete with properties;
- `API-get-block-children` (paged, recursive into blocks with children): a page's content.

Incremental: a page's version is its `last_edited_time` plus a digest of its properties, so a
re-run lists everything but reads the blocks only of pages that changed. Notion keeps
`last_edited_time` to the minute, so a block edited within the same minute as the previous run
is seen on the next edit. Pages no longer listed (deleted, moved to trash, unshared) are removed.
Mapping: see `mappers/notion.py`.

Options:
    page_size:   results per list call (default 100, at most 100)
    max_depth:   how deep nested blocks are read (default 8)
    chunk_chars: pages with longer text also get Chunk entities (default 1200)
    rows:        false to leave the rows of databases out (default true)

Credentials: the server reads the integration token from its environment; pass it as a reference,
e.g. ``env = {NOTION_TOKEN = "${NOTION_TOKEN}"}``. Give the integration read access only
("Read content"; "Read user information without email addresses" for names).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.errors import ConfigError, SourceError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.ingest.adapters.base import McpConnection, unchanged
from aesoperator.ingest.client import McpCallError
from aesoperator.ingest.mappers.links import Declared, declared_from_state, links_key, links_record
from aesoperator.ingest.mappers.notion import (
    DEFAULT_CHUNK_CHARS,
    NotionIds,
    NotionMapper,
    declared_links,
    norm_id,
    page_users,
    page_version,
    title_of,
)
from aesoperator.ingest.records import SkippedRecord, SourceRecord
from aesoperator.ingest.sources import SourceDefinition

MAX_PAGES = 10_000
SKIP_CHILDREN = frozenset({"child_page", "child_database"})


class NotionApiError(McpCallError):
    """The Notion API answered one call with an error object."""


def _positive(source: str, options: Mapping[str, Any], name: str, default: int, most: int) -> int:
    value = options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise ConfigError(f"source {source!r}: options.{name} must be an integer from 1 to {most}, got {value!r}")
    return value


class NotionAdapter:
    kind = "notion"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        name, options = definition.name, definition.options
        self.page_size = _positive(name, options, "page_size", 100, 100)
        self.max_depth = _positive(name, options, "max_depth", 8, 64)
        chunk_chars = _positive(name, options, "chunk_chars", DEFAULT_CHUNK_CHARS, 100_000)
        self.rows = options.get("rows", True) is not False
        self.mapper = NotionMapper(name, definition.namespace, chunk_chars)
        self.ids = NotionIds(name)
        self.skipped: list[SkippedRecord] = []

    async def _call(self, conn: McpConnection, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await conn.call_tool(tool, arguments)
        try:
            data = json.loads(result.text)
        except ValueError:
            raise SourceError(
                f"source {self.definition.name!r}: {tool} did not answer with JSON: {result.text[:200]!r}"
            ) from None
        if not isinstance(data, dict):
            raise SourceError(f"source {self.definition.name!r}: {tool} did not answer with a JSON object")
        if data.get("object") == "error":
            raise NotionApiError(
                f"source {self.definition.name!r}: {tool} failed: {data.get('status')} {data.get('code')}: "
                f"{str(data.get('message'))[:300]}"
            )
        return data

    async def _list(self, conn: McpConnection, tool: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
        """Every result of a paged Notion list operation."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            args = {**arguments, "page_size": self.page_size}
            if cursor:
                args["start_cursor"] = cursor
            page = await self._call(conn, tool, args)
            out.extend(r for r in page.get("results") or [] if isinstance(r, dict))
            cursor = page.get("next_cursor") if page.get("has_more") else None
            if not cursor:
                return out
        raise SourceError(f"source {self.definition.name!r}: {tool} returned more than {MAX_PAGES} pages")

    async def _users(self, conn: McpConnection) -> dict[str, str]:
        try:
            users = await self._list(conn, "API-get-users", {})
        except McpCallError:
            return {}  # names are a nicety: without them people are named by id
        return {norm_id(u.get("id")): str(u.get("name")) for u in users if u.get("id") and u.get("name")}

    async def _blocks(self, conn: McpConnection, block_id: str, depth: int) -> list[dict[str, Any]]:
        """A block's children in reading order, each followed by its own children (`_depth` set)."""
        out: list[dict[str, Any]] = []
        for block in await self._list(conn, "API-get-block-children", {"block_id": block_id}):
            out.append({**block, "_depth": depth})
            if block.get("has_children") and block.get("type") not in SKIP_CHILDREN and depth + 1 < self.max_depth:
                out.extend(await self._blocks(conn, str(block["id"]), depth + 1))
        return out

    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        users = await self._users(conn)
        pages: dict[str, dict[str, Any]] = {}
        sources: dict[str, dict[str, Any]] = {}
        for obj in await self._list(conn, "API-post-search", {}):
            if obj.get("archived") or obj.get("in_trash"):
                continue
            if obj.get("object") == "page":
                pages[norm_id(obj["id"])] = obj
            elif obj.get("object") in ("data_source", "database"):
                sources[norm_id(obj["id"])] = obj
        titles = {ds_id: title_of(ds) for ds_id, ds in sources.items()}
        if self.rows:
            for ds_id in sources:
                try:
                    rows = await self._list(conn, "API-query-data-source", {"data_source_id": ds_id})
                except McpCallError as exc:
                    self.skipped.append(SkippedRecord(f"rows:{ds_id}", f"could not query the data source: {exc}"))
                    continue
                for row in rows:
                    if not (row.get("archived") or row.get("in_trash")):
                        pages[norm_id(row["id"])] = row
        else:
            pages = {k: v for k, v in pages.items() if (v.get("parent") or {}).get("type") == "page_id"}

        present: dict[str, str] = {}  # notion id -> entity id of what is in the graph after this run
        declared: dict[str, tuple[Declared, str]] = {}
        for ds_id, ds in sources.items():
            key = f"data_source:{ds_id}"
            uri = str(ds.get("url") or f"notion://data_source/{ds_id}")
            version = f"n1:{ds.get('last_edited_time') or ''}:{content_hash(json.dumps(ds, sort_keys=True))}"
            present[ds_id] = self.ids.database(ds_id)
            database_id = norm_id((ds.get("parent") or {}).get("database_id"))
            if database_id:
                present.setdefault(database_id, self.ids.database(ds_id))
            ds_payload: dict[str, Any] = {"data_source": ds}
            declared[key] = (declared_links("data_source", ds_payload, self.ids), uri)
            state = previous.get(key)
            if state is not None and state.content_hash == version:
                yield unchanged(state, uri)
            else:
                yield SourceRecord(key, "data_source", version, ds_payload, uri)

        for page_id, page in pages.items():
            key = f"page:{page_id}"
            uri = str(page.get("url") or f"notion://page/{page_id}")
            parent = page.get("parent") or {}
            database = titles.get(norm_id(parent.get("data_source_id") or parent.get("database_id")))
            version = page_version(page, database)
            state = previous.get(key)
            if state is not None and state.content_hash == version:
                present[page_id] = self.ids.page(page_id)
                declared[key] = (declared_from_state(previous.get(links_key(key))), uri)
                yield unchanged(state, uri)
                continue
            try:
                blocks = await self._blocks(conn, page_id, 0)
            except McpCallError as exc:
                self.skipped.append(SkippedRecord(key, f"could not read the page's content: {exc}"))
                if state is not None:
                    present[page_id] = self.ids.page(page_id)
                    declared[key] = (declared_from_state(previous.get(links_key(key))), uri)
                continue
            named = {uid: users[uid] for uid in sorted(page_users(page, blocks)) if uid in users}
            payload: dict[str, Any] = {"page": page, "blocks": blocks, "users": named, "database": database}
            present[page_id] = self.ids.page(page_id)
            declared[key] = (declared_links("page", payload, self.ids), uri)
            yield SourceRecord(key, "page", version, payload, uri)

        for key, (links, uri) in declared.items():
            record = links_record(key, links, present, uri, previous)
            if record is not None:
                yield record
