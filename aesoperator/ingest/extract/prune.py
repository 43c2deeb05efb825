"""Pruning: an extracted entity goes when the last item that mentioned it stops doing so.

Extracted entities belong to no item: an item owns its MENTIONS, and a re-ingest of changed text
retires the mentions the new text no longer makes. An entity left with no live mention would keep
a stale name in the graph (in entity lists, name lookups and expansion), so the write that retires
its last mention deletes it too. Entities a source brought (a git author, a memory-server entity)
are never pruned: only ids under `knowledge:`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from aesoperator.engine.stores.base import GraphStore
from aesoperator.graph_schema.knowledge import KNOWLEDGE_ID_PREFIX
from aesoperator.graph_schema.models import Relation

MENTIONS = "MENTIONS"
READ_CHUNK = 1000


def lost_mentions(store: GraphStore, retired_relation_ids: Collection[str], kept: Iterable[Relation]) -> dict[str, int]:
    """Extracted entity id -> how many of its live mentions `retired_relation_ids` retire, for the
    entities that none of the `kept` relations (written in the same batch) mentions."""
    ids = sorted(retired_relation_ids)
    lost: dict[str, int] = {}
    for start in range(0, len(ids), READ_CHUNK):
        for r in store.get_relations(ids[start : start + READ_CHUNK]):
            if r.type == MENTIONS and r.dst.startswith(KNOWLEDGE_ID_PREFIX) and r.is_live():
                lost[r.dst] = lost.get(r.dst, 0) + 1
    for r in kept:
        if r.type == MENTIONS:
            lost.pop(r.dst, None)
    return lost


def unmentioned(store: GraphStore, lost: dict[str, int], retired_relation_ids: Collection[str]) -> list[str]:
    """The entities of `lost` that have no live mention besides the retired ones (from any
    namespace: an episode in an agent's namespace may mention an entity of the default one).

    The store must already hold every earlier write of the ingest: a mention written by a batch
    still in flight would otherwise be missed."""
    out: list[str] = []
    for eid, count in sorted(lost.items()):
        # Seeds come first and then up to `limit - 1` mentioners: with room for one more than the
        # retired ones, a mention that stays is among them whenever there is one.
        sub = store.neighbors([eid], depth=1, relation_types=[MENTIONS], direction="in", limit=count + 2)
        if eid not in sub.entities:
            continue  # already gone
        if not any(r.dst == eid and r.id not in retired_relation_ids for r in sub.relations):
            out.append(eid)
    return out
