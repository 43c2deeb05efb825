"""Several `aesop serve --http` replicas on one Neo4j, as real processes: each keeps its own
derived indexes (data dir of its own) and follows the store's change log, so a write through one
replica, or an ingest from a third process, is found through the other within a second on the
keyword, name and vector channels; a replica killed with SIGKILL catches up from the change log
on restart without rebuilding its indexes."""

from __future__ import annotations

import concurrent.futures
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.load.replica_fleet import Neo4jTarget, Replica, aesop_argv, issue_token, replica_env
from tests.neo4j_support import Neo4jServer

pytestmark = [pytest.mark.neo4j, pytest.mark.timeout(240)]

FRESH_SECONDS = 1.0
FILLER = [
    ("Marigold Bakery", "shop", "The Marigold Bakery sells sourdough loaves every morning"),
    ("Copper Canal", "place", "The Copper Canal carries barges of coal through the old town"),
    ("Juniper Lab", "team", "Juniper Lab studies soil bacteria in greenhouse trials"),
    ("Saffron Ferry", "vessel", "The Saffron Ferry crosses the bay twice an hour"),
]


def _target(server: Neo4jServer) -> Neo4jTarget:
    return Neo4jTarget(server.uri, server.user, server.password)


async def _call(replica: Replica, token: str, tool: str, args: dict[str, Any]) -> Any:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
        Client(streamable_http_client(replica.url, http_client=http)) as client,
    ):
        result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    return result.structured_content


def call(replica: Replica, token: str, tool: str, **args: Any) -> Any:
    return anyio.run(_call, replica, token, tool, args)


def reasons_for(replica: Replica, token: str, query: str, name: str) -> list[str]:
    """The reasons `name` was chosen for `query` through `replica` (empty: not among the hits)."""
    hits = call(replica, token, "search", query=query, k=10, hops=0)["hits"]
    return next((h["reasons"] for h in hits if h["name"] == name), [])


def seen_within(check: Callable[[], bool], seconds: float) -> float | None:
    """Seconds until `check()` held, polling; None when it did not within `seconds`."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            return None
        time.sleep(0.05)


def has_channel(reasons: list[str], channel: str) -> bool:
    return any(r.startswith(channel) for r in reasons)


def vector_stored(store: Any, name_fragment: str) -> Callable[[], bool]:
    """Whether an entity whose name contains `name_fragment` has a vector in the store."""

    def check() -> bool:
        ids = [e.id for batch in store.iter_entities(batch_size=500) for e in batch if name_fragment in e.name]
        return bool(ids) and bool(store.get_vectors(ids, "all-MiniLM-L6-v2"))

    return check


def metric(replica: Replica, name: str, labels: dict[str, str]) -> float:
    text = httpx2.get(replica.metrics_url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.fixture
def fleet(tmp_path: Path, neo4j_server: Neo4jServer, neo4j_store_factory: Any) -> Iterator[dict[str, Any]]:
    """Two replicas started at once on an emptied database (both create the schema), seeded and
    warmed; the test's own store handle reads Neo4j directly."""
    target = _target(neo4j_server)
    replicas = [Replica(tmp_path / name, target) for name in ("a", "b")]
    tokens = [issue_token(r.data_dir) for r in replicas]
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(Replica.start, replicas))
        entities = [{"name": n, "entityType": t, "observations": [o]} for n, t, o in FILLER]
        call(replicas[0], tokens[0], "create_entities", entities=entities)
        store = neo4j_store_factory()
        assert seen_within(vector_stored(store, "Saffron"), 30) is not None
        for replica, token in zip(replicas, tokens, strict=True):  # indexes built, model loaded
            assert has_channel(reasons_for(replica, token, "sourdough loaves", "Marigold Bakery"), "keyword")
        yield {"replicas": replicas, "tokens": tokens, "store": store, "target": target, "tmp": tmp_path}
    finally:
        for replica in replicas:
            replica.stop()


