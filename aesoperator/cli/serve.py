"""`aesop tokens ...`, `aesop audit ...` and `aesop serve`: the MCP servers, their tokens and audit log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from aesoperator.cli.app import _emit, _engine, app, err, out, state
from aesoperator.errors import AesopError

tokens_app = typer.Typer(
    name="tokens",
    help="Static bearer tokens for the HTTP server (kept hashed in <data-dir>/tokens.json).",
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="tokens")
audit_app = typer.Typer(
    name="audit",
    help="The hash-chained audit log of tool calls (<data-dir>/audit.log).",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")


def _data_dir() -> Path:
    from aesoperator.config import load_settings

    return load_settings(data_dir=state.data_dir, graph=state.graph).data_dir


def _token_store() -> Any:
    from aesoperator.security.tokens import TokenStore

    return TokenStore.in_data_dir(_data_dir())


@tokens_app.command("add")
def tokens_add(
    name: Annotated[str, typer.Argument(help="Principal name the token stands for (shows in the audit log).")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="read:<namespace>, write:<namespace>, source:<name> or tool:<name>; * for all (repeatable).",
        ),
    ],
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime such as 12h, 30d or 2w (default: no expiry).")
    ] = None,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Revoke NAME's current token(s) and issue a new one in one step.")
    ] = False,
) -> None:
    """Issue a token; it is printed once and only its salted digest is stored."""
    from aesoperator.security.tokens import parse_duration

    issued = _token_store().add(name, scope, parse_duration(expires_in) if expires_in else None, rotate=rotate)
    view = issued.record.public_view()

    def render() -> None:
        out.print(
            f"[green]issued[/] token {issued.record.id} for {escape(name)} ({escape(' '.join(issued.record.scopes))})"
        )
        if issued.record.expires:
            out.print(f"expires {view['expires']}")
        out.print("[bold]copy it now, it is not shown again:[/]")
        sys.stdout.write(issued.token + "\n")

    _emit({"token": issued.token, **view}, render)


@tokens_app.command("list")
def tokens_list(
    all_: Annotated[bool, typer.Option("--all", help="Also show revoked and expired tokens.")] = False,
) -> None:
    """Issued tokens (names, scopes, expiry, status); never the tokens themselves."""
    rows = [t.public_view() for t in _token_store().tokens()]
    if not all_:
        rows = [r for r in rows if r["status"] == "active"]

    def render() -> None:
        if not rows:
            out.print("no tokens; issue one with `aesop tokens add NAME --scope read:default --scope tool:search`")
            return
        table = Table(title="static tokens")
        for column in ("name", "id", "scopes", "created", "expires", "status"):
            table.add_column(column)
        for r in rows:
            table.add_row(
                escape(r["name"]),
                r["id"],
                escape(" ".join(r["scopes"])),
                (r["created"] or "")[:19],
                (r["expires"] or "never")[:19],
                r["status"],
            )
        out.print(table)

    _emit(rows, render)


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str, typer.Argument(help="Principal name (all its tokens) or one token id.")],
) -> None:
    """Revoke tokens; a running server refuses them from its next request."""
    revoked = _token_store().revoke(name)
    _emit(
        [t.public_view() for t in revoked],
        lambda: out.print(
            f"[green]revoked[/] {len(revoked)} token(s) of {escape(name)}: " + ", ".join(t.id for t in revoked)
        ),
    )


_KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="The audit key (default: the audit_key_file setting, AESOP_AUDIT_KEY_FILE, else <data-dir>/audit.key).",
    ),
]
# `aesop audit verify` exit codes, by report status
AUDIT_EXIT_CODES = {"intact": 0, "broken": 1, "unverifiable": 2, "upgrade_needed": 3}


def _audit_log(key_file: Path | None = None) -> Any:
    from aesoperator.security.audit import AuditLog

    return AuditLog.in_data_dir(_data_dir(), key_path=key_file)


@audit_app.command("verify")
def audit_verify(key_file: _KeyFileOption = None) -> None:
    """Check the hash chain, the signed checkpoint and every record's signature. Exit 0 intact,
    1 broken (naming the first bad record), 2 key missing, 3 previous format (run `aesop audit upgrade`)."""
    report = _audit_log(key_file).verify()

    def render() -> None:
        if report.ok:
            out.print(f"[green]intact[/]: {report.records} records, chain, checkpoint and signatures verified")
        elif report.status == "upgrade_needed":
            err.print(f"[yellow]upgrade needed[/]: {escape(report.problem or '')}")
        elif report.status == "unverifiable":
            err.print(f"[yellow]cannot verify[/]: {escape(report.problem or '')}")
        else:
            err.print(f"[red]audit log broken[/]: {escape(report.problem or '')}")
            out.print(f"{report.records} records verified before the problem")
        for warning in report.warnings:
            err.print(f"[yellow]warning[/]: {escape(warning)}")

    _emit(report.as_dict(), render)
    code = AUDIT_EXIT_CODES.get(str(report.status), 1)
    if code:
        raise typer.Exit(code)


@audit_app.command("init")
def audit_init(key_file: _KeyFileOption = None) -> None:
    """Start the audit log of a data dir: write its first signed checkpoint (and the key, unless
    it exists already, e.g. one kept outside the data dir)."""
    log = _audit_log(key_file)
    log.initialise()
    _emit(
        {"log": str(log.path), "key": str(log.key_path)},
        lambda: out.print(f"[green]started[/] {escape(str(log.path))}, signed with {escape(str(log.key_path))}"),
    )


@audit_app.command("upgrade")
def audit_upgrade(key_file: _KeyFileOption = None) -> None:
    """Seal a log of the previous (unsigned) format: check it, then append a signed record that
    chains to its last one; every later record is signed."""
    record = _audit_log(key_file).upgrade()
    _emit(
        record,
        lambda: out.print(
            f"[green]upgraded[/]: records 1-{record['seq'] - 1} sealed by the signed record {record['seq']}"
        ),
    )


@audit_app.command("tail")
def audit_tail(
    n: Annotated[int, typer.Option("-n", help="How many records.")] = 20,
) -> None:
    """The last records of the audit log (arguments appear only as a digest)."""
    records = _audit_log().tail(n)

    def render() -> None:
        if not records:
            out.print("the audit log is empty")
            return
        table = Table(title="audit log")
        for column in ("seq", "time", "principal", "tool", "decision", "results", "ms", "args sha256"):
            table.add_column(column)
        for r in records:
            decision = str(r.get("decision", ""))
            color = "green" if decision == "allow" else "red"
            times = f" x{r['count']}" if "count" in r else ""  # an aggregate of refusals
            table.add_row(
                str(r.get("seq", "")),
                str(r.get("time", ""))[:23],
                escape(str(r.get("principal", ""))),
                escape(str(r.get("tool", ""))),
                f"[{color}]{escape(decision)}{times}[/]",
                str(r.get("result_count", "")),
                f"{r.get('latency_ms', 0):.1f}",
                str(r.get("args_sha256", ""))[:12],
            )
        out.print(table)

    _emit(records, render)


# -- serving agents over MCP ---------------------------------------------------------------------
def _scope_list(values: list[str] | None) -> list[str]:
    """Scopes given as repeated options and/or comma- or space-separated lists."""
    return [s for value in values or [] for s in value.replace(",", " ").split() if s]


@app.command()
def serve(
    stdio: Annotated[bool, typer.Option("--stdio", help="Serve over stdin/stdout (the default).")] = False,
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP on --host:--port.")] = False,
    host: Annotated[str, typer.Option(help="Address to bind for --http (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for --http (0 = any free port).", min=0, max=65535)] = 8765,
    path: Annotated[str, typer.Option(help="URL path of the MCP endpoint for --http.")] = "/mcp",
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            "--scopes",
            envvar="AESOP_SERVE_SCOPES",
            help="Scopes of the caller where there is no token (stdio, or HTTP with --no-auth): read:NS, "
            "write:NS, source:NAME, tool:NAME ('*' for all); repeatable or comma-separated. Default: full access.",
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="HTTP without bearer tokens (loopback only; every caller gets --scopes)."),
    ] = False,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow --host to be a non-loopback address (needs auth).")
    ] = False,
    rate_limit: Annotated[
        str | None, typer.Option(help="Calls per principal, e.g. 10/s or 600/min:50 (burst 50). Default: none.")
    ] = None,
    audit: Annotated[bool, typer.Option(help="Record every call in <data-dir>/audit.log.")] = True,
    audit_key_file: Annotated[
        Path | None,
        typer.Option(
            "--audit-key-file",
            help="Key that signs the audit log (default: AESOP_AUDIT_KEY_FILE, else <data-dir>/audit.key); keep it "
            "outside the data dir. Created with the log's first checkpoint if missing.",
        ),
    ] = None,
    jwt_issuer: Annotated[
        str | None, typer.Option("--jwt-issuer", help="Also accept OAuth2 JWTs from this issuer (AESOP_JWT_ISSUER).")
    ] = None,
    jwt_audience: Annotated[
        str | None,
        typer.Option("--jwt-audience", help="Audience JWTs must carry (AESOP_JWT_AUDIENCE; default: the MCP URL)."),
    ] = None,
    jwks_url: Annotated[
        str | None, typer.Option("--jwks-url", help="The issuer's JWKS URL, https (AESOP_JWKS_URL).")
    ] = None,
    jwks_file: Annotated[
        Path | None, typer.Option("--jwks-file", help="A JWKS file, re-read when it changes (AESOP_JWKS_FILE).")
    ] = None,
    jwt_algorithm: Annotated[
        list[str] | None,
        typer.Option("--jwt-algorithm", help="Allowed JWT algorithm, repeatable (default RS256 and ES256)."),
    ] = None,
    jwt_leeway: Annotated[
        float | None, typer.Option("--jwt-leeway", help="Seconds of clock skew allowed on exp/nbf (default 30).")
    ] = None,
    warm: Annotated[bool, typer.Option(help="Sync the vector index at start rather than on the first search.")] = True,
    load_model: Annotated[
        bool,
        typer.Option(help="Load the embedding model at start (about 1 GB) rather than on the first call that embeds."),
    ] = False,
    memory_namespace: Annotated[
        str, typer.Option(help="Namespace of the memory-server tools' knowledge graph.")
    ] = "memory-graph",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics, apart from the MCP endpoint "
            "(default: the metrics_port setting, AESOP_METRICS_PORT; none when unset; 0 = any free port).",
        ),
    ] = None,
    explore: Annotated[
        bool, typer.Option(help="With --http, also serve the graph explorer at /explore/ (same tokens).")
    ] = True,
) -> None:
    """Serve the engine to agents over MCP: search, recall, remember, entities, neighbours, sources and
    the memory server's tools. Stdio by default; --http serves streamable HTTP with bearer tokens
    (`aesop tokens add`)."""
    from aesoperator import security as serve_auth
    from aesoperator.security.audit import AuditLog
    from aesoperator.security.guard import CallGuard
    from aesoperator.security.principal import Principal
    from aesoperator.security.ratelimit import Limit, RateLimiter
    from aesoperator.serve.server import build_server, http_app, run_stdio

    if stdio and http:
        raise AesopError("choose one transport: --stdio or --http")
    given = _scope_list(scopes) or None
    if http and no_auth and (allow_remote or not serve_auth.is_loopback_host(host)):
        raise AesopError("--no-auth serves loopback addresses only: drop --no-auth or bind 127.0.0.1")
    with _engine() as engine:
        data_dir = engine.settings.data_dir
        key_path = audit_key_file or engine.settings.audit_key_file
        guard = CallGuard(
            audit=AuditLog.in_data_dir(data_dir, key_path=key_path) if audit else None,
            limiter=RateLimiter(Limit.parse(rate_limit)) if rate_limit else None,
        )
        metrics = None
        try:
            metrics = _metrics_endpoint(engine, guard, metrics_port, allow_remote)
            if guard.audit is not None:
                guard.audit.open_for_writing()  # a missing key stops the server here, not at its first call
            if not http:
                resolver = serve_auth.stdio_principal_resolver(given)
                run_stdio(
                    build_server(
                        engine, guard, resolver, memory_namespace=memory_namespace, warm=warm, load_model=load_model
                    )
                )
                return
            app_: Any
            verifier: Any = None
            sock = serve_auth.bind_socket(host, port, allow_remote=allow_remote)
            url = serve_auth.resource_url_for(sock, path)
            if no_auth:
                local = (
                    Principal.from_scopes("local", serve_auth.validate_scopes(given), "static")
                    if given
                    else Principal.full_access("local", "static")
                )
                server = build_server(
                    engine, guard, lambda: local, memory_namespace=memory_namespace, warm=warm, load_model=load_model
                )
                app_ = http_app(server, host=host, path=path)
            else:
                jwt = serve_auth.jwt_options(
                    engine.settings,
                    jwt_issuer=jwt_issuer,
                    jwt_audience=jwt_audience,
                    jwks_url=jwks_url,
                    jwks_file=jwks_file,
                    jwt_algorithms=jwt_algorithm,
                    leeway=jwt_leeway,
                )
                verifier = serve_auth.build_verifier(data_dir, resource_url=url, **jwt)
                server = build_server(
                    engine,
                    guard,
                    serve_auth.http_principal_resolver(),
                    memory_namespace=memory_namespace,
                    warm=warm,
                    load_model=load_model,
                )
                issuers = [jwt["jwt_issuer"]] if jwt["jwt_issuer"] else []
                app_ = serve_auth.build_http_app(
                    server, verifier, url, issuers, guard=guard, json_response=False, host=host
                )
            if explore:
                from aesoperator.explore.server import mount_explorer

                app_ = mount_explorer(
                    app_, engine, sock, guard=guard, verifier=verifier, no_auth=no_auth, no_auth_scopes=given, host=host
                )
                err.print(f"graph explorer at {serve_auth.resource_url_for(sock, '/explore/')}", highlight=False)
            err.print(f"serving MCP at {url}" + (" (no authentication)" if no_auth else ""), highlight=False)
            serve_auth.serve_http(app_, sock)
        finally:
            if metrics is not None:
                metrics.stop()
            guard.close()


def _metrics_endpoint(engine: Any, guard: Any, port: int | None, allow_remote: bool) -> Any:
    """The metrics endpoint, started, when a port is given (option or setting); else None."""
    port = engine.settings.metrics_port if port is None else port
    if port is None:
        return None
    from aesoperator.serve.metrics_endpoint import MetricsEndpoint

    endpoint = MetricsEndpoint(
        engine, guard, host=engine.settings.metrics_host, port=port, allow_remote=allow_remote
    ).start()
    err.print(f"serving metrics at {endpoint.url}", highlight=False)
    return endpoint
