"""The MCP host configurations README.md gives (Install → Connect an MCP host), read from the README
itself so that the tests start the server exactly as a user pastes it."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "### Connect an MCP host"
SERVER_NAME = "aesop"


@dataclass(frozen=True)
class HostServer:
    """One host's entry for the aesop server: what it starts and with which environment."""

    host: str
    command: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


def host_section(readme: str | None = None) -> str:
    text = README.read_text(encoding="utf-8") if readme is None else readme
    if SECTION not in text:
        raise AssertionError(f"README.md has no {SECTION!r} section")
    body = text.split(SECTION, 1)[1]
    return re.split(r"\n#{2,3} ", body, maxsplit=1)[0]


def _from_json(block: str) -> HostServer:
    config: dict[str, Any] = json.loads(block)
    if "mcpServers" in config:  # Claude Desktop, Cursor
        entry, host = config["mcpServers"][SERVER_NAME], "mcpServers"
    else:  # VS Code
        entry, host = config["servers"][SERVER_NAME], "servers"
        if entry.get("type") != "stdio":
            raise AssertionError(f"VS Code's entry must say type stdio, got {entry.get('type')!r}")
    return HostServer(host, entry["command"], list(entry.get("args", [])), dict(entry.get("env", {})))


def _from_claude_mcp_add(line: str) -> HostServer:
    """`claude mcp add NAME [--env K=V]... -- COMMAND ARGS...`"""
    words = shlex.split(line)
    if words[:3] != ["claude", "mcp", "add"] or "--" not in words:
        raise AssertionError(f"not a `claude mcp add NAME ... -- COMMAND` line: {line!r}")
    split = words.index("--")
    options, command = words[3:split], words[split + 1 :]
    if options[0] != SERVER_NAME:
        raise AssertionError(f"the server is added as {options[0]!r}, not {SERVER_NAME!r}")
    env = {}
    for flag, value in zip(options[1::2], options[2::2], strict=True):
        if flag not in {"--env", "-e"}:
            raise AssertionError(f"unexpected option {flag} in {line!r}")
        key, _, setting = value.partition("=")
        env[key] = setting
    return HostServer("claude mcp add", command[0], command[1:], env)


def host_servers(readme: str | None = None) -> list[HostServer]:
    """Every host configuration in the README's section, in order."""
    section = host_section(readme)
    servers = [_from_json(block) for block in re.findall(r"```json\n(.*?)```", section, re.DOTALL)]
    servers += [
        _from_claude_mcp_add(line.strip())
        for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
        for line in block.splitlines()
        if line.strip().startswith("claude mcp add")
    ]
    return servers
