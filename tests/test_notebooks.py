"""The notebooks in notebooks/ and the engine API they are built on.

- The stored notebooks carry no outputs and are exactly what notebooks/build.py writes.
- Each notebook runs top to bottom on a fresh kernel (nbclient) without an error; its HTML
  rendering (nbconvert) holds the figures (PNG images) and the interactive graph view, and the
  graph view loads nothing from the network.
- `ContextEngine.to_networkx` and `stats_frame`, `SearchResult.to_dataframe` and `_repr_html_`,
  `GraphView` (escaping, cutting, Subgraph input) and the JavaScript layout (run under node).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import networkx as nx
import pytest

from aesoperator import ContextEngine
from aesoperator.config import Settings
from aesoperator.engine.results import SearchHit, SearchResult, Triple
from aesoperator.engine.stores.base import Subgraph
from aesoperator.graph_schema.models import Entity, Provenance, Relation
from aesoperator.notebook import GraphView, NotebookProgress, progress_bar
from aesoperator.notebook.graph_view import MARKER_CLASS, renderer_script

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
FILESYSTEM_SERVER = "@modelcontextprotocol/server-filesystem"
# What each executed notebook must show at least: (figures, graph views).
EXPECTED = {
    "01_tour.ipynb": (1, 1),
    "02_agent_memory.ipynb": (3, 1),
    "03_graph_analytics.ipynb": (3, 2),
}
RUN_LIMIT_SECONDS = 600  # a generous ceiling; each notebook takes about 1-2 minutes on 2 cores


def nbformat_module() -> Any:
    return pytest.importorskip("nbformat")


def load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- stored notebooks -------------------------------------------------------------------------
def test_the_three_notebooks_are_there() -> None:
    assert sorted(EXPECTED) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_stored_notebooks_have_no_outputs(name: str) -> None:
    nbformat = nbformat_module()
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a code cell has outputs: {cell.source[:60]!r}"
            assert cell.execution_count is None, f"{name}: a code cell has an execution count"
    assert "widgets" not in notebook.metadata
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and "**Time:**" in first.source, "the first cell says what and how long"


def test_stored_notebooks_are_what_the_build_script_writes() -> None:
    nbformat_module()
    build = load_build_script()
    assert sorted(build.NOTEBOOKS) == NAMES
    for name in NAMES:
        assert (NOTEBOOKS / name).read_text(encoding="utf-8") == build.render(name), (
            f"{name} differs from notebooks/build.py: run `python notebooks/build.py`"
        )


# -- running them -----------------------------------------------------------------------------
@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec for this interpreter, so the notebooks run in the environment under test."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "aesop-test"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "aesoperator tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "aesop-test"


def install_filesystem_server() -> None:
    """Install the filesystem MCP server where the notebooks look for it (when node is here;
    without node the tour reads the files from disk, which is what it shows a user too)."""
    if shutil.which("node") and shutil.which("npm"):
        from tests.mcp_servers import npm_server_bin

        npm_server_bin(FILESYSTEM_SERVER)


class _Tags(HTMLParser):
    """Script sources and graph-view containers (nbconvert re-serialises outputs, so attribute
    order and quoting are not what the view wrote)."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.views: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "script" and "src" in values:
            self.sources.append(values["src"])
        if (
            tag == "div"
            and MARKER_CLASS in values.get("class", "").split()
            and values.get("data-aesop-graph-view") == "1"
            and values.get("id", "").startswith(f"{MARKER_CLASS}-")
        ):
            self.views.append(values["id"])


