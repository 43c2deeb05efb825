"""A local git repository of realistic shape for the git ingest benchmark.

There is no network here to clone a large public repository, so one is made: the history of a
tree of real source files (by default the Python standard library) growing commit by commit, with
`git fast-import`. Commits add files, edit them (a line appended), delete and rename some; eight
authors take turns; every few dozen commits a topic branch of a few commits is merged back with a
merge commit. At the end there are three branches: `main`, `release` (a little behind main) and
`dev` (unmerged work). The same files, count and seed always give the same history.

A repository given on the command line is never changed: it is cloned (all its branches made
local) and the clone is used.
"""

from __future__ import annotations

import os
import posixpath
import random
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

AUTHORS = [
    ("Ada Lovelace", "ada@example.org"),
    ("Grace Hopper", "grace@example.org"),
    ("Alan Turing", "alan@example.org"),
    ("Edsger Dijkstra", "edsger@example.org"),
    ("Barbara Liskov", "barbara@example.org"),
    ("Donald Knuth", "don@example.org"),
    ("Frances Allen", "fran@example.org"),
    ("Ken Thompson", "ken@example.org"),
]
START = 1_600_000_000


def git(repo: Path, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        input=stdin,
        capture_output=True,
        check=False,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", **(env or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:3])} failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout.decode("utf-8", "replace").strip()


@dataclass
class _Writer:
    out: bytearray = field(default_factory=bytearray)
    mark: int = 0
    clock: int = START

    def data(self, payload: bytes) -> None:
        self.out += b"data %d\n" % len(payload) + payload + b"\n"

    def commit(
        self,
        ref: str,
        author: tuple[str, str],
        message: str,
        parent: int | None,
        merge: int | None,
        ops: list[tuple[str, str, bytes | str | None]],
        rng: random.Random,
    ) -> int:
        self.mark += 1
        self.clock += rng.randint(60, 6 * 3600)
        who = f"{author[0]} <{author[1]}> {self.clock} +0000".encode()
        self.out += b"commit %s\nmark :%d\nauthor %s\ncommitter %s\n" % (ref.encode(), self.mark, who, who)
        self.data(message.encode())
        if parent is not None:
            self.out += b"from :%d\n" % parent
        if merge is not None:
            self.out += b"merge :%d\n" % merge
        for op, path, arg in ops:
            if op == "M":
                assert isinstance(arg, bytes)
                self.out += b"M 100644 inline %s\n" % path.encode()
                self.data(arg)
            elif op == "D":
                self.out += b"D %s\n" % path.encode()
            elif op == "R":
                assert isinstance(arg, str)
                self.out += b'R "%s" "%s"\n' % (path.encode(), arg.encode())
        return self.mark


def _describe(ops: list[tuple[str, str, bytes | str | None]], revision: int) -> str:
    names = [posixpath.basename(p) for _, p, _ in ops]
    kind = ops[0][0]
    if kind == "R":
        target = ops[0][2]
        assert isinstance(target, str)
        return f"Move {ops[0][1]} to {target}\n\nKeeps the module's history under its new name."
    if kind == "D":
        return f"Remove {', '.join(names)}\n\nNo longer used."
    verb = "Add" if revision == 0 else "Update"
    listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    body = f"Revision {revision} of the touched modules." if revision else "Imported from the source tree."
    return f"{verb} {listed}\n\n{body}"


def generate(
    dest: Path,
    files: list[tuple[str, bytes]],
    commits: int,
    seed: int = 7,
    advance: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write a repository of about `commits` commits into `dest` (created) from `files`
    (relative path, content). Returns counts of what was made."""
    rng = random.Random(seed)
    dest.mkdir(parents=True)
    git(dest, "init", "-q", "-b", "main")
    writer = _Writer()
    pool = list(files)
    pool.reverse()  # pop() takes them in order
    tree: dict[str, bytes] = {}
    revisions: dict[str, int] = {}
    made = {"commits": 0, "merges": 0, "adds": 0, "edits": 0, "deletes": 0, "renames": 0}
    head: int | None = None
    release: int | None = None
    on_topic: set[str] = set()  # files only the open topic branch has

    def step(owned: set[str] | None = None) -> list[tuple[str, str, bytes | str | None]]:
        """One commit's changes; on a topic branch (`owned`), only files the branch added."""
        roll = rng.random()
        existing = sorted(owned) if owned is not None else sorted(p for p in tree if p not in on_topic)
        if not pool and not existing:  # nothing left to add or edit: a note of its own
            path = f"notes/note-{writer.mark + 1}.md"
            tree[path] = f"# Note {writer.mark + 1}\n\nWritten on a topic branch.\n".encode()
            revisions[path] = 0
            if owned is not None:
                owned.add(path)
            made["adds"] += 1
            return [("M", path, tree[path])]
        if pool and (roll < 0.55 or len(existing) < 5):
            ops: list[tuple[str, str, bytes | str | None]] = []
            for _ in range(rng.randint(1, 4)):
                if not pool:
                    break
                path, content = pool.pop()
                tree[path] = content
                revisions[path] = 0
                if owned is not None:
                    owned.add(path)
                ops.append(("M", path, content))
                made["adds"] += 1
            return ops
        if owned is None and roll > 0.96 and len(existing) > 20:
            old = rng.choice(existing)
            new = posixpath.join(posixpath.dirname(old), "moved_" + posixpath.basename(old))
            if new not in tree:
                tree[new] = tree.pop(old)
                revisions[new] = revisions.pop(old)
                made["renames"] += 1
                return [("R", old, new)]
        if owned is None and roll > 0.90 and len(existing) > 20:
            gone = rng.choice(existing)
            del tree[gone]
            made["deletes"] += 1
            return [("D", gone, None)]
        ops = []
        for path in rng.sample(existing, min(len(existing), rng.randint(1, 3))):
            revisions[path] += 1
            tree[path] = tree[path] + f"\n# revision {revisions[path]}: reviewed\n".encode()
            ops.append(("M", path, tree[path]))
            made["edits"] += 1
        return ops

    def commit_on(ref: str, parent: int | None, ops: list[tuple[str, str, bytes | str | None]]) -> int:
        revision = max((revisions.get(p, 0) for _, p, _ in ops), default=0) if ops[0][0] == "M" else 0
        mark = writer.commit(ref, rng.choice(AUTHORS), _describe(ops, revision), parent, None, ops, rng)
        made["commits"] += 1
        if advance is not None:
            advance(1)
        return mark

    while made["commits"] < commits:
        if head is not None and rng.random() < 0.04 and commits - made["commits"] > 8:
            # a topic branch of a few commits, merged back after main moved on
            owned = on_topic
            owned.clear()
            topic = head
            for _ in range(rng.randint(2, 5)):
                topic = commit_on("refs/heads/topic", topic, step(owned))
            for _ in range(rng.randint(1, 2)):
                head = commit_on("refs/heads/main", head, step())
            merged: list[tuple[str, str, bytes | str | None]] = [("M", p, tree[p]) for p in sorted(owned)]
            owned.clear()
            who = rng.choice(AUTHORS)
            head = writer.commit("refs/heads/main", who, "Merge branch 'topic'", head, topic, merged, rng)
            made["commits"] += 1
            made["merges"] += 1
            if advance is not None:
                advance(1)
            continue
        head = commit_on("refs/heads/main", head, step())
        if release is None and made["commits"] >= commits - 12:
            release = head
    if release is not None:
        writer.out += b"reset refs/heads/release\nfrom :%d\n" % release
    git(dest, "fast-import", "--quiet", stdin=bytes(writer.out))
    git(dest, "update-ref", "-d", "refs/heads/topic")
    # unmerged work on `dev`, committed the ordinary way
    git(dest, "checkout", "-q", "-f", "main")
    git(dest, "checkout", "-q", "-b", "dev")
    for i in range(3):
        (dest / f"DEV_NOTES_{i}.md").write_text(f"# Work in progress {i}\n\nNot merged yet.\n")
        git(dest, "add", f"DEV_NOTES_{i}.md")
        author = AUTHORS[i]
        env = {
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_COMMITTER_NAME": author[0],
            "GIT_COMMITTER_EMAIL": author[1],
        }
        git(dest, "commit", "-q", "-m", f"Draft notes {i}", env=env)
        made["commits"] += 1
    git(dest, "checkout", "-q", "main")
    return made


def clone(source: Path, dest: Path) -> None:
    """A clone of `source` whose branches are all local (the original is never touched)."""
    git(source.parent, "clone", "-q", "--no-hardlinks", str(source), str(dest))
    current = git(dest, "rev-parse", "--abbrev-ref", "HEAD")
    for ref in git(dest, "for-each-ref", "--format=%(refname:short)", "refs/remotes/origin").split():
        name = ref.split("/", 1)[1] if "/" in ref else ref
        if name in ("HEAD", current) or not name:
            continue
        git(dest, "branch", "-q", name, ref)


def commit_files(repo: Path, changes: dict[str, str], message: str, author: tuple[str, str]) -> None:
    for rel, text in changes.items():
        target = repo / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        git(repo, "add", rel)
    env = {
        "GIT_AUTHOR_NAME": author[0],
        "GIT_AUTHOR_EMAIL": author[1],
        "GIT_COMMITTER_NAME": author[0],
        "GIT_COMMITTER_EMAIL": author[1],
    }
    git(repo, "commit", "-q", "-m", message, env=env)
