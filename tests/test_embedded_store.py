"""Embedded-store behaviour beyond the protocol: shared data directories, crash safety, threads."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from aesoperator.engine.stores.base import WriteBatch
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.engine.stores.graph_view import ArrayGraphView
from aesoperator.errors import NamespaceConflict, SchemaError, StoreError
from aesoperator.graph_schema.models import Entity, Relation

ROOT = Path(__file__).resolve().parents[1]


def ent(eid: str, text: str | None = None, namespace: str = "default") -> Entity:
    return Entity(id=eid, type="Document", name=eid, text=text or f"text of {eid}", namespace=namespace)


def rel(src: str, dst: str, type: str = "LINKS_TO") -> Relation:
    return Relation(type=type, src=src, dst=dst)


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=True,
    )  # fmt: skip


def view_snapshot(view: ArrayGraphView) -> tuple[set[tuple[str, str, str]], set[object]]:
    return set(view.nodes()), set(view.edges())


def assert_view_matches_store(store: EmbeddedGraphStore) -> None:
    """The incrementally caught-up view equals a view built from scratch."""
    fresh = ArrayGraphView()
    with sqlite3.connect(store.db_path) as conn:
        fresh.load(conn)
    assert view_snapshot(store.view) == view_snapshot(fresh)


# two instances on one data directory -----------------------------------------------------------
def test_second_instance_catches_up_incrementally(tmp_path: Path) -> None:
    writer = EmbeddedGraphStore(tmp_path)
    reader = EmbeddedGraphStore(tmp_path)
    try:
        writer.upsert([ent("a"), ent("b")], [rel("a", "b")])
        assert reader.neighbors(["a"]).hops == {"a": 0, "b": 1}
        loads, applied, seq = reader.view.full_loads, reader.view.applied_changes, reader.view.applied_seq
        assert loads == 1

        result = writer.upsert([ent("c", "walrus migration notes"), ent("d")], [rel("b", "c"), rel("c", "d")])
        new_rows = len(writer.changes_since(seq))
        assert new_rows == 4

        assert [e.id for e in reader.get_entities(["c", "d"])] == ["c", "d"]
        assert [i for i, _ in reader.keyword_search("walrus")] == ["c"]
        assert reader.neighbors(["a"], depth=3).hops == {"a": 0, "b": 1, "c": 2, "d": 3}
        assert reader.view.full_loads == loads  # no reload ...
        assert reader.view.applied_changes - applied == new_rows  # ... only the new change rows
        assert reader.view.applied_seq == result.seq

        # deletes, expiries and namespace moves reach the reader too
        writer.delete_entities(["d"])
        writer.expire_relations([rel("a", "b").id])
        moved = WriteBatch(
            entities=[ent("c", "walrus migration notes", namespace="private")], allow_namespace_moves=True
        )
        writer.write(moved)
        assert reader.neighbors(["b"], depth=2).hops == {"b": 0, "c": 1}
        assert reader.neighbors(["b"], depth=2, namespaces=["default"]).hops == {"b": 0}
        assert reader.neighbors(["b"], depth=2, namespaces=["private"]).hops == {}
        assert reader.neighbors(["c"], depth=2, namespaces=["private"]).hops == {"c": 0}
        assert reader.view.full_loads == loads
        assert_view_matches_store(reader)
    finally:
        writer.close()
        reader.close()


def test_relation_expired_then_asserted_again_is_live_in_the_caught_up_view(tmp_path: Path) -> None:
    """Catching up replaces an edge's attributes: a time that is set and later cleared (an expired
    relation asserted again) must not linger in the view."""
    store = EmbeddedGraphStore(tmp_path)
    try:
        store.upsert([ent("a"), ent("b")], [rel("a", "b")])
        assert store.neighbors(["a"]).hops == {"a": 0, "b": 1}
        store.expire_relations([rel("a", "b").id])
        assert store.neighbors(["a"]).hops == {"a": 0}
        store.upsert([], [rel("a", "b")])
        assert store.neighbors(["a"]).hops == {"a": 0, "b": 1}
        assert store.view.full_loads == 1
        assert_view_matches_store(store)
    finally:
        store.close()


def test_writer_in_another_process(tmp_path: Path) -> None:
    reader = EmbeddedGraphStore(tmp_path)
    try:
        reader.upsert([ent("hub")])
        assert reader.neighbors(["hub"]).hops == {"hub": 0}
        loads, applied, seq = reader.view.full_loads, reader.view.applied_changes, reader.view.applied_seq

        run_python(
            """
            import sys
            from pathlib import Path
            from aesoperator.engine.stores.embedded import EmbeddedGraphStore
            from aesoperator.graph_schema.models import Entity, Relation
            store = EmbeddedGraphStore(Path(sys.argv[1]))
            spokes = [Entity(id=f"s{i}", type="Document", name=f"s{i}", text=f"spoke number {i} of the albatross")
                      for i in range(50)]
            store.upsert(spokes, [Relation(type="LINKS_TO", src="hub", dst=s.id) for s in spokes])
            store.close()
            """,
            str(tmp_path),
        )

        new_rows = len(reader.changes_since(seq))
        assert new_rows == 100
        sub = reader.neighbors(["hub"], direction="out")
        assert set(sub.hops) == {"hub"} | {f"s{i}" for i in range(50)}
        assert len(sub.relations) == 50
        assert reader.view.full_loads == loads
        assert reader.view.applied_changes - applied == new_rows
        assert {i for i, _ in reader.keyword_search("albatross", k=100)} == {f"s{i}" for i in range(50)}
        assert len(reader.get_entities([f"s{i}" for i in range(50)])) == 50
        assert_view_matches_store(reader)
    finally:
        reader.close()


# crash safety ----------------------------------------------------------------------------------
WRITER_LOOP = """
import sys
from pathlib import Path
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.graph_schema.models import Entity, Relation

