"""A git repository as a read-only MCP server.

The tools keep the names, arguments and text layouts of the git MCP server (`mcp-server-git`) for
what they share, so the engine's git adapter ingests from either:

- `git_branch(repo_path, branch_type)`: `git branch` output ("* main", "  feature");
- `git_log(repo_path, max_count, start_timestamp?, end_timestamp?)`: "Commit history:" then
  Commit/Author/Date/Message entries, newest first;
- `git_show(repo_path, revision)`: a commit's header (`commit`, `Author: name <email>`,
  `Date:   YYYY-MM-DD HH:MM:SS +ZZZZ`, the message indented by four spaces) and its patch
  against the first parent, each file introduced by `--- a/path` / `+++ b/path`;
- `git_read_file(repo_path, revision, path)`: a file's text at a revision (read-only
  addition), and `git_list_files(repo_path, revision)`.

Only the configured repository is served: `repo_path` must name it. Nothing writes: no checkout,
no fetch, no config change; revisions and paths that look like options are refused, and every git
call runs with `--no-pager`, no external diff and no textconv.

Resource: `git://refs` (branch heads), for subscriptions: it changes when a branch moves.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio.to_thread
from mcp_types import ToolAnnotations
from pydantic import Field

from aesoperator.connectors.base import ConnectorPolicy, ConnectorServer
from aesoperator.errors import ConfigError, PermissionDenied, SchemaError, SourceError
from aesoperator.security.envelope import report_count

REFS_URI = "git://refs"
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
MAX_LOG = 10_000
MAX_FILE_BYTES = 5_000_000
GIT_TIMEOUT_SECONDS = 60
_REVISION = re.compile(r"^[A-Za-z0-9_./@^~{}:+-]{1,256}$")
_TIMESTAMP = re.compile(r"^[A-Za-z0-9 :.+-]{1,64}$")


@dataclass
class GitSource:
    """Read-only git calls on one repository (the `git` command line)."""

    repo: Path

    def __post_init__(self) -> None:
        self.repo = Path(self.repo).expanduser().resolve()
        if not self.repo.is_dir():
            raise ConfigError(f"git connector: {self.repo} is not a directory")
        try:
            self.git("rev-parse", "--git-dir")
        except SourceError:
            raise ConfigError(f"git connector: {self.repo} is not a git repository") from None

    def check_repo(self, repo_path: str) -> None:
        if os.path.realpath(os.path.expanduser(repo_path)) != str(self.repo):
            raise PermissionDenied(f"this connector serves only the repository {self.repo}, not {repo_path!r}")

    def git(self, *args: str, binary: bool = False) -> str:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "LC_ALL": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        argv = [
            "git",
            "--no-pager",
            "-c",
            "core.quotePath=false",
            "-c",
            "diff.external=",
            "-c",
            "safe.directory=*",
            "-C",
            str(self.repo),
            *args,
        ]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=GIT_TIMEOUT_SECONDS, env=env, check=False)
        except FileNotFoundError:
            raise SourceError("git connector: the git command is not installed") from None
        except subprocess.TimeoutExpired:
            raise SourceError(f"git {args[0]} timed out after {GIT_TIMEOUT_SECONDS}s") from None
        if proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SourceError(f"git {args[0]}: {message[-1] if message else 'failed'}")
        return proc.stdout.decode("utf-8", "replace")

    @staticmethod
    def _revision(revision: str) -> str:
        if revision.startswith("-") or not _REVISION.fullmatch(revision) or ".." in revision:
            raise SchemaError(f"invalid revision {revision[:100]!r}")
        return revision

    def commit_sha(self, revision: str) -> str:
        try:
            return self.git("rev-parse", "--verify", "--end-of-options", self._revision(revision) + "^{commit}").strip()
        except SourceError:
            # the git MCP server's wording, which clients (the engine's git adapter) recognise
            raise SchemaError(f"Ref {revision!r} did not resolve to an object") from None

    # -- tools ----------------------------------------------------------------------------------
    def branch(self, branch_type: str = "local") -> str:
        flags = {"local": [], "remote": ["-r"], "all": ["-a"]}.get(branch_type)
        if flags is None:
            raise SchemaError(f"branch_type must be local, remote or all, got {branch_type!r}")
        return self.git("branch", "--no-color", "--no-column", *flags).rstrip("\n")

    def log(self, max_count: int = 10, start: str | None = None, end: str | None = None) -> tuple[str, int]:
        if not 1 <= max_count <= MAX_LOG:
            raise SchemaError(f"max_count must be between 1 and {MAX_LOG}")
        args = ["log", f"--max-count={max_count}", "--format=%H%x00%an%x00%ai%x00%B%x1e"]
        for flag, value in (("--since", start), ("--until", end)):
            if value:
                if not _TIMESTAMP.fullmatch(value) or value.startswith("-"):
                    raise SchemaError(f"invalid timestamp {value[:64]!r}")
                args.append(f"{flag}={value}")
        text = self.git(*args)
        entries = []
        for raw in text.split("\x1e"):
            raw = raw.lstrip("\n")
            if not raw:
                continue
            sha, author, date, message = raw.split("\x00", 3)
            entries.append(f"Commit: {sha}\nAuthor: {author}\nDate: {date}\nMessage: {message.rstrip(chr(10))}\n")
        return "Commit history:\n" + "\n".join(entries), len(entries)

    def show(self, revision: str) -> str:
        """A commit's header and its patch against the first parent."""
        sha = self.commit_sha(revision)
        header = self.git("show", "-s", "--format=%H%x00%an%x00%ae%x00%ai%x00%P%x00%B", sha)
        full, name, email, date, parents, message = header.split("\x00", 5)
        lines = message.rstrip("\n").split("\n")
        out = [f"commit {full}\nAuthor: {name} <{email}>\nDate:   {date}\n\n" + "".join(f"    {ln}\n" for ln in lines)]
        base = parents.split()[0] if parents.split() else None
        diff_args = [base, sha] if base is not None else ["--root", sha]
        names = self.git("diff-tree", "-r", "--no-renames", "--no-commit-id", "-z", "--name-status", *diff_args)
        fields = [f for f in names.split("\x00") if f != ""]
        files = [(fields[i], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]
        for status, path in files:
            patch = self.git(
                "diff-tree",
                "-p",
                "--no-renames",
                "--no-commit-id",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                *diff_args,
                "--",
                path,
            )
            a = "/dev/null" if status == "A" else f"a/{path}"
            b = "/dev/null" if status == "D" else f"b/{path}"
            out.append(f"\n--- {a}\n+++ {b}\n")
            body = _patch_body(patch)
            if body:
                out.append(body if body.endswith("\n") else body + "\n")
        return "".join(out)

    def read_file(self, revision: str, path: str) -> str:
        clean = _repo_path(path)
        sha = self.commit_sha(revision)
        size = self.git("cat-file", "-s", f"{sha}:{clean}").strip()
        if int(size or 0) > MAX_FILE_BYTES:
            raise SchemaError(f"{clean} is {size} bytes at {revision}; the limit is {MAX_FILE_BYTES}")
        return self.git("show", f"{sha}:{clean}")

    def list_files(self, revision: str) -> list[str]:
        sha = self.commit_sha(revision)
        return [p for p in self.git("ls-tree", "-r", "-z", "--name-only", sha).split("\x00") if p]

    def refs_version(self) -> str:
        refs = self.git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads")
        head = self.git("symbolic-ref", "-q", "HEAD").strip() if self._has_symbolic_head() else ""
        return hashlib.sha256(f"{head}\n{refs}".encode()).hexdigest()[:32]

    def _has_symbolic_head(self) -> bool:
        try:
            self.git("symbolic-ref", "-q", "HEAD")
            return True
        except SourceError:
            return False


def _repo_path(path: str) -> str:
    clean = path.replace("\\", "/").strip()
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if not parts or clean.startswith("/") or ".." in parts or clean.startswith("-"):
        raise PermissionDenied(f"path {path[:200]!r} must be relative to the repository, without '..'")
    return "/".join(parts)


def _patch_body(patch: str) -> str:
    """The hunks (or the "Binary files ... differ" line) of a one-file `git diff-tree -p`."""
    lines = patch.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("@@ ") or line.startswith("Binary files "):
            return "\n".join(lines[i:]).rstrip("\n")
    return ""


RepoPath = Annotated[str, Field(max_length=4096, description="The repository's path.")]

INSTRUCTIONS = """\
A git repository, read-only. `git_branch` lists branches, `git_log` the history, `git_show` a commit
with its patch, `git_read_file` a file at a revision, `git_list_files` the files of a revision.
Pass the repository path as repo_path.
"""


def build_server(source: GitSource, policy: ConnectorPolicy) -> ConnectorServer:
    async def versions() -> dict[str, str]:
        return {REFS_URI: await anyio.to_thread.run_sync(source.refs_version)}

    server = ConnectorServer(policy, instructions=INSTRUCTIONS, versions=versions, title="git connector")

    @server.tool(annotations=READ_ONLY)
    async def git_branch(
        repo_path: RepoPath,
        branch_type: Annotated[str, Field(description="local, remote or all")] = "local",
    ) -> str:
        """List branches; the checked-out one is marked with '*'."""
        source.check_repo(repo_path)
        text = await anyio.to_thread.run_sync(source.branch, branch_type)
        report_count(len([ln for ln in text.split("\n") if ln.strip()]))
        return text

    @server.tool(annotations=READ_ONLY)
    async def git_log(
        repo_path: RepoPath,
        max_count: Annotated[int, Field(ge=1, le=MAX_LOG)] = 10,
        start_timestamp: Annotated[str | None, Field(description="Only commits after this date")] = None,
        end_timestamp: Annotated[str | None, Field(description="Only commits before this date")] = None,
    ) -> str:
        """The commit history of the checked-out branch, newest first."""
        source.check_repo(repo_path)
        text, n = await anyio.to_thread.run_sync(source.log, max_count, start_timestamp, end_timestamp)
        report_count(n)
        return text

    @server.tool(annotations=READ_ONLY)
    async def git_show(repo_path: RepoPath, revision: Annotated[str, Field(max_length=256)]) -> str:
        """A commit: author, date, message and its patch against the first parent."""
        source.check_repo(repo_path)
        text = await anyio.to_thread.run_sync(source.show, revision)
        report_count(1)
        return text

    @server.tool(annotations=READ_ONLY)
    async def git_read_file(
        repo_path: RepoPath,
        revision: Annotated[str, Field(max_length=256)],
        path: Annotated[str, Field(max_length=4096, description="Relative to the repository root.")],
    ) -> str:
        """A file's content at a revision."""
        source.check_repo(repo_path)
        text = await anyio.to_thread.run_sync(source.read_file, revision, path)
        report_count(1)
        return text

    @server.tool(annotations=READ_ONLY)
    async def git_list_files(repo_path: RepoPath, revision: Annotated[str, Field(max_length=256)] = "HEAD") -> str:
        """The files of a revision, one per line."""
        source.check_repo(repo_path)
        files = await anyio.to_thread.run_sync(source.list_files, revision)
        report_count(len(files))
        return "\n".join(files)

    @server.resource(
        REFS_URI,
        name="refs",
        title="Branch heads",
        description="Every local branch and the commit it points at.",
        mime_type="text/plain",
    )
    async def read_refs() -> str:
        return await anyio.to_thread.run_sync(
            lambda: source.git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")
        )

    return server
