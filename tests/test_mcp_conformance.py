"""The MCP conformance suite (`@modelcontextprotocol/conformance`, from npm) against `aesop serve --http`.

The suite's server scenarios connect to a running server as MCP clients and check its behaviour
against the specification, for the 2025 protocol versions and 2026-07-28. Many scenarios call
fixture tools, resources and prompts that only the suite's reference server has (`test_image_content`,
`test://static-text`, ...); those do not apply to this server and are listed in `NOT_APPLICABLE`
with the reason (README.md, "Serving agents over MCP", carries the same list). Every scenario that
applies must pass every check, except the few checks listed with a reason in `APPLICABLE`.

The suite is installed once into the local npm cache (`tests/mcp_servers.py`). It needs Node 22's
`fs.globSync` at import time (for a command this test does not use); on older Node a loader hook
supplies a stand-in for that one import.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mcp_servers import npm_server_bin
from tests.test_serve_tools import ServerProcess, aesop_command

pytestmark = [pytest.mark.slow]

CONFORMANCE = "@modelcontextprotocol/conformance@0.2.0-alpha.12"
SUITE_TIMEOUT_SECONDS = 600

# scenario -> checks allowed to fail, with why
APPLICABLE: dict[str, dict[str, str]] = {
    "server-initialize": {},
    "server-session-lifecycle": {},
    "server-stateless": {
        "sep-2575-server-rejects-undeclared-capability": "calls the fixture tool test_missing_capability",
        "sep-2575-missing-capability-http-400": "calls the fixture tool test_missing_capability",
    },
    "ping": {},
    "completion-complete": {},
    "tools-list": {},
    "resources-list": {},
    "resources-subscribe": {},
    "resources-unsubscribe": {},
    "sep-2164-resource-not-found": {},
    "prompts-list": {},
    "server-sse-multiple-streams": {},
    "dns-rebinding-protection": {},
    "caching": {},
    "http-header-validation": {},
    "input-required-result-unsupported-methods": {},
}

_FIXTURE_TOOL = "calls a fixture tool of the suite's reference server ({})"
NOT_APPLICABLE: dict[str, str] = {
    "logging-set-level": "the server does not offer the logging capability (deprecated in 2026-07-28)",
    "tools-call-simple-text": _FIXTURE_TOOL.format("test_simple_text"),
    "tools-call-image": _FIXTURE_TOOL.format("test_image_content"),
    "tools-call-audio": _FIXTURE_TOOL.format("test_audio_content"),
    "tools-call-embedded-resource": _FIXTURE_TOOL.format("test_embedded_resource"),
    "tools-call-mixed-content": _FIXTURE_TOOL.format("test_multiple_content_types"),
    "tools-call-with-logging": _FIXTURE_TOOL.format("test_tool_with_logging"),
    "tools-call-error": _FIXTURE_TOOL.format("test_error_handling"),
    "tools-call-with-progress": _FIXTURE_TOOL.format("test_tool_with_progress"),
    "tools-call-sampling": _FIXTURE_TOOL.format("test_sampling"),
    "tools-call-elicitation": _FIXTURE_TOOL.format("test_elicitation"),
    "json-schema-2020-12": _FIXTURE_TOOL.format("json_schema_2020_12_tool"),
    "elicitation-sep1034-defaults": _FIXTURE_TOOL.format("test_elicitation_sep1034_defaults"),
    "elicitation-sep1330-enums": _FIXTURE_TOOL.format("test_elicitation_sep1330_enums"),
    "server-sse-polling": _FIXTURE_TOOL.format("test_reconnection"),
    "resources-read-text": "reads the fixture resource test://static-text",
    "resources-read-binary": "reads the fixture resource test://static-binary",
    "resources-templates-read": "reads the fixture template test://template/{id}/data",
    "prompts-get-simple": "gets a fixture prompt (this server has no prompts)",
    "prompts-get-with-args": "gets a fixture prompt (this server has no prompts)",
    "prompts-get-embedded-resource": "gets a fixture prompt (this server has no prompts)",
    "prompts-get-with-image": "gets a fixture prompt (this server has no prompts)",
    "http-custom-header-server-validation": "needs tools with x-mcp-header parameters; this server has none",
    **{
        f"input-required-result-{name}": _FIXTURE_TOOL.format("test_input_required_result_*")
        for name in (
            "basic-elicitation",
            "basic-sampling",
            "basic-list-roots",
            "request-state",
            "multiple-input-requests",
            "multi-round",
            "missing-input-response",
            "non-tool-request",
            "result-type",
            "tampered-state",
            "capability-check",
            "ignore-extra-params",
            "validate-input",
        )
    },
    **{
        f"sep-2640-skills-{name}": "the skills extension is not offered"
        for name in ("directory", "enumeration", "manifest")
    },
    **{
        f"tasks-{name}": "the tasks extension is not offered"
        for name in (
            "lifecycle",
            "capability-negotiation",
            "wire-fields",
            "request-state-removal",
            "mrtr-input",
            "request-headers",
            "dispatch-and-envelope",
            "status-notifications",
            "required-task-error",
            "mrtr-composition",
        )
    },
}

_SHIM_HOOKS = """
const shim = new URL("./fs-shim.mjs", import.meta.url).href;
export async function resolve(specifier, context, next) {
  if ((specifier === "fs" || specifier === "node:fs") && context.parentURL?.includes("/conformance/dist/")) {
    return { url: shim, shortCircuit: true };
  }
  return next(specifier, context);
}
"""
_SHIM_FS = """
export * from "node:fs";
export function globSync() { throw new Error("fs.globSync needs Node 22 or later"); }
"""
_SHIM_REGISTER = 'import { register } from "node:module";\nregister("./hooks.mjs", import.meta.url);\n'


def _node_command(tmp: Path) -> list[str]:
    command = npm_server_bin(CONFORMANCE)
    version = subprocess.run([command[0], "--version"], capture_output=True, text=True, check=True).stdout
    major = int(re.match(r"v(\d+)", version.strip()).group(1))  # type: ignore[union-attr]
    if major >= 22:
        return command
    shim = tmp / "node-shim"
    shim.mkdir(exist_ok=True)
    (shim / "hooks.mjs").write_text(_SHIM_HOOKS)
    (shim / "fs-shim.mjs").write_text(_SHIM_FS)
    (shim / "register.mjs").write_text(_SHIM_REGISTER)
    return [command[0], "--import", (shim / "register.mjs").as_uri(), *command[1:]]


@pytest.fixture(scope="module")
def conformance(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed; the conformance suite runs on Node")
    return _node_command(tmp_path_factory.mktemp("conformance"))


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("conformance-data")
    server = ServerProcess(aesop_command(data, "serve", "--http", "--no-auth", "--no-warm", "--port", "0"), cwd=data)
    try:
        yield server.url
    finally:
        server.stop()


def test_every_server_scenario_is_accounted_for(conformance: list[str]) -> None:
    listed = subprocess.run([*conformance, "list", "--server"], capture_output=True, text=True, timeout=60, check=True)
    names = set(re.findall(r"^\s+- (\S+)", listed.stdout, flags=re.MULTILINE))
    assert names, listed.stdout + listed.stderr
    assert names == set(APPLICABLE) | set(NOT_APPLICABLE), "a scenario was added or removed; sort it into a list"
    assert not set(APPLICABLE) & set(NOT_APPLICABLE)


_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def test_applicable_server_scenarios_pass(conformance: list[str], server_url: str, tmp_path: Path) -> None:
    # One run of the whole suite (one Node process) is much faster than one run per scenario;
    # its exit status reflects the scenarios that do not apply, so the checks are read instead.
    out = tmp_path / "results"
    proc = subprocess.run(
        [*conformance, "server", "--url", server_url, "--suite", "all", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_SECONDS,
    )
    results: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out.glob("*/checks.json")):
        match = _RESULT_DIR.match(path.parent.name)
        if match:
            results.setdefault(match.group("scenario"), []).extend(json.loads(path.read_text()))
    problems: list[str] = []
    for name, allowed in sorted(APPLICABLE.items()):
        checks = results.get(name)
        if not checks:
            problems.append(f"{name}: no results (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            continue
        failed = {str(c.get("id")) for c in checks if c.get("status") == "FAILURE"}
        for check in checks:
            if check.get("status") == "FAILURE" and check.get("id") not in allowed:
                problems.append(f"{name}: {check.get('id')}: {check.get('errorMessage') or check.get('description')}")
        if not any(c.get("status") == "SUCCESS" for c in checks):
            problems.append(f"{name}: no check passed")
        stale = set(allowed) - failed
        if stale:
            problems.append(f"{name}: checks now pass, drop them from the allowed failures: {sorted(stale)}")
    assert not problems, "\n".join(problems)
