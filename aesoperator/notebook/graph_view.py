"""An interactive view of a graph for Jupyter that needs no network.

`GraphView(graph)` takes a networkx graph (for instance `engine.to_networkx()` or a part of it)
or a `Subgraph` (what `engine.neighbors(...)` returns) and renders, as the cell's output:

- a static SVG picture laid out here with networkx (what shows where scripts do not run, for
  example a notebook opened untrusted), and
- the graph as JSON plus the renderer `static/graph_view.js`, inlined from this package, which
  turns the picture into a live force-directed layout: drag, zoom, pan, details on click,
  entity types shown or hidden from the legend.

No script or style is loaded from anywhere else. Every name and id is escaped: in the SVG by
HTML escaping, in the JSON by escaping '<', '>' and '&' so the data cannot end its script element.
The outer element carries the class `aesop-graph-view` and the attribute `data-aesop-graph-view`.
"""

from __future__ import annotations

import html
import json
import math
import uuid
from collections import Counter
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import networkx as nx

from aesoperator.engine.export import subgraph_to_networkx
from aesoperator.engine.stores.base import Subgraph

MARKER_CLASS = "aesop-graph-view"
SCRIPT_NAME = "graph_view.js"
# Colour-blind-friendly categorical colours (Okabe-Ito, then Tableau-like extras).
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#7F7F7F",
    "#8C564B",
    "#9467BD",
    "#17BECF",
    "#BCBD22",
)
DEFAULT_WIDTH = 900
LABEL_CHARS = 32
TITLE_CHARS = 300


@cache
def renderer_script() -> str:
    """The JavaScript renderer shipped in the package (`aesoperator/notebook/static/graph_view.js`)."""
    text = resources.files("aesoperator.notebook").joinpath("static", SCRIPT_NAME).read_text(encoding="utf-8")
    # inlined in a <script> element: it must not be able to close it
    return text.replace("</", "<\\/")