def test_writes_through_one_replica_are_found_through_the_other_on_every_channel(fleet: dict[str, Any]) -> None:
    (a, b), (ta, tb), store = fleet["replicas"], fleet["tokens"], fleet["store"]

    # A memory-tool write through A: keyword and name channels of B see it within a second.
    call(
        a,
        ta,
        "create_entities",
        entities=[
            {
                "name": "Zorblax Quintet",
                "entityType": "band",
                "observations": ["The Zorblax Quintet tunes harpsichords for lighthouse keepers"],
            }
        ],
    )
    keyword = seen_within(lambda: has_channel(reasons_for(b, tb, "harpsichords", "Zorblax Quintet"), "keyword"), 10)
    assert keyword is not None and keyword < FRESH_SECONDS, keyword
    named = seen_within(
        lambda: "exact name match" in reasons_for(b, tb, "Zorblax Quintet", "Zorblax Quintet"), FRESH_SECONDS
    )
    assert named is not None, b.log[-20:]
    # The vector channel: A's background worker stores the vector; B's index follows within a
    # second, for a query sharing no word with the entity (only the vector channel can answer).
    assert seen_within(vector_stored(store, "Zorblax"), 30) is not None
    paraphrase = "musicians who repair keyboard instruments for coastal guards"

    def vector_only() -> bool:
        found = reasons_for(b, tb, paraphrase, "Zorblax Quintet")
        return has_channel(found, "vector") and not has_channel(found, "keyword") and "exact name match" not in found

    assert seen_within(vector_only, FRESH_SECONDS) is not None, b.log[-20:]

    # An update through A: B, which has read the entity for its searches above (and keeps it in
    # its entity cache), shows the new text within a second.
    call(
        a,
        ta,
        "add_observations",
        observations=[{"entityName": "Zorblax Quintet", "contents": ["The quintet also restores foghorns"]}],
    )

    def shows_the_update() -> bool:
        hits = call(b, tb, "search", query="Zorblax Quintet harpsichords", k=10, hops=0)["hits"]
        return any(h["name"] == "Zorblax Quintet" and "foghorns" in h["text"] for h in hits)

    updated = seen_within(shows_the_update, 10)
    assert updated is not None and updated < FRESH_SECONDS, (updated, b.log[-20:])

    # `remember` through A embeds before it answers: B finds the episode by word and by meaning.
    call(a, ta, "remember", content="Ollivander Pike moved the brass ledger to the east archive", agent_id="clerk")

    def episode_reasons(query: str) -> list[str]:
        hits = call(b, tb, "search", query=query, k=10, hops=0)["hits"]
        return next((h["reasons"] for h in hits if "brass ledger" in h["text"]), [])

    assert seen_within(lambda: has_channel(episode_reasons("brass ledger"), "keyword"), FRESH_SECONDS) is not None

    def episode_by_meaning() -> bool:
        found = episode_reasons("someone relocated an old account book to a storage room")
        return has_channel(found, "vector") and not has_channel(found, "keyword")

    assert seen_within(episode_by_meaning, FRESH_SECONDS) is not None, b.log[-20:]

    # Writes through both, B's first: B's worker wakes while A's write is in the log and not
    # embedded yet. Each entity is still embedded once, by the replica that wrote it.
    def embedded() -> list[float]:
        return [metric(r, "aesop_background_embedded_total", {}) for r in (a, b)]

    time.sleep(2.5)  # both workers idle
    before = embedded()
    for replica, token, name in ((b, tb, "Brambleworth Tannery"), (a, ta, "Quillon Ravine")):
        entity = {"name": name, "entityType": "place", "observations": [f"{name} is a landmark"]}
        call(replica, token, "create_entities", entities=[entity])
        time.sleep(0.3)
    for fragment in ("Quillon", "Brambleworth"):
        assert seen_within(vector_stored(store, fragment), 30) is not None
    time.sleep(2.5)  # let both workers finish whatever they would still do
    after = embedded()
    assert [x - y for x, y in zip(after, before, strict=True)] == [1.0, 1.0], (before, after)

    # An ingest from a third process (which embeds as it writes): both replicas find it at once.
    docs = fleet["tmp"] / "docs"
    docs.mkdir()
    (docs / "kestrel.md").write_text("# Kestrel Observatory\nThe Kestrel Observatory tracks comets over the moor.\n")
    import subprocess

    target = fleet["target"]
    done = subprocess.run(
        aesop_argv(fleet["tmp"] / "ingester", target, "ingest", str(docs)),
        env=replica_env(target),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    asked = (("comets", "keyword"), ("astronomers watching icy wanderers in the sky", "vector"))
    for (replica, token), (query, channel) in itertools.product(((a, ta), (b, tb)), asked):
        assert (
            seen_within(
                lambda r=replica, t=token, q=query, c=channel: any(
                    has_channel(reasons_for(r, t, q, n), c) for n in ("Kestrel Observatory", "kestrel.md")
                ),
                FRESH_SECONDS,
            )
            is not None
        ), (channel, replica.log[-20:])


def test_a_killed_replica_catches_up_from_the_change_log_without_rebuilding(fleet: dict[str, Any]) -> None:
    (a, b), (ta, tb), store = fleet["replicas"], fleet["tokens"], fleet["store"]
    b.kill()  # nothing saved at close: its indexes on disk are those of its first build
    call(
        a,
        ta,
        "create_entities",
        entities=[
            {
                "name": "Vellichor Orchard",
                "entityType": "farm",
                "observations": ["Vellichor Orchard grows quinces on terraced hillsides"],
            }
        ],
    )
    call(a, ta, "remember", content="Ollivander Pike moved the ledger to the east archive", agent_id="clerk")
    assert seen_within(vector_stored(store, "Vellichor"), 30) is not None

    b.start()
    assert has_channel(reasons_for(b, tb, "quinces terraced", "Vellichor Orchard"), "keyword")
    assert has_channel(reasons_for(b, tb, "fruit trees grown on stepped slopes", "Vellichor Orchard"), "vector")
    hits = call(b, tb, "search", query="ledger east archive", k=10, hops=0)["hits"]
    assert any("ledger" in h["text"] for h in hits), hits
    rebuilt = {i: metric(b, "aesop_index_syncs_total", {"index": i, "how": "rebuild"}) for i in ("vector", "keyword")}
    replayed = {
        i: metric(b, "aesop_index_syncs_total", {"index": i, "how": "incremental"}) for i in ("vector", "keyword")
    }
    assert rebuilt == {"vector": 0.0, "keyword": 0.0}, (rebuilt, b.log[-30:])
    assert replayed["vector"] >= 1 and replayed["keyword"] >= 1, replayed
    assert not any("rebuilt vector index" in line or "rebuilt keyword index" in line for line in b.log)
