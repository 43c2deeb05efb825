"""A git repository through the git MCP server (`mcp-server-git`, `python -m mcp_server_git`).

What it reads, with the server's read-only tools only (it never checks out, stages or commits):

- `git_branch` (local): the branches and the checked-out one;
- `git_log` (max_count=1): the checked-out branch's head, cheaply (no patch);
- `git_show <branch>`: another branch's head;
- `git_show <sha>^<n>`: the n-th parent of a commit, which is also how the history is walked: the
  answer is the parent's own `git_show`, so every commit is fetched once, and an answer "not
  enough parent commits" ends the parent list.

Incremental: commits are immutable, so each run walks only from branch heads that moved, newest
first, down to commits the graph already holds (and on from where an earlier walk stopped: cut
by max_commits, or by a failure, since the pipeline keeps what was mapped before it). The last seen head of each branch is its
record's version (`git1:head:<sha>`) and a commit's version records its parents
(`git1:<sha>:<parent>,<parent>`), so the adapter knows the ingested history from the source state
alone: commits still reachable from a tracked branch are confirmed without any call, and those
no longer reachable (a deleted or rewritten branch) are removed. A branch that moved gets its new
HEAD_OF and its old one is expired (history kept); a deleted branch stays as a Branch whose
`valid_to` is when its deletion was seen, with its CONTAINS and HEAD_OF expired.

Options:
    repo_path:    the repository the server serves (default: the server's `--repository` argument)
    branches:     names or globs of the local branches to ingest (default: all)
    max_commits:  at most this many commits fetched per run, newest first (default: no limit).
                  The next run goes on down the history where this one stopped, so a long
                  history comes in over several runs; until it is whole, commits that are no
                  longer reachable are kept rather than removed (reachability is not known yet).

A commit whose `git_show` cannot be parsed is quarantined by the mapper with the reason and
retried on the next run; one the server cannot return (an error, or an answer over
max_response_bytes) is skipped with the reason. Merge commits list the files changed against
their first parent, as `git_show` prints them.
"""

from __future__ import annotations

import fnmatch
import heapq
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.errors import ConfigError, SourceError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.graph_schema.models import to_iso, utcnow
from aesoperator.ingest.adapters.base import McpConnection, unchanged
from aesoperator.ingest.client import McpCallError, ToolCallError
from aesoperator.ingest.mappers.git import (
    SHA_PATTERN,
    GitMapper,
    parse_branches,
    parse_log,
    parse_show,
    show_date,
    show_sha,
    subject,
)
from aesoperator.ingest.pipeline import QUARANTINE_PREFIX
from aesoperator.ingest.records import SkippedRecord, SourceRecord
from aesoperator.ingest.sources import SourceDefinition

VERSION = "git1"
REPOSITORY_KEY = "repository"
NO_SUCH_PARENT = ("not enough parent commits", "did not resolve to an object")
NO_SUCH_COMMIT = ("could not be resolved", "did not resolve to an object")
MAX_PARENTS = 64  # octopus merges beyond this are cut (git itself warns far earlier)


def commit_key(sha: str) -> str:
    return f"commit:{sha}"


def branch_key(name: str) -> str:
    return f"branch:{name}"


def commit_version(sha: str, parents: list[str]) -> str:
    return f"{VERSION}:{sha}:{','.join(parents)}"


def branch_version(head: str, linked: bool) -> str:
    return f"{VERSION}:head:{head}:{int(linked)}"


def gone_version(head: str | None) -> str:
    return f"{VERSION}:gone:{head or '-'}"


def _parse_commit_version(value: str) -> tuple[str, list[str]] | None:
    parts = value.split(":")
    if len(parts) != 3 or parts[0] != VERSION or not SHA_PATTERN.fullmatch(parts[1]):
        return None
    parents = [p for p in parts[2].split(",") if p]
    if not all(SHA_PATTERN.fullmatch(p) for p in parents):
        return None
    return parts[1], parents


