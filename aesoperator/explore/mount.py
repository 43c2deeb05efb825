"""Mounting the explorer beside another ASGI app (the MCP server of `aesop serve --http`).

`with_explorer(app, explorer)` sends `/explore` and `/explore/...` to the explorer and everything
else, the ASGI lifespan included, to `app` unchanged: the MCP endpoint, its authentication and
whatever else that app serves are not touched.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from aesoperator.explore.app import PREFIX, ExplorerApp, standalone_app


class ExplorerMount:
    """ASGI dispatcher: the explorer under `PREFIX`, `app` for every other path."""

    def __init__(self, app: ASGIApp, explorer: ExplorerApp) -> None:
        self.app = app
        self.explorer = standalone_app(explorer)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await self.explorer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def with_explorer(app: ASGIApp, explorer: ExplorerApp) -> ASGIApp:
    return ExplorerMount(app, explorer)
