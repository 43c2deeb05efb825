"""Notion pages, databases and their rows (as the Notion API returns them) to graph items.

What a workspace becomes:

- each page a `Page` (`<source>:page:<page id>`) whose text is its title followed by the text of
  its blocks, nested blocks included, in reading order (headings as "#", list items as "-", to-dos
  as "[ ]"/"[x]", code in fences, table rows with " | "). Blocks are not entities of their own:
  their text is folded into the page. A page whose text is longer than `chunk_chars` also gets
  `Chunk` entities (Page CONTAINS Chunk) that cover the whole text, and keeps only its head;
- each data source (the table of a Notion database) a `Database` (`<source>:database:<data source
  id>`) whose text names its columns and their types;
- each page of a data source a `Row` (same id scheme as pages): "Recipes row Country loaf.
  Category: Bread; Hydration: 0.75; ..." followed by its blocks' text;
- users are `Person` entities (`<source>:user:<user id>`): Person AUTHORED the page it created; a
  row's people properties ("Owner") become Row ASSIGNED_TO Person;
- structure and mentions, once both ends are in the graph (see `links.py`): Page PART_OF its
  parent page, Row PART_OF its Database, Database PART_OF the page that holds it; a page that
  mentions another page (an @-mention, a "link to page" block or a relation property) LINKS_TO it.

Text is kept verbatim: whatever a page says is data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aesoperator.errors import MappingError
from aesoperator.graph_schema.ids import content_hash, entity_id, relation_id
from aesoperator.graph_schema.models import MAX_NAME_CHARS, MAX_TEXT_CHARS, Entity, Provenance, Relation
from aesoperator.ingest.chunking import chunk_text
from aesoperator.ingest.mappers.links import LINKS_KIND, Declared, map_links
from aesoperator.ingest.records import MappedItem, SourceRecord, required

DEFAULT_CHUNK_CHARS = 1200
CHUNK_OVERLAP_CHARS = 150
HEADINGS = {"heading_1": "# ", "heading_2": "## ", "heading_3": "### "}
PREFIXES = {"bulleted_list_item": "- ", "numbered_list_item": "1. ", "quote": "> ", "toggle": "", "callout": ""}


def norm_id(value: Any) -> str:
    """A Notion id in its dashed, lower-case form (the API accepts and returns both forms)."""
    text = str(value or "").strip().lower().replace("-", "")
    if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    return str(value or "").strip().lower()


def plain(rich: Any) -> str:
    """The plain text of a rich text array."""
    if not isinstance(rich, list):
        return ""
    return "".join(str(r.get("plain_text") or "") for r in rich if isinstance(r, dict))


def rich_mentions(rich: Any) -> list[str]:
    """Ids of the pages and databases a rich text array mentions."""
    out: list[str] = []
    for r in rich if isinstance(rich, list) else []:
        mention = r.get("mention") if isinstance(r, dict) and r.get("type") == "mention" else None
        if not isinstance(mention, dict):
            continue
        kind = mention.get("type")
        if kind in ("page", "database", "data_source") and isinstance(mention.get(kind), dict):
            out.append(norm_id(mention[kind].get("id")))
    return out


def rich_users(rich: Any) -> list[str]:
    out: list[str] = []
    for r in rich if isinstance(rich, list) else []:
        mention = r.get("mention") if isinstance(r, dict) and r.get("type") == "mention" else None
        if isinstance(mention, dict) and mention.get("type") == "user" and isinstance(mention.get("user"), dict):
            out.append(norm_id(mention["user"].get("id")))
    return out


def title_of(obj: dict[str, Any]) -> str:
    """A page's or data source's title."""
    if isinstance(obj.get("title"), list):
        return plain(obj["title"]).strip()
    for prop in (obj.get("properties") or {}).values():
        if isinstance(prop, dict) and prop.get("type") == "title":
            return plain(prop.get("title")).strip()
    return ""


def block_text(block: dict[str, Any]) -> str:
    """One block as a line of text (may be empty)."""
    kind = str(block.get("type") or "")
    body = block.get(kind)
    if not isinstance(body, dict):
        return ""
    text = plain(body.get("rich_text"))
    if kind in HEADINGS:
        return HEADINGS[kind] + text
    if kind in PREFIXES:
        return PREFIXES[kind] + text
    if kind == "to_do":
        return ("[x] " if body.get("checked") else "[ ] ") + text
    if kind == "code":
        return f"```{body.get('language') or ''}\n{text}\n```"
    if kind in ("child_page", "child_database"):
        return f"{'Page' if kind == 'child_page' else 'Database'}: {body.get('title') or ''}"
    if kind == "table_row":
        return " | ".join(plain(cell) for cell in body.get("cells") or [])
    if kind == "equation":
        return str(body.get("expression") or "")
    if kind in ("bookmark", "embed", "link_preview"):
        return " ".join(x for x in (str(body.get("url") or ""), plain(body.get("caption"))) if x)
    if kind in ("image", "file", "pdf", "video", "audio"):
        return plain(body.get("caption"))
    return text


def block_links(block: dict[str, Any]) -> list[str]:
    """Page ids a block points to: mentions in its text, or the page of a "link to page" block."""
    kind = str(block.get("type") or "")
    body = block.get(kind)
    if not isinstance(body, dict):
        return []
    if kind == "link_to_page":
        target = body.get(body.get("type") or "page_id")
        return [norm_id(target)] if target else []
    out = rich_mentions(body.get("rich_text"))
    if kind == "table_row":
        for cell in body.get("cells") or []:
            out += rich_mentions(cell)
    return out


def property_text(prop: dict[str, Any], users: dict[str, str]) -> str:
    """A page property value as text ("" when empty)."""
    kind = prop.get("type")
    value = prop.get(kind) if isinstance(kind, str) else None
    if value is None:
        return ""
    if kind in ("title", "rich_text"):
        return plain(value)
    if kind in ("select", "status"):
        return str(value.get("name") or "") if isinstance(value, dict) else ""
    if kind == "multi_select":
        return ", ".join(str(v.get("name")) for v in value if isinstance(v, dict))
    if kind == "date":
        if not isinstance(value, dict):
            return ""
        return str(value.get("start") or "") + (f" to {value['end']}" if value.get("end") else "")
    if kind == "people":
        return ", ".join(user_name(norm_id(u.get("id")), users) for u in value if isinstance(u, dict))
    if kind in ("created_by", "last_edited_by"):
        return user_name(norm_id(value.get("id")), users) if isinstance(value, dict) else ""
    if kind == "checkbox":
        return "yes" if value else "no"
    if kind == "relation":
        return ", ".join(norm_id(r.get("id")) for r in value if isinstance(r, dict))
    if kind == "files":
        return ", ".join(str(f.get("name")) for f in value if isinstance(f, dict))
    if kind == "formula" and isinstance(value, dict):
        inner = value.get(value.get("type") or "")
        return "" if inner is None else json.dumps(inner, ensure_ascii=False) if isinstance(inner, dict) else str(inner)
    if kind == "unique_id" and isinstance(value, dict):
        return f"{value.get('prefix') or ''}{'-' if value.get('prefix') else ''}{value.get('number')}"
    if kind == "rollup" and isinstance(value, dict):
        inner = value.get(value.get("type") or "")
        return json.dumps(inner, ensure_ascii=False) if isinstance(inner, list | dict) else str(inner or "")
    if isinstance(value, str | int | float | bool):
        return str(value)
    return ""


def user_name(uid: str, users: dict[str, str]) -> str:
    return users.get(uid) or f"Notion user {uid[:8]}"


def page_version(page: dict[str, Any], extra: Any = None) -> str:
    """`last_edited_time` (minute precision in Notion) plus a digest of the listed properties,
    so that property edits within the same minute are seen too."""
    digest = content_hash(json.dumps([page.get("properties"), title_of(page), extra], sort_keys=True))
    return f"n1:{page.get('last_edited_time') or ''}:{digest}"


def page_users(page: dict[str, Any], blocks: Iterable[dict[str, Any]]) -> set[str]:
    """Ids of the users a page names: its creator, people properties, user mentions."""
    ids = {norm_id((page.get("created_by") or {}).get("id"))}
    for prop in (page.get("properties") or {}).values():
        if not isinstance(prop, dict):
            continue
        if prop.get("type") == "people":
            ids.update(norm_id(u.get("id")) for u in prop.get("people") or [] if isinstance(u, dict))
        if prop.get("type") in ("title", "rich_text"):
            ids.update(rich_users(prop.get(prop["type"])))
    for block in blocks:
        body = block.get(str(block.get("type")))
        if isinstance(body, dict):
            ids.update(rich_users(body.get("rich_text")))
    ids.discard("")
    return ids


class NotionIds:
    def __init__(self, source: str) -> None:
        self.source = source

    def page(self, page_id: str) -> str:
        return entity_id(self.source, "page", norm_id(page_id))

    def database(self, data_source_id: str) -> str:
        return entity_id(self.source, "database", norm_id(data_source_id))

    def chunk(self, page_id: str, index: int) -> str:
        return entity_id(self.source, "chunk", f"{norm_id(page_id)}#{index}")

    def user(self, user_id: str) -> str:
        return entity_id(self.source, "user", norm_id(user_id))


def parent_key(obj: dict[str, Any]) -> str | None:
    """The id of the page or data source that holds a page or data source, if any."""
    parent = obj.get("database_parent") if obj.get("object") == "data_source" else obj.get("parent")
    if not isinstance(parent, dict):
        return None
    kind = parent.get("type")
    if kind in ("page_id", "data_source_id", "database_id"):
        return norm_id(parent.get(kind))
    return None


def declared_links(kind: str, payload: dict[str, Any], ids: NotionIds) -> Declared:
    """What a page or data source record declares: PART_OF its holder, LINKS_TO what it mentions."""
    if kind == "data_source":
        ds = required(payload, "data_source", dict)
        holder = parent_key(ds)
        return [["PART_OF", ids.database(required(ds, "id", str, "the data source")), holder]] if holder else []
    page = required(payload, "page", dict)
    own = ids.page(required(page, "id", str, "the page"))
    out: Declared = []
    holder = parent_key(page)
    if holder:
        out.append(["PART_OF", own, holder])
    targets: list[str] = []
    for prop in (page.get("properties") or {}).values():
        if not isinstance(prop, dict):
            continue
        if prop.get("type") in ("title", "rich_text"):
            targets += rich_mentions(prop.get(prop["type"]))
        if prop.get("type") == "relation":
            targets += [norm_id(r.get("id")) for r in prop.get("relation") or [] if isinstance(r, dict)]
    for block in payload.get("blocks", []):
        targets += block_links(block)
    own_key = norm_id(page["id"])
    out += [["LINKS_TO", own, t] for t in dict.fromkeys(targets) if t and t != own_key]
    return out


class NotionMapper:
    """Pure: one Notion record to graph items.

    kinds: "data_source" {"data_source": data source object}; "page" {"page": page object,
    "blocks": [block objects, each with "_depth"], "users": {user id: name}, "database": title of
    the row's database or None}; "links" (see links.py).
    """

    kind = "notion"

    def __init__(self, source: str, namespace: str, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> None:
        self.source = source
        self.namespace = namespace
        self.chunk_chars = chunk_chars
        self.ids = NotionIds(source)

    def map(self, record: SourceRecord) -> MappedItem:
        if record.kind == "data_source":
            return self._map_data_source(record)
        if record.kind == "page":
            return self._map_page(record)
        if record.kind == LINKS_KIND:
            return map_links(record, self.source, self.namespace)
        raise MappingError(f"unknown notion record kind {record.kind!r}")

    def _entity(
        self, eid: str, etype: str, name: str, text: str, props: dict[str, Any], uri: str, version: str
    ) -> Entity:
        name = " ".join(name.split()) or "Untitled"
        return Entity(
            id=eid,
            type=etype,
            name=name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1] + "…",
            text=text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…",
            properties=props,
            source=self.source,
            provenance=Provenance(uri=uri, version=version),
            namespace=self.namespace,
        )

    def _relation(self, rtype: str, src: str, dst: str) -> Relation:
        return Relation(
            id=relation_id(rtype, src, dst), type=rtype, src=src, dst=dst, source=self.source, namespace=self.namespace
        )

    def person(self, uid: str, users: dict[str, str]) -> Entity:
        name = user_name(uid, users)
        return self._entity(
            self.ids.user(uid), "Person", name, f"Notion user {name}", {"notion_id": uid}, f"notion://user/{uid}", uid
        )

    def _map_data_source(self, record: SourceRecord) -> MappedItem:
        ds = required(record.payload, "data_source", dict)
        required(ds, "id", str, "the data source")
        title = title_of(ds) or "Untitled database"
        columns = [
            (str(p.get("name") or name), str(p.get("type") or ""))
            for name, p in (ds.get("properties") or {}).items()
            if isinstance(p, dict)
        ]
        text = f"Database {title}. Columns: " + "; ".join(f"{n} ({t})" for n, t in columns)
        description = plain(ds.get("description"))
        if description:
            text += f"\n{description}"
        props = {
            "notion_id": norm_id(ds["id"]),
            "database_id": norm_id((ds.get("parent") or {}).get("database_id")) or None,
            "columns": {n: t for n, t in columns},
            "url": ds.get("url"),
            "created_time": ds.get("created_time"),
            "last_edited_time": ds.get("last_edited_time"),
        }
        uri = str(ds.get("url") or f"notion://data_source/{norm_id(ds['id'])}")
        entity = self._entity(self.ids.database(ds["id"]), "Database", title, text, props, uri, record.content_hash)
        return MappedItem(entities=[entity])

    def _map_page(self, record: SourceRecord) -> MappedItem:
        p = record.payload
        page: dict[str, Any] = required(p, "page", dict)
        required(page, "id", str, "the page")
        users: dict[str, str] = {norm_id(k): str(v) for k, v in (p.get("users") or {}).items()}
        blocks: list[dict[str, Any]] = p.get("blocks", [])
        is_row = (page.get("parent") or {}).get("type") in ("data_source_id", "database_id")
        title = title_of(page) or "Untitled"
        own = self.ids.page(page["id"])
        uri = str(page.get("url") or f"notion://page/{norm_id(page['id'])}")
        out = MappedItem()

        values: dict[str, str] = {}
        for name, prop in (page.get("properties") or {}).items():
            if isinstance(prop, dict) and prop.get("type") != "title":
                text = property_text(prop, users)
                if text:
                    values[name] = text
        if is_row:
            head = f"{p.get('database') or 'Database'} row {title}."
            if values:
                head += " " + "; ".join(f"{k}: {v}" for k, v in sorted(values.items()))
        else:
            head = title
        lines = []
        for block in blocks:
            line = block_text(block)
            if line.strip():
                lines.append("  " * int(block.get("_depth", 0)) + line)
        body = "\n".join(lines)
        full = f"{head}\n\n{body}" if body else head

        chunks = chunk_text(body, self.chunk_chars, CHUNK_OVERLAP_CHARS, markdown=True) if body else []
        long_page = len(full) > self.chunk_chars and len(chunks) > 1
        text = f"{head}\n\n{chunks[0].text}" if long_page else full
        props: dict[str, Any] = {
            "notion_id": norm_id(page["id"]),
            "title": title,
            "url": page.get("url"),
            "created_time": page.get("created_time"),
            "last_edited_time": page.get("last_edited_time"),
            "blocks": len(blocks),
        }
        if is_row:
            props["values"] = values
        entity = self._entity(own, "Row" if is_row else "Page", title, text, props, uri, record.content_hash)
        out.entities.append(entity)
        if long_page:
            for chunk in chunks:
                label = f"{title} › {chunk.heading}" if chunk.heading else f"{title} #{chunk.index + 1}"
                chunk_entity = self._entity(
                    self.ids.chunk(page["id"], chunk.index),
                    "Chunk",
                    label,
                    f"{title}\n{chunk.text}",
                    {"page": norm_id(page["id"]), "index": chunk.index, "heading": chunk.heading},
                    uri,
                    content_hash(chunk.text),
                )
                out.entities.append(chunk_entity)
                out.relations.append(self._relation("CONTAINS", own, chunk_entity.id))

        creator = norm_id((page.get("created_by") or {}).get("id"))
        if creator:
            out.shared_entities.append(self.person(creator, users))
            out.relations.append(self._relation("AUTHORED", self.ids.user(creator), own))
        for prop in (page.get("properties") or {}).values():
            if isinstance(prop, dict) and prop.get("type") == "people":
                for user in prop.get("people") or []:
                    uid = norm_id(user.get("id")) if isinstance(user, dict) else ""
                    if uid:
                        out.shared_entities.append(self.person(uid, users))
                        out.relations.append(self._relation("ASSIGNED_TO", own, self.ids.user(uid)))
        return out