def parse_tags(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def script_sources(html: str) -> list[str]:
    return parse_tags(html).sources


def graph_view_outputs(notebook: Any) -> Iterator[str]:
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html", "")
            if MARKER_CLASS in html:
                yield html


def execute(name: str, kernel: str) -> tuple[Any, float]:
    from nbclient import NotebookClient

    nbformat = nbformat_module()
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=RUN_LIMIT_SECONDS,
        kernel_name=kernel,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        coalesce_streams=True,
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    return notebook, time.perf_counter() - started


def check_rendering(name: str, notebook: Any, tmp_path: Path) -> None:
    from nbconvert import HTMLExporter

    nbformat = nbformat_module()
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{name}: {output.get('ename')}: {output.get('evalue')}"

    exporter = HTMLExporter()
    html, _ = exporter.from_notebook_node(notebook)
    (tmp_path / name.replace(".ipynb", ".html")).write_text(html, encoding="utf-8")
    figures, views = EXPECTED[name]

    pngs = re.findall(r"<img[^>]*\bsrc=\"data:image/png;base64,", html)
    assert len(pngs) >= figures, f"{name}: {len(pngs)} PNG figures in the HTML, expected at least {figures}"

    markers = parse_tags(html).views
    assert len(markers) >= views, f"{name}: {len(markers)} graph views in the HTML, expected at least {views}"
    assert len(set(markers)) == len(markers), "every view has its own id"

    # The template's own scripts (require.js, MathJax) are the exporter's business; the notebook's
    # outputs must add no script from anywhere.
    empty, _ = exporter.from_notebook_node(nbformat.v4.new_notebook())
    added = set(script_sources(html)) - set(script_sources(empty))
    assert not added, f"{name}: outputs load scripts {sorted(added)}"
    rendered = list(graph_view_outputs(notebook))
    assert len(rendered) >= views
    for view in rendered:
        assert script_sources(view) == []
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", view, re.IGNORECASE)
        assert "aesopGraphView" in view and '<script type="application/json" class="aesop-gv-data">' in view


RUNS = [
    pytest.param("01_tour.ipynb", {}, id="01_tour"),
    pytest.param("02_agent_memory.ipynb", {}, id="02_agent_memory"),
    pytest.param("02_agent_memory.ipynb", {"AESOP_EVALDATA": "{tmp}/no-evaldata"}, id="02_agent_memory-built-in"),
    pytest.param("03_graph_analytics.ipynb", {}, id="03_graph_analytics"),
]


@pytest.mark.slow
@pytest.mark.timeout(RUN_LIMIT_SECONDS + 300)
@pytest.mark.parametrize(("name", "env"), RUNS)
def test_notebook_runs_on_a_fresh_kernel_and_renders(
    name: str, env: dict[str, str], kernel_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("nbclient")
    pytest.importorskip("nbconvert")
    pytest.importorskip("ipykernel")
    install_filesystem_server()
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    notebook, seconds = execute(name, kernel_name)
    print(f"{name} ran in {seconds:.1f} s")
    check_rendering(name, notebook, tmp_path)
    if "AESOP_EVALDATA" in env:
        texts = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
        assert "using a built-in conversation" in texts


# -- the engine API the notebooks use ---------------------------------------------------------
@pytest.fixture
def small_engine(tmp_path: Path) -> Iterator[ContextEngine]:
    """An engine holding a small graph, written without embeddings (no model is loaded)."""
    engine = ContextEngine.open(settings=Settings(data_dir=tmp_path / "data"))
    entities = [
        Entity(id="p:ada", type="Person", name="Ada", text="Ada Lovelace"),
        Entity(id="f:ferry", type="File", name="ferry.py", text="def timetable(): ..."),
        Entity(id="f:notes", type="File", name="notes.md", text="Ferry notes", namespace="other"),
        Entity(id="c:old", type="Concept", name="old idea", text="An idea that was dropped"),
    ]
    relations = [
        Relation(type="AUTHORED", src="p:ada", dst="f:ferry"),
        Relation(type="REFERENCES", src="f:ferry", dst="f:notes"),
        Relation(type="MENTIONS", src="p:ada", dst="f:notes"),
        Relation(type="RELATED_TO", src="p:ada", dst="c:old"),
    ]
    engine.upsert(entities, relations, embed=False)
    engine.store.expire_relations([relations[3].id])
    yield engine
    engine.close()


def test_to_networkx_copies_entities_and_live_relations(small_engine: ContextEngine) -> None:
    graph = small_engine.to_networkx()
    assert isinstance(graph, nx.MultiDiGraph)
    assert set(graph.nodes) == {"p:ada", "f:ferry", "f:notes", "c:old"}
    assert graph.nodes["f:notes"] == {
        "type": "File",
        "name": "notes.md",
        "namespace": "other",
        "source": "manual",
        "valid_from": None,
        "valid_to": None,
    }
    assert {(u, v, d["type"]) for u, v, d in graph.edges(data=True)} == {
        ("p:ada", "f:ferry", "AUTHORED"),
        ("f:ferry", "f:notes", "REFERENCES"),
        ("p:ada", "f:notes", "MENTIONS"),
    }
    authored = Relation(type="AUTHORED", src="p:ada", dst="f:ferry").id
    edge = graph.edges["p:ada", "f:ferry", authored]
    assert edge["live"] is True and edge["expired_at"] is None and edge["recorded_at"] is not None
    assert graph.graph["store"] == "embedded"


def test_to_networkx_filters(small_engine: ContextEngine) -> None:
    with_expired = small_engine.to_networkx(include_expired=True)
    expired = [d for _, _, d in with_expired.edges(data=True) if d["type"] == "RELATED_TO"]
    assert len(expired) == 1 and expired[0]["live"] is False and expired[0]["expired_at"] is not None

    default_only = small_engine.to_networkx(namespaces=["default"])
    assert "f:notes" not in default_only  # and no relation into it
    assert {d["type"] for _, _, d in default_only.edges(data=True)} == {"AUTHORED"}

    files = small_engine.to_networkx(types=["File"])
    assert set(files.nodes) == {"f:ferry", "f:notes"} and files.number_of_edges() == 1

    mentions = small_engine.to_networkx(relation_types=["MENTIONS"])
    assert mentions.number_of_nodes() == 4 and [d["type"] for _, _, d in mentions.edges(data=True)] == ["MENTIONS"]


def test_stats_frame_is_the_stats_as_a_table(small_engine: ContextEngine) -> None:
    pytest.importorskip("pandas")
    frame = small_engine.stats_frame()
    stats = small_engine.stats()
    assert list(frame.columns) == ["group", "name", "count"]
    counts = {(g, n): c for g, n, c in frame.itertuples(index=False)}
    assert counts["total", "entities"] == stats.entities == 4
    assert counts["total", "live relations"] == stats.live_relations == 3
    assert counts["entity type", "File"] == 2
    assert counts["namespace", "other"] == 1
    assert frame.attrs["backend"] == "embedded"
    assert "<table" in frame._repr_html_()


def sample_result() -> SearchResult:
    hits = [
        SearchHit(
            id="f:ferry",
            type="File",
            name="ferry.py",
            text="def timetable(): return ['07:15']",
            score=0.5,
            reasons=["vector #1 (cosine 0.8)", "keyword #2 (bm25 3.1)"],
            namespace="default",
            source="repo",
            provenance=Provenance(uri="file:///repo/ferry.py"),
        ),
        SearchHit(
            id="x:evil",
            type="Document",
            name="<script>alert('name')</script>",
            text="<img src=x onerror=alert(1)> & more",
            score=0.25,
            reasons=["1 hop from 'ferry.py' via <MENTIONS>"],
            hop=1,
            namespace="default",
            source="docs",
        ),
    ]
    triples = [Triple(src="x:evil", src_name="<b>evil</b>", type="MENTIONS", dst="f:ferry", dst_name="ferry.py")]
    return SearchResult(query="ferry <times>", hits=hits, triples=triples, tokens_used=40, token_budget=100)


def test_search_result_to_dataframe() -> None:
    pandas = pytest.importorskip("pandas")
    frame = sample_result().to_dataframe()
    assert list(frame.columns) == [
        "rank",
        "score",
        "type",
        "name",
        "hop",
        "reasons",
        "namespace",
        "source",
        "uri",
        "id",
        "text",
    ]
    assert frame["rank"].tolist() == [1, 2] and frame["id"].tolist() == ["f:ferry", "x:evil"]
    assert frame.loc[0, "reasons"] == "vector #1 (cosine 0.8); keyword #2 (bm25 3.1)"
    assert frame.loc[0, "uri"] == "file:///repo/ferry.py" and pandas.isna(frame.loc[1, "uri"])
    assert frame.attrs["query"] == "ferry <times>"
    empty = SearchResult(query="q", hits=[]).to_dataframe()
    assert empty.empty and "name" in empty.columns


def test_search_result_html_is_an_escaped_table() -> None:
    html = sample_result()._repr_html_()
    assert "<table>" in html and html.count("<tr>") == 1 + 2 + 1 + 1  # two heads, two hits, one fact
    assert "<script>" not in html and "<img" not in html and "<b>evil" not in html
    assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in html
    assert "ferry &lt;times&gt;" in html and "40 of 100 tokens" in html
    assert "1 facts between the hits" in html


# -- the graph view ---------------------------------------------------------------------------
def view_data(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" class="aesop-gv-data">(.*?)</script>', html, re.S)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_graph_view_escapes_names_and_inlines_its_script() -> None:
    graph = nx.MultiDiGraph()
    hostile = "</script><script>alert(1)</script>"
    graph.add_node("a", type="Person", name=hostile)
    graph.add_node("b", type="File", name="b & <c>")
    graph.add_edge("a", "b", key="r1", type="AUTHORED")
    graph.add_edge("a", "b", key="r2", type="MENTIONS")
    html = GraphView(graph, title="<i>title</i>")._repr_html_()

    assert hostile not in html and "<script>alert" not in html and "<i>title" not in html
    assert html.count("<script") == 2  # the JSON data and the renderer
    assert script_sources(html) == []
    assert renderer_script() in html
    data = view_data(html)
    assert {n["name"] for n in data["nodes"]} == {hostile, "b & <c>"}
    assert len(data["links"]) == 1 and "AUTHORED / MENTIONS" in data["links"][0]["title"]
    assert data["directed"] is True
    assert {e["group"] for e in data["legend"]} == {"Person", "File"}
    assert f'class="{MARKER_CLASS}"' in html and 'data-aesop-graph-view="1"' in html
    assert "aesop-gv-static" in html  # the picture shown where scripts do not run


def test_graph_view_cuts_large_graphs_and_keeps_the_highlighted() -> None:
    graph = nx.barabasi_albert_graph(400, 2, seed=1)
    nx.set_node_attributes(graph, {n: "Node" for n in graph}, "type")
    lonely = 399
    view = GraphView(graph, highlight=[lonely, "not in the graph"], max_nodes=50, color_by="type")
    data = view.data()
    ids = [n["id"] for n in data["nodes"]]
    assert len(ids) == 50 and str(lonely) in ids
    assert str(max(graph.degree, key=lambda kv: kv[1])[0]) in ids
    assert "showing 50 of 400 nodes" in data["note"]
    assert all(0 <= n["x"] <= data["width"] and 0 <= n["y"] <= data["height"] for n in data["nodes"])
    assert [n["highlight"] for n in data["nodes"]].count(True) == 1


def test_graph_view_of_a_subgraph_highlights_its_seeds() -> None:
    entities = {
        "s": Entity(id="s", type="File", name="seed.py", text="seed"),
        "n": Entity(id="n", type="Chunk", name="seed.py #1", text="chunk"),
    }
    subgraph = Subgraph(
        entities=entities, relations=[Relation(type="CONTAINS", src="s", dst="n")], hops={"s": 0, "n": 1}
    )
    data = GraphView(subgraph).data()
    assert {n["id"]: n["highlight"] for n in data["nodes"]} == {"s": True, "n": False}
    assert data["links"][0]["title"] == "seed.py CONTAINS seed.py #1"


def test_graph_view_rejects_other_inputs() -> None:
    with pytest.raises(TypeError):
        GraphView({"a": "b"})
    with pytest.raises(ValueError):
        GraphView(nx.Graph(), max_nodes=0)
    assert GraphView(nx.Graph()).data()["nodes"] == []


def test_renderer_ships_in_the_package() -> None:
    script = resources.files("aesoperator.notebook").joinpath("static", "graph_view.js")
    assert script.is_file()
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = config["tool"]["setuptools"]["package-data"]
    patterns = [*package_data.get("aesoperator.notebook", []), *package_data.get("*", [])]
    assert any(fnmatch("static/graph_view.js", p) for p in patterns)
    text = script.read_text(encoding="utf-8")
    assert "http://www.w3.org/2000/svg" in text  # the SVG namespace: a name, not a download
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text)
    assert "</script" not in text.lower()


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_renderer_layout_settles_under_node() -> None:
    script = resources.files("aesoperator.notebook").joinpath("static", "graph_view.js")
    program = """
    const { Simulation } = require(process.argv[1]);
    const nodes = [], links = [];
    for (let i = 0; i < 60; i++) nodes.push({ x: NaN, y: NaN });
    for (let i = 1; i < 30; i++) links.push({ s: 0, t: i });        // a star
    for (let i = 30; i < 59; i++) links.push({ s: i, t: i + 1 });   // a path
    nodes[5].fx = 10; nodes[5].fy = 20;                              // one pinned node
    const sim = new Simulation(nodes, links, 900, 520);
    const ticks = sim.run(2000);
    console.log(JSON.stringify({ ticks, alpha: sim.alpha, running: sim.running(),
                                 nodes: nodes.map(n => [n.x, n.y]) }));
    """
    with resources.as_file(script) as path:
        proc = subprocess.run(
            ["node", "-e", program, str(path)], capture_output=True, text=True, timeout=60, check=False
        )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert not result["running"] and 100 < result["ticks"] < 2000
    points = result["nodes"]
    assert all(isinstance(v, int | float) and abs(v) < 1e5 for p in points for v in p)
    assert points[5] == [10, 20]

    def dist(a: int, b: int) -> float:
        return float(((points[a][0] - points[b][0]) ** 2 + (points[a][1] - points[b][1]) ** 2) ** 0.5)

    linked = [dist(0, i) for i in range(1, 30)]
    unlinked = [dist(i, j) for i in range(1, 30) for j in range(31, 59, 3)]
    assert sum(linked) / len(linked) < sum(unlinked) / len(unlinked)


def test_progress_helpers() -> None:
    progress = NotebookProgress()
    progress.start("ingest", 3)
    progress.advance(2)
    progress.start("embed", None)  # a new stage closes the previous bar
    progress.advance()
    progress.finish()
    progress.finish()
    assert list(progress_bar(range(4), description="loop")) == [0, 1, 2, 3]
    assert list(progress_bar(iter("ab"))) == ["a", "b"]


# -- the sources the notebooks ingest ---------------------------------------------------------
def test_repository_root_is_found_from_the_notebooks_folder(tmp_path: Path) -> None:
    from aesoperator.notebook.sources import repository_root

    assert repository_root(NOTEBOOKS) == REPO
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    assert repository_root(other) == REPO  # falls back to the folder above the installed package


def test_filesystem_server_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aesoperator.notebook import sources

    monkeypatch.setenv("AESOP_NPM_MCP_PREFIX", str(tmp_path / "prefix"))
    real_which = shutil.which
    monkeypatch.setattr(sources.shutil, "which", lambda name: None if name == "node" else real_which(name))
    missing = sources.filesystem_server_command(REPO)
    assert missing.command is None and "node is not installed" in missing.reason

    monkeypatch.setattr(sources.shutil, "which", lambda name: f"/opt/bin/{name}" if name == "node" else None)
    absent = sources.filesystem_server_command(REPO, install=False)
    assert absent.command is None and "not installed" in absent.reason
    no_npm = sources.filesystem_server_command(REPO, install=True)
    assert no_npm.command is None and "npm is not installed" in no_npm.reason

    package = tmp_path / "prefix" / "node_modules" / "@modelcontextprotocol" / "server-filesystem"
    (package / "dist").mkdir(parents=True)
    (package / "dist" / "index.js").write_text("// server\n")
    (package / "package.json").write_text(json.dumps({"bin": {"mcp-server-filesystem": "dist/index.js"}}))
    found = sources.filesystem_server_command(REPO, install=False)
    assert found.command == ["/opt/bin/node", str((package / "dist" / "index.js").resolve())]

    definition = sources.filesystem_source(REPO, found.command, include=["*.md"], exclude=[".cache"])
    assert definition.kind == "filesystem" and definition.command == "/opt/bin/node"
    assert definition.args[-1] == str(REPO) and definition.include == ["*.md"] and definition.exclude == [".cache"]


def test_git_server_command_and_source() -> None:
    from aesoperator.notebook.sources import git_server_command, git_source

    command = git_server_command()
    if importlib.util.find_spec("mcp_server_git") is None or shutil.which("git") is None:
        assert command.command is None and command.reason
        return
    assert command.command == [sys.executable, "-m", "mcp_server_git"]
    definition = git_source(REPO, command.command, name="repo-git")
    assert definition.kind == "git" and definition.args[-2:] == ["--repository", str(REPO)]
    assert definition.options == {}
    assert git_source(REPO, command.command, max_commits=5).options == {"max_commits": 5}
