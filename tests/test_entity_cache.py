"""The entity cache in front of the store's reads (`engine/entity_cache.py`): it answers what the
store answers, sees every write made through any connection at the next change-log position,
forgets what an erasure removes, keeps a row read before a concurrent write out of the cache, and
stays within its size bound. Searches through the engine give the same results with it and
without it. The store is the real embedded one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from aesoperator.engine.entity_cache import ENTRY_OVERHEAD_CHARS, EntityCache
from aesoperator.engine.stores.base import WriteBatch
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.graph_schema.models import Entity

FIXTURE = Path(__file__).parent / "fixtures" / "docs"


def ent(eid: str, text: str = "", namespace: str = "default") -> Entity:
    return Entity(id=eid, type="Document", name=eid, text=text or f"text of {eid}", namespace=namespace)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = EmbeddedGraphStore(tmp_path / "store")
    yield opened
    opened.close()


def texts(entities: Sequence[Entity]) -> list[tuple[str, str]]:
    return [(e.id, e.text) for e in entities]


def test_answers_what_the_store_answers_in_order_with_namespaces(store: Any) -> None:
    store.upsert([ent("a"), ent("b", namespace="other"), ent("c")])
    cache = EntityCache(10_000_000)
    for ids, namespaces in (
        (["c", "a", "missing", "b"], None),
        (["c", "a", "b", "a"], ["default"]),
        (["b", "a"], ["other"]),
        (["a", "b", "c"], ["nowhere"]),
    ):
        for _ in range(2):  # read from the store, then from the cache
            assert texts(cache.read(store, ids, namespaces)) == texts(store.get_entities(ids, namespaces))
    assert cache.hits > 0


def test_second_read_comes_from_the_cache(store: Any) -> None:
    store.upsert([ent("a"), ent("b")])
    cache = EntityCache(10_000_000)
    first = cache.read(store, ["a", "b"], None)
    assert (cache.hits, cache.misses) == (0, 2)
    second = cache.read(store, ["a", "b"], None)
    assert (cache.hits, cache.misses) == (2, 2)
    assert [id(e) for e in first] == [id(e) for e in second]


def test_writes_through_another_connection_are_seen_at_the_next_position(tmp_path: Path) -> None:
    reader = EmbeddedGraphStore(tmp_path / "shared")
    writer = EmbeddedGraphStore(tmp_path / "shared")
    try:
        writer.upsert([ent("a", "first"), ent("b", "kept")])
        cache = EntityCache(10_000_000)
        assert texts(cache.read(reader, ["a", "b"], None)) == [("a", "first"), ("b", "kept")]
        writer.upsert([ent("a", "second")])
        writer.write(WriteBatch(delete_entity_ids=["b"]))
        assert texts(cache.read(reader, ["a", "b"], None)) == [("a", "second")]
        assert cache.hits == 0  # both were dropped by the replay, not served stale
    finally:
        writer.close()
        reader.close()


def test_an_erasure_empties_the_cache(store: Any) -> None:
    store.upsert([ent("a"), ent("secret"), ent("c")])
    cache = EntityCache(10_000_000)
    cache.read(store, ["a", "secret", "c"], None)
    store.write(WriteBatch(delete_entity_ids=["secret"], erase=True))
    assert len(cache.read(store, ["c"], None)) == 1
    assert len(cache) == 1  # only what was read again: the erasure dropped every entry
    assert cache.read(store, ["secret"], None) == []


def test_a_row_read_before_a_concurrent_write_is_not_kept(store: Any) -> None:
    """Search 1 reads a row; before it stores it in the cache, a write lands and search 2 replays
    the log past it. Search 1's (older) row must not then sit in the cache."""
    store.upsert([ent("a", "old")])
    cache = EntityCache(10_000_000)
    cache.read(store, [], None)  # the cache is at the current position

    class RacingStore:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def get_entities(self, ids: Sequence[str], namespaces: Sequence[str] | None = None) -> list[Entity]:
            rows = self.inner.get_entities(ids, namespaces)  # search 1's read: "old"
            self.inner.upsert([ent("a", "new")])
            assert texts(cache.read(self.inner, ["a"], None)) == [("a", "new")]  # search 2
            return rows

    assert texts(cache.read(RacingStore(store), ["a"], None)) == [("a", "old")]
    assert texts(cache.read(store, ["a"], None)) == [("a", "new")]


def test_the_least_recently_used_go_first_past_the_size_bound(store: Any) -> None:
    store.upsert([ent(f"e{i}", "x" * 100) for i in range(10)])
    one = 100 + 2 + ENTRY_OVERHEAD_CHARS
    cache = EntityCache(3 * one)
    cache.read(store, ["e0", "e1", "e2"], None)
    cache.read(store, ["e0"], None)  # e0 is now the most recent
    cache.read(store, ["e3"], None)  # e1 goes
    assert len(cache) == 3
    hits = cache.hits
    cache.read(store, ["e0", "e2", "e3"], None)
    assert cache.hits == hits + 3
    cache.read(store, ["e1"], None)
    assert cache.hits == hits + 3  # e1 was read from the store again


def test_a_large_change_backlog_empties_the_cache(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import aesoperator.engine.entity_cache as entity_cache

    monkeypatch.setattr(entity_cache, "REPLAY_PAGE", 3)
    store.upsert([ent("a"), ent("b")])
    cache = EntityCache(10_000_000)
    cache.read(store, ["a", "b"], None)
    store.upsert([ent(f"n{i}") for i in range(5)])
    cache.read(store, ["n0"], None)
    assert len(cache) == 1


def _search_view(engine: Any, query: str) -> list[tuple[str, float, str]]:
    result = engine.search(query, k=5, hops=1)
    return [(h.id, round(h.score, 9), h.text) for h in result.hits] + [("context", 0.0, result.context_text())]


def test_searches_give_the_same_results_with_and_without_the_cache(
    make_engine: Callable[..., Any], tmp_path: Path
) -> None:
    cached = make_engine(tmp_path / "cached")
    plain = make_engine(tmp_path / "plain", entity_cache_mb=0)
    for engine in (cached, plain):
        engine.ingest_path(FIXTURE)
    queries = ["How are tokens refreshed?", "database connection pool", "release process", "cache"]
    for _ in range(2):  # the second round is answered from the cache
        for query in queries:
            assert _search_view(cached, query) == _search_view(plain, query)
    assert cached._entity_cache.hits > 0
    assert plain._entity_cache is None


def test_a_search_after_a_write_shows_the_new_text(make_engine: Callable[..., Any]) -> None:
    engine = make_engine()
    engine.upsert(entities=[ent("note:1", "The deploy key rotates every ninety days.")])
    assert "ninety" in engine.search("deploy key rotation", k=3).hits[0].text
    engine.upsert(entities=[ent("note:1", "The deploy key rotates every thirty days.")])
    assert "thirty" in engine.search("deploy key rotation", k=3).hits[0].text


def test_a_store_whose_log_went_back_empties_the_cache(tmp_path: Path) -> None:
    """A data dir restored from an older copy under the same path: the log's position is lower
    than the cache's, and nothing cached may be trusted."""
    first = EmbeddedGraphStore(tmp_path / "one")
    first.upsert([ent("a", "from the newer store"), ent("b"), ent("c")])
    cache = EntityCache(10_000_000)
    cache.read(first, ["a"], None)
    first.close()
    restored = EmbeddedGraphStore(tmp_path / "two")
    try:
        restored.upsert([ent("a", "from the restored store")])
        assert texts(cache.read(restored, ["a"], None)) == [("a", "from the restored store")]
    finally:
        restored.close()