store = EmbeddedGraphStore(Path(sys.argv[1]))
i = int(sys.argv[2])
PER = int(sys.argv[3])
while True:
    ents = [Entity(id=f"b{i}:e{j}", type="Document", name=f"b{i} e{j}", text="crash payload " * 30 + str(j))
            for j in range(PER)]
    ents.append(Entity(id=f"marker:{i}", type="Concept", name=f"marker {i}", text=f"batch {i} done"))
    rels = [Relation(type="NEXT", src=f"b{i}:e{j}", dst=f"b{i}:e{j + 1}") for j in range(PER - 1)]
    rels.append(Relation(type="PART_OF", src=f"b{i}:e0", dst=f"marker:{i}"))
    store.upsert(ents, rels)
    print(i, flush=True)
    i += 1
"""
PER_BATCH = 200


def _kill_writer_midway(data_dir: Path, start: int, committed_before_kill: int) -> list[int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_LOOP, str(data_dir), str(start), str(PER_BATCH)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    printed: list[int] = []
    try:
        for line in proc.stdout:
            printed.append(int(line))
            if len(printed) >= committed_before_kill:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stderr.close()
    assert printed, f"the writer committed nothing: {err}"
    return printed


def _check_batches(store: EmbeddedGraphStore, upto: int) -> set[int]:
    complete = set()
    for i in range(upto):
        ids = [f"b{i}:e{j}" for j in range(PER_BATCH)] + [f"marker:{i}"]
        rel_ids = [rel(f"b{i}:e{j}", f"b{i}:e{j + 1}", "NEXT").id for j in range(PER_BATCH - 1)]
        rel_ids.append(rel(f"b{i}:e0", f"marker:{i}", "PART_OF").id)
        n_ent, n_rel = len(store.get_entities(ids)), len(store.get_relations(rel_ids))
        assert (n_ent, n_rel) in {(0, 0), (len(ids), len(rel_ids))}, f"batch {i} is partial"
        if n_ent:
            complete.add(i)
    return complete


def test_killed_writer_leaves_only_complete_batches(tmp_path: Path) -> None:
    start = 0
    for _round in range(2):
        printed = _kill_writer_midway(tmp_path, start, committed_before_kill=8)
        with sqlite3.connect(tmp_path / "graph.sqlite") as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            raw.execute("INSERT INTO entities_fts(entities_fts) VALUES ('integrity-check')")
        store = EmbeddedGraphStore(tmp_path)
        try:
            complete = _check_batches(store, printed[-1] + 20)
            assert set(printed) <= complete  # every batch reported committed survived
            assert complete == set(range(min(complete), max(complete) + 1))
            # writing goes on where it stopped
            start = max(complete) + 1
            store.upsert([ent(f"after:{_round}")], [rel(f"after:{_round}", f"marker:{start - 1}")])
            assert store.neighbors([f"after:{_round}"]).hops == {f"after:{_round}": 0, f"marker:{start - 1}": 1}
            assert [i for i, _ in store.keyword_search(f"batch {start - 1} done", k=1)] == [f"marker:{start - 1}"]
        finally:
            store.close()


def test_processes_write_concurrently(tmp_path: Path) -> None:
    EmbeddedGraphStore(tmp_path).close()
    code = """
