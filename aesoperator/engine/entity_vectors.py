"""Vectors of entities that extraction found: the normalised mean of the vectors of the items
that mention them (where they were first met), so they cost no encoding.

An entity is represented by the contexts it is mentioned in, a long-standing way to embed
entities; it makes `search(..., types=["Person"])` find the people the matching passages talk
about. Encoding every extracted name with the sentence model instead would cost about as much as
encoding the texts themselves (several new entities per passage).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from aesoperator.graph_schema.ids import content_hash
from aesoperator.graph_schema.models import Entity, Relation


def context_vectors(
    entities: Sequence[Entity],
    relations: Iterable[Relation],
    item_vectors: Mapping[str, np.ndarray],
    load: Callable[[list[str]], Mapping[str, np.ndarray]],
    text_of: Callable[[Entity], str],
) -> dict[str, tuple[str, np.ndarray]]:
    """entity id -> (content hash of its text, unit vector) for `entities`, from the vectors of
    the items whose MENTIONS reach them (`item_vectors`, else `load(ids)` from the store)."""
    wanted = {e.id for e in entities}
    sources: dict[str, list[str]] = {}
    for r in relations:
        if r.type == "MENTIONS" and r.dst in wanted:
            sources.setdefault(r.dst, []).append(r.src)
    missing = sorted({i for ids in sources.values() for i in ids if i not in item_vectors})
    known = {**load(missing), **item_vectors} if missing else dict(item_vectors)
    out: dict[str, tuple[str, np.ndarray]] = {}
    for entity in entities:
        rows = [known[i] for i in sources.get(entity.id, []) if i in known]
        if not rows:
            continue
        mean = np.mean(np.vstack(rows), axis=0).astype(np.float32)
        norm = float(np.linalg.norm(mean))
        if norm > 0:
            out[entity.id] = (content_hash(text_of(entity)), mean / norm)
    return out
