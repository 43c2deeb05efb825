"""The embedded store's traversal view against a plain reference walk, through the store's writes.

The reference is the walk over a networkx MultiDiGraph built from the same rows, which is what
the view replaced: on a freshly loaded view the two must agree exactly (hops, relations and their
order, so limits cut at the same place); after incremental catch-ups and compactions the view
must hold what a fresh load holds.
"""

from __future__ import annotations

import sqlite3
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aesoperator.engine.stores import graph_view
from aesoperator.engine.stores.base import WriteBatch
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.engine.stores.graph_view import ArrayGraphView, Traversal
from aesoperator.graph_schema.models import Entity, Relation, to_iso

T0 = datetime(2026, 5, 1, tzinfo=UTC)
NOW = to_iso(T0 + timedelta(days=400)) or ""
NODES = [f"n{i}" for i in range(8)]
TYPES = ["LINKS_TO", "MENTIONS", "NEXT"]
NAMESPACES = ["default", "team"]


def reference_graph(db_path: Path) -> nx.MultiDiGraph:
    graph: nx.MultiDiGraph = nx.MultiDiGraph()
    with sqlite3.connect(db_path) as conn:
        for eid, ns in conn.execute("SELECT id, namespace FROM entities"):
            graph.add_node(eid, namespace=ns)
        for rid, typ, src, dst, ns, *times in conn.execute(graph_view._EDGE_SQL):
            if src in graph and dst in graph:
                attrs: dict[str, Any] = {"type": typ, "namespace": ns}
                attrs.update({name: t for name, t in zip(graph_view.TIME_FIELDS, times, strict=True) if t is not None})
                graph.add_edge(src, dst, key=rid, **attrs)
    return graph


def edge_is_live(attrs: dict[str, Any], as_of: str | None, now: str) -> bool:
    """`Relation.is_live` over ISO text, as the networkx view decided it: live now when not expired
    and not past `valid_to`; live at `as_of` when it started by then (`valid_from`, else
    `recorded_at`) and had not ended (`valid_to`, else `expired_at`)."""
    if as_of is None:
        if attrs.get("expired_at") is not None:
            return False
        valid_to = attrs.get("valid_to")
        return valid_to is None or valid_to > now
    start = attrs.get("valid_from") or attrs.get("recorded_at")
    if start is not None and start > as_of:
        return False
    end = attrs.get("valid_to") or attrs.get("expired_at")
    return end is None or end > as_of


def reference_walk(
    graph: nx.MultiDiGraph,
    seeds: list[str],
    depth: int,
    types: set[str] | None,
    direction: str,
    as_of: str | None,
    namespaces: set[str] | None,
    limit: int,
    skip: tuple[str, ...],
) -> Traversal:
    """Breadth-first over networkx's adjacency, outgoing relations first."""
    result = Traversal()
    hops = result.hops
    for seed in seeds:
        if len(hops) >= limit:
            break
        if seed in graph and seed not in hops and (namespaces is None or graph.nodes[seed]["namespace"] in namespaces):
            hops[seed] = 0
    followed: dict[str, None] = {}
    frontier = list(hops)
    for hop in range(1, depth + 1):
        next_frontier: list[str] = []
        for current in frontier:
            incident = []
            if direction in ("out", "both"):
                incident += [(k, v, a) for v, keyed in graph.succ[current].items() for k, a in keyed.items()]
            if direction in ("in", "both"):
                incident += [(k, u, a) for u, keyed in graph.pred[current].items() for k, a in keyed.items()]
            for rid, other, attrs in incident:
                if types is not None and attrs["type"] not in types:
                    continue
                if namespaces is not None and (
                    attrs["namespace"] not in namespaces or graph.nodes[other]["namespace"] not in namespaces
                ):
                    continue
                if not edge_is_live(attrs, as_of, NOW):
                    continue
                if other not in hops:
                    if skip and other.startswith(skip):
                        continue
                    if len(hops) >= limit:
                        continue
                    hops[other] = hop
                    next_frontier.append(other)
                if rid not in followed:
                    followed[rid] = None
                    result.edges.append((current, other, attrs["type"]))
        frontier = next_frontier
    result.relation_ids = list(followed)
    return result


def snapshot(view: ArrayGraphView) -> tuple[set[tuple[str, str, str]], set[Any]]:
    return set(view.nodes()), set(view.edges())


