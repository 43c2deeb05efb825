"""Conformance of erasure, on every backend: `relations_of`, an erasing batch (`WriteBatch.erase`)
hiding the erased ids from the change log and the history, and the pending mark `scrub_erased`
clears."""

from __future__ import annotations

import json

import numpy as np

from aesoperator.engine.stores.base import ERASED_ID, GraphStore, WriteBatch
from aesoperator.graph_schema.models import Entity, Relation

MODEL = "test-model"


def ent(eid: str, text: str | None = None, **extra: object) -> Entity:
    return Entity(id=eid, type="Document", name=eid, text=text or f"text of {eid}", **extra)  # type: ignore[arg-type]


def test_relations_of_includes_expired_ones_in_both_directions(store: GraphStore) -> None:
    ab = Relation(type="LINKS_TO", src="a", dst="b")
    cb = Relation(type="CITES", src="c", dst="b")
    cd = Relation(type="LINKS_TO", src="c", dst="d")
    store.upsert([ent("a"), ent("b"), ent("c"), ent("d")], [ab, cb, cd])
    store.expire_relations([cb.id])
    assert [r.id for r in store.relations_of(["b"])] == sorted([ab.id, cb.id])
    assert {r.id for r in store.relations_of(["b", "d", "unknown"])} == {ab.id, cb.id, cd.id}
    assert store.relations_of([]) == []


def test_an_erasing_batch_leaves_no_id_of_what_it_erased(store: GraphStore) -> None:
    secret = "erase-me:Thistlewhump"
    store.upsert(
        [ent(secret, "a secret note"), ent("keep", "kept note"), ent("hub", "v1")],
        [Relation(type="LINKS_TO", src=secret, dst="keep")],
        {secret: ("h1", np.ones(8, np.float32)), "keep": ("h2", np.ones(8, np.float32))},
        MODEL,
    )
    store.upsert([ent("hub", "v2", properties={"last": secret})])  # history names the secret
    assert not store.erasure_pending()
    seq = store.last_seq()
    result = store.write(WriteBatch(delete_entity_ids=[secret], entities=[ent("hub", "v3")], erase=True))
    assert result.entities_deleted == 1 and result.seq > seq
    changes = store.changes_since(0)
    assert all(secret not in c.id for c in changes)
    assert (changes[-1].id, changes[-1].op) == (ERASED_ID, "delete")
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    history = getattr(store, "history", None)
    if callable(history):
        assert all(secret not in json.dumps(v.properties) for v in history("hub"))
    assert store.get_entities([secret]) == [] and store.relations_of(["keep"]) == []
    assert set(store.get_vectors([secret, "keep"], MODEL)) == {"keep"}
    assert store.erasure_pending()
    assert store.scrub_erased() is True
    assert not store.erasure_pending() and store.scrub_erased() is False
    assert [e.id for e in store.get_entities(["keep", "hub"])] == ["keep", "hub"]
    assert dict(store.keyword_search("kept note"))
