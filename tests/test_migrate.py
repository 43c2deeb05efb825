"""`migrate`: copying an embedded store into Neo4j (and back), resumably, with a final check."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aesoperator.engine.migrate import migrate
from aesoperator.engine.stores.base import GraphStore, SourceItemState, WriteBatch
from aesoperator.engine.stores.embedded import EmbeddedGraphStore
from aesoperator.errors import StoreError
from aesoperator.graph_schema.models import Entity, Provenance, Relation

pytestmark = pytest.mark.neo4j

T0 = datetime(2024, 3, 1, tzinfo=UTC)
MODELS = ("model-a", "model-b")


def fill(store: GraphStore, n: int = 120) -> None:
    entities = [
        Entity(
            id=f"m:{i}",
            type=("Document", "Person", "Concept")[i % 3],
            name=f"Item {i}",
            text=f"item number {i} about topic {i % 7}",
            properties={"i": i, "tags": ["x", str(i)]},
            source=("files", "git")[i % 2],
            provenance=Provenance(uri=f"file:///{i}", fetched_at=T0, version=f"v{i}"),
            namespace=("default", "team")[i % 2],
            valid_from=T0 if i % 5 == 0 else None,
            created_at=T0 + timedelta(minutes=i),
            updated_at=T0 + timedelta(minutes=i),
        )
        for i in range(n)
    ]
    relations = [
        Relation(type=("LINKS_TO", "MENTIONS")[i % 2], src=f"m:{i}", dst=f"m:{(i + 1) % n}",
                 properties={"w": i}, namespace=("default", "team")[i % 2], recorded_at=T0)
        for i in range(n)
    ]  # fmt: skip
    rng = np.random.default_rng(7)
    store.write(WriteBatch(entities=entities, relations=relations))
    for model, dim in zip(MODELS, (8, 5), strict=True):
        vectors = {e.id: (f"h{e.id}", rng.standard_normal(dim).astype(np.float32)) for e in entities[: n // 2]}
        store.write(WriteBatch(vectors=vectors, vector_model=model))
    store.expire_relations([relations[0].id, relations[3].id], at=T0 + timedelta(days=1))
    store.write(
        WriteBatch(
            source_items=[
                SourceItemState(source=src, key=f"k{i}", content_hash=f"c{i}", entity_ids=(f"m:{i}",),
                                relation_ids=(relations[i].id,), cursor=f"cur{i}")
                for i, src in enumerate(["files", "git", "files", "notes"])
            ]
        )
    )  # fmt: skip


def snapshot(store: GraphStore) -> dict[str, object]:
    entities = sorted((e.model_dump() for page in store.iter_entities(50) for e in page), key=lambda d: d["id"])
    relations = sorted((r.model_dump() for page in store.iter_relations(50) for r in page), key=lambda d: d["id"])
    vectors = {
        model: {
            eid: (row.tobytes(), ns)
            for ids, nss, matrix in store.iter_vectors(model, 33)
            for eid, ns, row in zip(ids, nss, matrix, strict=True)
        }
        for model in MODELS
    }
    items = {src: store.source_items(src) for src in ("files", "git", "notes")}
    return {"entities": entities, "relations": relations, "vectors": vectors, "items": items}


@pytest.fixture
def embedded(tmp_path: Path) -> EmbeddedGraphStore:
    store = EmbeddedGraphStore(tmp_path / "embedded")
    fill(store)
    return store


def test_embedded_to_neo4j_copies_everything_and_resumes(
    embedded: EmbeddedGraphStore, neo4j_store_factory: Callable[[], GraphStore]
) -> None:
    target = neo4j_store_factory()
    seen: list[tuple[int, int]] = []
    report = migrate(
        embedded, target, batch_size=25, progress=lambda d, t: seen.append((d, t)),
        models=MODELS, sources=["files", "git", "notes"],
    )  # fmt: skip
    assert (report.entities, report.relations, report.source_items) == (120, 120, 4)
    assert report.vectors == {"model-a": 60, "model-b": 60}
    assert seen[-1] == (360, 360) and len(seen) > 10
    assert [d for d, _t in seen] == sorted(d for d, _t in seen)
    assert snapshot(target) == snapshot(embedded)

    # Re-running (as after an interruption) changes nothing and skips every vector.
    seq = target.last_seq()
    again = migrate(embedded, target, batch_size=50, models=MODELS, sources=["files", "git", "notes"])
    assert again.vectors_skipped == 120 and again.vectors == {"model-a": 0, "model-b": 0}
    assert target.last_seq() == seq
    embedded.close()


def test_interrupted_migration_completes_on_rerun(
    embedded: EmbeddedGraphStore, neo4j_store_factory: Callable[[], GraphStore]
) -> None:
    target = neo4j_store_factory()
    calls = 0

    def interrupt(done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate(embedded, target, batch_size=20, progress=interrupt, models=MODELS)
    partial = target.stats()
    assert 0 < partial.entities < 120
    report = migrate(embedded, target, batch_size=20, models=MODELS, sources=["files", "git", "notes"])
    assert report.target_stats is not None and report.target_stats.entities == 120
    assert snapshot(target) == snapshot(embedded)
    embedded.close()


def test_neo4j_to_embedded_discovers_models_and_sources(
    embedded: EmbeddedGraphStore, neo4j_store_factory: Callable[[], GraphStore], tmp_path: Path
) -> None:
    middle = neo4j_store_factory()
    migrate(embedded, middle, models=MODELS, sources=["files", "git", "notes"])
    back = EmbeddedGraphStore(tmp_path / "back")
    report = migrate(middle, back)  # Neo4j lists its vector models and sources itself
    assert sorted(report.vectors) == list(MODELS)
    assert sorted(report.sources) == ["files", "git", "notes"]
    assert snapshot(back) == snapshot(embedded)
    back.close()
    embedded.close()


def test_count_mismatch_is_a_store_error(
    embedded: EmbeddedGraphStore, neo4j_store_factory: Callable[[], GraphStore]
) -> None:
    target = neo4j_store_factory()
    # Vectors of models that are not named are not copied, and the check says so.
    with pytest.raises(StoreError, match="models=") as info:
        migrate(embedded, target, models=["model-a"])
    assert "vectors: source 120, target 60" in str(info.value)
    # A target holding other data cannot match the source.
    target.upsert([Entity(id="extra", type="Concept", name="extra", text="not in the source")])
    with pytest.raises(StoreError, match="entities: source 120, target 121"):
        migrate(embedded, target, models=MODELS)
    embedded.close()