def _parse_branch_version(value: str) -> tuple[str, str | None] | None:
    """("head", sha) or ("gone", sha | None)."""
    parts = value.split(":")
    if len(parts) >= 3 and parts[0] == VERSION and parts[1] == "head" and SHA_PATTERN.fullmatch(parts[2]):
        return "head", parts[2]
    if len(parts) == 3 and parts[0] == VERSION and parts[1] == "gone":
        return "gone", parts[2] if SHA_PATTERN.fullmatch(parts[2]) else None
    return None


@dataclass
class KnownHistory:
    """What the source state says was ingested: commits (with parents), quarantined commits,
    and each branch's last seen head."""

    commits: dict[str, list[str]] = field(default_factory=dict)  # in the graph
    quarantined: dict[str, list[str]] = field(default_factory=dict)  # mapped with an error
    states: dict[str, SourceItemState] = field(default_factory=dict)  # sha -> state (in the graph)
    heads: dict[str, str] = field(default_factory=dict)  # live branch -> head sha
    gone: dict[str, SourceItemState] = field(default_factory=dict)  # deleted branch -> tombstone state

    @classmethod
    def from_states(cls, previous: Mapping[str, SourceItemState]) -> KnownHistory:
        known = cls()
        for key, state in previous.items():
            quarantined = key.startswith(QUARANTINE_PREFIX)
            bare = key[len(QUARANTINE_PREFIX) :] if quarantined else key
            if bare.startswith("commit:"):
                parsed = _parse_commit_version(state.content_hash)
                if parsed is None or bare != commit_key(parsed[0]):
                    continue  # another format: fetched again
                if quarantined:
                    known.quarantined[parsed[0]] = parsed[1]
                else:
                    known.commits[parsed[0]] = parsed[1]
                    known.states[parsed[0]] = state
            elif bare.startswith("branch:") and not quarantined:
                branch = _parse_branch_version(state.content_hash)
                if branch is None:
                    continue
                if branch[0] == "head" and branch[1] is not None:
                    known.heads[bare[len("branch:") :]] = branch[1]
                else:
                    known.gone[bare[len("branch:") :]] = state
        return known

    def children(self) -> dict[str, list[tuple[str, int]]]:
        out: dict[str, list[tuple[str, int]]] = {}
        for sha, parents in self.commits.items():
            for number, parent in enumerate(parents, start=1):
                out.setdefault(parent, []).append((sha, number))
        return out


@dataclass(order=True)
class _Pending:
    """A commit waiting to be processed: newest first, then by sha (deterministic)."""

    priority: tuple[float, str]
    sha: str = field(compare=False)
    text: str | None = field(compare=False, default=None)


@dataclass
class _Run:
    """The state of one ingest run."""

    known: KnownHistory
    names: list[str]  # every local branch
    tracked: list[str]  # those ingested
    observed_at: str | None = field(default_factory=lambda: to_iso(utcnow()))
    heads: dict[str, str] = field(default_factory=dict)
    subjects: dict[str, str] = field(default_factory=dict)  # sha -> subject line, for branch texts
    roots_kept: list[str] = field(default_factory=list)  # last heads of branches that could not be read
    queue: list[_Pending] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    fetched: int = 0
    cut: bool = False  # some history was not walked (max_commits, or a commit the server could not give)
    in_graph: set[str] = field(default_factory=set)  # commits whose entity exists, or is written before
    graph: dict[str, list[str]] = field(default_factory=dict)  # sha -> parents, for reachability
    waiting_children: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # parent -> children

    def __post_init__(self) -> None:
        self.in_graph = set(self.known.commits)
        self.graph = {**self.known.commits, **self.known.quarantined}

    def push(self, sha: str, text: str | None) -> None:
        if sha not in self.done:
            priority = _priority(sha, text) if text is not None else (float("inf"), sha)
            heapq.heappush(self.queue, _Pending(priority, sha, text))