import sys
from pathlib import Path
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.graph_schema.models import Entity, Relation
store = EmbeddedGraphStore(Path(sys.argv[1]))
tag = sys.argv[2]
for b in range(15):
    ids = [f"{tag}:{b}:{j}" for j in range(50)]
    store.upsert([Entity(id=i, type="Document", name=i, text="shared " + i) for i in ids],
                 [Relation(type="NEXT", src=ids[j], dst=ids[j + 1]) for j in range(49)])
    store.neighbors([ids[0]])
store.close()
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path), tag], env=env, stderr=subprocess.PIPE, text=True)
        for tag in ("p", "q", "r")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with EmbeddedGraphStore(tmp_path) as store:
        s = store.stats()
        assert (s.entities, s.relations) == (3 * 15 * 50, 3 * 15 * 49)
        seqs = [c.seq for c in store.changes_since(0)]
        assert seqs == sorted(set(seqs)) and len(seqs) == s.entities + s.relations
        assert store.neighbors(["q:3:0"], depth=100, direction="out").hops["q:3:49"] == 49


def test_keyword_index_stays_in_step(tmp_path: Path) -> None:
    with EmbeddedGraphStore(tmp_path) as store:
        store.upsert([ent(f"k{i}", f"alpha beta {i}") for i in range(30)])
        store.upsert([ent(f"k{i}", f"gamma delta {i}") for i in range(0, 30, 2)])
        store.upsert([Entity(id="k1", type="Document", name="renamed", text="alpha beta 1")])
        store.delete_entities([f"k{i}" for i in range(0, 30, 3)])
        with sqlite3.connect(store.db_path) as raw:
            raw.execute("INSERT INTO entities_fts(entities_fts) VALUES ('integrity-check')")
        alive = {f"k{i}" for i in range(30) if i % 3}
        assert {i for i, _ in store.keyword_search("alpha", k=100)} == {f"k{i}" for i in range(30) if i % 2} & alive
        assert {i for i, _ in store.keyword_search("gamma", k=100)} == {f"k{i}" for i in range(0, 30, 2)} & alive
        assert [i for i, _ in store.keyword_search("renamed")] == ["k1"]


# threads, errors, history ----------------------------------------------------------------------
def test_threads_share_one_store(tmp_path: Path) -> None:
    store = EmbeddedGraphStore(tmp_path)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for b in range(10):
                ids = [f"t{t}:{b}:{j}" for j in range(20)]
                store.upsert([ent(i) for i in ids], [rel(ids[j], ids[j + 1]) for j in range(19)])
                assert len(store.neighbors([ids[0]], depth=19).hops) == 20
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert errors == []
        s = store.stats()
        assert (s.entities, s.relations) == (800, 760)
    finally:
        store.close()


def test_errors_surface_as_store_errors(tmp_path: Path) -> None:
    store = EmbeddedGraphStore(tmp_path / "ok")
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        store.stats()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "graph.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"graph\.sqlite"):
        EmbeddedGraphStore(bad)


def test_changed_entity_keeps_history(tmp_path: Path) -> None:
    with EmbeddedGraphStore(tmp_path) as store:
        store.upsert([ent("a", "first")])
        store.upsert([ent("a", "first")])
        assert store.history("a") == []
        store.upsert([ent("a", "second")])
        store.upsert([ent("a", "third")])
        assert [e.text for e in store.history("a")] == ["first", "second"]
        (current,) = store.get_entities(["a"])
        assert current.created_at == store.history("a")[0].created_at
        store.delete_entities(["a"])
        assert store.history("a") == []


def test_view_survives_reopen(tmp_path: Path) -> None:
    with EmbeddedGraphStore(tmp_path) as store:
        store.upsert([ent("a"), ent("b"), ent("c")], [rel("a", "b"), rel("b", "c")])
        store.delete_entities(["c"])
    with EmbeddedGraphStore(tmp_path) as again:
        assert again.view.applied_seq == again.last_seq()
        assert again.neighbors(["a"], depth=5).hops == {"a": 0, "b": 1}
        assert_view_matches_store(again)


def test_bad_vectors_are_rejected_whole(tmp_path: Path) -> None:
    with EmbeddedGraphStore(tmp_path) as store:
        store.upsert([ent("a"), ent("b")], vectors={"a": ("h", np.ones(4, np.float32))}, vector_model="m")
        bad = [
            ({"b": ("h", np.array([1.0, np.nan, 0.0, 0.0]))}, "m", "NaN"),
            ({"b": ("h", np.ones(5, np.float32))}, "m", "dimensions"),
            ({"b": ("h", np.ones((2, 2), np.float32))}, "m", "shape"),
            ({"b": ("h", np.ones(4, np.float32))}, None, "vector_model"),
        ]
        for vectors, model, message in bad:
            with pytest.raises(SchemaError, match=message):
                store.upsert([ent("c")], vectors=vectors, vector_model=model)
        assert store.get_entities(["c"]) == []
        assert store.vector_hashes(["a", "b"], "m") == {"a": "h"}


