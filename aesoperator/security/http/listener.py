"""Listening sockets (loopback only unless remote access is enabled explicitly) and running an
ASGI app on them with uvicorn: blocking (`serve_http`, `serve_authenticated_http`) or in a
background thread (`HTTPServerThread`, for tests and benchmarks)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from mcp.server.auth.provider import TokenVerifier
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp

from aesoperator.errors import ConfigError
from aesoperator.security.http.gate import AuthenticatedHTTPApp, build_http_app


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str = "127.0.0.1", port: int = 0, *, allow_remote: bool = False) -> socket.socket:
    """A listening TCP socket (port 0 = any free port). Non-loopback hosts need `allow_remote`."""
    if not is_loopback_host(host) and not allow_remote:
        raise ConfigError(f"refusing to listen on {host!r}: only loopback unless remote access is enabled explicitly")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def resource_url_for(sock: socket.socket, path: str = "/mcp", host: str | None = None) -> str:
    """`http://<host>:<port><path>` for a bound socket."""
    bound_host, port = sock.getsockname()[:2]
    name = host or bound_host
    if ":" in name:
        name = f"[{name}]"
    return f"http://{name}:{port}{path}"


def _uvicorn_server(app: ASGIApp, log_level: str) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def serve_http(app: ASGIApp, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Serve `app` on an already bound socket until interrupted (blocking)."""
    _uvicorn_server(app, log_level).run(sockets=[sock])


def serve_authenticated_http(
    server: MCPServer[Any],
    verifier: TokenVerifier | Callable[[str], TokenVerifier],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    path: str = "/mcp",
    public_url: str | None = None,
    authorization_servers: Sequence[str] = (),
    allow_remote: bool = False,
    on_ready: Callable[[AuthenticatedHTTPApp], None] | None = None,
    log_level: str = "warning",
    **options: Any,
) -> None:
    """Bind host:port, put `server` behind `verifier` and serve until interrupted (blocking).

    `verifier` may also be a function of the resource URL (known only once the port is bound when
    `port` is 0), e.g. `lambda url: build_verifier(data_dir, resource_url=url, jwt_issuer=...)`.
    `public_url` is the resource URL clients use when it is not `http://host:port/path` (behind a
    TLS proxy); `options` go to `build_http_app` (guard, required_scopes, request_limiter, ...).
    `on_ready` is called with the app (its `resource_url`, `metadata_url`) once the socket is bound."""
    sock = bind_socket(host, port, allow_remote=allow_remote)
    try:
        url = public_url or resource_url_for(sock, "/" + path.strip("/"))
        if not hasattr(verifier, "verify_token"):
            verifier = verifier(url)
        app = build_http_app(server, verifier, url, authorization_servers, host=host, **options)
        if on_ready is not None:
            on_ready(app)
    except BaseException:
        sock.close()
        raise
    serve_http(app, sock, log_level=log_level)


class HTTPServerThread:
    """Runs an ASGI app with uvicorn in a background thread (tests, benchmarks).

    ```python
    sock = bind_socket()
    url = resource_url_for(sock)
    with HTTPServerThread(build_http_app(server, verifier, url), sock):
        ...  # talk to url
    ```
    """

    def __init__(self, app: ASGIApp, sock: socket.socket, *, log_level: str = "warning") -> None:
        self.sock = sock
        self._server = _uvicorn_server(app, log_level)
        self._thread = threading.Thread(target=self._run, name="aesop-http", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self.sock])
        except BaseException as exc:
            self._error = exc

    def start(self, timeout: float = 15.0) -> HTTPServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"HTTP server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("HTTP server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> HTTPServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
