"""Helpers for exploring the engine in Jupyter: an offline interactive graph view, progress bars
for long cells, and the MCP servers the example notebooks ingest through.

Needs the `notebooks` extra (`pip install 'aesoperator[notebooks]'`) for pandas and matplotlib;
the graph view itself needs only networkx.
"""

from __future__ import annotations

from aesoperator.notebook.graph_view import GraphView
from aesoperator.notebook.progress import NotebookProgress, progress_bar

__all__ = ["GraphView", "NotebookProgress", "progress_bar"]
