"""A real Neo4j for the tests: from NEO4J_URI, a testcontainer, or the local launcher.

`neo4j_server` (session scope) finds a server in this order:

1. `NEO4J_URI` (with `NEO4J_USER`, default `neo4j`, and `NEO4J_PASSWORD`) when set. The tests
   delete everything in that database between tests: point it at a throwaway one.
2. testcontainers' Neo4j module, when the package is installed and a Docker engine answers.
3. `tools/neo4j-local` (Neo4j Community on 127.0.0.1, built with Maven on first use) in a
   temporary directory, with authentication on and a random password; stopped at the end of
   the session (SIGTERM, then kill).

`neo4j_store_factory` (function scope) empties the database and returns a callable that opens a
`Neo4jGraphStore` on it; every store it opened is closed after the test.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "tools" / "neo4j-local" / "run.sh"
READY_PREFIX = "NEO4J_LOCAL_READY "
# The first start builds the launcher, which downloads Neo4j from Maven Central once.
START_TIMEOUT_S = float(os.environ.get("NEO4J_LOCAL_START_TIMEOUT", "600"))
STOP_TIMEOUT_S = 60.0


@dataclass
class Neo4jServer:
    """Where a test Neo4j answers, and how to stop it if the tests started it."""

    uri: str
    user: str
    password: str
    database: str | None = None
    stop: Callable[[], None] = field(default=lambda: None, repr=False)


@dataclass
class LocalNeo4j:
    """One `tools/neo4j-local` process."""

    uri: str
    password: str
    home: Path
    process: subprocess.Popen[str]
    output: list[str]
    started_in_s: float

    @property
    def port(self) -> int:
        return int(self.uri.rsplit(":", 1)[1])

    def _signal(self, sig: int) -> None:
        # The launcher runs in its own process group: a signal reaches a build still in progress
        # as well as the server.
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            self.process.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (a clean shutdown), then kill if it does not end in time."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()

    def kill(self) -> None:
        """Stop at once, as a crash would (no clean shutdown)."""
        if self.process.poll() is None:
            self._signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_S)


def start_local_neo4j(
    home: Path,
    password: str | None = None,
    port: int = 0,
    timeout: float = START_TIMEOUT_S,
    fast_start: bool = False,
) -> LocalNeo4j:
    """Start the launcher on `home` and wait for its ready line. Skips the test when Java or
    Maven is missing; fails when the server does not come up.

    `fast_start` runs the JVM with its quick compiler only: Neo4j starts with about a third
    less CPU, but long write loads run slower, so benchmarks leave it off.
    """
    if shutil.which("java") is None:
        pytest.skip("Java is not installed, so tools/neo4j-local cannot run Neo4j")
    built = (LAUNCHER.parent / "target" / "neo4j-local.jar").exists()
    if not built and shutil.which("mvn") is None:
        pytest.skip("Maven is not installed, so tools/neo4j-local cannot be built")
    password = password or "test-" + secrets.token_hex(12)
    env = {**os.environ, "NEO4J_LOCAL_PASSWORD": password}
    if fast_start and not env.get("NEO4J_LOCAL_JAVA_OPTS"):
        env["NEO4J_LOCAL_JAVA_OPTS"] = "-XX:TieredStopAtLevel=1"
    args = ["bash", str(LAUNCHER), "--dir", str(home), "--watch-stdin"]
    if port:
        args += ["--port", str(port)]
    started = time.monotonic()
    process = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    output: list[str] = []
    ready = threading.Event()
    found: list[str] = []

    def pump(stream: Any, tag: str) -> None:
        for line in stream:
            output.append(f"{tag}: {line.rstrip()}")
            del output[:-200]
            if tag == "out" and line.startswith(READY_PREFIX):
                found.append(line[len(READY_PREFIX) :].strip())
                ready.set()
        if tag == "out":
            ready.set()  # the process ended: stop waiting

    for stream, tag in ((process.stdout, "out"), (process.stderr, "err")):
        threading.Thread(target=pump, args=(stream, tag), daemon=True).start()
    if not ready.wait(timeout) or not found:
        server = LocalNeo4j("", password, home, process, output, 0.0)
        server.stop()
        tail = "\n".join(output[-40:])
        pytest.fail(f"tools/neo4j-local did not become ready within {timeout:.0f} s:\n{tail}")
    return LocalNeo4j(found[0], password, home, process, output, time.monotonic() - started)


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-not-found]

        docker.from_env().ping()
        return True
    except Exception:
        return False


def _from_testcontainers() -> Neo4jServer | None:
    try:
        from testcontainers.neo4j import Neo4jContainer  # type: ignore[import-not-found]
    except ImportError:
        return None
    if not _docker_answers():
        return None
    container = Neo4jContainer("neo4j:5.26")
    container.start()
    return Neo4jServer(
        uri=container.get_connection_url(),
        user="neo4j",
        password=container.password,
        stop=container.stop,
    )


@pytest.fixture(scope="session")
def neo4j_server() -> Iterator[Neo4jServer]:
    uri = os.environ.get("NEO4J_URI")
    if uri:
        yield Neo4jServer(
            uri=uri,
            user=os.environ.get("NEO4J_USER", "neo4j"),
            password=os.environ.get("NEO4J_PASSWORD", ""),
            database=os.environ.get("NEO4J_DATABASE") or None,
        )
        return
    server = _from_testcontainers()
    if server is not None:
        try:
            yield server
        finally:
            server.stop()
        return
    home = Path(tempfile.mkdtemp(prefix="aesop-neo4j-"))
    local = start_local_neo4j(home, fast_start=True)
    try:
        yield Neo4jServer(uri=local.uri, user="neo4j", password=local.password, stop=local.stop)
    finally:
        local.stop()
        shutil.rmtree(home, ignore_errors=True)


def clear_database(server: Neo4jServer) -> None:
    """Delete every node and relationship (the schema stays: it is set up once per database)."""
    from neo4j import GraphDatabase

    with (
        GraphDatabase.driver(server.uri, auth=(server.user, server.password)) as driver,
        driver.session(database=server.database) as session,
    ):
        while True:
            record = session.run("MATCH (n) WITH n LIMIT 10000 DETACH DELETE n RETURN count(*) AS n").single()
            if record is None or record["n"] == 0:
                break


@pytest.fixture
def neo4j_store_factory(neo4j_server: Neo4jServer) -> Iterator[Callable[[], Any]]:
    from aesoperator.engine.stores.neo4j import Neo4jGraphStore

    clear_database(neo4j_server)
    opened: list[Neo4jGraphStore] = []

    def factory() -> Neo4jGraphStore:
        store = Neo4jGraphStore(
            neo4j_server.uri, neo4j_server.user, neo4j_server.password, database=neo4j_server.database
        )
        opened.append(store)
        return store

    yield factory
    for store in opened:
        with contextlib.suppress(Exception):
            store.close()
