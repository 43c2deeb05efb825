"""GitHub repositories, issues and pull requests (as the GitHub MCP server returns them) to graph items.

What a repository becomes:

- one `Repository` entity (`<source>:repo:<owner>/<name>`);
- each issue an `Issue` and each pull request a `PullRequest` (`<source>:issue:<owner>/<name>#<n>`,
  `<source>:pull:<owner>/<name>#<n>`), contained by the repository (Repository CONTAINS Issue);
  their text is the title, a one-line summary (state, labels, author, assignees) and the body;
- each conversation comment a `Comment` (`<source>:comment:<owner>/<name>:<comment id>`) with
  Comment COMMENTED_ON Issue/PullRequest;
- users are `Person` entities (`<source>:user:<login, lower-cased>`): Person AUTHORED the issue,
  pull request or comment, and Issue/PullRequest ASSIGNED_TO Person;
- labels are `Label` entities per repository (Issue HAS_LABEL Label);
- the files a pull request changes are `File` entities per repository (PullRequest MODIFIES File,
  with the change's status and line counts on the relation);
- "#12" or "owner/repo#12" in a title, body or comment becomes a REFERENCES relation from the item
  (or the comment) to that issue or pull request, once both are in the graph (see `links.py`).

Persons, labels and files are shared by many items; each item owns its own entities and the
relations that start from it. Text is kept verbatim: whatever an issue says is data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aesoperator.errors import MappingError
from aesoperator.graph_schema.ids import entity_id, relation_id
from aesoperator.graph_schema.models import MAX_NAME_CHARS, MAX_TEXT_CHARS, Entity, Provenance, Relation
from aesoperator.ingest.mappers.links import LINKS_KIND, Declared, map_links
from aesoperator.ingest.records import MappedItem, SourceRecord, required, required_int

# "#12", "owner/repo#12"; not "&#12;" (an HTML entity), "abc#12" or a URL fragment "/x#12"
REFERENCE = re.compile(r"(?<![\w&/#])(?:(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+))?#(?P<number>\d{1,9})\b")


def clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short(text: str, limit: int = MAX_NAME_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GitHubIds:
    def __init__(self, source: str) -> None:
        self.source = source

    def repo(self, full_name: str) -> str:
        return entity_id(self.source, "repo", full_name)

    def issue(self, full_name: str, number: int) -> str:
        return entity_id(self.source, "issue", f"{full_name}#{number}")

    def pull(self, full_name: str, number: int) -> str:
        return entity_id(self.source, "pull", f"{full_name}#{number}")

    def comment(self, full_name: str, comment_id: int | str) -> str:
        return entity_id(self.source, "comment", f"{full_name}:{comment_id}")

    def user(self, login: str) -> str:
        return entity_id(self.source, "user", login.lower())

    def label(self, full_name: str, name: str) -> str:
        return entity_id(self.source, "label", f"{full_name}:{name}")

    def file(self, full_name: str, path: str) -> str:
        return entity_id(self.source, "file", f"{full_name}:{path}")


def item_key(full_name: str, number: int) -> str:
    """The natural key of an issue or pull request (they share one number space per repository)."""
    return f"{full_name}#{number}"


def references(text: str, full_name: str, own_number: int | None = None) -> list[str]:
    """Item keys ("owner/repo#12") named in `text`, in order, without the item itself."""
    out: list[str] = []
    for match in REFERENCE.finditer(text or ""):
        repo = match.group("repo") or full_name
        number = int(match.group("number"))
        if repo.lower() == full_name.lower():
            repo = full_name
            if number == own_number:
                continue
        key = item_key(repo, number)
        if key not in out:
            out.append(key)
    return out


def login_of(user: Any) -> str | None:
    if isinstance(user, dict) and isinstance(user.get("login"), str) and user["login"]:
        return str(user["login"])
    if isinstance(user, str) and user:
        return user
    return None


def _names(values: Any) -> list[str]:
    """Labels or assignees: plain names (minimal output) or objects with name/login (full API objects)."""
    out: list[str] = []
    for v in values or []:
        name = v if isinstance(v, str) else (v.get("name") or v.get("login")) if isinstance(v, dict) else None
        if isinstance(name, str) and name and name not in out:
            out.append(name)
    return out


def declared_links(kind: str, payload: dict[str, Any], ids: GitHubIds) -> Declared:
    """The REFERENCES an issue or pull request record declares (from itself and its comments)."""
    full = required(payload, "repository", str)
    item = required(payload, "issue" if kind == "issue" else "pull", dict)
    number = required_int(item, "number", f"the {kind}")
    own = ids.issue(full, number) if kind == "issue" else ids.pull(full, number)
    out: Declared = []
    for key in references(f"{item.get('title') or ''}\n{item.get('body') or ''}", full, number):
        out.append(["REFERENCES", own, key])
    for comment in payload.get("comments", []):
        cid = ids.comment(full, comment["id"])
        for key in references(comment.get("body") or "", full, number):
            out.append(["REFERENCES", cid, key])
    return out


class GitHubMapper:
    """Pure: one GitHub record to graph items.

    kinds: "repository" {"repository": search item}; "issue" {"repository": full name, "issue":
    issue, "comments": [comment]}; "pull" {"repository", "pull": pull request, "files": [file],
    "comments": [comment]}; "links" (see links.py).
    """

    kind = "github"

    def __init__(self, source: str, namespace: str) -> None:
        self.source = source
        self.namespace = namespace
        self.ids = GitHubIds(source)

    def map(self, record: SourceRecord) -> MappedItem:
        if record.kind == "repository":
            return self._map_repository(record)
        if record.kind in ("issue", "pull"):
            return self._map_item(record)
        if record.kind == LINKS_KIND:
            return map_links(record, self.source, self.namespace)
        raise MappingError(f"unknown github record kind {record.kind!r}")

    # -- helpers ---------------------------------------------------------------------------------
    def _entity(
        self, eid: str, etype: str, name: str, text: str, props: dict[str, Any], uri: str, version: str
    ) -> Entity:
        return Entity(
            id=eid,
            type=etype,
            name=short(name),
            text=clip(text),
            properties=props,
            source=self.source,
            provenance=Provenance(uri=uri, version=version),
            namespace=self.namespace,
        )

    def _relation(self, rtype: str, src: str, dst: str, props: dict[str, Any] | None = None) -> Relation:
        return Relation(
            id=relation_id(rtype, src, dst),
            type=rtype,
            src=src,
            dst=dst,
            properties=props or {},
            source=self.source,
            namespace=self.namespace,
        )

    def person(self, login: str) -> Entity:
        url = f"https://github.com/{login}"
        return self._entity(
            self.ids.user(login), "Person", login, f"GitHub user {login}", {"login": login, "url": url}, url, login
        )

    def _label(self, full: str, name: str) -> Entity:
        url = f"https://github.com/{full}/labels/{name}"
        return self._entity(
            self.ids.label(full, name),
            "Label",
            name,
            f"Label {name} in {full}",
            {"name": name, "repository": full},
            url,
            name,
        )

    # -- kinds -----------------------------------------------------------------------------------
    def _map_repository(self, record: SourceRecord) -> MappedItem:
        repo = required(record.payload, "repository", dict)
        full = str(required(repo, "full_name", str, "the repository"))
        topics = [t for t in repo.get("topics") or [] if isinstance(t, str)]
        lines = [f"Repository {full}"]
        if repo.get("description"):
            lines.append(str(repo["description"]))
        facts = [f"language {repo['language']}"] if repo.get("language") else []
        if topics:
            facts.append("topics " + ", ".join(topics))
        if facts:
            lines.append("; ".join(facts))
        props = {
            "full_name": full,
            "owner": full.split("/", 1)[0],
            "description": repo.get("description"),
            "url": repo.get("html_url"),
            "language": repo.get("language"),
            "topics": topics,
            "stars": repo.get("stargazers_count"),
            "forks": repo.get("forks_count"),
            "open_issues": repo.get("open_issues_count"),
            "default_branch": repo.get("default_branch"),
            "private": repo.get("private"),
            "fork": repo.get("fork"),
            "archived": repo.get("archived"),
            "created_at": repo.get("created_at"),
            "updated_at": repo.get("updated_at"),
        }
        uri = str(repo.get("html_url") or f"https://github.com/{full}")
        entity = self._entity(
            self.ids.repo(full), "Repository", full, "\n".join(lines), props, uri, record.content_hash
        )
        return MappedItem(entities=[entity])

    def _map_item(self, record: SourceRecord) -> MappedItem:
        p = record.payload
        full = str(required(p, "repository", str))
        is_issue = record.kind == "issue"
        item: dict[str, Any] = required(p, "issue" if is_issue else "pull", dict)
        number = required_int(item, "number", f"the {record.kind}")
        title = str(item.get("title") or "")
        body = str(item.get("body") or "")
        state = str(item.get("state") or "").lower()
        merged_at = item.get("merged_at")
        if not is_issue and (item.get("merged") or merged_at):
            state = "merged"
        author = login_of(item.get("user"))
        labels = _names(item.get("labels"))
        assignees = _names(item.get("assignees"))
        what = "Issue" if is_issue else "Pull request"
        own = self.ids.issue(full, number) if is_issue else self.ids.pull(full, number)
        uri = str(item.get("html_url") or f"https://github.com/{full}/{'issues' if is_issue else 'pull'}/{number}")
        out = MappedItem()

        summary = [f"state {state}" if state else "", f"opened by {author}" if author else ""]
        if labels:
            summary.append("labels " + ", ".join(labels))
        if assignees:
            summary.append("assigned to " + ", ".join(assignees))
        files = [f for f in p.get("files", []) if isinstance(f, dict) and f.get("filename")]
        if not is_issue:
            head, base = item.get("head") or {}, item.get("base") or {}
            if head.get("ref") and base.get("ref"):
                summary.append(f"merges {head['ref']} into {base['ref']}")
        text = f"{what} #{number} in {full}: {title}\n" + "; ".join(s for s in summary if s)
        if body:
            text += f"\n\n{body}"
        if files:
            text += "\n\nFiles changed: " + ", ".join(str(f["filename"]) for f in files)
        props: dict[str, Any] = {
            "repository": full,
            "number": number,
            "title": title,
            "state": state,
            "author": author,
            "labels": labels,
            "assignees": assignees,
            "url": uri,
            "comments": len(p.get("comments", [])),
            "created_at": item.get("created_at"),
            "updated_at": item.get("updated_at"),
            "closed_at": item.get("closed_at"),
        }
        for name in ("state_reason", "milestone", "author_association"):
            if item.get(name):
                props[name] = item[name]
        if not is_issue:
            props.update(
                {
                    "draft": bool(item.get("draft")),
                    "merged_at": merged_at,
                    "head": (item.get("head") or {}).get("ref"),
                    "base": (item.get("base") or {}).get("ref"),
                    "requested_reviewers": _names(item.get("requested_reviewers")),
                    "files": [str(f["filename"]) for f in files],
                }
            )
        entity = self._entity(
            own, "Issue" if is_issue else "PullRequest", f"#{number} {title}", text, props, uri, record.content_hash
        )
        out.entities.append(entity)
        out.relations.append(self._relation("CONTAINS", self.ids.repo(full), own))
        if author:
            out.shared_entities.append(self.person(author))
            out.relations.append(self._relation("AUTHORED", self.ids.user(author), own))
        for name in labels:
            out.shared_entities.append(self._label(full, name))
            out.relations.append(self._relation("HAS_LABEL", own, self.ids.label(full, name)))
        for login in assignees:
            out.shared_entities.append(self.person(login))
            out.relations.append(self._relation("ASSIGNED_TO", own, self.ids.user(login)))
        for f in files:
            path = str(f["filename"])
            file_id = self.ids.file(full, path)
            file_url = f"https://github.com/{full}/blob/{props.get('base') or 'HEAD'}/{path}"
            out.shared_entities.append(
                self._entity(
                    file_id, "File", path, f"File {path} in {full}", {"path": path, "repository": full}, file_url, path
                )
            )
            change = {k: f[k] for k in ("status", "additions", "deletions", "changes", "previous_filename") if k in f}
            out.relations.append(self._relation("MODIFIES", own, file_id, change))
        for comment in p.get("comments", []):
            out.entities.append(self._comment(full, number, what, title, own, comment, out))
        return out

    def _comment(
        self, full: str, number: int, what: str, title: str, own: str, comment: dict[str, Any], out: MappedItem
    ) -> Entity:
        cid = self.ids.comment(full, comment["id"])
        author = login_of(comment.get("user"))
        body = str(comment.get("body") or "")
        head = f"Comment by {author or 'someone'} on {what.lower()} #{number} ({title}) in {full}"
        uri = str(comment.get("html_url") or "")
        props = {
            "id": comment["id"],
            "repository": full,
            "number": number,
            "author": author,
            "url": uri,
            "created_at": comment.get("created_at"),
            "updated_at": comment.get("updated_at"),
        }
        if comment.get("author_association"):
            props["author_association"] = comment["author_association"]
        entity = self._entity(
            cid,
            "Comment",
            f"Comment by {author or 'someone'} on #{number}",
            f"{head}:\n{body}" if body else head,
            props,
            uri or f"https://github.com/{full}#{comment['id']}",
            str(comment.get("updated_at") or ""),
        )
        out.relations.append(self._relation("COMMENTED_ON", cid, own))
        if author:
            out.shared_entities.append(self.person(author))
            out.relations.append(self._relation("AUTHORED", self.ids.user(author), cid))
        return entity


def item_entity_ids(ids: GitHubIds, full: str, numbers: Iterable[tuple[str, int]]) -> dict[str, str]:
    """Item key -> entity id, for ("issue" | "pull", number) pairs of one repository."""
    return {item_key(full, n): (ids.issue(full, n) if kind == "issue" else ids.pull(full, n)) for kind, n in numbers}