def _json_for_script(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _shorten(text: str, chars: int, keep_lines: bool = False) -> str:
    flat = (
        "\n".join(" ".join(line.split()) for line in str(text).splitlines())
        if keep_lines
        else " ".join(str(text).split())
    )
    return flat if len(flat) <= chars else flat[: chars - 1] + "…"


class GraphView:
    """An interactive, offline graph view; display it (last expression of a cell) to render it.

    graph:      a networkx graph (node attributes `type` and `name` are used when present, edge
                attribute `type` too) or a `Subgraph`.
    highlight:  node ids drawn with a dark ring and always labelled (default: a Subgraph's seeds,
                the entities at hop 0).
    max_nodes:  larger graphs are cut to the highlighted nodes plus the best-connected others.
    labels:     label every node (True), none (False) or, by default, all of a small graph and
                the highlighted and best-connected nodes of a larger one.
    color_by:   the node attribute that picks the colour and the legend (default `type`; for
                example a community number you computed).
    """

    def __init__(
        self,
        graph: nx.Graph | Subgraph,
        highlight: Iterable[Any] = (),
        title: str | None = None,
        max_nodes: int = 300,
        height: int = 520,
        width: int = DEFAULT_WIDTH,
        labels: bool | None = None,
        seed: int = 7,
        color_by: str = "type",
    ) -> None:
        if max_nodes < 1:
            raise ValueError("max_nodes must be at least 1")
        if isinstance(graph, Subgraph):
            seeds = [eid for eid, hop in graph.hops.items() if hop == 0]
            graph = subgraph_to_networkx(graph)
            highlight = list(highlight) or seeds
        elif not isinstance(graph, nx.Graph):
            raise TypeError(f"GraphView needs a networkx graph or a Subgraph, not {type(graph).__name__}")
        self.graph: nx.Graph = graph
        self.highlight = {h for h in highlight if h in graph}
        self.title = title
        self.max_nodes = max_nodes
        self.height = height
        self.width = width
        self.labels = labels
        self.seed = seed
        self.color_by = color_by
        self._data: dict[str, Any] | None = None

    # -- data ---------------------------------------------------------------------------------
    def _chosen_nodes(self) -> list[Any]:
        graph = self.graph
        if graph.number_of_nodes() <= self.max_nodes:
            return list(graph.nodes)
        degree = dict(graph.degree())
        rest = sorted((n for n in graph.nodes if n not in self.highlight), key=lambda n: (-degree[n], str(n)))
        keep = sorted(self.highlight, key=str)[: self.max_nodes]
        return keep + rest[: self.max_nodes - len(keep)]

    def data(self) -> dict[str, Any]:
        """What the renderer draws: nodes with positions, colours and sizes, links, legend."""
        if self._data is not None:
            return self._data
        full = self.graph
        chosen = self._chosen_nodes()
        shown = full.subgraph(chosen)
        index = {node: i for i, node in enumerate(chosen)}
        directed = full.is_directed()

        groups = {n: str(full.nodes[n].get(self.color_by, "") or "—") for n in chosen}
        group_counts = Counter(groups.values())
        ordered = sorted(group_counts, key=lambda g: (-group_counts[g], g))
        colours = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(ordered)}

        # links: parallel edges (several relation types between two entities) become one link
        merged: dict[tuple[int, int], list[str]] = {}
        for u, v, attrs in shown.edges(data=True):
            if u == v:
                continue
            a, b = index[u], index[v]
            key = (a, b) if directed else (min(a, b), max(a, b))
            kinds = merged.setdefault(key, [])
            kind = str(attrs.get("type") or "")
            if kind and kind not in kinds:
                kinds.append(kind)
        degree = Counter[int]()
        for a, b in merged:
            degree[a] += 1
            degree[b] += 1

        positions = self._layout(shown, chosen)
        label_all = self.labels if self.labels is not None else len(chosen) <= 40
        top = set(sorted(range(len(chosen)), key=lambda i: (-degree[i], i))[:15]) if self.labels is None else set()

        nodes = []
        for i, node in enumerate(chosen):
            attrs = full.nodes[node]
            name = str(attrs.get("name") or node)
            kind = str(attrs.get("type") or "node")
            group = groups[node]
            highlighted = node in self.highlight
            labelled = self.labels is not False and (label_all or highlighted or i in top)
            x, y = positions[node]
            nodes.append(
                {
                    "id": str(node),
                    "name": name,
                    "type": kind,
                    "group": group,
                    "color": colours[group],
                    "r": round(min(16.0, 4.0 + 1.6 * math.sqrt(degree[i])) + (2.0 if highlighted else 0.0), 1),
                    "x": x,
                    "y": y,
                    "label": _shorten(name, LABEL_CHARS) if labelled else "",
                    "highlight": highlighted,
                    "title": _shorten(
                        f"{name}\n{kind}"
                        + (f" · {self.color_by} {group}" if self.color_by != "type" else "")
                        + f"\n{node}",
                        TITLE_CHARS,
                        keep_lines=True,
                    ),
                }
            )
        names = [n["name"] for n in nodes]
        links = [
            {
                "s": a,
                "t": b,
                "title": _shorten(f"{names[a]} {' / '.join(kinds) or '—'} {names[b]}", TITLE_CHARS),
            }
            for (a, b), kinds in sorted(merged.items())
        ]
        note = ""
        if len(chosen) < full.number_of_nodes():
            note = f"showing {len(chosen)} of {full.number_of_nodes()} nodes (the highlighted and best connected)"
        self._data = {
            "width": self.width,
            "height": self.height,
            "directed": directed,
            "nodes": nodes,
            "links": links,
            "legend": [{"group": g, "color": colours[g], "count": group_counts[g]} for g in ordered],
            "legend_title": self.color_by,
            "note": note,
            "alpha": 0.25,
        }
        return self._data

    def _layout(self, shown: nx.Graph, chosen: list[Any]) -> dict[Any, tuple[float, float]]:
        """Spring layout scaled into the drawing area (deterministic for a given seed)."""
        if not chosen:
            return {}
        simple = nx.Graph()
        simple.add_nodes_from(chosen)
        simple.add_edges_from((u, v) for u, v in shown.edges() if u != v)
        if len(chosen) == 1:
            raw = {chosen[0]: (0.0, 0.0)}
        else:
            k = 1.6 / math.sqrt(len(chosen))
            raw = {n: (float(p[0]), float(p[1])) for n, p in nx.spring_layout(simple, k=k, seed=self.seed).items()}
        xs = [p[0] for p in raw.values()]
        ys = [p[1] for p in raw.values()]
        span_x = (max(xs) - min(xs)) or 1.0
        span_y = (max(ys) - min(ys)) or 1.0
        margin = 40.0
        scale = min((self.width - 2 * margin) / span_x, (self.height - 2 * margin) / span_y)
        mid_x, mid_y = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
        return {
            n: (
                round(self.width / 2 + (x - mid_x) * scale, 1),
                round(self.height / 2 + (y - mid_y) * scale, 1),
            )
            for n, (x, y) in raw.items()
        }

    # -- output -------------------------------------------------------------------------------
    def to_svg(self) -> str:
        """The static picture: the layout computed here, no interaction."""
        data = self.data()
        nodes = data["nodes"]
        esc = html.escape
        parts = [
            f'<svg class="aesop-gv-static" viewBox="0 0 {data["width"]} {data["height"]}" width="100%" '
            f'height="{data["height"]}" xmlns="http://www.w3.org/2000/svg" '
            'style="background:#fcfcfc;border:1px solid #e3e3e3;border-radius:4px">',
            '<g stroke="#b5b5b5" stroke-width="1.1">',
        ]
        for link in data["links"]:
            a, b = nodes[link["s"]], nodes[link["t"]]
            parts.append(
                f'<line x1="{a["x"]}" y1="{a["y"]}" x2="{b["x"]}" y2="{b["y"]}"><title>{esc(link["title"])}</title></line>'
            )
        parts.append("</g><g>")
        for node in nodes:
            ring = 'stroke="#111" stroke-width="2.2"' if node["highlight"] else 'stroke="#fff" stroke-width="1"'
            parts.append(
                f'<circle cx="{node["x"]}" cy="{node["y"]}" r="{node["r"]}" fill="{node["color"]}" {ring}>'
                f"<title>{esc(node['title'])}</title></circle>"
            )
        parts.append('</g><g font-family="sans-serif" font-size="10" fill="#222">')
        for node in nodes:
            if node["label"]:
                parts.append(
                    f'<text x="{node["x"] + node["r"] + 3}" y="{node["y"]}" dy="0.35em" stroke="#fff" '
                    f'stroke-width="3" paint-order="stroke">{esc(node["label"])}</text>'
                )
        parts.append("</g></svg>")
        return "".join(parts)

    def _legend_html(self) -> str:
        esc = html.escape
        return "".join(
            '<span style="display:inline-flex;align-items:center;margin:2px 10px 2px 0;font:12px sans-serif">'
            f'<span style="display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px;'
            f'background:{entry["color"]}"></span>{esc(entry["group"])} ({entry["count"]})</span>'
            for entry in self.data()["legend"]
        )

    def _repr_html_(self) -> str:
        data = self.data()
        view_id = f"{MARKER_CLASS}-{uuid.uuid4().hex[:12]}"
        heading = [f"<b>{html.escape(self.title)}</b>"] if self.title else []
        heading.append(f"{len(data['nodes'])} nodes, {len(data['links'])} links")
        if data["note"]:
            heading.append(html.escape(data["note"]))
        return (
            f'<div class="{MARKER_CLASS}" id="{view_id}" data-aesop-graph-view="1" style="max-width:{self.width}px">'
            f'<div style="font:12px sans-serif;color:#444;margin-bottom:2px">{" · ".join(heading)}</div>'
            f'<div class="aesop-gv-canvas">{self.to_svg()}</div>'
            f'<div class="aesop-gv-legend" style="margin-top:4px">{self._legend_html()}</div>'
            f'<script type="application/json" class="aesop-gv-data">{_json_for_script(data)}</script>'
            "</div>"
            f"<script>{renderer_script()}\n;(function () {{ var api = window.aesopGraphView; "
            f'if (api) api.render("{view_id}"); }})();</script>'
        )

    def to_html(self) -> str:
        """A standalone HTML page with the view (for sharing outside Jupyter)."""
        title = html.escape(self.title or "graph")
        return (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
            f'<body style="margin:16px">{self._repr_html_()}</body></html>'
        )

    def save(self, path: str | Path) -> Path:
        """Write `to_html()` to `path` and return it."""
        target = Path(path)
        target.write_text(self.to_html(), encoding="utf-8")
        return target
