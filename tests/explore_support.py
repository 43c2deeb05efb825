"""A running explorer for the tests: the demo corpus plus a stored-XSS attempt in an engine on a
temporary data dir, real static tokens, the audit log, uvicorn on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aesoperator import ContextEngine
from aesoperator.config import Settings
from aesoperator.engine.embeddings import TextEmbedder
from aesoperator.explore import standalone_app
from aesoperator.explore.demo import DemoCorpus, load_demo
from aesoperator.explore.server import build_explorer
from aesoperator.graph_schema.models import Entity
from aesoperator.security.guard import CallGuard
from aesoperator.security.http.listener import HTTPServerThread, bind_socket, resource_url_for
from aesoperator.security.tokens import StaticTokenVerifier, TokenStore

# Ingested content that would run if it were ever put into the page as markup.
XSS_NAME = "<img src=x onerror=\"window.__xss='name'\">Mallory<script>window.__xss='script'</script>"
XSS_TEXT = "Mallory wrote <script>alert('xss')</script> and <img src=x onerror=alert(1)> in the billing notes."
XSS_ID = "manual:xss:mallory"


@dataclass
class RunningExplorer:
    base: str  # http://127.0.0.1:PORT/explore/
    origin: str
    engine: ContextEngine
    data_dir: Path
    demo: DemoCorpus
    full_token: str  # read:* source:* write:default
    narrow_token: str  # read:partners, and only the search, entity and neighbors tools
    guard: CallGuard


@contextmanager
def running_explorer(tmp: Path, embedder: TextEmbedder) -> Iterator[RunningExplorer]:
    data_dir = tmp / "data"
    engine = ContextEngine.open(settings=Settings(data_dir=data_dir), embedder=embedder)
    guard = CallGuard.for_data_dir(data_dir)
    server: HTTPServerThread | None = None
    try:
        demo = load_demo(engine, tmp / "notes")
        xss = Entity(id=XSS_ID, type="Person", name=XSS_NAME, text=XSS_TEXT, source="manual", namespace="default")
        engine.upsert([xss])
        tokens = TokenStore.in_data_dir(data_dir)
        full = tokens.add("analyst", ["read:*", "source:*", "write:default"]).token
        narrow = tokens.add("partner", ["read:partners", "tool:search", "tool:entity", "tool:neighbors"]).token
        sock = bind_socket("127.0.0.1", 0)
        verifier = StaticTokenVerifier.in_data_dir(data_dir)
        explorer = build_explorer(engine, sock, guard=guard, verifier=verifier, host="127.0.0.1")
        origin = resource_url_for(sock, "").rstrip("/")
        server = HTTPServerThread(standalone_app(explorer), sock).start()
        yield RunningExplorer(
            base=origin + "/explore/",
            origin=origin,
            engine=engine,
            data_dir=data_dir,
            demo=demo,
            full_token=full,
            narrow_token=narrow,
            guard=guard,
        )
    finally:
        if server is not None:
            server.stop()
        guard.close()
        engine.close()