def fresh_view(db_path: Path) -> ArrayGraphView:
    view = ArrayGraphView()
    with sqlite3.connect(db_path) as conn:
        view.load(conn)
    return view


# few distinct days, so that times equal to `NOW` or to an `as_of` are common
DAYS = st.sampled_from([0, 200, 400, 600])
moments = st.sampled_from([None, None, None, 0, 200, 400, 600]).map(
    lambda d: None if d is None else T0 + timedelta(days=d)
)
relations = st.builds(
    lambda src, dst, typ, ns, times, key: Relation(
        id=f"r{key}", type=typ, src=src, dst=dst, namespace=ns,
        valid_from=times[0], valid_to=times[1], expired_at=times[2],
    ),
    st.sampled_from(NODES), st.sampled_from(NODES), st.sampled_from(TYPES), st.sampled_from(["default", "default", "team"]),
    st.tuples(moments, moments, moments), st.integers(0, 60),
)  # fmt: skip
relation_steps = st.tuples(st.just("relations"), st.lists(relations, max_size=25))
steps = st.one_of(
    relation_steps,
    relation_steps,
    st.tuples(
        st.just("entities"), st.lists(st.tuples(st.sampled_from(NODES), st.sampled_from(NAMESPACES)), max_size=6)
    ),
    st.tuples(st.just("delete"), st.lists(st.sampled_from(NODES), max_size=1)),
    st.tuples(st.just("expire"), st.lists(st.integers(0, 60).map(lambda k: f"r{k}"), max_size=3)),
)
walks = st.tuples(
    st.lists(st.sampled_from(NODES), min_size=1, max_size=4),
    st.integers(1, 3),
    st.one_of(st.none(), st.sets(st.sampled_from(TYPES), min_size=1)),
    st.sampled_from(["out", "in", "both"]),
    st.one_of(st.none(), DAYS.map(lambda d: to_iso(T0 + timedelta(days=d)))),
    st.sampled_from([None, None, {"default"}, {"team"}, {"default", "team"}]),
    st.sampled_from([2, 5, 1000]),
    st.sampled_from([(), ("n1",)]),
)


def apply(store: EmbeddedGraphStore, step: tuple[str, list[Any]]) -> None:
    kind, items = step
    if kind == "entities":
        entities = [Entity(id=eid, type="Topic", name=eid, text=eid, namespace=ns) for eid, ns in dict(items).items()]
        store.write(WriteBatch(entities=entities, allow_namespace_moves=True))
    elif kind == "relations":
        by_id = {r.id: r for r in items}  # one write per id
        existing = {e.id for e in store.get_entities(list({e for r in by_id.values() for e in (r.src, r.dst)}))}
        store.write(
            WriteBatch(relations=[r for r in by_id.values() if {r.src, r.dst} <= existing], allow_namespace_moves=True)
        )
    elif kind == "delete":
        store.delete_entities(items)
    else:
        store.expire_relations(items, at=T0 + timedelta(days=300))


def check_walks(store: EmbeddedGraphStore, view: ArrayGraphView, cases: list[Any], exact_order: bool) -> None:
    reference = reference_graph(store.db_path)
    for seeds, depth, types, direction, as_of, namespaces, limit, skip in cases:
        got = view.traverse(seeds, depth, types, direction, as_of, NOW, namespaces, limit, skip)
        if exact_order:
            want = reference_walk(reference, seeds, depth, types, direction, as_of, namespaces, limit, skip)
            assert (list(got.hops.items()), got.relation_ids, got.edges) == (
                list(want.hops.items()), want.relation_ids, want.edges,
            )  # fmt: skip
        else:  # without a limit, the reached set, the hop counts and the relations followed do not depend on order
            want = reference_walk(reference, seeds, depth, types, direction, as_of, namespaces, 10**9, skip)
            got = view.traverse(seeds, depth, types, direction, as_of, NOW, namespaces, 10**9, skip)
            assert got.hops == want.hops
            assert set(got.relation_ids) == set(want.relation_ids)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.lists(relations, min_size=10, max_size=40),
    history=st.lists(steps, min_size=1, max_size=6),
    cases=st.lists(walks, min_size=1, max_size=6),
)
def test_view_walks_as_the_reference_after_any_history(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    start: list[Relation],
    history: list[Any],
    cases: list[Any],
) -> None:
    monkeypatch.setattr(graph_view, "_COMPACT_MIN", 4)  # compact often, so histories cross compactions
    store = EmbeddedGraphStore(tmp_path_factory.mktemp("view"))
    try:
        store.upsert([Entity(id=n, type="Topic", name=n, text=n) for n in NODES])
        apply(store, ("relations", start))
        for step in history:
            apply(store, step)
            store.neighbor_links(["n0"])  # catch the view up
            assert snapshot(store.view) == snapshot(fresh_view(store.db_path))
        check_walks(store, store.view, cases, exact_order=False)
        check_walks(store, fresh_view(store.db_path), cases, exact_order=True)
    finally:
        store.close()


