"""What the memory server's `search_nodes` and `read_graph` list: the real memory entities in
creation order with their fields in one string for substring search (narrowed by a trigram index
once the same listing is searched again), and the live memory relations touching each entity.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

import numpy as np

from aesoperator.serve.schemas import MemoryEntity, MemoryRelation

# Listings shorter than this (in characters) are always scanned: a scan costs well under 1 ms.
TRIGRAM_MIN_CHARS = 200_000


class _Listed(NamedTuple):
    memory: MemoryEntity
    id: str
    fields: tuple[str, ...]
    key: tuple[int, str] = (0, "")  # (creation order, entity id): the order rows are listed in


class _ListedRelation(NamedTuple):
    key: tuple[int, str]  # (creation order, relation id): the order relations are listed in
    src: str
    dst: str
    valid_to: datetime | None
    memory: MemoryRelation


class _Listing:
    """The rows (real memory entities by id) in creation order, plus all their fields in one string
    so a substring search runs at C speed: each match jumps to the next row, so a row is reported
    once. `relations` are the live memory relations by id; `touching` maps an entity id to those
    at either end of which it is.

    A scan reads the whole text (about 3 ms for 10,000 entities with paragraph-long
    observations), so from the second search on the same listing a trigram index over the text's
    UTF-8 bytes narrows the rows to those holding every trigram of the query, and only those are
    checked. It is built on the second search, not the first, so that alternating writes and
    searches (each write makes a new listing) never pay for it.
    """

    _SEP = "\x00"  # cannot occur in a query that takes the fast path

    def __init__(
        self, rows: dict[str, _Listed] | Sequence[_Listed], relations: dict[str, _ListedRelation] | None = None
    ) -> None:
        listed = list(rows.values()) if isinstance(rows, dict) else list(rows)
        self.rows: dict[str, _Listed] = {row.id: row for row in listed}
        self.ordered = sorted(listed, key=lambda row: row.key)
        self.relations = relations or {}
        self.touching: dict[str, list[_ListedRelation]] = {}
        for relation in self.relations.values():
            for end in dict.fromkeys((relation.src, relation.dst)):
                self.touching.setdefault(end, []).append(relation)
        self._starts: list[int] = []
        parts: list[str] = []
        offset = 0
        for row in self.ordered:
            self._starts.append(offset)
            part = self._SEP.join(row.fields) + self._SEP
            parts.append(part)
            offset += len(part)
        self._text = "".join(parts)
        self._searches = 0
        self._trigram_lock = threading.Lock()
        # (trigram code, row) pairs sorted by code: the trigram index, once built.
        self._trigrams: tuple[np.ndarray, np.ndarray] | None = None

    def matching(self, q: str) -> list[_Listed]:
        if not q or self._SEP in q:
            return [row for row in self.ordered if any(q in field for field in row.fields)]
        self._searches += 1
        needle = q.encode("utf-8")
        if self.ordered and len(needle) >= 3 and self._searches >= 2 and len(self._text) >= TRIGRAM_MIN_CHARS:
            return self._matching_by_trigrams(q, needle)
        hits: list[_Listed] = []
        at = self._text.find(q)
        while at != -1:
            index = bisect.bisect_right(self._starts, at) - 1
            hits.append(self.ordered[index])
            if index + 1 == len(self.ordered):
                break
            at = self._text.find(q, self._starts[index + 1])
        return hits

    def _matching_by_trigrams(self, q: str, needle: bytes) -> list[_Listed]:
        codes, rows = self._trigram_index()
        candidates: np.ndarray | None = None
        for code in set(_trigram_codes(needle).tolist()):
            lo, hi = np.searchsorted(codes, [code, code + 1])
            found = rows[lo:hi]
            candidates = found if candidates is None else np.intersect1d(candidates, found, assume_unique=True)
            if len(candidates) == 0:
                return []
        assert candidates is not None
        ends = [*self._starts[1:], len(self._text)]
        text = self._text
        return [self.ordered[i] for i in candidates.tolist() if text.find(q, self._starts[i], ends[i]) != -1]

    def _trigram_index(self) -> tuple[np.ndarray, np.ndarray]:
        with self._trigram_lock:
            if self._trigrams is None:
                data = np.frombuffer(self._text.encode("utf-8"), dtype=np.uint8)
                ends = [*self._starts[1:], len(self._text)]
                sizes = [len(self._text[a:b].encode("utf-8")) for a, b in zip(self._starts, ends, strict=True)]
                row_of_byte = np.repeat(np.arange(len(self.ordered), dtype=np.int64), sizes)
                # A trigram that runs into the next row is credited to the first: it only adds candidates.
                keys = np.sort(_trigram_codes(data) * len(self.ordered) + row_of_byte[: max(len(data) - 2, 0)])
                if len(keys):  # np.unique is far slower than sorting and dropping repeats
                    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
                self._trigrams = (keys // len(self.ordered), (keys % len(self.ordered)).astype(np.int64))
            return self._trigrams

    def relations_touching(self, ids: Iterable[str], now: datetime) -> list[MemoryRelation]:
        """The live relations with an end among `ids`, in creation order."""
        found: dict[str, _ListedRelation] = {}
        for entity in ids:
            for listed in self.touching.get(entity, ()):
                if listed.valid_to is None or listed.valid_to > now:
                    found[listed.key[1]] = listed
        return [listed.memory for listed in sorted(found.values(), key=lambda r: r.key)]


def _trigram_codes(data: bytes | np.ndarray) -> np.ndarray:
    """The 24-bit code of every run of three consecutive bytes."""
    b = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if len(b) < 3:
        return np.zeros(0, dtype=np.int64)
    wide = b.astype(np.int64)
    return (wide[:-2] << 16) | (wide[1:-1] << 8) | wide[2:]
