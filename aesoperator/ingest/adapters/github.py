"""GitHub repositories through the GitHub MCP server (github/github-mcp-server).

Read-only tools it uses, with their answers as that server writes them (minimal JSON objects):

- `search_repositories` (query "repo:<owner>/<name>"): the repository;
- `list_issues` (GraphQL, cursor paged, newest update first): every issue with its `updated_at`;
- `list_pull_requests` (state "all", sorted by update, page numbers): every pull request, complete;
- `issue_read` methods `get` (assignees, milestone, state reason) and `get_comments` (paged);
- `pull_request_read` methods `get_files` and `get_comments` (paged).

Incremental: an issue's or pull request's version is its `updated_at` (which GitHub moves on every
edit, comment, label or assignment), so a re-run lists everything but fetches details and comments
only of items whose `updated_at` moved. Items no longer listed are removed. Mapping: see
`mappers/github.py`. (`adapters/aesop_github.py` reads aesoperator's own GitHub connector instead.)

Options:
    repositories:  required: ["owner/name", ...]
    page_size:     items per list call (default 50, at most 100)
    issues / pull_requests: false to leave one kind out (default both)

Credentials never pass through the adapter or its options. Give the server its token the way the
server reads it: a stdio server through `env` with a reference, e.g.
``env = {GITHUB_PERSONAL_ACCESS_TOKEN = "${GITHUB_TOKEN}"}``; the remote server (`url`) through
``credentials = {bearer_token = "GITHUB_TOKEN"}``, which names the environment variable.
A token with read access to the repositories is enough.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.errors import ConfigError, SourceError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.ingest.adapters.base import McpConnection, unchanged
from aesoperator.ingest.client import McpCallError
from aesoperator.ingest.mappers.github import GitHubIds, GitHubMapper, declared_links, item_key
from aesoperator.ingest.mappers.links import Declared, declared_from_state, links_key, links_record
from aesoperator.ingest.records import SkippedRecord, SourceRecord
from aesoperator.ingest.sources import SourceDefinition

VERSION = "gh1"
DETAIL_PAGE = 100
MAX_PAGES = 1000


def parse_json(text: str, structured: Any, what: str) -> Any:
    """A tool's JSON answer: its text (the server's own serialisation), else its structured content."""
    try:
        return json.loads(text)
    except ValueError:
        if structured is not None:
            return structured
        raise SourceError(f"{what} did not answer with JSON: {text[:200]!r}") from None


@dataclass
class _Item:
    kind: str  # "issue" | "pull"
    number: int
    summary: dict[str, Any]

    @property
    def version(self) -> str:
        stamp = self.summary.get("updated_at") or content_hash(json.dumps(self.summary, sort_keys=True))
        return f"{VERSION}:{stamp}"


class GitHubAdapter:
    kind = "github"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        options = definition.options
        repos = options.get("repositories")
        if (
            not isinstance(repos, list)
            or not repos
            or not all(isinstance(r, str) and r.strip().count("/") == 1 for r in repos)
        ):
            raise ConfigError(
                f"source {definition.name!r}: options.repositories must list repositories as "
                '"owner/name", e.g. repositories = ["octo-org/widgets"]'
            )
        self.repositories = list(dict.fromkeys(r.strip() for r in repos))
        size = options.get("page_size", 50)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100:
            raise ConfigError(f"source {definition.name!r}: options.page_size must be 1 to 100, got {size!r}")
        self.page_size = size
        self.want_issues = options.get("issues", True) is not False
        self.want_pulls = options.get("pull_requests", True) is not False
        self.mapper = GitHubMapper(definition.name, definition.namespace)
        self.ids = GitHubIds(definition.name)
        self.skipped: list[SkippedRecord] = []

    async def _json(self, conn: McpConnection, tool: str, arguments: dict[str, Any]) -> Any:
        result = await conn.call_tool(tool, arguments)
        return parse_json(result.text, result.structured, f"source {self.definition.name!r}: {tool}")

    # -- listing ---------------------------------------------------------------------------------
    async def _repository(self, conn: McpConnection, full: str) -> dict[str, Any] | None:
        found = await self._json(conn, "search_repositories", {"query": f"repo:{full}"})
        listed = found.get("items") if isinstance(found, dict) else None
        for item in listed or []:
            if isinstance(item, dict) and str(item.get("full_name", "")).lower() == full.lower():
                return item
        return None

    async def _issues(self, conn: McpConnection, owner: str, repo: str) -> list[_Item]:
        out: list[_Item] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            args: dict[str, Any] = {
                "owner": owner,
                "repo": repo,
                "perPage": self.page_size,
                "orderBy": "UPDATED_AT",
                "direction": "DESC",
            }
            if after:
                args["after"] = after
            page = await self._json(conn, "list_issues", args)
            if not isinstance(page, dict) or not isinstance(page.get("issues"), list):
                raise SourceError(f"source {self.definition.name!r}: list_issues answered without an issue list")
            out.extend(_Item("issue", int(i["number"]), i) for i in page["issues"] if isinstance(i, dict))
            info = page.get("pageInfo") or {}
            after = info.get("endCursor") if info.get("hasNextPage") else None
            if not after:
                return out
        raise SourceError(f"source {self.definition.name!r}: list_issues returned more than {MAX_PAGES} pages")

    async def _pulls(self, conn: McpConnection, owner: str, repo: str) -> list[_Item]:
        out: list[_Item] = []
        for page_number in range(1, MAX_PAGES + 1):
            args = {
                "owner": owner,
                "repo": repo,
                "state": "all",
                "sort": "updated",
                "direction": "desc",
                "perPage": self.page_size,
                "page": page_number,
            }
            page = await self._json(conn, "list_pull_requests", args)
            if not isinstance(page, list):
                raise SourceError(f"source {self.definition.name!r}: list_pull_requests did not answer with a list")
            out.extend(_Item("pull", int(p["number"]), p) for p in page if isinstance(p, dict))
            if len(page) < self.page_size:
                return out
        raise SourceError(f"source {self.definition.name!r}: list_pull_requests returned more than {MAX_PAGES} pages")

    async def _paged(self, conn: McpConnection, tool: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page_number in range(1, MAX_PAGES + 1):
            page = await self._json(conn, tool, {**args, "page": page_number, "perPage": DETAIL_PAGE})
            if not isinstance(page, list):
                raise McpCallError(f"source {self.definition.name!r}: {tool} {args.get('method')} gave no list")
            out.extend(x for x in page if isinstance(x, dict))
            if len(page) < DETAIL_PAGE:
                break
        return out

    async def _fetch(self, conn: McpConnection, owner: str, repo: str, item: _Item) -> dict[str, Any]:
        full = f"{owner}/{repo}"
        if item.kind == "issue":
            base = {"owner": owner, "repo": repo, "issue_number": item.number}
            detail = await self._json(conn, "issue_read", {"method": "get", **base})
            if not isinstance(detail, dict) or "number" not in detail:
                raise McpCallError(f"source {self.definition.name!r}: issue_read get #{item.number} gave no issue")
            comments = await self._paged(conn, "issue_read", {"method": "get_comments", **base})
            return {"repository": full, "issue": {**item.summary, **detail}, "comments": comments}
        base = {"owner": owner, "repo": repo, "pullNumber": item.number}
        files = await self._paged(conn, "pull_request_read", {"method": "get_files", **base})
        comments = await self._paged(conn, "pull_request_read", {"method": "get_comments", **base})
        return {"repository": full, "pull": item.summary, "files": files, "comments": comments}

    # -- the walk --------------------------------------------------------------------------------
    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        for full in self.repositories:
            async for record in self._repository_records(conn, full, previous):
                yield record

    async def _repository_records(
        self, conn: McpConnection, full: str, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        repo_info = await self._repository(conn, full)
        if repo_info is None:
            self.skipped.append(SkippedRecord(f"repo:{full}", "search_repositories did not find the repository"))
            return
        full = str(repo_info["full_name"])
        owner, repo = full.split("/", 1)
        repo_key = f"repo:{full}"
        repo_uri = str(repo_info.get("html_url") or f"https://github.com/{full}")
        version = f"{VERSION}:{content_hash(json.dumps(repo_info, sort_keys=True, ensure_ascii=False))}"
        state = previous.get(repo_key)
        if state is not None and state.content_hash == version:
            yield unchanged(state, repo_uri)
        else:
            yield SourceRecord(repo_key, "repository", version, {"repository": repo_info}, repo_uri)

        items: list[_Item] = []
        if self.want_issues:
            items += await self._issues(conn, owner, repo)
        if self.want_pulls:
            items += await self._pulls(conn, owner, repo)

        present: dict[str, str] = {}  # item key -> entity id, for items in the graph after this run
        declared: dict[str, tuple[Declared, str]] = {}  # record key -> (links, uri)
        for item in items:
            natural = item_key(full, item.number)
            key = f"{item.kind}:{natural}"
            own = self.ids.issue(full, item.number) if item.kind == "issue" else self.ids.pull(full, item.number)
            path = "issues" if item.kind == "issue" else "pull"
            uri = str(item.summary.get("html_url") or f"https://github.com/{full}/{path}/{item.number}")
            state = previous.get(key)
            if state is not None and state.content_hash == item.version:
                present[natural] = own
                declared[key] = (declared_from_state(previous.get(links_key(key))), uri)
                yield unchanged(state, uri)
                continue
            try:
                payload = await self._fetch(conn, owner, repo, item)
            except McpCallError as exc:
                self.skipped.append(SkippedRecord(key, f"could not read {item.kind} #{item.number}: {exc}"))
                if state is not None:  # still in the graph, with its links
                    present[natural] = own
                    declared[key] = (declared_from_state(previous.get(links_key(key))), uri)
                continue
            present[natural] = own
            declared[key] = (declared_links(item.kind, payload, self.ids), uri)
            yield SourceRecord(key, item.kind, item.version, payload, uri)

        for key, (links, uri) in declared.items():
            record = links_record(key, links, present, uri, previous)
            if record is not None:
                yield record