def test_compaction_keeps_the_view_and_drops_dead_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_view, "_COMPACT_MIN", 10)
    store = EmbeddedGraphStore(tmp_path)
    try:
        store.upsert([Entity(id=f"e{i}", type="Topic", name=f"e{i}", text=f"e{i}") for i in range(30)])
        store.neighbor_links(["e0"])
        assert store.view.compactions == 0
        store.upsert([], [Relation(type="LINKS_TO", src=f"e{i}", dst=f"e{i + 1}") for i in range(29)])
        store.delete_entities(["e5"])
        assert store.neighbors(["e0"], depth=10).hops == {f"e{i}": i for i in range(5)}
        assert store.view.compactions >= 1 and store.view.full_loads == 1
        assert snapshot(store.view) == snapshot(fresh_view(store.db_path))
        assert len(store.view._edge_ids) == 27  # the two relations of e5 are gone, not only marked
        assert store.neighbors(["e29"], depth=30).hops == {f"e{i}": 29 - i for i in range(6, 30)}
    finally:
        store.close()


def test_view_memory_per_relation(tmp_path: Path) -> None:
    """The point of the columns: a relation costs its id string, its dict entry and about 60
    bytes of columns, not the several dicts a MultiDiGraph holds (about 950 bytes a relation
    with the ids of this store, measured the same way)."""
    store = EmbeddedGraphStore(tmp_path)
    try:
        entities = [Entity(id=f"doc:{i:06d}", type="Document", name=f"d{i}", text=f"d{i}") for i in range(5_000)]
        links = [
            Relation(type="LINKS_TO", src=f"doc:{i:06d}", dst=f"doc:{(i * 7 + 1) % 5_000:06d}") for i in range(5_000)
        ]
        nexts = [Relation(type="NEXT", src=f"doc:{i:06d}", dst=f"doc:{i + 1:06d}") for i in range(4_999)]
        store.upsert(entities, links + nexts)
        tracemalloc.start()
        view = fresh_view(store.db_path)
        held, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(list(view.edges())) == 9_999
        assert held / 9_999 < 350, f"{held / 9_999:.0f} bytes per relation"
    finally:
        store.close()


def test_walk_lists_relations_grouped_by_neighbour_and_filters_the_far_end(tmp_path: Path) -> None:
    """A node's relations come grouped by the other end (as networkx's adjacency listed them), and
    a namespace filter applies to the entity reached as well as to the relation."""
    store = EmbeddedGraphStore(tmp_path)
    try:
        store.write(
            WriteBatch(
                entities=[
                    *(Entity(id=n, type="Topic", name=n, text=n) for n in ("a", "b", "d")),
                    Entity(id="c", type="Topic", name="c", text="c", namespace="team"),
                ],
                relations=[
                    Relation(id="r1", type="X", src="a", dst="b"),
                    Relation(id="r2", type="X", src="a", dst="c"),
                    Relation(id="r3", type="Y", src="a", dst="b"),
                    Relation(id="r4", type="X", src="d", dst="a"),
                ],
            )
        )
        walk = fresh_view(store.db_path).traverse(["a"], 1, None, "both", None, NOW, None, 100)
        assert list(walk.hops) == ["a", "b", "c", "d"]
        assert walk.relation_ids == ["r1", "r3", "r2", "r4"]
        assert walk.edges == [("a", "b", "X"), ("a", "b", "Y"), ("a", "c", "X"), ("a", "d", "X")]
        walk = fresh_view(store.db_path).traverse(["a"], 1, None, "both", None, NOW, ["default"], 100)
        assert list(walk.hops) == ["a", "b", "d"] and walk.relation_ids == ["r1", "r3", "r4"]
        assert fresh_view(store.db_path).traverse(["a"], 1, None, "both", None, NOW, None, 2).relation_ids == [
            "r1",
            "r3",
        ]
    finally:
        store.close()
