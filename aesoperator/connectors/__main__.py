"""`python -m aesoperator.connectors KIND [options]`: run a built-in connector.

    python -m aesoperator.connectors postgres --name analytics_db --dsn-env ANALYTICS_DSN \\
        --allowed-table users --allowed-table events
    python -m aesoperator.connectors git --repo ~/src/app
    python -m aesoperator.connectors filesystem --root ~/notes
    python -m aesoperator.connectors github --repo acme/widgets --data-source issues --data-source pull_requests

Secrets are never arguments (argument lists are visible to every user of the machine): the
connection string comes from the environment variable `--dsn-env` names, the GitHub token from
`--token-env` (default GITHUB_TOKEN) or `--secrets-file`. Over stdio (the default) the caller has
full access; `--transport http` serves streamable HTTP on 127.0.0.1 behind bearer tokens
(`--tokens-file`, default `<data dir>/tokens.json`, re-read when it changes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from aesoperator.connectors import KINDS, build
from aesoperator.connectors.base import ConnectorPolicy, run_stdio, serve_http
from aesoperator.errors import AesopError, ConfigError


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m aesoperator.connectors", description=__doc__.split("\n")[0])
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--name", help="the connector's name (the source name scopes refer to)")
    p.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", type=Path, help="audit log (and default token file) location")
    p.add_argument("--rate-limit", help="calls per principal, e.g. 20/s:40")
    p.add_argument("--auth-type", default="static", choices=("static", "oauth2", "none"))
    p.add_argument("--tokens-file", type=Path)
    p.add_argument("--issuer")
    p.add_argument("--audience")
    p.add_argument("--jwks-url")
    p.add_argument("--poll-seconds", type=float, default=1.0)
    # postgres
    p.add_argument("--dsn-env", default="AESOP_CONNECTOR_DSN", help="environment variable with the connection string")
    p.add_argument("--allowed-table", action="append", default=[])
    p.add_argument("--schema", default="public")
    p.add_argument("--row-limit", type=int, default=1000)
    p.add_argument("--read-write", action="store_true", help="allow insert_rows (read-only otherwise)")
    # git / github
    p.add_argument("--repo")
    # filesystem
    p.add_argument("--root", action="append", default=[])
    p.add_argument("--max-depth", type=int, help="directory levels walked below a path (default 128)")
    p.add_argument("--read-timeout", type=float, help="seconds one file read may take (default 10)")
    # github
    p.add_argument("--data-source", action="append", default=[])
    p.add_argument("--token-env", default="GITHUB_TOKEN")
    p.add_argument("--secrets-file", type=Path)
    p.add_argument("--recorded", type=Path, help="answer from recorded API responses in this directory")
    p.add_argument("--recorded-set", default="v1", help="which recorded set to answer from (v1, v2, ...)")
    p.add_argument("--api-url")
    return p.parse_args(argv)


def options_from(args: argparse.Namespace) -> dict[str, Any]:
    if args.kind == "postgres":
        dsn = os.environ.get(args.dsn_env, "")
        if not dsn:
            raise ConfigError(f"set the connection string in the environment variable {args.dsn_env}")
        return {
            "connection_string": dsn,
            "allowed_tables": args.allowed_table,
            "schema": args.schema,
            "row_limit": args.row_limit,
            "read_only": not args.read_write,
        }
    if args.kind == "git":
        return {"repo": args.repo}
    if args.kind == "filesystem":
        return {"roots": args.root, "max_depth": args.max_depth, "read_timeout": args.read_timeout}
    return {
        "repo": args.repo,
        "data_sources": args.data_source or None,
        "token_env": args.token_env,
        "secrets_file": args.secrets_file,
        "recorded": args.recorded,
        "recorded_set": args.recorded_set,
        "api_url": args.api_url,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    name = args.name or args.kind
    try:
        policy = ConnectorPolicy.build(
            name, data_dir=args.data_dir, rate_limit=args.rate_limit, poll_seconds=args.poll_seconds
        )
        server = build(args.kind, name, options_from(args), policy)
        if args.transport == "stdio":
            run_stdio(server)
        else:
            auth: dict[str, Any] = {"type": args.auth_type}
            if args.tokens_file:
                auth["tokens_file"] = str(args.tokens_file)
            for key in ("issuer", "audience", "jwks_url"):
                if getattr(args, key):
                    auth[key] = getattr(args, key)
            serve_http(
                server,
                host=args.host,
                port=args.port,
                auth_config=auth,
                data_dir=args.data_dir,
                on_ready=lambda url: print(f"serving {name} on {url}", file=sys.stderr, flush=True),
            )
    except AesopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
