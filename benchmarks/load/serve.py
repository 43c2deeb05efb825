"""The server side of the load test: `python -m benchmarks.load.serve --data-dir D --ready-file F`.

Opens the engine on D, builds the MCP server with a call guard (audit log in D, and a rate limit
per principal when `--limit` is given), and serves it over authenticated streamable HTTP on
127.0.0.1 (a free port). When listening it writes the resource URL to the ready file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load.serve")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--limit", default=None, help="per-principal rate limit, e.g. 20/s:20 (default: none)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from aesoperator import ContextEngine
    from aesoperator.config import Settings
    from aesoperator.security.audit import AuditLog
    from aesoperator.security.guard import CallGuard
    from aesoperator.security.http.gate import AuthenticatedHTTPApp
    from aesoperator.security.http.listener import serve_authenticated_http
    from aesoperator.security.ratelimit import Limit, RateLimiter
    from aesoperator.security.request_principal import http_principal_resolver
    from aesoperator.security.tokens import StaticTokenVerifier
    from aesoperator.serve.server import build_server

    engine = ContextEngine.open(settings=Settings(data_dir=args.data_dir))
    engine.search("warm up the model and the index", k=1)
    limiter = RateLimiter(Limit.parse(args.limit)) if args.limit else None
    guard = CallGuard(AuditLog.in_data_dir(args.data_dir), limiter)
    server = build_server(engine, guard, http_principal_resolver())
    verifier = StaticTokenVerifier.in_data_dir(args.data_dir)

    def ready(app: AuthenticatedHTTPApp) -> None:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(app.resource_url)
        tmp.replace(args.ready_file)

    try:
        serve_authenticated_http(server, verifier, host="127.0.0.1", port=0, on_ready=ready, guard=guard)
    finally:
        guard.close()
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
