"""Entities a search read recently, kept in step with the store's change log.

A search reads about a hundred entities (its candidates, the neighbours expansion and windows
add, the entities bridges name), and consecutive searches of one agent read many of the same.
Turning a stored row back into an `Entity` (decoding its JSON columns and timestamps) was a
quarter of a search's time at 100k entities; on Neo4j every read is also a round trip.

The cache is derived, like the vector and keyword indexes: before it answers a search it replays
the change log from the position it last saw to the search's own, dropping every entity a change
names, and it empties itself on an erasure (the log no longer names what was erased) or when more
changed than replaying is worth. An entity read from the store is remembered only if no replay
happened meanwhile, so a row read before a concurrent write is never kept after it. The least
recently used entities go first once their texts pass the size bound.

Cached entities are shared between searches: the search stages only read them (hits copy what
they show), and nothing outside the search path gets them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from aesoperator.engine.stores.base import ERASED_ID, GraphStore
from aesoperator.graph_schema.models import Entity

# Changes replayed one page at a time; more than this many since the last search empties the
# cache instead (as many reads as a search or two make).
REPLAY_PAGE = 2_000
# What an entity costs besides its text and name, in bytes: the model, its dicts, timestamps,
# provenance and short strings (measured with tracemalloc: 3.4 KB an entity with a 380-character
# text, at 100k entities of the speed suite).
ENTRY_OVERHEAD_CHARS = 3000


def _size(entity: Entity) -> int:
    return len(entity.text) + len(entity.name) + ENTRY_OVERHEAD_CHARS


class EntityCache:
    """A bounded, change-log-invalidated cache in front of `GraphStore.get_entities`."""

    def __init__(self, max_chars: int) -> None:
        """
        Args:
            max_chars: the most characters of text, plus a fixed overhead per entity, kept: about
                the bytes the entries take (text held one byte a character, as ASCII is).
        """
        self.max_chars = max_chars
        self._items: OrderedDict[str, Entity] = OrderedDict()
        self._chars = 0
        self._seq: int | None = None  # the change-log position the entries are valid at
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def read(
        self, store: GraphStore, ids: Sequence[str], namespaces: Sequence[str] | None, seq: int | None = None
    ) -> list[Entity]:
        """What `store.get_entities(ids, namespaces)` answers, from the cache where it can.

        Args:
            store: the store the entities live in (always the same one for a cache).
            ids: entity ids.
            namespaces: only entities of these namespaces (None: any).
            seq: the change-log position the search read (None: read it now).

        Returns:
            The entities in the order of `ids`; unknown ids and other namespaces left out.
        """
        if seq is None:
            seq = store.last_seq()
        wanted = list(dict.fromkeys(ids))
        allowed = None if namespaces is None else set(namespaces)
        found: dict[str, Entity] = {}
        missing: list[str] = []
        with self._lock:
            self._sync(store, seq)
            synced = self._seq
            for entity_id in wanted:
                entity = self._items.get(entity_id)
                if entity is None:
                    missing.append(entity_id)
                    continue
                self._items.move_to_end(entity_id)
                if allowed is None or entity.namespace in allowed:
                    found[entity_id] = entity
            self.hits += len(wanted) - len(missing)
            self.misses += len(missing)
        if missing:
            loaded = store.get_entities(missing, namespaces)
            found.update((e.id, e) for e in loaded)
            with self._lock:
                if self._seq == synced:  # no replay since: nothing read here can be stale
                    for entity in loaded:
                        self._put(entity)
        return [found[i] for i in wanted if i in found]

    def _sync(self, store: GraphStore, seq: int) -> None:
        if self._seq is None:
            self._seq = seq
            return
        if seq == self._seq:
            return
        if seq < self._seq:
            # Usually a search that read the log before another one replayed it. A log that went
            # back (the store was replaced by a restore) makes every entry suspect.
            if store.last_seq() < self._seq:
                self._drop_all()
                self._seq = seq
            return
        changes = store.changes_since(self._seq, limit=REPLAY_PAGE)
        if len(changes) >= REPLAY_PAGE or any(c.id == ERASED_ID for c in changes):
            self._drop_all()
        else:
            for change in changes:
                if change.kind == "entity":
                    self._drop(change.id)
        self._seq = seq

    def _put(self, entity: Entity) -> None:
        self._drop(entity.id)
        size = _size(entity)
        if size > self.max_chars:
            return
        self._items[entity.id] = entity
        self._chars += size
        while self._chars > self.max_chars:
            _, oldest = self._items.popitem(last=False)
            self._chars -= _size(oldest)

    def _drop(self, entity_id: str) -> None:
        old = self._items.pop(entity_id, None)
        if old is not None:
            self._chars -= _size(old)

    def _drop_all(self) -> None:
        self._items.clear()
        self._chars = 0


__all__ = ["EntityCache"]