class GitAdapter:
    kind = "git"

    def __init__(self, definition: SourceDefinition) -> None:
        self.definition = definition
        options = definition.options
        repo = options.get("repo_path") or self._repository_argument(definition.args)
        if not repo:
            raise ConfigError(
                f"source {definition.name!r}: set options.repo_path to the repository the git server serves"
            )
        self.repo_path = str(repo)
        self.repo_name = Path(self.repo_path.rstrip("/")).name or self.repo_path
        raw_branches = options.get("branches")
        if isinstance(raw_branches, str):
            raw_branches = [raw_branches]
        if raw_branches is not None and not (
            isinstance(raw_branches, list) and all(isinstance(b, str) and b for b in raw_branches)
        ):
            raise ConfigError(f"source {definition.name!r}: options.branches must be a list of branch names or globs")
        self.branches: list[str] | None = raw_branches
        max_commits = options.get("max_commits")
        if max_commits is not None and (not isinstance(max_commits, int) or max_commits < 1):
            raise ConfigError(f"source {definition.name!r}: options.max_commits must be a positive integer")
        self.max_commits: int | None = max_commits
        self.mapper = GitMapper(definition.name, definition.namespace)
        self.skipped: list[SkippedRecord] = []

    @staticmethod
    def _repository_argument(args: list[str]) -> str | None:
        for i, arg in enumerate(args):
            if arg in ("--repository", "-r") and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith("--repository="):
                return arg.split("=", 1)[1]
        return None

    # -- calls --------------------------------------------------------------------------------
    async def _tool(self, conn: McpConnection, name: str, **arguments: Any) -> str:
        result = await conn.call_tool(name, {"repo_path": self.repo_path, **arguments})
        return result.text

    async def _show(self, conn: McpConnection, revision: str) -> str:
        return await self._tool(conn, "git_show", revision=revision)

    async def _parent(self, conn: McpConnection, sha: str, number: int) -> str | None:
        """The `git_show` of the commit's `number`-th parent, or None when it has fewer parents."""
        try:
            return await self._show(conn, f"{sha}^{number}")
        except ToolCallError as exc:
            if _says(exc, NO_SUCH_PARENT):
                return None
            raise

    def _skip(self, key: str, exc: Exception) -> None:
        text = str(exc)
        prefix = f"source {self.definition.name!r}: "
        self.skipped.append(SkippedRecord(key, text[len(prefix) :] if text.startswith(prefix) else text))

    def wanted(self, branch: str) -> bool:
        return self.branches is None or any(fnmatch.fnmatchcase(branch, p) for p in self.branches)

    def _uri(self, what: str) -> str:
        return f"git+file://{self.repo_path}#{what}"

    # -- records ------------------------------------------------------------------------------
    async def records(
        self, conn: McpConnection, previous: Mapping[str, SourceItemState]
    ) -> AsyncIterator[SourceRecord]:
        try:
            names, current = parse_branches(await self._tool(conn, "git_branch", branch_type="local"))
        except ValueError as exc:
            raise SourceError(f"source {self.definition.name!r}: cannot read the branch list: {exc}") from exc
        run = _Run(KnownHistory.from_states(previous), names, sorted(n for n in names if self.wanted(n)))
        yield self._repository_record(run, current, previous)
        await self._read_heads(conn, run, current)
        async for record in self._walk(conn, run):
            yield record
        for record in self._kept_commits(run):
            yield record
        for record in self._branch_records(run, previous):
            yield record

    def _repository_record(
        self, run: _Run, current: str | None, previous: Mapping[str, SourceItemState]
    ) -> SourceRecord:
        payload = {"name": self.repo_name, "path": self.repo_path, "branches": run.tracked, "current": current}
        version = content_hash(json.dumps(payload, sort_keys=True))
        before = previous.get(REPOSITORY_KEY)
        if before is not None and before.content_hash == version:
            return unchanged(before, self._uri("repository"))
        return SourceRecord(REPOSITORY_KEY, "repository", version, payload, self._uri("repository"))

    async def _read_heads(self, conn: McpConnection, run: _Run, current: str | None) -> None:
        """Each tracked branch's head; a head the graph does not hold starts the walk. Commits
        quarantined last time are queued too: the mapper may accept them now."""
        for name in run.tracked:
            last_seen = run.known.heads.get(name)
            try:
                sha, text = await self._head(conn, name, name == current, last_seen)
            except (McpCallError, ValueError) as exc:
                self._skip(branch_key(name), exc)
                if last_seen is not None:
                    run.roots_kept.append(last_seen)
                continue
            run.heads[name] = sha
            if text is not None:
                run.subjects[sha] = _subject_of(text)
            if sha not in run.known.commits:  # new, or not ingested last time
                run.push(sha, text)
        for sha in sorted(run.known.quarantined):
            run.push(sha, None)
        # History not walked yet behind ingested commits (a run cut by max_commits, or one that
        # failed half-way): its newest commits are the parents the graph does not hold.
        have = set(run.known.commits) | set(run.known.quarantined)
        for sha in sorted({p for parents in run.known.commits.values() for p in parents} - have):
            run.push(sha, None)

    async def _walk(self, conn: McpConnection, run: _Run) -> AsyncIterator[SourceRecord]:
        """Newest first; each commit is yielded as soon as its parents are known."""
        known = run.known
        known_children = known.children()
        while run.queue:
            item = heapq.heappop(run.queue)
            if item.sha in run.done or item.sha in known.commits:
                continue
            if self.max_commits is not None and run.fetched >= self.max_commits:
                run.cut = True
                return
            run.done.add(item.sha)
            text = item.text
            parent_texts: dict[str, str] = {}
            try:
                if text is None:
                    text = await self._show(conn, item.sha)
                    if show_sha(text) != item.sha:
                        raise ValueError(f"git_show {item.sha} answered for another commit")
                run.fetched += 1
                if item.sha in known.quarantined:
                    parents = known.quarantined[item.sha]
                else:
                    parents, parent_texts = await self._parents(conn, item.sha)
            except (McpCallError, ValueError) as exc:
                if item.text is None and isinstance(exc, ToolCallError) and _says(exc, NO_SUCH_COMMIT):
                    run.graph[item.sha] = []  # not in the repository (any more): history ends here
                    continue
                self._skip(commit_key(item.sha), exc)
                run.cut = True  # the history behind this commit is not known this run
                continue
            run.graph[item.sha] = parents
            try:
                parse_show(text)
                mappable = True
            except ValueError:
                mappable = False  # the mapper quarantines it with the reason
            # Each PARENT_OF is owned by the commit of the pair that is written second.
            parent_links: list[list[Any]] = []
            for number, parent in enumerate(parents, start=1):
                if parent in run.in_graph:
                    parent_links.append([parent, number])
                    continue
                if mappable:
                    run.waiting_children.setdefault(parent, []).append((item.sha, number))
                if parent in parent_texts:
                    run.push(parent, parent_texts[parent])
            children = run.waiting_children.pop(item.sha, [])
            children += [c for c in known_children.get(item.sha, []) if c[0] in known.commits]
            if mappable:
                run.in_graph.add(item.sha)
            run.subjects.setdefault(item.sha, _subject_of(text))
            payload = {
                "sha": item.sha,
                "repository": self.repo_name,
                "parents": parents,
                "parent_links": parent_links,
                "child_links": [[c, n] for c, n in sorted(set(children))] if mappable else [],
                "show": text,
            }
            yield SourceRecord(
                commit_key(item.sha), "commit", commit_version(item.sha, parents), payload, self._uri(item.sha)
            )

    def _kept_commits(self, run: _Run) -> Iterator[SourceRecord]:
        """Commits ingested before, confirmed without a call while reachable from a tracked
        branch. Unreachable ones are left out (and so removed) only when the whole history is
        known: after a cut walk, reachability cannot be told, and everything is kept."""
        reachable, complete = _reachable([*run.heads.values(), *run.roots_kept], run.graph)
        prune = complete and not run.cut
        for sha, state in sorted(run.known.states.items()):
            if sha in reachable or not prune:
                yield unchanged(state, self._uri(sha))

    def _branch_records(self, run: _Run, previous: Mapping[str, SourceItemState]) -> Iterator[SourceRecord]:
        """Branches come last: their HEAD_OF points at commits written before them."""
        for name in run.tracked:
            if name not in run.heads:
                continue  # could not be read: skipped, and its state is kept
            key, head = branch_key(name), run.heads[name]
            linked = head in run.in_graph
            version = branch_version(head, linked)
            before = previous.get(key)
            if before is not None and before.content_hash == version:
                yield unchanged(before, self._uri(key))
                continue
            live: dict[str, Any] = {
                "name": name,
                "repository": self.repo_name,
                "head": head,
                "head_linked": linked,
                "head_subject": run.subjects.get(head, ""),
                "state": "live",
                "observed_at": run.observed_at,
            }
            yield SourceRecord(key, "branch", version, live, self._uri(key))
        present = set(run.names)
        for name in sorted(set(run.known.heads) | set(run.known.gone)):
            if name in present or not self.wanted(name):
                continue  # still there, or no longer tracked: its records are removed
            key = branch_key(name)
            if name in run.known.gone:
                yield unchanged(run.known.gone[name], self._uri(key))
                continue
            last_head = run.known.heads[name]
            gone: dict[str, Any] = {
                "name": name,
                "repository": self.repo_name,
                "head": last_head,
                "head_linked": False,
                "state": "deleted",
                "observed_at": run.observed_at,
            }
            yield SourceRecord(key, "branch", gone_version(last_head), gone, self._uri(key))

    async def _head(
        self, conn: McpConnection, name: str, checked_out: bool, last_seen: str | None
    ) -> tuple[str, str | None]:
        """A branch's head sha, and its `git_show` text when it had to be fetched. The checked-out
        branch is asked with `git_log` first, which prints no patch: an unmoved head costs little."""
        if checked_out and last_seen is not None:
            try:
                entries = parse_log(await self._tool(conn, "git_log", max_count=1))
            except ValueError:
                entries = []  # asked again with git_show below
            if entries and entries[0]["sha"] == last_seen:
                return last_seen, None
        text = await self._show(conn, name)
        return show_sha(text), text

    async def _parents(self, conn: McpConnection, sha: str) -> tuple[list[str], dict[str, str]]:
        """Parent shas in order, with each parent's `git_show` text. The first two are asked for
        at once (most commits have one parent, merges two)."""
        texts: list[str | None] = [None, None]
        errors: list[Exception] = []

        async def ask(number: int) -> None:
            try:
                texts[number - 1] = await self._parent(conn, sha, number)
            except Exception as exc:  # raised below as itself, not wrapped in an exception group
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, 1)
            tg.start_soon(ask, 2)
        if errors:
            raise errors[0]
        answers: list[str] = []
        for text in texts:
            if text is None:
                break
            answers.append(text)
        if len(answers) == 2:
            for number in range(3, MAX_PARENTS + 1):
                more = await self._parent(conn, sha, number)
                if more is None:
                    break
                answers.append(more)
        parents = [show_sha(text) for text in answers]
        return parents, dict(zip(parents, answers, strict=True))


def _says(exc: Exception, markers: tuple[str, ...]) -> bool:
    return any(marker in str(exc) for marker in markers)


def _subject_of(text: str) -> str:
    """The subject line of a `git_show` answer's message (empty if it cannot be found)."""
    message = []
    for line in text.split("\n")[4:]:
        if not line.startswith("    "):
            break
        message.append(line[4:])
    return subject("\n".join(message))[:300]


def _priority(sha: str, text: str) -> tuple[float, str]:
    date: datetime | None
    try:
        date = show_date(text)
    except ValueError:
        date = None
    return (-date.timestamp() if date is not None else float("inf"), sha)


def _reachable(roots: list[str], graph: Mapping[str, list[str]]) -> tuple[set[str], bool]:
    """Commits reachable from `roots` over `graph` (sha -> parents), and whether the walk saw the
    whole history (no parent missing from the graph)."""
    seen: set[str] = set()
    complete = True
    stack = list(roots)
    while stack:
        sha = stack.pop()
        if sha in seen:
            continue
        parents = graph.get(sha)
        if parents is None:
            complete = False
            continue
        seen.add(sha)
        stack.extend(p for p in parents if p not in seen)
    return seen, complete
