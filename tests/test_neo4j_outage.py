"""Neo4j going away in the middle of an ingest and in the middle of queries, on a Neo4j of this
test's own (it is killed, so not the session's shared server):

- each call fails with a StoreError saying Neo4j at <uri> is not reachable, within a window set by
  `neo4j_max_retry_time` and `neo4j_connection_timeout` (seconds, not the driver's defaults);
- no batch is half written: every source item's entities are there, every file entity has its item;
- after a restart on the same data directory the same engine reconnects, the ingest resumes after
  the batches it wrote and completes to the same content as an uninterrupted run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aesoperator import ContextEngine
from aesoperator.config import Settings
from aesoperator.engine.stores.base import GraphStore
from aesoperator.errors import StoreError
from tests.neo4j_support import LocalNeo4j, Neo4jServer, clear_database, start_local_neo4j

pytestmark = [pytest.mark.slow, pytest.mark.neo4j]

FILES = 480
BATCH = 30
PAUSE_AT = 240  # records read before the server is killed mid-ingest
RETRY_S = 2.0  # neo4j_max_retry_time
CONNECT_S = 2.0  # neo4j_connection_timeout
# A failed call must be reported within this many seconds of the kill: the retry time, one backoff
# step of the driver (up to about twice the retry time) and room for a busy 2-core machine. With the
# driver's defaults (30 s of retries) it would take half a minute or more.
WINDOW_S = 15.0


def _make_tree(root: Path) -> None:
    for i in range(FILES):
        folder = root / f"aisle{i // 60:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"crate{i:04d}.md").write_text(
            f"# Crate {i}\n\nCrate {i} holds {i % 13} walnut boxes, row {i % 7}.\n"
        )


class PauseAt:
    """A progress reporter that holds the ingest after `at` records until `resume` is set."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen = 0
        self.reached = threading.Event()
        self.resume = threading.Event()

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        self.seen += n
        if self.seen == self.at:
            self.reached.set()
            assert self.resume.wait(300), "the test never resumed the ingest"

    def finish(self) -> None:
        pass


def _items(store: GraphStore) -> dict[str, Any]:
    return {k: v for k, v in store.source_items("tree").items() if not k.startswith("__")}


def _check_whole_batches(store: GraphStore) -> int:
    items = _items(store)
    for state in items.values():
        found = store.get_entities(list(state.entity_ids))
        assert len(found) == len(state.entity_ids), f"half-written item {state.key}"
    files = [e for page in store.iter_entities(types=["File"]) for e in page]
    assert {e.properties["path"] for e in files} == set(items), "a file entity without its sync state"
    return len(items)


def _content(store: GraphStore) -> dict[str, Any]:
    """What an ingest produced, without the times it was produced at."""
    entities = sorted(
        (e.id, e.type, e.name, e.text, e.namespace, e.source, repr(sorted(e.properties.items())))
        for page in store.iter_entities()
        for e in page
    )
    relations = sorted(
        (r.id, r.type, r.src, r.dst, r.namespace, r.is_live()) for page in store.iter_relations() for r in page
    )
    items = sorted((s.key, s.content_hash, s.entity_ids, s.relation_ids) for s in _items(store).values())
    return {"entities": entities, "relations": relations, "items": items}


def _fails_within_window(call: Callable[[], object], uri: str) -> float:
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        call()
    seconds = time.monotonic() - started
    message = str(info.value)
    assert f"Neo4j at {uri}" in message and "not reachable" in message, message
    assert seconds < WINDOW_S, f"took {seconds:.1f} s to report: {message}"
    return seconds


