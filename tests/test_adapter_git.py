"""The git adapter against the real git MCP server (`python -m mcp_server_git`).

A real repository is built in a temporary folder (two authors, two branches, a merge, a rename,
a deletion, a patch whose removed lines start with "--"), ingested through `ingest_source`, and
the graph is checked commit by commit against git itself. Then the repository changes (a new
commit, a moved branch, a deleted branch) and each re-ingest must fetch only what changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aesoperator import ContextEngine
from aesoperator.errors import SourceError
from aesoperator.graph_schema.ids import entity_id
from aesoperator.ingest import mcp_ingest
from aesoperator.ingest.adapters.base import McpConnection, ResourceContent, ResourceInfo, ToolInfo, ToolResult
from aesoperator.ingest.client import ConnectionFailed
from aesoperator.ingest.mappers.git import GitMapper, parse_branches, parse_log, parse_show
from aesoperator.ingest.pipeline import quarantined
from aesoperator.ingest.records import SourceRecord
from aesoperator.ingest.sources import SourceDefinition

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

SOURCE = "harbour-git"
ADA = ("Ada Lovelace", "ada@example.org")
BOB = ("Bob Builder", "bob@example.org")
SHA = "0123456789abcdef0123456789abcdef01234567"


# -- parsers ----------------------------------------------------------------------------------------
def show_text(files: str = "", message: str = "    Subject line\n    \n    Body.\n") -> str:
    return (
        f"commit {SHA}\nAuthor: Ada Lovelace <ada@example.org>\nDate:   2026-01-31 12:00:00 +0100\n\n{message}{files}"
    )


def test_parse_show_counts_patch_lines_against_hunk_headers() -> None:
    files = (
        "\n--- a/db/schema.sql\n+++ b/db/schema.sql\n@@ -1,3 +1,2 @@\n--- a comment\n+++ added twice\n context\n-gone\n"
        "\\ No newline at end of file\n"
        "\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+x\n"
        "\n--- a/old name.md\n+++ b/new name.md\n"
        "\n--- a/logo.png\n+++ /dev/null\nBinary files a/logo.png and /dev/null differ\n"
        "\n--- a/run.sh\n+++ b/run.sh\n"
    )
    info = parse_show(show_text(files))
    assert info["sha"] == SHA and info["author_email"] == "ada@example.org"
    assert info["message"] == "Subject line\n\nBody."
    assert info["authored_at"] == "2026-01-31T12:00:00+01:00"
    assert [(f["path"], f["status"], f["added"], f["removed"], f["binary"]) for f in info["files"]] == [
        ("db/schema.sql", "modified", 1, 2, False),
        ("new.txt", "added", 1, 0, False),
        ("new name.md", "renamed", 0, 0, False),
        ("logo.png", "deleted", 0, 0, True),
        ("run.sh", "modified", 0, 0, False),
    ]
    assert info["files"][2]["old_path"] == "old name.md"
    assert parse_show(show_text())["files"] == []  # an empty commit


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("garbage", "commit <sha>"),
        (show_text().replace("Author: Ada Lovelace <ada@example.org>", "Author: nobody"), "line 2"),
        (show_text().replace("Date:   2026-01-31 12:00:00 +0100", "Date: yesterday"), "line 3"),
        (show_text(message="not indented\n"), "line 5"),
        (show_text("\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n"), "ends early"),
        (show_text("\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+c\n"), "expected a hunk header"),
        (show_text("\n--- x\n+++ b/x\n"), "is not 'a/' and a path"),
        (show_text("\n+++ b/x\n"), "expected '--- <a/path>'"),
        (show_text("\n--- /dev/null\n+++ /dev/null\n"), "both sides"),
    ],
)
def test_parse_show_rejects_malformed_output(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse_show(text)


def test_parse_branches_and_log() -> None:
    assert parse_branches("  feature\n* main\n+ in-worktree\n") == (["feature", "main", "in-worktree"], "main")
    assert parse_branches("* (HEAD detached at 1a2b3c4)\n  main\n") == (["main"], None)
    with pytest.raises(ValueError):
        parse_branches("* two words\n")
    other = "f" * 40
    log = (
        f"Commit history:\nCommit: {SHA}\nAuthor: Ada\nDate: 2026-01-31 12:00:00+01:00\n"
        f"Message: Revert\n\nCommit: {other}\nwas wrong\n\n"
        f"Commit: {other}\nAuthor: Bob\nDate: 2026-01-30 12:00:00+01:00\nMessage: first\n"
    )
    entries = parse_log(log)
    assert [e["sha"] for e in entries] == [SHA, other]
    assert entries[0]["message"] == f"Revert\n\nCommit: {other}\nwas wrong"
    with pytest.raises(ValueError):
        parse_log("History:\n")


def test_mapper_rejects_a_malformed_commit() -> None:
    mapper = GitMapper(SOURCE, "default")
    show = show_text("\n--- /dev/null\n+++ b/a\n")
    good: dict[str, Any] = {"sha": SHA, "repository": "r", "parents": [], "show": show}
    item = mapper.map(SourceRecord(f"commit:{SHA}", "commit", "v", good, "u"))
    assert {e.type for e in item.entities + item.shared_entities} == {"Commit", "Person", "File"}
    bad = {**good, "show": show.replace("+++ b/a", "+++ a")}
    with pytest.raises(ValueError, match="line 10: file header path 'a' is not 'b/'"):
        mapper.map(SourceRecord(f"commit:{SHA}", "commit", "v", bad, "u"))
    with pytest.raises(ValueError, match="not a parent"):
        mapper.map(SourceRecord(f"commit:{SHA}", "commit", "v", {**good, "parent_links": [["a" * 40, 1]]}, "u"))


# -- a real repository ------------------------------------------------------------------------------
class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = 1_800_000_000
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, author: tuple[str, str] = ADA) -> str:
        self.clock += 60
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_COMMITTER_NAME": author[0],
            "GIT_COMMITTER_EMAIL": author[1],
            "GIT_AUTHOR_DATE": f"@{self.clock} +0000",
            "GIT_COMMITTER_DATE": f"@{self.clock} +0000",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.path),
        }
        done = subprocess.run(["git", *args], cwd=self.path, env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def write(self, rel: str, text: str) -> None:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit(self, message: str, files: Mapping[str, str | None], author: tuple[str, str] = ADA) -> str:
        for rel, text in files.items():
            if text is None:
                self.git("rm", "-q", rel)
            else:
                self.write(rel, text)
                self.git("add", rel)
        self.git("commit", "-q", "--allow-empty", "-m", message, author=author)
        return self.git("rev-parse", "HEAD")

    # what git says ---------------------------------------------------------------------------
    def all_commits(self) -> list[str]:
        return self.git("rev-list", "--branches").split()

    def parents(self, sha: str) -> list[str]:
        return self.git("rev-list", "--parents", "-n", "1", sha).split()[1:]

    def author(self, sha: str) -> tuple[str, str]:
        name, email = self.git("show", "-s", "--format=%an%x00%ae", sha).split("\x00")
        return name, email

    def changed_paths(self, sha: str) -> set[str]:
        """Paths changed against the first parent, renames on both sides (as git_show diffs)."""
        parents = self.parents(sha)
        base = [parents[0], sha] if parents else ["--root", sha]
        out = self.git("diff-tree", "-r", "-M", "--no-commit-id", "--name-status", *base)
        paths: set[str] = set()
        for line in out.splitlines():
            paths.update(line.split("\t")[1:])
        return paths

    def head(self, branch: str) -> str:
        return self.git("rev-parse", branch)

    def branches(self) -> list[str]:
        return sorted(self.git("for-each-ref", "--format=%(refname:short)", "refs/heads").split())


def build_repo(path: Path) -> tuple[Repo, dict[str, str]]:
    repo = Repo(path)
    c: dict[str, str] = {}
    c["init"] = repo.commit(
        "Initial import of the harbour scheduler",
        {
            "README.md": "# Harbour scheduler\n",
            "src/app.py": "def main():\n    pass\n",
            "db/schema.sql": "-- berths\n-- tides\nCREATE TABLE berth (id int);\n",
        },
    )
    c["tide"] = repo.commit(
        "Add tide calculation to the scheduler\n\nUses the Lindholm gauge readings.",
        {"src/app.py": "def main():\n    return tide()\n\n\ndef tide():\n    return 4.2\n"},
        author=BOB,
    )
    repo.git("checkout", "-q", "-b", "feature")
    c["ferry"] = repo.commit("Document the night ferry", {"docs/ferry.md": "# Night ferry\n\nLeaves 23:10.\n"}, BOB)
    c["ferry2"] = repo.commit(
        "Ferry: add the Saltholm stop", {"docs/ferry.md": "# Night ferry\n\nLeaves 23:10, Saltholm.\n"}
    )
    repo.git("checkout", "-q", "main")
    c["readme"] = repo.commit("Explain berths in the README", {"README.md": "# Harbour scheduler\n\nBerths 1-9.\n"})
    repo.git("merge", "-q", "--no-ff", "feature", "-m", "Merge branch 'feature'")
    c["merge"] = repo.head("main")
    repo.git("mv", "src/app.py", "src/scheduler.py")
    c["rename"] = repo.commit("Rename app to scheduler", {}, BOB)
    # removes lines starting with "--": the patch shows them as "--- ..."
    c["sql"] = repo.commit("Drop comment lines from the schema", {"db/schema.sql": "CREATE TABLE berth (id int);\n"})
    c["drop"] = repo.commit("Remove the README", {"README.md": None})
    return repo, c


# -- recording (and, for one test, corrupting) the server's answers ----------------------------------
@dataclass
class Recorder:
    sessions: list[list[tuple[str, dict[str, Any]]]] = field(default_factory=list)
    rewrite: Callable[[str, dict[str, Any], str], str] | None = None
    shows_left: int | None = None  # then the server "goes away"

    @property
    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        return self.sessions[-1]

    def shows(self) -> list[str]:
        return [a["revision"] for n, a in self.calls if n == "git_show"]


class RecordingConnection:
    def __init__(self, inner: McpConnection, recorder: Recorder) -> None:
        self.inner = inner
        self.server_name = inner.server_name
        self.recorder = recorder
        self.calls: list[tuple[str, dict[str, Any]]] = []
        recorder.sessions.append(self.calls)

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolResult:
        args = dict(arguments or {})
        self.calls.append((name, args))
        if name == "git_show" and self.recorder.shows_left is not None:
            if self.recorder.shows_left <= 0:
                raise ConnectionFailed(f"source {SOURCE!r}: the server went away")
            self.recorder.shows_left -= 1
        result = await self.inner.call_tool(name, arguments)
        if self.recorder.rewrite is not None:
            text = self.recorder.rewrite(name, args, result.text)
            result = ToolResult(text=text, structured=result.structured, is_error=False, size=len(text))
        return result

    async def list_tools(self) -> list[ToolInfo]:
        return await self.inner.list_tools()

    async def list_resources(self) -> list[ResourceInfo]:
        return await self.inner.list_resources()

    async def read_resource(self, uri: str) -> ResourceContent:
        return await self.inner.read_resource(uri)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    real = mcp_ingest.open_connection

    @asynccontextmanager
    async def recording(definition: SourceDefinition) -> AsyncIterator[McpConnection]:
        async with real(definition) as conn:
            yield RecordingConnection(conn, rec)

    monkeypatch.setattr(mcp_ingest, "open_connection", recording)
    return rec


def definition_for(repo: Repo, **options: Any) -> SourceDefinition:
    return SourceDefinition(
        name=SOURCE,
        kind="git",
        command=sys.executable,
        args=["-m", "mcp_server_git", "--repository", str(repo.path)],
        options=options,
    )


# -- graph checks ---------------------------------------------------------------------------------
def cid(sha: str) -> str:
    return entity_id(SOURCE, "commit", sha)


def bid(name: str) -> str:
    return entity_id(SOURCE, "branch", name)


def entities(engine: ContextEngine, kind: str) -> dict[str, Any]:
    return {e.id: e for batch in engine.store.iter_entities(types=[kind]) for e in batch}


def all_relations(engine: ContextEngine) -> list[Any]:
    return [r for batch in engine.store.iter_relations() for r in batch]


def relations(engine: ContextEngine) -> list[Any]:
    """The live ones."""
    return [r for r in all_relations(engine) if r.expired_at is None]


def check_graph(engine: ContextEngine, repo: Repo, tracked: list[str]) -> None:
    """Every commit with its author, parents and modified files; every branch with its head."""
    shas = repo.all_commits()
    commits = entities(engine, "Commit")
    assert set(commits) == {cid(s) for s in shas}
    live = relations(engine)
    by_type: dict[str, set[tuple[str, str]]] = {}
    for r in live:
        by_type.setdefault(r.type, set()).add((r.src, r.dst))
    people = entities(engine, "Person")
    assert {p.properties["email"] for p in people.values()} == {repo.author(s)[1] for s in shas}
    for sha in shas:
        entity = commits[cid(sha)]
        name, email = repo.author(sha)
        parents = repo.parents(sha)
        assert entity.properties["sha"] == sha
        assert entity.properties["parents"] == parents
        assert (entity.properties["author_name"], entity.properties["author_email"]) == (name, email)
        assert (entity_id(SOURCE, "person", email), entity.id) in by_type["AUTHORED"]
        assert {s for s, d in by_type["PARENT_OF"] if d == entity.id} == {cid(p) for p in parents}
        modified = {d for s, d in by_type.get("MODIFIES", set()) if s == entity.id}
        assert modified == {entity_id(SOURCE, "file", p) for p in repo.changed_paths(sha)}, sha
        subject = repo.git("show", "-s", "--format=%s", sha)
        assert entity.text.startswith(subject)
        for path in repo.changed_paths(sha):
            assert path in entity.text
    branches = entities(engine, "Branch")
    repo_id = entity_id(SOURCE, "repository", repo.path.name)
    for name in tracked:
        head = repo.head(name)
        assert branches[bid(name)].properties["head"] == head
        assert {d for s, d in by_type["HEAD_OF"] if s == bid(name)} == {cid(head)}
        assert (repo_id, bid(name)) in by_type["CONTAINS"]
    assert len(by_type["PARENT_OF"]) == sum(len(repo.parents(s)) for s in shas)


def entity_changes(engine: ContextEngine, since: int) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"upsert": set(), "delete": set()}
    for change in engine.store.changes_since(since):
        if change.kind == "entity":
            out[change.op].add(change.id)
    return out


def relation_changes(engine: ContextEngine, since: int) -> set[str]:
    return {c.id for c in engine.store.changes_since(since) if c.kind == "relation"}


# -- the test ---------------------------------------------------------------------------------------
def test_git_server_ingest_and_incremental_updates(
    make_engine: Callable[..., ContextEngine], tmp_path: Path, recorder: Recorder
) -> None:
    repo, c = build_repo(tmp_path / "harbour")
    definition = definition_for(repo)
    engine = make_engine()

    first = mcp_ingest.ingest_source(engine, definition)
    assert first.skipped == [] and first.quarantined == 0
    check_graph(engine, repo, ["feature", "main"])
    # each commit's git_show is fetched once (as a head or as a child's parent), plus one
    # "no such parent" probe per commit and the root's "no first parent"
    shows = recorder.shows()
    n = len(repo.all_commits())
    assert len(shows) == 2 + n + 1 + sum(len(repo.parents(s)) for s in repo.all_commits())
    assert sorted(n for n, _ in recorder.calls if n != "git_show") == ["git_branch"]

    hits = engine.search("tide calculation Lindholm gauge", k=5).hits
    assert hits[0].id == cid(c["tide"])
    hits = engine.search("who renamed app to scheduler?", k=5).hits
    assert cid(c["rename"]) in [h.id for h in hits[:3]]

    # nothing changed: the checked-out branch is confirmed with git_log, the other with one show
    seq = engine.store.last_seq()
    again = mcp_ingest.ingest_source(engine, definition)
    assert sorted(n for n, _ in recorder.calls) == ["git_branch", "git_log", "git_show"]
    assert recorder.shows() == ["feature"]
    assert again.records_changed == 0 and again.records_removed == 0
    assert entity_changes(engine, seq) == {"upsert": set(), "delete": set()}

    # a new commit on main: only it is fetched (and its parent probed)
    before_update = datetime.now(UTC)
    old_head_of = next(r for r in relations(engine) if r.type == "HEAD_OF" and r.src == bid("main"))
    c["new"] = repo.commit("Add the winter timetable", {"docs/winter.md": "# Winter\n\nNo night ferry.\n"}, BOB)
    seq = engine.store.last_seq()
    update = mcp_ingest.ingest_source(engine, definition)
    assert sorted(recorder.shows()) == sorted(["main", f"{c['new']}^1", f"{c['new']}^2", "feature"])
    assert sorted(n for n, _ in recorder.calls if n != "git_show") == ["git_branch", "git_log"]
    assert update.records_changed == 2  # the commit and the main branch
    assert update.records_removed == 0
    changes = entity_changes(engine, seq)
    assert changes["delete"] == set()
    assert changes["upsert"] <= {
        cid(c["new"]),
        bid("main"),
        entity_id(SOURCE, "file", "docs/winter.md"),
        entity_id(SOURCE, "person", BOB[1]),
        entity_id(SOURCE, "repository", repo.path.name),
    }
    assert {cid(c["new"]), bid("main")} <= changes["upsert"]
    check_graph(engine, repo, ["feature", "main"])
    # the old head is expired, not deleted: "as of" before the update still answers it
    (expired,) = engine.store.get_relations([old_head_of.id])
    assert expired.expired_at is not None and old_head_of.id in relation_changes(engine, seq)
    past = engine.store.neighbors([bid("main")], relation_types=["HEAD_OF"], direction="out", as_of=before_update)
    assert set(past.entities) - {bid("main")} == {cid(c["drop"])}
    assert engine.search("winter timetable", k=3).hits[0].id == cid(c["new"])

    # move a branch: its HEAD_OF moves, no commit is fetched (the new head is known)
    repo.git("branch", "-f", "feature", c["tide"])
    seq = engine.store.last_seq()
    moved = mcp_ingest.ingest_source(engine, definition)
    assert recorder.shows() == ["feature"]
    assert moved.records_changed == 1 and moved.records_removed == 0
    assert entity_changes(engine, seq)["upsert"] == {bid("feature")}
    heads = [r for r in all_relations(engine) if r.type == "HEAD_OF" and r.src == bid("feature")]
    assert {(r.dst, r.expired_at is None) for r in heads} == {(cid(c["ferry2"]), False), (cid(c["tide"]), True)}
    check_graph(engine, repo, ["feature", "main"])

    # a branch with a commit of its own, then deleted: the branch is kept as deleted (its
    # relations expired), its commit, no longer in the repository's history, is removed
    repo.git("checkout", "-q", "-b", "spike")
    c["spike"] = repo.commit("Try a faster tide model", {"tide.py": "FAST = True\n"})
    repo.git("checkout", "-q", "main")
    mcp_ingest.ingest_source(engine, definition)
    check_graph(engine, repo, ["feature", "main", "spike"])
    contains_spike = next(r for r in relations(engine) if r.type == "CONTAINS" and r.dst == bid("spike"))
    repo.git("branch", "-D", "spike")
    seq = engine.store.last_seq()
    gone = mcp_ingest.ingest_source(engine, definition)
    assert recorder.shows() == ["feature"]
    assert gone.records_removed == 1  # the spike commit
    assert not engine.store.get_entities([cid(c["spike"])])
    (spike,) = engine.store.get_entities([bid("spike")])
    assert spike.properties["deleted"] is True and spike.valid_to is not None
    (contains,) = engine.store.get_relations([contains_spike.id])
    assert contains.expired_at is not None
    assert cid(c["spike"]) in entity_changes(engine, seq)["delete"]
    check_graph(engine, repo, ["feature", "main"])
    # and nothing left to do
    assert mcp_ingest.ingest_source(engine, definition).records_changed == 0


def test_malformed_commit_is_quarantined_and_retried(
    make_engine: Callable[..., ContextEngine], tmp_path: Path, recorder: Recorder
) -> None:
    repo, c = build_repo(tmp_path / "harbour")
    definition = definition_for(repo)
    engine = make_engine()
    broken = c["ferry"]

    def garble(name: str, args: dict[str, Any], text: str) -> str:
        if name == "git_show" and text.startswith(f"commit {broken}"):
            return text.replace("Author: ", "Writer: ", 1)
        return text

    recorder.rewrite = garble
    report = mcp_ingest.ingest_source(engine, definition, embed=False)
    assert report.quarantined == 1
    ((key, reason, _),) = quarantined(engine.store.source_items(SOURCE))
    assert key == f"commit:{broken}" and "line 2: expected 'Author:" in reason
    commits = entities(engine, "Commit")
    assert set(commits) == {cid(s) for s in repo.all_commits()} - {cid(broken)}
    parent_of = {(r.src, r.dst) for r in relations(engine) if r.type == "PARENT_OF"}
    assert (cid(c["tide"]), cid(broken)) not in parent_of and (cid(broken), cid(c["ferry2"])) not in parent_of

    # the server answers properly again: only the quarantined commit is fetched, and both of its
    # PARENT_OF edges (to a parent and a child ingested before it) appear
    recorder.rewrite = None
    retry = mcp_ingest.ingest_source(engine, definition, embed=False)
    assert sorted(recorder.shows()) == sorted(["feature", broken])
    assert retry.records_changed == 1 and retry.quarantined == 0
    assert quarantined(engine.store.source_items(SOURCE)) == []
    check_graph(engine, repo, ["feature", "main"])


def test_max_commits_and_branch_filter(
    make_engine: Callable[..., ContextEngine], tmp_path: Path, recorder: Recorder
) -> None:
    repo, c = build_repo(tmp_path / "harbour")
    engine = make_engine()
    definition = definition_for(repo, max_commits=3, branches=["main"])
    mcp_ingest.ingest_source(engine, definition, embed=False)
    assert set(entities(engine, "Commit")) == {cid(c["drop"]), cid(c["sql"]), cid(c["rename"])}
    assert set(entities(engine, "Branch")) == {bid("main")}
    parent_of = {(r.src, r.dst) for r in relations(engine) if r.type == "PARENT_OF"}
    assert parent_of == {(cid(c["sql"]), cid(c["drop"])), (cid(c["rename"]), cid(c["sql"]))}

    # the next run takes the new commit, then goes on down the history, 3 commits in all;
    # nothing is removed while the history is incomplete
    c["new"] = repo.commit("Add the winter timetable", {"docs/winter.md": "# Winter\n"})
    update = mcp_ingest.ingest_source(engine, definition, embed=False)
    assert update.records_removed == 0 and update.records_changed == 4  # 3 commits and the branch
    assert set(entities(engine, "Commit")) == {cid(c[k]) for k in ("new", "drop", "sql", "rename", "merge", "readme")}
    assert "feature" not in recorder.shows()
    parent_of = {(r.src, r.dst) for r in relations(engine) if r.type == "PARENT_OF"}
    assert (cid(c["merge"]), cid(c["rename"])) in parent_of  # owned by the parent, fetched after its child

    # without the limit, and with every branch, the rest of the history comes in: the graph is whole
    mcp_ingest.ingest_source(engine, definition_for(repo), embed=False)
    check_graph(engine, repo, ["feature", "main"])


def test_a_run_that_fails_half_way_is_completed_by_the_next(
    make_engine: Callable[..., ContextEngine], tmp_path: Path, recorder: Recorder
) -> None:
    """The pipeline keeps what was mapped before a failure; the next run walks on from there."""
    repo, _ = build_repo(tmp_path / "harbour")
    engine = make_engine()
    definition = definition_for(repo)
    recorder.shows_left = 9
    with pytest.raises(SourceError, match="went away"):
        mcp_ingest.ingest_source(engine, definition, embed=False)
    kept = set(entities(engine, "Commit"))
    assert 0 < len(kept) < len(repo.all_commits())
    recorder.shows_left = None
    report = mcp_ingest.ingest_source(engine, definition, embed=False)
    assert report.records_changed == len(repo.all_commits()) - len(kept) + 2  # the rest and the 2 branches
    check_graph(engine, repo, ["feature", "main"])
    # the commits kept from the failed run are not asked for again
    kept_shas = {e.removeprefix(f"{SOURCE}:commit:") for e in kept}
    assert not {a["revision"].split("^")[0] for n, a in recorder.calls if n == "git_show"} & kept_shas
