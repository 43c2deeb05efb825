"""A GitHub repository (through the GitHub REST API) as a read-only MCP server.

`data_sources` chooses what is served, among `repos` (the repository), `issues` (issues and their
comments) and `pull_requests` (pull requests, their changed files and reviews); tools of other
data sources are not registered at all. Results keep the REST API's field names, trimmed to what
an agent uses.

The access token comes from the environment (`GITHUB_TOKEN`, or the variable `token_env` names)
or from a secrets file; it is sent only to the API's own origin, never logged and never returned.

The HTTP transport is injectable: `HttpTransport` talks to the API (retrying connection errors,
5xx answers and rate limits with backoff, honouring Retry-After), `RecordedTransport` answers
from recorded responses (a directory with `index.json` mapping "GET /path?query" to a file of the
API's JSON), which is how the tests and examples run without the network.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import urlencode

import anyio.to_thread
from mcp_types import ToolAnnotations
from pydantic import Field

from aesoperator.connectors.base import ConnectorPolicy, ConnectorServer
from aesoperator.errors import AuthError, ConfigError, PermissionDenied, RateLimited, SchemaError, SourceError
from aesoperator.security.envelope import report_count

log = logging.getLogger(__name__)

API_URL = "https://api.github.com"
DATA_SOURCES = ("repos", "issues", "pull_requests")
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
PER_PAGE = 100
MAX_ITEMS = 5_000
MAX_PATCH_CHARS = 20_000
_REPO = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")


@dataclass
class GitHubResponse:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class GitHubTransport(Protocol):
    def get(self, path: str, params: Mapping[str, str], token: str | None) -> GitHubResponse: ...


class HttpTransport:
    """The GitHub REST API over HTTPS, with retries and backoff."""

    def __init__(self, base_url: str = API_URL, timeout: float = 30.0, retries: int = 3) -> None:
        import httpx2

        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._client = httpx2.Client(base_url=self.base_url, timeout=timeout, follow_redirects=False)

    def get(self, path: str, params: Mapping[str, str], token: str | None) -> GitHubResponse:
        import httpx2

        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        delay = 1.0
        for attempt in range(self.retries + 1):
            try:
                response = self._client.get(path, params=dict(params), headers=headers)
            except httpx2.TransportError as exc:
                if attempt >= self.retries:
                    raise SourceError(
                        f"GitHub API unreachable ({type(exc).__name__}) after {attempt + 1} attempts"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            limited = response.status_code == 429 or (
                response.status_code == 403 and response.headers.get("x-ratelimit-remaining") == "0"
            )
            if (response.status_code >= 500 or limited) and attempt < self.retries:
                wait = float(response.headers.get("retry-after") or delay)
                time.sleep(min(wait, 60.0))
                delay = min(delay * 2, 30.0)
                continue
            try:
                body = response.json()
            except ValueError:
                body = None
            return GitHubResponse(response.status_code, body, {k.lower(): v for k, v in response.headers.items()})
        raise AssertionError("unreachable")


class RecordedTransport:
    """Answers from recorded API responses: `index.json` maps "GET /path?sorted&query" to
    {"file": name, "status": code} (or just a file name); each file holds the API's JSON."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        index = self.directory / "index.json"
        if not index.exists():
            raise ConfigError(f"recorded GitHub responses: {index} is missing")
        self.index: dict[str, Any] = json.loads(index.read_text())
        self.requests: list[str] = []
        self.authorized: list[bool] = []

    @staticmethod
    def key(path: str, params: Mapping[str, str]) -> str:
        query = urlencode(sorted(params.items()))
        return f"GET {path}" + (f"?{query}" if query else "")

    def get(self, path: str, params: Mapping[str, str], token: str | None) -> GitHubResponse:
        key = self.key(path, params)
        self.requests.append(key)
        self.authorized.append(bool(token))
        entry = self.index.get(key)
        if entry is None:
            return GitHubResponse(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
        if isinstance(entry, str):
            entry = {"file": entry}
        body = json.loads((self.directory / entry["file"]).read_text()) if entry.get("file") else entry.get("body")
        return GitHubResponse(int(entry.get("status", 200)), body, dict(entry.get("headers") or {}))


class McpRecordingTransport:
    """Answers REST requests from recordings of the GitHub MCP server's tool calls (its answers carry
    the REST API's JSON): a directory of `<set>.json` files ({"calls": [{"tool", "arguments", "json"}]}),
    later sets laid over `v1`. Requests nothing was recorded for get 404."""

    def __init__(self, directory: str | Path, version: str = "v1") -> None:
        self.directory = Path(directory)
        names = ["v1"] if version == "v1" else ["v1", version]
        self.calls: list[dict[str, Any]] = []
        keyed: dict[str, dict[str, Any]] = {}
        for name in names:
            path = self.directory / f"{name}.json"
            if not path.exists():
                raise ConfigError(f"recorded GitHub calls: {path} is missing")
            for call in json.loads(path.read_text()).get("calls", []):
                keyed[json.dumps([call["tool"], call.get("arguments", {})], sort_keys=True)] = call
        self.calls = list(keyed.values())
        self.requests: list[str] = []
        self.authorized: list[bool] = []

    def _find(self, tool: str, **match: Any) -> list[dict[str, Any]]:
        return [
            c
            for c in self.calls
            if c["tool"] == tool and all(c.get("arguments", {}).get(k) == v for k, v in match.items())
        ]

    def _one(self, tool: str, **match: Any) -> Any:
        found = self._find(tool, **match)
        return found[0].get("json") if found else None

    def _issues(self, owner: str, repo: str) -> list[Any]:
        out: list[Any] = []
        after: str | None = None
        for _ in range(1000):
            page = [
                c
                for c in self._find("list_issues", owner=owner, repo=repo)
                if c.get("arguments", {}).get("after") == after
            ]
            if not page:
                break
            data = page[0].get("json") or {}
            out.extend(data.get("issues") or [])
            info = data.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                break
            after = info.get("endCursor")
        return out

    def _pulls(self, owner: str, repo: str) -> list[Any]:
        out: list[Any] = []
        for call in sorted(
            self._find("list_pull_requests", owner=owner, repo=repo), key=lambda c: c["arguments"].get("page", 1)
        ):
            out.extend(call.get("json") or [])
        return list({p["number"]: p for p in out}.values())

    def get(self, path: str, params: Mapping[str, str], token: str | None) -> GitHubResponse:
        self.requests.append(RecordedTransport.key(path, params))
        self.authorized.append(bool(token))
        parts = path.strip("/").split("/")
        body: Any = None
        if len(parts) >= 3 and parts[0] == "repos":
            owner, repo, rest = parts[1], parts[2], parts[3:]
            page = int(params.get("page", "1"))
            if not rest:
                found = self._one("search_repositories", query=f"repo:{owner}/{repo}")
                items = (found or {}).get("items") or []
                body = items[0] if items else None
            elif rest == ["issues"]:
                body = self._issues(owner, repo) if page == 1 else []
            elif rest == ["pulls"]:
                body = self._pulls(owner, repo) if page == 1 else []
            elif len(rest) == 2 and rest[0] == "issues":
                body = self._one("issue_read", method="get", owner=owner, repo=repo, issue_number=int(rest[1]))
            elif len(rest) == 3 and rest[0] == "issues" and rest[2] == "comments":
                n = int(rest[1])
                body = self._one("issue_read", method="get_comments", owner=owner, repo=repo, issue_number=n)
                if body is None:
                    body = self._one("pull_request_read", method="get_comments", owner=owner, repo=repo, pullNumber=n)
                body = body if page == 1 or body is None else []
            elif len(rest) == 2 and rest[0] == "pulls":
                body = next((p for p in self._pulls(owner, repo) if p.get("number") == int(rest[1])), None)
            elif len(rest) == 3 and rest[0] == "pulls" and rest[2] == "files":
                body = self._one(
                    "pull_request_read", method="get_files", owner=owner, repo=repo, pullNumber=int(rest[1])
                )
                body = body if page == 1 or body is None else []
        if body is None:
            return GitHubResponse(404, {"message": "Not Found (not recorded)"})
        return GitHubResponse(200, body)


def read_token(token_env: str = "GITHUB_TOKEN", secrets_file: str | Path | None = None) -> str | None:
    """The access token: from the environment variable, else from a secrets file (a JSON object,
    or KEY=VALUE lines) under the same name. None when neither has it."""
    value = os.environ.get(token_env)
    if value:
        return value.strip()
    if secrets_file is None:
        return None
    path = Path(secrets_file).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"secrets file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and data.get(token_env):
            return str(data[token_env]).strip()
    except ValueError:
        for line in text.splitlines():
            key, sep, val = line.partition("=")
            if sep and key.strip() == token_env:
                return val.strip().strip('"').strip("'")
    return None


def _login(user: Any) -> str | None:
    return str(user["login"]) if isinstance(user, Mapping) and user.get("login") else None


def trim_issue(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "number": item.get("number"),
        "title": item.get("title") or "",
        "body": item.get("body") or "",
        "state": str(item.get("state") or "").lower() or None,
        "user": _login(item.get("user")),
        "labels": [lb["name"] if isinstance(lb, Mapping) else str(lb) for lb in item.get("labels") or []],
        "assignees": [a for a in (_login(u) for u in item.get("assignees") or []) if a],
        "comments": item.get("comments", 0),
        "created_at": item.get("created_at"),
        "updated_at": item.get("updated_at"),
        "closed_at": item.get("closed_at"),
        "html_url": item.get("html_url"),
    }


def trim_pull(item: Mapping[str, Any]) -> dict[str, Any]:
    out = trim_issue(item)
    out.update(
        {
            "draft": bool(item.get("draft", False)),
            "merged_at": item.get("merged_at"),
            "head": (item.get("head") or {}).get("ref"),
            "base": (item.get("base") or {}).get("ref"),
            "requested_reviewers": [r for r in (_login(u) for u in item.get("requested_reviewers") or []) if r],
        }
    )
    for key in ("additions", "deletions", "changed_files", "merged", "mergeable_state"):
        if key in item:
            out[key] = item[key]
    return out


def trim_file(item: Mapping[str, Any]) -> dict[str, Any]:
    patch = item.get("patch")
    return {
        "filename": item.get("filename"),
        "status": item.get("status"),
        "additions": item.get("additions", 0),
        "deletions": item.get("deletions", 0),
        "changes": item.get("changes", 0),
        "previous_filename": item.get("previous_filename"),
        "patch": patch[:MAX_PATCH_CHARS] if isinstance(patch, str) else None,
    }


def trim_comment(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": item.get("id"),
        "user": _login(item.get("user")),
        "body": item.get("body") or "",
        "created_at": item.get("created_at"),
        "updated_at": item.get("updated_at"),
        "html_url": item.get("html_url"),
    }


def trim_review(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": item.get("id"),
        "user": _login(item.get("user")),
        "state": item.get("state"),
        "body": item.get("body") or "",
        "submitted_at": item.get("submitted_at"),
    }


@dataclass
class GitHubSource:
    """One repository's API, limited to `data_sources`."""

    repo: str
    data_sources: Sequence[str] = DATA_SOURCES
    token: str | None = field(default=None, repr=False)
    transport: GitHubTransport | None = None

    def __post_init__(self) -> None:
        if not _REPO.fullmatch(self.repo or ""):
            raise ConfigError(f"github connector: repo must be 'owner/name', got {self.repo!r}")
        unknown = sorted(set(self.data_sources) - set(DATA_SOURCES))
        if unknown or not self.data_sources:
            raise ConfigError(f"github connector: data_sources must be among {list(DATA_SOURCES)}, got {unknown or []}")
        self.data_sources = tuple(dict.fromkeys(self.data_sources))
        if self.transport is None:
            self.transport = HttpTransport()

    def require(self, data_source: str) -> None:
        if data_source not in self.data_sources:
            raise PermissionDenied(
                f"this connector does not serve {data_source!r} (data_sources={list(self.data_sources)})"
            )

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        assert self.transport is not None
        clean = {k: str(v) for k, v in (params or {}).items() if v is not None}
        response = self.transport.get(path, clean, self.token)
        if response.status == 200:
            return response.body
        message = response.body.get("message") if isinstance(response.body, Mapping) else None
        if response.status == 401:
            raise AuthError("GitHub refused the access token (401); check GITHUB_TOKEN")
        if response.status in (403, 429) and response.headers.get("x-ratelimit-remaining") == "0":
            reset = float(response.headers.get("x-ratelimit-reset") or 0)
            raise RateLimited("GitHub API rate limit reached", max(0.0, reset - time.time()) if reset else 60.0)
        if response.status == 404:
            raise SchemaError(f"GitHub: {path} not found (or not visible to this token)")
        raise SourceError(f"GitHub {path}: HTTP {response.status}{': ' + str(message) if message else ''}")

    def pages(self, path: str, params: Mapping[str, Any], limit: int) -> list[Any]:
        out: list[Any] = []
        page = 1
        while len(out) < limit:
            batch = self.get(path, {**params, "per_page": PER_PAGE, "page": page})
            if not isinstance(batch, list):
                raise SourceError(f"GitHub {path}: expected a list")
            out.extend(batch)
            if len(batch) < PER_PAGE:
                break
            page += 1
        return out[:limit]

    # -- reads ------------------------------------------------------------------------------------
    def repository(self) -> dict[str, Any]:
        self.require("repos")
        r = self.get(f"/repos/{self.repo}")
        return {
            "full_name": r.get("full_name"),
            "description": r.get("description") or "",
            "default_branch": r.get("default_branch"),
            "language": r.get("language"),
            "topics": r.get("topics") or [],
            "open_issues_count": r.get("open_issues_count"),
            "html_url": r.get("html_url"),
            "created_at": r.get("created_at"),
            "updated_at": r.get("updated_at"),
            "owner": _login(r.get("owner")),
        }

    def issues(self, state: str = "open", since: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        self.require("issues")
        items = self.pages(f"/repos/{self.repo}/issues", {"state": state, "since": since}, min(limit, MAX_ITEMS))
        return [trim_issue(i) for i in items if "pull_request" not in i]

    def issue(self, number: int) -> dict[str, Any]:
        self.require("issues")
        item = self.get(f"/repos/{self.repo}/issues/{int(number)}")
        if "pull_request" in item:
            raise SchemaError(f"#{number} is a pull request; use get_pull_request")
        return trim_issue(item)

    def issue_comments(self, number: int, limit: int = 100) -> list[dict[str, Any]]:
        if "issues" not in self.data_sources and "pull_requests" not in self.data_sources:
            self.require("issues")
        items = self.pages(f"/repos/{self.repo}/issues/{int(number)}/comments", {}, min(limit, MAX_ITEMS))
        return [trim_comment(c) for c in items]

    def pulls(self, state: str = "open", limit: int = 100) -> list[dict[str, Any]]:
        self.require("pull_requests")
        items = self.pages(f"/repos/{self.repo}/pulls", {"state": state}, min(limit, MAX_ITEMS))
        return [trim_pull(p) for p in items]

    def pull(self, number: int) -> dict[str, Any]:
        self.require("pull_requests")
        return trim_pull(self.get(f"/repos/{self.repo}/pulls/{int(number)}"))

    def pull_files(self, number: int, limit: int = 300) -> list[dict[str, Any]]:
        self.require("pull_requests")
        items = self.pages(f"/repos/{self.repo}/pulls/{int(number)}/files", {}, min(limit, 3000))
        return [trim_file(f) for f in items]

    def pull_reviews(self, number: int, limit: int = 100) -> list[dict[str, Any]]:
        self.require("pull_requests")
        items = self.pages(f"/repos/{self.repo}/pulls/{int(number)}/reviews", {}, min(limit, MAX_ITEMS))
        return [trim_review(r) for r in items]


INSTRUCTIONS = """\
A GitHub repository, read-only, limited to its data sources (repos, issues, pull_requests).
`get_repository`; `list_issues` / `get_issue` / `list_issue_comments`; `list_pull_requests` /
`get_pull_request` / `list_pull_request_files` / `list_pull_request_reviews`.
"""

State = Literal["open", "closed", "all"]
Number = Annotated[int, Field(ge=1, le=10_000_000)]
Limit = Annotated[int, Field(ge=1, le=MAX_ITEMS)]


def build_server(source: GitHubSource, policy: ConnectorPolicy) -> ConnectorServer:
    server = ConnectorServer(policy, instructions=INSTRUCTIONS, title="GitHub connector")

    async def listed(fn: Any, *args: Any) -> dict[str, Any]:
        items = await anyio.to_thread.run_sync(fn, *args)
        report_count(len(items))
        return {"repository": source.repo, "count": len(items), "items": items}

    if "repos" in source.data_sources:

        @server.tool(annotations=READ_ONLY)
        async def get_repository() -> dict[str, Any]:
            """The repository: description, default branch, language, topics."""
            report_count(1)
            return await anyio.to_thread.run_sync(source.repository)

    if "issues" in source.data_sources:

        @server.tool(annotations=READ_ONLY)
        async def list_issues(state: State = "open", since: str | None = None, limit: Limit = 100) -> dict[str, Any]:
            """Issues (not pull requests), newest first; `since` (ISO time) keeps those updated after it."""
            return await listed(source.issues, state, since, limit)

        @server.tool(annotations=READ_ONLY)
        async def get_issue(number: Number) -> dict[str, Any]:
            """One issue."""
            report_count(1)
            return await anyio.to_thread.run_sync(source.issue, number)

    if "issues" in source.data_sources or "pull_requests" in source.data_sources:

        @server.tool(annotations=READ_ONLY)
        async def list_issue_comments(number: Number, limit: Limit = 100) -> dict[str, Any]:
            """The comments of an issue or a pull request."""
            return await listed(source.issue_comments, number, limit)

    if "pull_requests" in source.data_sources:

        @server.tool(annotations=READ_ONLY)
        async def list_pull_requests(state: State = "open", limit: Limit = 100) -> dict[str, Any]:
            """Pull requests, newest first."""
            return await listed(source.pulls, state, limit)

        @server.tool(annotations=READ_ONLY)
        async def get_pull_request(number: Number) -> dict[str, Any]:
            """One pull request, with its size (additions, deletions, changed files)."""
            report_count(1)
            return await anyio.to_thread.run_sync(source.pull, number)

        @server.tool(annotations=READ_ONLY)
        async def list_pull_request_files(
            number: Number, limit: Annotated[int, Field(ge=1, le=3000)] = 300
        ) -> dict[str, Any]:
            """The files a pull request changes, with their patches."""
            return await listed(source.pull_files, number, limit)

        @server.tool(annotations=READ_ONLY)
        async def list_pull_request_reviews(number: Number, limit: Limit = 100) -> dict[str, Any]:
            """The reviews of a pull request (who approved or asked for changes)."""
            return await listed(source.pull_reviews, number, limit)

    return server
