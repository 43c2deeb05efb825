"""Git history to graph: Repository, Branch, Commit, Person and File entities.

Relations: AUTHORED (Person→Commit), MODIFIES (Commit→File), PARENT_OF (parent commit→child),
CONTAINS (Repository→Branch) and HEAD_OF (Branch→Commit).

The parsers read the text the git MCP server (`mcp-server-git`) prints and are strict: anything
that does not fit the documented layout raises `ValueError` naming the line, so the pipeline
quarantines that one item and the rest of the ingest goes on. They never guess.

`git_show <rev>` prints::

    commit <sha>
    Author: <name> <<email>>
    Date:   2026-01-31 12:00:00 +0100
    <blank>
        <message, every line indented by four spaces>
    <blank>
    --- a/<path> | /dev/null
    +++ b/<path> | /dev/null
    <the patch: hunks, "\\ No newline at end of file", or "Binary files ... differ">
    <blank, then the next file>

The diff is taken against the first parent (against nothing for a root commit). Patch lines are
counted against their hunk headers, so a removed line that reads "-- x" ("--- x" in the patch)
is never taken for a file header.

Records (keys and payloads, built by `aesoperator.ingest.adapters.git`):

- ``repository``: {"name", "path", "branches": [...], "current": str | None}
- ``branch:<name>``: {"name", "repository", "head", "head_linked": bool, "head_subject",
  "state": "live" | "deleted", "observed_at": ISO time}
- ``commit:<sha>``: {"sha", "repository", "parents": [...], "show": the git_show text,
  "parent_links": [[parent sha, parent number], ...], "child_links": [[child sha, parent number], ...]}

A PARENT_OF relation is owned by whichever of its two commits was ingested second (the adapter
decides, so that both endpoints always exist): `parent_links` are the edges to parents already in
the graph, `child_links` those to children ingested before this commit.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aesoperator.errors import MappingError
from aesoperator.graph_schema.ids import entity_id
from aesoperator.graph_schema.models import Entity, Provenance, Relation, from_iso
from aesoperator.ingest.records import MappedItem, SourceRecord

_SHA = r"(?:[0-9a-f]{64}|[0-9a-f]{40})"
SHA_PATTERN = re.compile(_SHA)
_COMMIT_LINE = re.compile(rf"commit ({_SHA})")
_AUTHOR_LINE = re.compile(r"Author: (.*) <([^<>\n]*)>")
_DATE_LINE = re.compile(r"Date:\s+(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4})")
_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_LOG_COMMIT = re.compile(rf"Commit: ({_SHA})")
_BRANCH_LINE = re.compile(r"([* +]) (\S+)")

MAX_FILES_IN_TEXT = 400  # a commit's text lists at most this many changed files (all are linked)
MAX_MESSAGE_CHARS = 50_000  # of a commit message in its text (the entity text limit is 200,000)
MAX_NAME_CHARS = 1_000
STATUS_LETTERS = {"added": "A", "deleted": "D", "modified": "M", "renamed": "R"}


def _clip(line: str, limit: int = 120) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _name(text: str) -> str:
    """An entity name: long ones keep their end (a path's file name), marked with an ellipsis."""
    return text if len(text) <= MAX_NAME_CHARS else "…" + text[-(MAX_NAME_CHARS - 1) :]


# -- parsers ------------------------------------------------------------------------------------
def show_sha(text: str) -> str:
    """The commit sha on the first line of a `git_show` answer."""
    first = text.split("\n", 1)[0]
    match = _COMMIT_LINE.fullmatch(first)
    if match is None:
        raise MappingError(f"git_show output does not start with 'commit <sha>': {_clip(first)!r}")
    return match.group(1)


def show_date(text: str) -> datetime | None:
    """The author date of a `git_show` answer, read from its header only (None if absent)."""
    for line in text.split("\n", 4)[1:4]:
        match = _DATE_LINE.fullmatch(line)
        if match:
            return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S %z")
    return None


def _side(raw: str, prefix: str, line_no: int) -> str | None:
    if raw == "/dev/null":
        return None
    if not raw.startswith(prefix) or not raw[len(prefix) :].strip():
        raise MappingError(f"line {line_no}: file header path {_clip(raw)!r} is not {prefix!r} and a path")
    return raw[len(prefix) :]


def parse_show(text: str) -> dict[str, Any]:
    """Parse a `git_show` answer for a commit into a JSON-safe dict:
    {"sha", "author_name", "author_email", "authored_at" (ISO), "message",
    "files": [{"path", "old_path", "status", "added", "removed", "binary"}]}."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    n = len(lines)
    sha = show_sha(text)
    if n < 5:
        raise MappingError(f"git_show output has {n} lines; a commit needs at least a header and a message")
    author = _AUTHOR_LINE.fullmatch(lines[1])
    if author is None:
        raise MappingError(f"line 2: expected 'Author: <name> <<email>>', got {_clip(lines[1])!r}")
    name, email = author.group(1).strip(), author.group(2).strip()
    if not name and not email:
        raise MappingError("line 2: the author has neither a name nor an email")
    date = _DATE_LINE.fullmatch(lines[2])
    if date is None:
        raise MappingError(f"line 3: expected 'Date:   YYYY-MM-DD HH:MM:SS +ZZZZ', got {_clip(lines[2])!r}")
    authored = datetime.strptime(date.group(1), "%Y-%m-%d %H:%M:%S %z")
    if lines[3] != "":
        raise MappingError(f"line 4: expected a blank line before the message, got {_clip(lines[3])!r}")
    i = 4
    message: list[str] = []
    while i < n and lines[i].startswith("    "):
        message.append(lines[i][4:])
        i += 1
    if not message:
        raise MappingError(f"line 5: expected the message indented by four spaces, got {_clip(lines[4])!r}")

    files: list[dict[str, Any]] = []
    while i < n:
        if lines[i] != "":
            raise MappingError(f"line {i + 1}: expected a blank line before a file header, got {_clip(lines[i])!r}")
        if i + 2 >= n or not lines[i + 1].startswith("--- ") or not lines[i + 2].startswith("+++ "):
            raise MappingError(f"line {i + 2}: expected '--- <a/path>' and '+++ <b/path>' after the blank line")
        old = _side(lines[i + 1][4:], "a/", i + 2)
        new = _side(lines[i + 2][4:], "b/", i + 3)
        if old is None and new is None:
            raise MappingError(f"line {i + 2}: both sides of a file diff are /dev/null")
        i += 3
        added = removed = 0
        binary = False
        while i < n and lines[i] != "":
            line = lines[i]
            hunk = _HUNK.match(line)
            if hunk is not None:
                old_left = int(hunk.group(2) or 1)
                new_left = int(hunk.group(4) or 1)
                i += 1
                while old_left > 0 or new_left > 0:
                    if i >= n:
                        raise MappingError(
                            f"line {i}: the hunk ends early ({old_left} old, {new_left} new lines missing)"
                        )
                    body = lines[i]
                    mark = body[:1]
                    if mark == "\\":
                        pass  # "\ No newline at end of file"
                    elif mark in (" ", ""):  # context (an empty context line may lose its space)
                        old_left -= 1
                        new_left -= 1
                    elif mark == "-":
                        old_left -= 1
                        removed += 1
                    elif mark == "+":
                        new_left -= 1
                        added += 1
                    else:
                        raise MappingError(f"line {i + 1}: {_clip(body)!r} is not a patch line")
                    if old_left < 0 or new_left < 0:
                        raise MappingError(f"line {i + 1}: the hunk is longer than its header says")
                    i += 1
            elif line.startswith("\\"):
                i += 1
            elif line.startswith("Binary files "):
                binary = True
                i += 1
            else:
                raise MappingError(f"line {i + 1}: expected a hunk header, got {_clip(line)!r}")
        status = "added" if old is None else "deleted" if new is None else "renamed" if old != new else "modified"
        files.append(
            {
                "path": new if new is not None else old,
                "old_path": old if status == "renamed" else None,
                "status": status,
                "added": added,
                "removed": removed,
                "binary": binary,
            }
        )
    return {
        "sha": sha,
        "author_name": name,
        "author_email": email,
        "authored_at": authored.isoformat(),
        "message": "\n".join(message),
        "files": files,
    }


def parse_branches(text: str) -> tuple[list[str], str | None]:
    """Parse a `git_branch` answer: (branch names in the server's order, the checked-out branch or
    None when HEAD is detached). Lines such as "(HEAD detached at 1a2b3c)" name no branch."""
    names: list[str] = []
    current: str | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if line[2:].startswith("("):
            continue  # detached HEAD, rebase in progress...
        match = _BRANCH_LINE.fullmatch(line.rstrip())
        if match is None:
            raise MappingError(f"git_branch line {number}: {_clip(line)!r} is not '[*] <branch>'")
        name = match.group(2)
        names.append(name)
        if match.group(1) == "*":
            current = name
    return names, current


def parse_log(text: str) -> list[dict[str, str]]:
    """Parse a `git_log` answer into [{"sha", "author", "date", "message"}], newest first.

    Entries are "Commit: <sha>", "Author: <name>", "Date: <date>", "Message: <message...>"; an
    entry starts where a "Commit: <sha>" line is followed by those three headers, so a message
    that merely mentions a commit does not split its entry."""
    lines = text.split("\n")
    if not lines or lines[0] != "Commit history:":
        raise MappingError(
            f"git_log output does not start with 'Commit history:': {_clip(lines[0] if lines else '')!r}"
        )

    def starts_entry(i: int) -> bool:
        return (
            i + 3 < len(lines)
            and _LOG_COMMIT.fullmatch(lines[i]) is not None
            and lines[i + 1].startswith("Author: ")
            and lines[i + 2].startswith("Date: ")
            and lines[i + 3].startswith("Message: ")
        )

    starts = [i for i in range(1, len(lines)) if starts_entry(i)]
    if len(lines) > 1 and any(line.strip() for line in lines[1:]) and (not starts or starts[0] != 1):
        raise MappingError(f"git_log line 2: expected 'Commit: <sha>', got {_clip(lines[1])!r}")
    entries: list[dict[str, str]] = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        message = "\n".join([lines[start + 3][len("Message: ") :], *lines[start + 4 : end]]).rstrip("\n")
        entries.append(
            {
                "sha": lines[start][len("Commit: ") :],
                "author": lines[start + 1][len("Author: ") :],
                "date": lines[start + 2][len("Date: ") :],
                "message": message,
            }
        )
    return entries


def subject(message: str) -> str:
    return next((line.strip() for line in message.split("\n") if line.strip()), "")


# -- mapper -------------------------------------------------------------------------------------
def _str_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and SHA_PATTERN.fullmatch(v) for v in value):
        raise MappingError(f"{what} must be a list of commit shas, got {value!r}")
    return list(value)


def _links(value: Any, what: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for item in value or []:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not SHA_PATTERN.fullmatch(item[0])
            or not isinstance(item[1], int)
            or item[1] < 1
        ):
            raise MappingError(f"{what} entries must be [sha, parent number], got {item!r}")
        out.append((item[0], item[1]))
    return out


class GitMapper:
    """Pure: git records to entities and relations (see the module docstring for the payloads)."""

    kind = "git"

    def __init__(self, source: str, namespace: str) -> None:
        self.source = source
        self.namespace = namespace

    # ids ------------------------------------------------------------------------------------
    def repository_id(self, name: str) -> str:
        return entity_id(self.source, "repository", name)

    def branch_id(self, name: str) -> str:
        return entity_id(self.source, "branch", name)

    def commit_id(self, sha: str) -> str:
        return entity_id(self.source, "commit", sha)

    def person_id(self, name: str, email: str) -> str:
        return entity_id(self.source, "person", email.lower() if email else f"name:{name}")

    def file_id(self, path: str) -> str:
        return entity_id(self.source, "file", path)

    def _relation(self, rel_type: str, src: str, dst: str, **properties: Any) -> Relation:
        return Relation(
            type=rel_type, src=src, dst=dst, properties=properties, source=self.source, namespace=self.namespace
        )

    # records --------------------------------------------------------------------------------
    def map(self, record: SourceRecord) -> MappedItem:
        if record.kind == "commit":
            return self._commit(record)
        if record.kind == "branch":
            return self._branch(record)
        if record.kind == "repository":
            return self._repository(record)
        raise MappingError(f"unknown git record kind {record.kind!r}")

    def _repository(self, record: SourceRecord) -> MappedItem:
        p = record.payload
        name = str(p["name"])
        branches = [str(b) for b in p.get("branches") or []]
        text = f"Git repository {name}" + (f"\nBranches: {', '.join(branches)}" if branches else "")
        repo = Entity(
            id=self.repository_id(name),
            type="Repository",
            name=name,
            text=text,
            properties={"path": p.get("path"), "branches": branches, "current_branch": p.get("current")},
            source=self.source,
            provenance=Provenance(uri=record.uri, version=record.content_hash),
            namespace=self.namespace,
        )
        return MappedItem(entities=[repo])

    def _branch(self, record: SourceRecord) -> MappedItem:
        p = record.payload
        name, repo_name, head = str(p["name"]), str(p["repository"]), p.get("head")
        state = p.get("state", "live")
        if state not in ("live", "deleted"):
            raise MappingError(f"branch {name}: unknown state {state!r}")
        if head is not None and not (isinstance(head, str) and SHA_PATTERN.fullmatch(head)):
            raise MappingError(f"branch {name}: head {head!r} is not a commit sha")
        observed = from_iso(p["observed_at"]) if p.get("observed_at") else None
        head_subject = str(p.get("head_subject") or "")
        if state == "deleted":
            text = f"Branch {name} of {repo_name} (deleted; its last head was {head[:12] if head else 'unknown'})"
        else:
            text = f"Branch {name} of {repo_name}" + (
                f": head {head[:12]}" + (f" {head_subject}" if head_subject else "") if head else ""
            )
        branch = Entity(
            id=self.branch_id(name),
            type="Branch",
            name=name,
            text=text,
            properties={"repository": repo_name, "head": head, "deleted": state == "deleted"},
            source=self.source,
            provenance=Provenance(uri=record.uri, version=head),
            namespace=self.namespace,
            valid_to=observed if state == "deleted" else None,
        )
        item = MappedItem(entities=[branch])
        if state == "live":
            item.relations.append(self._relation("CONTAINS", self.repository_id(repo_name), branch.id))
            if head is not None and p.get("head_linked"):
                rel = self._relation("HEAD_OF", branch.id, self.commit_id(head), sha=head)
                rel.valid_from = observed
                item.relations.append(rel)
        return item

    def _commit(self, record: SourceRecord) -> MappedItem:
        p = record.payload
        info = parse_show(str(p["show"]))
        sha = info["sha"]
        if sha != p.get("sha"):
            raise MappingError(f"the git_show output is for commit {sha}, not {p.get('sha')}")
        parents = _str_list(p.get("parents", []), "parents")
        repo_name = str(p["repository"])
        authored = datetime.fromisoformat(info["authored_at"])
        message: str = info["message"]
        files: list[dict[str, Any]] = info["files"]
        title = subject(message)
        author_name, email = info["author_name"], info["author_email"]

        listed = []
        for f in files[:MAX_FILES_IN_TEXT]:
            where = f"{f['old_path']} -> {f['path']}" if f["old_path"] else f["path"]
            counts = "binary" if f["binary"] else f"+{f['added']} -{f['removed']}"
            listed.append(f"{STATUS_LETTERS[f['status']]} {where} ({counts})")
        if len(files) > MAX_FILES_IN_TEXT:
            listed.append(f"... and {len(files) - MAX_FILES_IN_TEXT} more files")
        body = message.strip()[:MAX_MESSAGE_CHARS] or "(no message)"
        text = f"{body}\n\nCommit {sha} in {repo_name} by {author_name} <{email}> on {authored.isoformat()}\n" + (
            f"Changed files ({len(files)}):\n" + "\n".join(listed) if files else "No file changes"
        )
        commit = Entity(
            id=self.commit_id(sha),
            type="Commit",
            name=f"{sha[:12]} {title}".strip()[:300],
            text=text,
            properties={
                "sha": sha,
                "repository": repo_name,
                "subject": title[:500],
                "author_name": author_name,
                "author_email": email,
                "authored_at": info["authored_at"],
                "parents": parents,
                "merge": len(parents) > 1,
                "files_changed": len(files),
                "lines_added": sum(f["added"] for f in files),
                "lines_removed": sum(f["removed"] for f in files),
            },
            source=self.source,
            provenance=Provenance(uri=record.uri, version=sha),
            namespace=self.namespace,
            valid_from=authored,
        )
        person = Entity(
            id=self.person_id(author_name, email),
            type="Person",
            name=_name(author_name or email),
            text=f"{author_name} <{email}>"[:MAX_NAME_CHARS] if email else author_name[:MAX_NAME_CHARS],
            properties={"email": email or None, "name": author_name},
            source=self.source,
            namespace=self.namespace,
        )
        item = MappedItem(entities=[commit], shared_entities=[person])
        item.relations.append(self._relation("AUTHORED", person.id, commit.id))
        seen_files: set[str] = set()
        for f in files:
            touched = [(f["path"], f["status"])]
            if f["old_path"]:
                touched.append((f["old_path"], "renamed_from"))
            for path, status in touched:
                fid = self.file_id(path)
                if fid not in seen_files:
                    seen_files.add(fid)
                    item.shared_entities.append(
                        Entity(
                            id=fid,
                            type="File",
                            name=_name(path),
                            text=f"File {path} in {repo_name}",
                            properties={"path": path, "repository": repo_name},
                            source=self.source,
                            namespace=self.namespace,
                        )
                    )
                item.relations.append(
                    self._relation(
                        "MODIFIES",
                        commit.id,
                        fid,
                        status=status,
                        added=f["added"],
                        removed=f["removed"],
                        binary=f["binary"],
                        **({"old_path": f["old_path"]} if status == "renamed" else {}),
                    )
                )
        for parent, number in _links(p.get("parent_links"), "parent_links"):
            if parent not in parents:
                raise MappingError(f"parent_links names {parent}, which is not a parent of {sha}")
            item.relations.append(self._relation("PARENT_OF", self.commit_id(parent), commit.id, number=number))
        for child, number in _links(p.get("child_links"), "child_links"):
            item.relations.append(self._relation("PARENT_OF", commit.id, self.commit_id(child), number=number))
        return item
