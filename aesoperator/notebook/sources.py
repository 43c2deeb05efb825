"""The MCP sources the example notebooks ingest: this repository through the git server
(`mcp-server-git`, a Python package) and the filesystem server
(`@modelcontextprotocol/server-filesystem`, an npm package run with node).

The filesystem server is looked for where the test suite installs npm servers
(`<repo>/.cache/npm-mcp`, or `$AESOP_NPM_MCP_PREFIX`); `filesystem_server_command(install=True)`
installs it there with npm when it is missing. Each helper answers None with a reason instead of
failing, so a notebook can say what is missing and fall back.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aesoperator.ingest.sources import SourceDefinition

FILESYSTEM_PACKAGE = "@modelcontextprotocol/server-filesystem"
NPM_INSTALL_TIMEOUT_SECONDS = 600


@dataclass(frozen=True, slots=True)
class ServerCommand:
    """How to start a server (`command`), or why it cannot be (`command` None, `reason` set)."""

    command: list[str] | None
    reason: str = ""


def repository_root(start: str | Path | None = None) -> Path:
    """The aesoperator checkout: the nearest folder at or above `start` (default: the working
    directory) whose pyproject.toml names the project `aesoperator`, else the folder above the
    installed package."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        project = folder / "pyproject.toml"
        if project.is_file():
            try:
                name = tomllib.loads(project.read_text(encoding="utf-8")).get("project", {}).get("name")
            except (OSError, tomllib.TOMLDecodeError):
                name = None
            if name == "aesoperator":
                return folder
    return Path(__file__).resolve().parents[2]


def npm_prefix(repo: Path | None = None) -> Path:
    """Where npm MCP servers are installed (shared with the test suite)."""
    override = os.environ.get("AESOP_NPM_MCP_PREFIX")
    return Path(override).resolve() if override else (repo or repository_root()) / ".cache" / "npm-mcp"


def _installed_script(prefix: Path, package: str) -> Path | None:
    manifest = prefix / "node_modules" / package / "package.json"
    try:
        bins = json.loads(manifest.read_text(encoding="utf-8")).get("bin")
    except (OSError, ValueError):
        return None
    if isinstance(bins, str):
        script = bins
    elif isinstance(bins, dict) and bins:
        script = str(bins.get(package.rsplit("/", 1)[-1]) or next(iter(bins.values())))
    else:
        return None
    path = (manifest.parent / script).resolve()
    return path if path.is_file() else None


def filesystem_server_command(repo: Path | None = None, install: bool = True) -> ServerCommand:
    """The command that starts the filesystem MCP server (add the allowed folders as arguments)."""
    node = shutil.which("node")
    if node is None:
        return ServerCommand(None, "node is not installed (the filesystem MCP server is a Node.js program)")
    prefix = npm_prefix(repo)
    script = _installed_script(prefix, FILESYSTEM_PACKAGE)
    if script is None and install:
        npm = shutil.which("npm")
        if npm is None:
            return ServerCommand(None, f"npm is not installed, so {FILESYSTEM_PACKAGE} cannot be installed")
        prefix.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(prefix),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    FILESYSTEM_PACKAGE,
                ],
                capture_output=True,
                text=True,
                timeout=NPM_INSTALL_TIMEOUT_SECONDS,
                env={**os.environ, "npm_config_update_notifier": "false"},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return ServerCommand(None, f"npm install {FILESYSTEM_PACKAGE} failed: {exc}")
        if proc.returncode != 0:
            return ServerCommand(None, f"npm install {FILESYSTEM_PACKAGE} failed: {proc.stderr.strip()[-500:]}")
        script = _installed_script(prefix, FILESYSTEM_PACKAGE)
    if script is None:
        return ServerCommand(None, f"{FILESYSTEM_PACKAGE} is not installed in {prefix}")
    return ServerCommand([str(Path(node).resolve()), str(script)])


def git_server_command() -> ServerCommand:
    """The command that starts the git MCP server (add `--repository <path>`)."""
    if shutil.which("git") is None:
        return ServerCommand(None, "git is not installed")
    if importlib.util.find_spec("mcp_server_git") is None:
        return ServerCommand(None, "the Python package mcp-server-git is not installed (pip install mcp-server-git)")
    return ServerCommand([sys.executable, "-m", "mcp_server_git"])


def git_source(
    repo: Path,
    command: Sequence[str],
    name: str = "repo-git",
    namespace: str = "default",
    max_commits: int | None = None,
) -> SourceDefinition:
    """A source for the history of the git repository `repo` (every local branch). With
    `max_commits`, one run fetches at most that many commits, newest first; each later run goes on
    down the history from where the last one stopped."""
    return SourceDefinition(
        name=name,
        kind="git",
        command=command[0],
        args=[*command[1:], "--repository", str(repo)],
        namespace=namespace,
        options={} if max_commits is None else {"max_commits": max_commits},
    )


def filesystem_source(
    root: Path,
    command: Sequence[str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    name: str = "repo-files",
    namespace: str = "default",
) -> SourceDefinition:
    """A source for the files below `root` that match `include` (all text files when empty)."""
    return SourceDefinition(
        name=name,
        kind="filesystem",
        command=command[0],
        args=[*command[1:], str(root)],
        include=list(include),
        exclude=list(exclude),
        namespace=namespace,
    )
