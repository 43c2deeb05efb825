"""Test support: run MCP servers published on npm from a local, cached install.

`npm_server_bin("@modelcontextprotocol/server-everything")` installs the package once into
`<repo>/.cache/npm-mcp` (or `$AESOP_NPM_MCP_PREFIX`) and returns the command that starts it,
e.g. `["/usr/bin/node", "<prefix>/node_modules/@modelcontextprotocol/server-everything/dist/index.js"]`.
Later calls, in this process or any other, reuse the install. Installs hold an exclusive file lock
on the prefix, so parallel test workers (pytest-xdist) and parallel test runs never race npm.

When node or npm is missing the calling test is skipped; when npm is present but the install
fails, the test fails with npm's own message.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT_SECONDS = 600

_local_lock = threading.Lock()
_resolved: dict[tuple[str, str | None, str | None], list[str]] = {}


def npm_prefix() -> Path:
    """Where npm MCP servers are installed for tests."""
    override = os.environ.get("AESOP_NPM_MCP_PREFIX")
    return Path(override).resolve() if override else REPO_ROOT / ".cache" / "npm-mcp"


def _split_spec(package: str) -> tuple[str, str | None]:
    """'@scope/name@1.2.3' -> ('@scope/name', '1.2.3'); 'name' -> ('name', None)."""
    at = package.rfind("@")
    if at > 0:
        return package[:at], package[at + 1 :] or None
    return package, None


@contextmanager
def _prefix_lock(prefix: Path) -> Iterator[None]:
    prefix.mkdir(parents=True, exist_ok=True)
    ignore = prefix.parent / ".gitignore"
    if prefix.parent.name == ".cache" and not ignore.exists():
        ignore.write_text("# downloaded test support (npm MCP servers)\n*\n")
    with _local_lock, open(prefix / ".install.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _package_dir(prefix: Path, name: str) -> Path:
    return prefix / "node_modules" / name


def _installed_version(prefix: Path, name: str) -> str | None:
    manifest = _package_dir(prefix, name) / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _install(prefix: Path, spec: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed; it is needed to run npm MCP servers")
    proc = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error", spec],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
        env={**os.environ, "npm_config_update_notifier": "false"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"npm install {spec} failed ({proc.returncode}):\n{proc.stderr.strip()[-4000:]}")


def _bin_script(prefix: Path, name: str, bin_name: str | None) -> Path:
    package_dir = _package_dir(prefix, name)
    manifest = json.loads((package_dir / "package.json").read_text())
    bins = manifest.get("bin")
    if isinstance(bins, str):
        bins = {name.rsplit("/", 1)[-1]: bins}
    if not isinstance(bins, dict) or not bins:
        raise RuntimeError(f"npm package {name} declares no executable (no 'bin' in its package.json)")
    if bin_name is None:
        short = name.rsplit("/", 1)[-1]
        bin_name = short if short in bins else next(iter(bins)) if len(bins) == 1 else None
    if bin_name is None or bin_name not in bins:
        raise RuntimeError(f"npm package {name} has executables {sorted(bins)}; pass bin_name= to choose one")
    return (package_dir / str(bins[bin_name])).resolve()


def npm_server_bin(package: str, bin_name: str | None = None) -> list[str]:
    """The command that runs the npm MCP server `package` (optionally `name@version`), installing
    it into the shared test prefix first if needed. `bin_name` picks one of several executables."""
    name, version = _split_spec(package)
    key = (name, version, bin_name)
    if key in _resolved:
        return list(_resolved[key])
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; it is needed to run npm MCP servers")
    prefix = npm_prefix()
    with _prefix_lock(prefix):
        installed = _installed_version(prefix, name)
        if installed is None or (version is not None and installed != version):
            _install(prefix, package)
            if _installed_version(prefix, name) is None:
                raise RuntimeError(f"npm install {package} finished but {name} is not in {prefix}/node_modules")
        script = _bin_script(prefix, name, bin_name)
    command = [str(Path(node).resolve()), str(script)]
    _resolved[key] = command
    return list(command)
