"""A graph explorer in the browser: `aesop explore`, and `/explore/` of `aesop serve --http`.

Plain HTML, CSS and JavaScript shipped in `static/` (no build step, nothing loaded from the
network, no third-party code: the neighbourhood graph is drawn by `static/graph.js` on a canvas).
The JSON API under `/explore/api/` reads the engine through the caller's namespaces with the MCP
server's tokens, scopes and audit log.

- `app.py`: the ASGI app and the envelope every API call runs in.
- `queries.py`: search, entity page, neighbourhood, agent memory, built on the engine's API.
- `sources_view.py`: sources, their quarantine, and background re-syncs.
- `web_security.py`: security headers, the caller's token, checks on state-changing requests.
- `params.py`, `models.py`: what the API takes and answers (pydantic).
- `mount.py`: the explorer beside the MCP app; `server.py`: building and running it.
"""

from __future__ import annotations

from aesoperator.explore.app import PREFIX, ExplorerApp, standalone_app
from aesoperator.explore.mount import with_explorer

__all__ = ["PREFIX", "ExplorerApp", "standalone_app", "with_explorer"]
