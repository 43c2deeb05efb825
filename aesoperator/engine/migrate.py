"""Copy a graph from one store to another (e.g. the embedded store into Neo4j), in batches.

What is copied: entities (with their timestamps), relations (with their bi-temporal fields),
stored vectors of every model, and the per-source sync state, so that incremental ingest
carries on against the target. What is not: each store's own change log and entity history,
which describe how that store came to be.

Re-running is safe and resumes cheaply: upserts are idempotent (the target recognises unchanged
items and writes nothing for them) and vectors whose content hash the target already holds are
not sent again. At the end the counts of both stores are compared; any difference is a
`StoreError`, which is also what an unreachable store raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aesoperator.config import DEFAULT_MODEL
from aesoperator.engine.stores.base import GraphStore, StoreStats, WriteBatch
from aesoperator.errors import StoreError

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class MigrationReport:
    """What a migration did. Counts are items sent to the target; unchanged items it already
    held cost no write there."""

    entities: int = 0
    relations: int = 0
    vectors: dict[str, int] = field(default_factory=dict)
    vectors_skipped: int = 0
    source_items: int = 0
    sources: list[str] = field(default_factory=list)
    seconds: float = 0.0
    source_stats: StoreStats | None = None
    target_stats: StoreStats | None = None


def _discover(store: GraphStore, method: str) -> list[str] | None:
    """Optional store capabilities outside the protocol (e.g. listing vector models)."""
    finder = getattr(store, method, None)
    if not callable(finder):
        return None
    return [str(x) for x in finder()]


def _total(stats: StoreStats) -> int:
    return stats.entities + stats.relations + stats.vectors


def migrate(
    source: GraphStore,
    target: GraphStore,
    batch_size: int = 1000,
    progress: Progress | None = None,
    *,
    models: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
) -> MigrationReport:
    """Copy everything in `source` into `target` and check that both hold the same counts.

    `models` names the embedding models whose vectors to copy; by default the source's own list
    when it can give one (`vector_models()`), else the default model. `sources` names the
    sources whose sync state to copy; by default the source's list (`source_names()`), else
    every `source` named by an entity or relation. `progress(done, total)` is called after each
    batch, counting entities, relations and vectors.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    started = time.perf_counter()
    report = MigrationReport()
    before = source.stats()
    total = _total(before)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(min(done, total), total)

    seen_sources: dict[str, None] = {}
    for page in source.iter_entities(batch_size=batch_size):
        target.write(WriteBatch(entities=page))
        report.entities += len(page)
        seen_sources.update((e.source, None) for e in page)
        advance(len(page))
    for rel_page in source.iter_relations(batch_size=batch_size):
        target.write(WriteBatch(relations=rel_page))
        report.relations += len(rel_page)
        seen_sources.update((r.source, None) for r in rel_page)
        advance(len(rel_page))

    model_list = list(models) if models is not None else (_discover(source, "vector_models") or [DEFAULT_MODEL])
    for model in model_list:
        copied = 0
        for ids, _namespaces, matrix in source.iter_vectors(model, batch_size=batch_size):
            source_hashes = source.vector_hashes(ids, model)
            held = target.vector_hashes(ids, model)
            vectors = {
                eid: (source_hashes[eid], matrix[i])
                for i, eid in enumerate(ids)
                if eid in source_hashes and held.get(eid) != source_hashes[eid]
            }
            report.vectors_skipped += len(ids) - len(vectors)
            if vectors:
                target.write(WriteBatch(vectors=vectors, vector_model=model))
            copied += len(vectors)
            advance(len(ids))
        report.vectors[model] = copied

    source_list = list(sources) if sources is not None else (_discover(source, "source_names") or list(seen_sources))
    report.sources = source_list
    for name in source_list:
        items = list(source.source_items(name).values())
        for start in range(0, len(items), batch_size):
            part = items[start : start + batch_size]
            target.write(WriteBatch(source_items=part))
            report.source_items += len(part)

    report.source_stats = source.stats()
    report.target_stats = target.stats()
    _verify(report.source_stats, report.target_stats, model_list)
    for name in source_list:
        have, want = len(target.source_items(name)), len(source.source_items(name))
        if have != want:
            raise StoreError(
                f"migration check failed: source {name!r} has {want} sync-state items in the source "
                f"store but {have} in the target"
            )
    report.seconds = time.perf_counter() - started
    return report


def _verify(src: StoreStats, dst: StoreStats, models: Iterable[str]) -> None:
    checks: list[tuple[str, Any, Any]] = [
        ("entities", src.entities, dst.entities),
        ("relations", src.relations, dst.relations),
        ("live relations", src.live_relations, dst.live_relations),
        ("entities per type", src.entity_types, dst.entity_types),
        ("relations per type", src.relation_types, dst.relation_types),
        ("entities per namespace", src.namespaces, dst.namespaces),
        ("vectors", src.vectors, dst.vectors),
    ]
    problems = [f"{what}: source {a}, target {b}" for what, a, b in checks if a != b]
    if problems:
        hint = ""
        if src.vectors != dst.vectors:
            hint = f" (vectors were copied for models {sorted(models)}; pass models=[...] to name the others)"
        raise StoreError(
            "migration check failed, the stores differ: "
            + "; ".join(problems)
            + hint
            + ". A target that already held other data differs too: migrate into an empty store."
        )