@pytest.fixture
def own_neo4j(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A Neo4j for this test alone; `restart()` starts it again on the same directory and port."""
    home = tmp_path / "neo4j"
    state: dict[str, Any] = {"server": start_local_neo4j(home, fast_start=True)}

    def restart() -> LocalNeo4j:
        old: LocalNeo4j = state["server"]
        state["server"] = start_local_neo4j(home, password=old.password, port=old.port, fast_start=True)
        return state["server"]

    state["restart"] = restart
    try:
        yield state
    finally:
        state["server"].stop()


@pytest.mark.timeout(600)
def test_neo4j_killed_mid_ingest_and_mid_query_then_resumed(
    own_neo4j: dict[str, Any], tmp_path: Path, embedder: Any
) -> None:
    server: LocalNeo4j = own_neo4j["server"]
    tree = tmp_path / "tree"
    _make_tree(tree)

    def settings(data_dir: Path) -> Settings:
        return Settings(
            data_dir=data_dir,
            graph=server.uri,
            neo4j_password=server.password,
            neo4j_max_retry_time=RETRY_S,
            neo4j_connection_timeout=CONNECT_S,
            write_batch_size=BATCH,
            embed_on_ingest=False,
        )

    engine = ContextEngine.open(settings=settings(tmp_path / "data"), embedder=embedder)
    try:
        # 1. Killed mid-ingest: the ingest stops with a clear error within the window.
        pause = PauseAt(PAUSE_AT)
        outcome: dict[str, Any] = {}

        def ingest() -> None:
            try:
                outcome["report"] = engine.ingest_path(tree, name="tree", progress=pause)
            except BaseException as exc:
                outcome["error"], outcome["at"] = exc, time.monotonic()

        thread = threading.Thread(target=ingest, name="ingest")
        thread.start()
        assert pause.reached.wait(180), outcome
        deadline = time.monotonic() + 60
        while len(_items(engine.store)) < 3 * BATCH and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()
        killed_at = time.monotonic()
        pause.resume.set()
        thread.join(120)
        assert not thread.is_alive()
        error = outcome.get("error")
        assert isinstance(error, StoreError), outcome
        message = str(error)
        assert f"Neo4j at {server.uri}" in message and "not reachable" in message, message
        assert "ingest of source 'tree' stopped" in message and "resumes" in message, message
        assert outcome["at"] - killed_at < WINDOW_S, f"{outcome['at'] - killed_at:.1f} s: {message}"

        # While it is down every call says so, within the window.
        some_id = "no-such-entity"
        for call in (
            lambda: engine.search("walnut boxes", k=3),
            lambda: engine.get_entities([some_id]),
            lambda: engine.neighbors([some_id]),
            lambda: engine.remember("Counted the walnut boxes.", agent_id="clerk"),
            engine.stats,
        ):
            _fails_within_window(call, server.uri)

        # 2. Back on the same directory: the same engine reconnects, and nothing is half written.
        server = own_neo4j["restart"]()
        committed = _check_whole_batches(engine.store)
        assert 0 < committed < FILES
        hit = engine.search("crate 7 walnut boxes", k=3).hits[0]
        assert engine.get_entities([hit.id]) and engine.neighbors([hit.id]).entities

        # 3. Killed mid-query: a loop of queries sees a clear error within the window.
        stop = threading.Event()
        failures: list[tuple[float, BaseException]] = []
        answered = [0]

        def query_loop() -> None:
            while not stop.is_set():
                try:
                    found = engine.search("walnut boxes row 3", k=5)
                    engine.neighbors([h.id for h in found.hits][:3] or [hit.id])
                    engine.get_entities([hit.id])
                    answered[0] += 1
                except BaseException as exc:
                    failures.append((time.monotonic(), exc))
                    return

        looping = threading.Thread(target=query_loop, name="queries")
        looping.start()
        deadline = time.monotonic() + 60
        while answered[0] < 5 and time.monotonic() < deadline and looping.is_alive():
            time.sleep(0.02)
        assert answered[0] >= 5, failures
        server.kill()
        killed_at = time.monotonic()
        looping.join(120)
        stop.set()
        assert failures, "the query loop did not notice the server going away"
        failed_at, exc = failures[0]
        assert isinstance(exc, StoreError), repr(exc)
        assert f"Neo4j at {server.uri}" in str(exc) and "not reachable" in str(exc), str(exc)
        assert failed_at - killed_at < WINDOW_S, f"{failed_at - killed_at:.1f} s: {exc}"

        # 4. Back again: the ingest resumes after what it wrote and completes.
        server = own_neo4j["restart"]()
        assert _check_whole_batches(engine.store) == committed
        report = engine.ingest_path(tree, name="tree")
        assert report.records_unchanged == committed
        assert report.records_changed == FILES - committed
        assert _check_whole_batches(engine.store) == FILES
        resumed = _content(engine.store)
    finally:
        engine.close()

    # The same tree ingested in one uninterrupted run, on the emptied database.
    clear_database(Neo4jServer(uri=server.uri, user="neo4j", password=server.password))
    fresh = ContextEngine.open(settings=settings(tmp_path / "data-uninterrupted"), embedder=embedder)
    try:
        report = fresh.ingest_path(tree, name="tree")
        assert report.records_changed == FILES
        uninterrupted = _content(fresh.store)
    finally:
        fresh.close()
    assert len(resumed["entities"]) > FILES and resumed["relations"]
    assert resumed == uninterrupted
