"""A GitHub repository through aesoperator's GitHub connector (`aesoperator.connectors.github`).

(`aesoperator.ingest.adapters.github` reads the GitHub MCP server; this one reads the connector,
whose tools answer with the REST API's fields.)

What it reads, with the connector's read-only tools (those of the data sources it serves):

- `get_repository`: the repository;
- `list_issues` (state all) and `list_pull_requests` (state all): every issue and pull request
  with its title, body, state, author, labels and times;
- for each pull request whose `updated_at` moved since the last run: `list_pull_request_files`
  and `list_pull_request_reviews`; with `options.comments`, `list_issue_comments` for changed
  items that have comments.

What it becomes: a `Repository`; an `Issue` or `PullRequest` per item (Repository CONTAINS it),
its author and assignees as `Person`s (AUTHORED, ASSIGNED_TO), its labels as `Label`s
(HAS_LABEL); a pull request MODIFIES the `File`s it changes and reviewers REVIEWED it; an item
whose title or body names another one ("#12", "fixes #12") REFERENCES it.

Incremental: an item's version is its `updated_at`, so unchanged items cost nothing beyond the
list calls. Options: `max_items` (per kind, default 1000), `comments` (default false).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.errors import ConfigError, MappingError, SourceError
from aesoperator.graph_schema.ids import content_hash, entity_id
from aesoperator.graph_schema.models import Entity, Provenance, Relation, from_iso
from aesoperator.ingest.adapters.base import McpConnection, unchanged
from aesoperator.ingest.client import McpCallError
from aesoperator.ingest.records import MappedItem, SkippedRecord, SourceRecord, required, required_int
from aesoperator.ingest.sources import SourceDefinition

VERSION = "gh1"
REPOSITORY_KEY = "repository"
_REF = re.compile(r"(?<![\w/#])#(\d{1,9})\b")
_CLOSES = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d{1,9})\b", re.IGNORECASE)
MAX_TEXT_BODY = 20_000


def _data(result: Any) -> Any:
    data = result.structured
    if data is None:
        try:
            data = json.loads(result.text)
        except ValueError:
            return None
    if isinstance(data, dict) and set(data) == {"result"}:
        return data["result"]
    return data


def references(text: str) -> dict[int, str]:
    """Item numbers a text names: {number: "closes" | "mentions"}."""
    found: dict[int, str] = {int(n): "mentions" for n in _REF.findall(text or "")}
    for n in _CLOSES.findall(text or ""):
        found[int(n)] = "closes"
    return found


class GitHubConnectorMapper:
    """Pure: GitHub records to entities and relations."""

    kind = "aesop_github"

    def __init__(self, source: str, namespace: str) -> None:
        self.source = source
        self.namespace = namespace

    # ids ------------------------------------------------------------------------------------
    def repository_id(self, repo: str) -> str:
        return entity_id(self.source, "repository", repo)

    def item_id(self, repo: str, kind: str, number: int) -> str:
        return entity_id(self.source, "pull" if kind == "pull" else "issue", f"{repo}#{number}")

    def person_id(self, login: str) -> str:
        return entity_id(self.source, "person", login.lower())

    def label_id(self, repo: str, name: str) -> str:
        return entity_id(self.source, "label", f"{repo}:{name}")

    def file_id(self, repo: str, path: str) -> str:
        return entity_id(self.source, "file", f"{repo}:{path}")

    # entities ---------------------------------------------------------------------------------
    def _rel(self, rtype: str, src: str, dst: str, **props: Any) -> Relation:
        return Relation(
            type=rtype,
            src=src,
            dst=dst,
            properties={k: v for k, v in props.items() if v is not None},
            source=self.source,
            namespace=self.namespace,
        )

    def repository(self, repo: str, info: Mapping[str, Any] | None) -> Entity:
        info = info or {}
        topics = ", ".join(info.get("topics") or [])
        text = f"GitHub repository {repo}. {info.get('description') or ''}".strip()
        if topics:
            text += f"\nTopics: {topics}"
        if info.get("language"):
            text += f"\nLanguage: {info['language']}"
        return Entity(
            id=self.repository_id(repo),
            type="Repository",
            name=repo,
            text=text,
            properties={
                k: info.get(k) for k in ("default_branch", "language", "html_url", "open_issues_count") if k in info
            },
            source=self.source,
            namespace=self.namespace,
            provenance=Provenance(uri=str(info.get("html_url") or f"https://github.com/{repo}")),
        )

    def person(self, login: str) -> Entity:
        return Entity(
            id=self.person_id(login),
            type="Person",
            name=login,
            text=f"{login} (GitHub user)",
            properties={"login": login},
            source=self.source,
            namespace=self.namespace,
            provenance=Provenance(uri=f"https://github.com/{login}"),
        )

    def map(self, record: SourceRecord) -> MappedItem:
        p = record.payload
        if record.kind == "repository":
            return MappedItem(entities=[self.repository(p["repo"], p.get("info"))])
        if record.kind in ("issue", "pull"):
            return self._item(record.kind, p, record.content_hash)
        if record.kind == "links":
            repo = required(p, "repo", str)
            src = self.item_id(repo, required(p, "kind", str), required_int(p, "number"))
            return MappedItem(
                relations=[
                    self._rel("REFERENCES", src, self.item_id(repo, kind, int(n)), how=how)
                    for n, kind, how in p.get("refs") or []
                ]
            )
        raise MappingError(f"unknown github record kind {record.kind!r}")

    def _item(self, kind: str, p: Mapping[str, Any], version: str) -> MappedItem:
        repo: str = required(p, "repo", str)
        item: Mapping[str, Any] = required(p, "item", dict)
        number = required_int(item, "number", f"the {kind}")
        eid = self.item_id(repo, kind, number)
        is_pull = kind == "pull"
        labels = [str(lb) for lb in item.get("labels") or []]
        files = p.get("files") or []
        reviews = p.get("reviews") or []
        comments = p.get("comments") or []
        lines = [
            f"{'Pull request' if is_pull else 'Issue'} #{number} in {repo}: {item.get('title') or ''}",
            f"State: {item.get('state')}"
            + (" (merged)" if is_pull and item.get("merged_at") else "")
            + (" (draft)" if item.get("draft") else ""),
        ]
        if item.get("user"):
            lines.append(f"Author: {item['user']}")
        if is_pull and item.get("head"):
            lines.append(f"Branch: {item.get('head')} -> {item.get('base')}")
        if labels:
            lines.append(f"Labels: {', '.join(labels)}")
        if item.get("assignees"):
            lines.append(f"Assignees: {', '.join(item['assignees'])}")
        body = str(item.get("body") or "")
        if body.strip():
            lines += ["", body[:MAX_TEXT_BODY]]
        if files:
            lines += ["", "Files changed:"]
            lines += [
                f"- {f['filename']} ({f.get('status')}, +{f.get('additions', 0)} -{f.get('deletions', 0)})"
                for f in files
            ]
        if reviews:
            lines += ["", "Reviews:"]
            lines += [f"- {r.get('user')}: {r.get('state')} {(r.get('body') or '')[:300]}".rstrip() for r in reviews]
        if comments:
            lines += ["", "Comments:"]
            lines += [f"- {c.get('user')}: {(c.get('body') or '')[:1000]}" for c in comments]
        created = from_iso(item["created_at"]) if item.get("created_at") else None
        entity = Entity(
            id=eid,
            type="PullRequest" if is_pull else "Issue",
            name=f"#{number} {item.get('title') or ''}".strip(),
            text="\n".join(lines),
            properties={
                "number": number,
                "repository": repo,
                "state": item.get("state"),
                "author": item.get("user"),
                "labels": labels,
                "assignees": list(item.get("assignees") or []),
                "created_at": item.get("created_at"),
                "updated_at": item.get("updated_at"),
                "closed_at": item.get("closed_at"),
                **(
                    {
                        "merged_at": item.get("merged_at"),
                        "head": item.get("head"),
                        "base": item.get("base"),
                        "files": [f["filename"] for f in files],
                        "requested_reviewers": list(item.get("requested_reviewers") or []),
                    }
                    if is_pull
                    else {}
                ),
            },
            source=self.source,
            namespace=self.namespace,
            provenance=Provenance(uri=str(item.get("html_url") or f"https://github.com/{repo}"), version=version),
            valid_from=created,
            created_at=created,
        )
        out = MappedItem(entities=[entity])
        repo_entity = self.repository(repo, None)
        out.shared_entities.append(repo_entity)
        out.relations.append(self._rel("CONTAINS", repo_entity.id, eid))
        people: dict[str, Entity] = {}

        def person(login: str) -> str:
            if login not in people:
                people[login] = self.person(login)
            return people[login].id

        if item.get("user"):
            out.relations.append(self._rel("AUTHORED", person(item["user"]), eid))
        for login in item.get("assignees") or []:
            out.relations.append(self._rel("ASSIGNED_TO", eid, person(login)))
        for login in item.get("requested_reviewers") or []:
            out.relations.append(self._rel("ASSIGNED_TO", eid, person(login), role="reviewer"))
        for review in reviews:
            if review.get("user"):
                out.relations.append(self._rel("REVIEWED", person(review["user"]), eid, state=review.get("state")))
        for comment in comments:
            if comment.get("user"):
                out.relations.append(self._rel("COMMENTED_ON", person(comment["user"]), eid))
        for name in labels:
            label = Entity(
                id=self.label_id(repo, name),
                type="Label",
                name=name,
                text=f"label {name} in {repo}",
                source=self.source,
                namespace=self.namespace,
            )
            out.shared_entities.append(label)
            out.relations.append(self._rel("HAS_LABEL", eid, label.id))
        for f in files:
            path = str(f["filename"])
            file_entity = Entity(
                id=self.file_id(repo, path),
                type="File",
                name=path,
                text=f"{path} in {repo}",
                properties={"path": path, "repository": repo},
                source=self.source,
                namespace=self.namespace,
            )
            out.shared_entities.append(file_entity)
            out.relations.append(
                self._rel(
                    "MODIFIES",
                    eid,
                    file_entity.id,
                    status=f.get("status"),
                    additions=f.get("additions"),
                    deletions=f.get("deletions"),
                )
            )
        out.shared_entities.extend(people.values())
        # relations are unique per (type, src, dst): keep the last of duplicates
        out.relations = list({r.id: r for r in out.relations}.values())
        return out


class GitHubConnectorAdapter:
    kind = "aesop_github"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        options = definition.options
        max_items = options.get("max_items", 1000)
        if not isinstance(max_items, int) or max_items < 1:
            raise ConfigError(f"source {definition.name!r}: options.max_items must be a positive integer")
        self.max_items = max_items
        self.comments = bool(options.get("comments", False))
        self.mapper = GitHubConnectorMapper(definition.name, definition.namespace)
        self.skipped: list[SkippedRecord] = []

    async def _call(self, conn: McpConnection, tool: str, **arguments: Any) -> Any:
        return _data(await conn.call_tool(tool, arguments))

    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        tools = {t.name for t in await conn.list_tools()}
        repo: str | None = None
        info: dict[str, Any] | None = None
        if "get_repository" in tools:
            info = await self._call(conn, "get_repository")
            repo = str((info or {}).get("full_name") or "") or None
        issues: list[dict[str, Any]] = []
        pulls: list[dict[str, Any]] = []
        if "list_issues" in tools:
            data = await self._call(conn, "list_issues", state="all", limit=self.max_items)
            repo = repo or data.get("repository")
            issues = list(data.get("items") or [])
        if "list_pull_requests" in tools:
            data = await self._call(conn, "list_pull_requests", state="all", limit=self.max_items)
            repo = repo or data.get("repository")
            pulls = list(data.get("items") or [])
        if not repo:
            raise SourceError(
                f"source {self.definition.name!r}: the server offers none of the GitHub connector's tools"
            )
        base = f"https://github.com/{repo}"

        payload = {"repo": repo, "info": info or {}}
        version = content_hash(json.dumps(payload, sort_keys=True))
        before = previous.get(REPOSITORY_KEY)
        if before is not None and before.content_hash == version:
            yield unchanged(before, base)
        else:
            yield SourceRecord(REPOSITORY_KEY, "repository", version, payload, base)

        numbers = {int(i["number"]): "issue" for i in issues} | {int(p["number"]): "pull" for p in pulls}
        for kind, items in (("issue", issues), ("pull", pulls)):
            for item in items:
                number = int(item["number"])
                key = f"{kind}:{number}"
                uri = str(item.get("html_url") or f"{base}/{'pull' if kind == 'pull' else 'issues'}/{number}")
                version = f"{VERSION}:{item.get('updated_at')}:{int(self.comments)}"
                before = previous.get(key)
                if before is not None and before.content_hash == version:
                    yield unchanged(before, uri)
                    continue
                body: dict[str, Any] = {"repo": repo, "item": item}
                try:
                    if kind == "pull":
                        files = await self._call(conn, "list_pull_request_files", number=number)
                        body["files"] = list((files or {}).get("items") or [])
                        if "list_pull_request_reviews" in tools:
                            try:
                                reviews = await self._call(conn, "list_pull_request_reviews", number=number)
                                body["reviews"] = list((reviews or {}).get("items") or [])
                            except McpCallError:
                                body["reviews"] = []  # reviews are extra: the pull request still counts
                    if self.comments and item.get("comments") and "list_issue_comments" in tools:
                        comments = await self._call(conn, "list_issue_comments", number=number)
                        body["comments"] = list((comments or {}).get("items") or [])
                except McpCallError as exc:
                    self.skipped.append(SkippedRecord(key, str(exc)))
                    if before is not None:
                        yield unchanged(before, uri)
                    continue
                yield SourceRecord(key, kind, version, body, uri)

        # references last: both ends exist by now
        for kind, items in (("issue", issues), ("pull", pulls)):
            for item in items:
                number = int(item["number"])
                found = references(f"{item.get('title') or ''}\n{item.get('body') or ''}")
                refs = sorted([n, numbers[n], how] for n, how in found.items() if n in numbers and n != number)
                if not refs:
                    continue
                key = f"links:{kind}:{number}"
                links: dict[str, Any] = {"repo": repo, "kind": kind, "number": number, "refs": refs}
                version = content_hash(json.dumps(links, sort_keys=True))
                before = previous.get(key)
                if before is not None and before.content_hash == version:
                    yield unchanged(before, base)
                else:
                    yield SourceRecord(key, "links", version, links, base)