def test_unstorable_character_deep_in_a_large_batch_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    store = EmbeddedGraphStore(tmp_path / "s")
    entities = [ent(f"e{i}") for i in range(1000)]
    entities[700] = ent("bad\x00id")
    with pytest.raises(SchemaError, match=r"entity id 'bad\\x00id' contains U\+0000"):
        store.write(WriteBatch(entities=entities, relations=[rel("e1", "e2")]))
    named = [ent(f"n{i}") for i in range(1000)]
    named[999] = Entity(id="n999", type="Document", name="half \ud800 pair", text="t")
    with pytest.raises(SchemaError, match=r"name 'half .* contains U\+D800"):
        store.write(WriteBatch(entities=named))
    assert store.stats().entities == 0
    assert store.last_seq() == 0
    store.close()


def test_open_drops_the_index_the_src_type_index_covers(tmp_path: Path) -> None:
    store = EmbeddedGraphStore(tmp_path / "s")
    store.write(WriteBatch(entities=[ent("a"), ent("b")], relations=[rel("a", "b")]))
    store.close()
    conn = sqlite3.connect(tmp_path / "s" / "graph.sqlite")
    conn.execute("CREATE INDEX relations_src ON relations(src)")  # as stores written before had it
    conn.commit()
    conn.close()

    store = EmbeddedGraphStore(tmp_path / "s")
    indexes = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "relations_src" not in indexes and "relations_src_type" in indexes
    plan = store._conn.execute("EXPLAIN QUERY PLAN SELECT id FROM relations WHERE src = 'a'").fetchall()
    assert "relations_src_type" in str(plan)
    assert [r.id for r in store.relations_of(["a"])] == [rel("a", "b").id]
    # checkpoints run beside the writes (test_wal_checkpoints.py), at the 16,384 frames configured
    assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert store._checkpoints.threshold_frames == 16384
    store.close()


def test_staged_entity_writes_keep_the_full_text_index_exact(tmp_path: Path) -> None:
    """Entity rows go in by one statement per batch (so the full-text triggers run once per
    statement); the index must still equal one rebuilt from the rows, also after a batch that
    failed after its entities were staged and inserted."""
    with EmbeddedGraphStore(tmp_path) as store:
        store.upsert([ent(f"s{i}", f"alpha stage {i}") for i in range(40)])
        mixed = [ent(f"s{i}", f"omega changed {i}") for i in range(0, 40, 4)] + [ent("s99", "alpha newcomer")]
        store.write(WriteBatch(entities=mixed, delete_entity_ids=["s1", "s2"]))
        store.write(WriteBatch(relations=[rel("s3", "s5")]))
        moved = Relation(type="LINKS_TO", src="s3", dst="s5", namespace="other")
        with pytest.raises(NamespaceConflict):  # entities are inserted before the relation is refused
            store.write(WriteBatch(entities=[ent("s100", "alpha doomed")], relations=[moved]))
        assert store.get_entities(["s100"]) == []
        store.upsert([ent("s101", "alpha after")])
        with sqlite3.connect(store.db_path) as raw:
            raw.execute("INSERT INTO entities_fts(entities_fts) VALUES ('integrity-check')")

            def matches(term: str) -> list[int]:
                sql = "SELECT rowid FROM entities_fts WHERE entities_fts MATCH ? ORDER BY rowid"
                return [r for (r,) in raw.execute(sql, (term,))]

            before = {t: matches(t) for t in ("alpha", "omega", "stage", "changed", "doomed", "newcomer", "after")}
            raw.execute("INSERT INTO entities_fts(entities_fts) VALUES ('rebuild')")
            assert {t: matches(t) for t in before} == before
        assert before["doomed"] == [] and len(before["omega"]) == 10 and len(before["alpha"]) == 40 - 10 - 2 + 2
        assert {i for i, _ in store.keyword_search("alpha", k=100)} >= {"s99", "s101"}
        updated = store.get_entities(["s4"])[0]
        assert (updated.name, updated.text) == ("s4", "omega changed 4")
        assert updated.created_at is not None and updated.created_at <= updated.updated_at
        assert store.name_lookup(["S8"]) == {"s8": ["s8"]}
