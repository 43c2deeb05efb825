"""`aesop explore`: the graph explorer in the browser (also at /explore/ of `aesop serve --http`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aesoperator.cli.app import _engine, app, err
from aesoperator.cli.serve import _scope_list


@app.command()
def explore(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port).", min=0, max=65535)] = 8766,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth", help="No sign-in (loopback only): every visitor gets --scopes (default: full access)."
        ),
    ] = False,
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            "--scopes", help="Scopes of the visitor with --no-auth: read:NS, source:NAME, ... (comma-separated)."
        ),
    ] = None,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow --host to be a non-loopback address (needs tokens).")
    ] = False,
    rate_limit: Annotated[
        str | None, typer.Option(help="Calls per principal, e.g. 10/s or 600/min:50. Default: none.")
    ] = None,
    audit: Annotated[bool, typer.Option(help="Record every call in <data-dir>/audit.log.")] = True,
    audit_key_file: Annotated[
        Path | None, typer.Option("--audit-key-file", help="Key that signs the audit log (as for `aesop serve`).")
    ] = None,
) -> None:
    """Explore the graph in a browser: search with reasons, entity pages with an interactive
    neighbourhood, agents' memory timelines and sources. Sign in with a token from `aesop tokens
    add` (the same tokens and scopes as `aesop serve --http`); every call is audited."""
    from aesoperator.explore.app import standalone_app
    from aesoperator.explore.server import build_explorer, explorer_url, explorer_verifier
    from aesoperator.security import bind_socket, resource_url_for, serve_http
    from aesoperator.security.guard import CallGuard

    with _engine() as engine:
        guard = CallGuard.for_data_dir(
            engine.settings.data_dir,
            rate_limit,
            audit=audit,
            audit_key_file=audit_key_file or engine.settings.audit_key_file,
        )
        try:
            if guard.audit is not None:
                guard.audit.open_for_writing()  # a missing key stops here, not at the first call
            sock = bind_socket(host, port, allow_remote=allow_remote)
            verifier = (
                None
                if no_auth
                else explorer_verifier(engine.settings.data_dir, engine, resource_url_for(sock, "/explore"))
            )
            explorer = build_explorer(
                engine,
                sock,
                guard=guard,
                verifier=verifier,
                no_auth=no_auth,
                no_auth_scopes=_scope_list(scopes) or None,
                host=host,
            )
            err.print(
                f"exploring at {explorer_url(sock)}" + (" (no sign-in)" if no_auth else " (sign in with a token)"),
                highlight=False,
            )
            serve_http(standalone_app(explorer), sock)
        finally:
            guard.close()
