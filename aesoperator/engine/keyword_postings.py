"""The keyword index's documents and postings, and BM25 over them.

An immutable compressed posting list per term (CSR: `starts`, `docs`, `freqs`) built at rebuild
or merge time, plus a small per-term delta for documents added since. An updated or deleted
entity's old document is only marked dead; dead postings are dropped at the next merge.
Scores follow FTS5's bm25 (k1 1.2, b 0.75, idf clamped to 1e-6) in its order of operations, so
they agree with the embedded store's to the last bit on the items of a graph. Not locked;
`KeywordIndex` locks.

The entities extraction found (ids under `knowledge:`) are documents too, so that
`types=["Person"]` and name look-ups find them, but they do not count in the statistics: a corpus
of passages gains ~15 short name documents per passage, which would halve the average length and
raise the document frequency of exactly the rare names a query is most specific about. So N,
the average length and each term's document frequency are those of the items alone, and the
passages rank as they would without extraction.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from aesoperator.engine.growable import GrowableColumn
from aesoperator.engine.keyword_pruning import SlotColumn, TermPostings, pruned_sums
from aesoperator.engine.keyword_vocabulary import MULTI
from aesoperator.graph_schema.knowledge import KNOWLEDGE_ID_PREFIX

K1 = 1.2
B = 0.75
IDF_FLOOR = 1e-6  # FTS5 clamps a non-positive idf to this
# Below this many postings a search scores them all: pruning's bookkeeping costs more than it saves.
PRUNE_FROM = 20_000
# The per-document columns, as saved (see keyword_files.py).
COLUMNS = ("lengths", "ns", "types", "nterms")


def bm25_idf(n_docs: int, df: int) -> float:
    """FTS5's bm25 idf of a term in `df` of `n_docs` documents, a non-positive one clamped to
    `IDF_FLOOR`, computed in FTS5's order of operations."""
    idf = math.log((n_docs - df + 0.5) / (df + 0.5))
    return idf if idf > 0.0 else IDF_FLOOR


def counts_in_statistics(entity_id: str) -> bool:
    """Whether a document weighs in N, the average length and document frequencies: every
    entity but those extraction found (see the module docstring)."""
    return not entity_id.startswith(KNOWLEDGE_ID_PREFIX)


def _empty_i32() -> np.ndarray:
    return np.zeros(0, dtype=np.int32)


class KeywordPostings:
    """Documents (one per indexed entity version), their postings by term id, and BM25."""

    def __init__(self) -> None:
        self.starts = np.zeros(1, dtype=np.int64)  # base CSR over term ids < len(starts) - 1
        self.docs = _empty_i32()
        self.freqs = np.zeros(0, dtype=np.float32)
        self.delta: dict[int, tuple[array.array[int], array.array[float]]] = {}
        self.delta_postings = 0
        self.ids: list[str | None] = []
        self.doc_of: dict[str, int] = {}
        self.names: list[str] = []  # lower-cased name per document (dead ones too)
        # lower-cased name -> its document, or MULTI when several documents share it (they are in
        # `name_docs`); dead documents stay until the next merge (their id is None).
        self.by_name: dict[str, int] = {}
        self.name_docs: dict[str, list[int]] = {}
        self.lengths = GrowableColumn(np.float32)
        self.live = GrowableColumn(np.bool_)
        self.ns = GrowableColumn(np.int32)
        self.types = GrowableColumn(np.int32)
        self.nterms = GrowableColumn(np.int32)  # distinct terms per document: its postings
        self.counted = GrowableColumn(np.bool_)  # whether the document weighs in the statistics
        # per term id: postings of documents that do not count (dead ones too, like `raw_df`)
        self.uncounted_df = np.zeros(0, dtype=np.int64)
        self.ns_code: dict[str, int] = {}
        self.type_code: dict[str, int] = {}
        self.live_docs = 0
        self.live_tokens = 0.0
        self.counted_docs = 0  # live documents that count, and their tokens
        self.counted_tokens = 0.0
        self.dead_postings = 0
        # Searches naming at least this many postings skip the documents that cannot reach the
        # top k (`keyword_pruning`); below it every posting is scored.
        self.prune_from = PRUNE_FROM
        self.pruned_searches = 0  # searches that left some term's other documents unscored
        self._slots = SlotColumn()

    @classmethod
    def from_saved(cls, arrays: dict[str, np.ndarray], labels: dict[str, Any]) -> KeywordPostings:
        """Postings from what `keyword_files.read_keyword_file` returns (every document live)."""
        postings = cls()
        postings.starts, postings.docs, postings.freqs = arrays["starts"], arrays["docs"], arrays["freqs"]
        postings.ids = labels["ids"]
        postings.names = list(labels["names"])
        postings._index_labels()
        postings.lengths = GrowableColumn(np.float32, arrays["lengths"])
        postings.ns = GrowableColumn(np.int32, arrays["ns"])
        postings.types = GrowableColumn(np.int32, arrays["types"])
        postings.nterms = GrowableColumn(np.int32, arrays["nterms"])
        n = len(postings.ids)
        postings.live = GrowableColumn(np.bool_, np.ones(n, dtype=np.bool_))
        postings.ns_code = {v: i for i, v in enumerate(labels["namespaces"])}
        postings.type_code = {v: i for i, v in enumerate(labels["types"])}
        postings.live_docs = n
        lengths = postings.lengths.view().astype(np.float64)
        postings.live_tokens = float(lengths.sum())
        counted = np.fromiter((counts_in_statistics(i) for i in postings.ids if i is not None), np.bool_, n)
        postings.counted = GrowableColumn(np.bool_, counted)
        postings.counted_docs = int(counted.sum())
        postings.counted_tokens = float(lengths[counted].sum())
        postings._count_uncounted_postings(len(postings.starts) - 1)
        return postings

    def saved_form(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, labels) to save; call on a merged index (no delta, no dead documents)."""
        arrays = {
            "starts": self.starts,
            "docs": self.docs,
            "freqs": self.freqs,
            "lengths": self.lengths.view(),
            "ns": self.ns.view(),
            "types": self.types.view(),
            "nterms": self.nterms.view(),
        }
        labels = {
            "ids": self.ids,
            "names": self.names,
            "namespaces": sorted(self.ns_code, key=self.ns_code.__getitem__),
            "types": sorted(self.type_code, key=self.type_code.__getitem__),
        }
        return arrays, labels

    @property
    def postings(self) -> int:
        return len(self.docs) + self.delta_postings

    # -- documents ----------------------------------------------------------------------------
    def _code(self, table: dict[str, int], value: str) -> int:
        code = table.get(value)
        if code is None:
            code = table[value] = len(table)
        return code

    def new_doc(self, entity_id: str, name: str, namespace: str, entity_type: str, length: int, distinct: int) -> int:
        doc = len(self.ids)
        self.ids.append(entity_id)
        self.doc_of[entity_id] = doc
        lowered = name.lower()
        self.names.append(lowered)
        self._add_name(lowered, doc)
        self.lengths.append(length)
        self.live.append(True)
        self.ns.append(self._code(self.ns_code, namespace))
        self.types.append(self._code(self.type_code, entity_type))
        self.nterms.append(distinct)
        counted = counts_in_statistics(entity_id)
        self.counted.append(counted)
        self.live_docs += 1
        self.live_tokens += length
        if counted:
            self.counted_docs += 1
            self.counted_tokens += length
        return doc

    def new_docs(
        self,
        entity_ids: Sequence[str],
        names: Sequence[str],
        namespaces: Sequence[str],
        entity_types: Sequence[str],
        lengths: np.ndarray,
        distinct: np.ndarray,
    ) -> int:
        """`new_doc` for a batch of ids none of which has a document yet (a full scan's page),
        column by column. Returns the first new document's number."""
        first = len(self.ids)
        count = len(entity_ids)
        self.ids.extend(entity_ids)
        self.doc_of.update(zip(entity_ids, range(first, first + count), strict=True))
        lowered = [name.lower() for name in names]
        self.names.extend(lowered)
        for doc, name in enumerate(lowered, first):
            self._add_name(name, doc)
        self.lengths.extend(lengths)
        self.live.extend(np.ones(count, dtype=np.bool_))
        self.ns.extend(np.fromiter((self._code(self.ns_code, v) for v in namespaces), np.int32, count))
        self.types.extend(np.fromiter((self._code(self.type_code, v) for v in entity_types), np.int32, count))
        self.nterms.extend(distinct)
        counted = np.fromiter(map(counts_in_statistics, entity_ids), np.bool_, count)
        self.counted.extend(counted)
        # Sums of integers: exact in float64, so equal to adding one document at a time.
        self.live_docs += count
        self.live_tokens += float(lengths.sum())
        self.counted_docs += int(counted.sum())
        self.counted_tokens += float(lengths[counted].sum())
        return first

    def add_delta(self, doc: int, counts: dict[int, float]) -> None:
        """Postings of a new document, into the per-term delta."""
        for tid, freq in counts.items():
            slot = self.delta.get(tid)
            if slot is None:
                slot = self.delta[tid] = (array.array("i"), array.array("f"))
            slot[0].append(doc)
            slot[1].append(freq)
        self.delta_postings += len(counts)
        if not self.counted.data[doc] and counts:
            top = max(counts)
            if top >= len(self.uncounted_df):
                grown = np.zeros(max(top + 1, 2 * len(self.uncounted_df)), dtype=np.int64)
                grown[: len(self.uncounted_df)] = self.uncounted_df
                self.uncounted_df = grown
            self.uncounted_df[np.fromiter(counts, np.int64, len(counts))] += 1

    def kill(self, entity_id: str) -> bool:
        doc = self.doc_of.pop(entity_id, None)
        if doc is None:
            return False
        self.live.data[doc] = False
        self.ids[doc] = None  # also takes it out of `by_name` lookups until the next merge
        self.live_docs -= 1
        self.live_tokens -= float(self.lengths.data[doc])
        if self.counted.data[doc]:
            self.counted_docs -= 1
            self.counted_tokens -= float(self.lengths.data[doc])
        self.dead_postings += int(self.nterms.data[doc])
        return True

    def merge(self, n_terms: int) -> None:
        """Fold the delta into the base and drop dead documents (renumbering the live ones)."""
        base_terms = np.repeat(np.arange(len(self.starts) - 1, dtype=np.int32), np.diff(self.starts))
        parts_t, parts_d, parts_f = [base_terms], [self.docs], [self.freqs]
        for tid, (delta_docs, delta_freqs) in self.delta.items():
            parts_t.append(np.full(len(delta_docs), tid, dtype=np.int32))
            parts_d.append(np.frombuffer(delta_docs, dtype=np.int32))
            parts_f.append(np.frombuffer(delta_freqs, dtype=np.float32))
        terms = np.concatenate(parts_t)
        docs = np.concatenate(parts_d)
        freqs = np.concatenate(parts_f)
        live = self.live.view()
        keep = live[docs]
        new_number = np.cumsum(live, dtype=np.int64) - 1
        self.install(terms[keep], new_number[docs[keep]].astype(np.int32), freqs[keep], n_terms, live)

    def install(self, terms: np.ndarray, docs: np.ndarray, freqs: np.ndarray, n_terms: int, live: np.ndarray) -> None:
        """Make (term, doc, freq) triples the base CSR, keeping only the documents `live` marks."""
        order = np.argsort(terms, kind="stable")
        self.docs = docs[order]
        self.freqs = freqs[order]
        self.starts = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(terms, minlength=n_terms), out=self.starts[1:])
        self.delta = {}
        self.delta_postings = 0
        if len(live) == len(self.ids) and live.all():
            # Nothing to drop (a full rebuild): ids, names, their maps and the columns stand as built.
            self.dead_postings = 0
            self._count_uncounted_postings(n_terms)
            return
        keep_idx = np.flatnonzero(live)
        kept = keep_idx.tolist()
        self.ids = [self.ids[i] for i in kept]
        self.names = [self.names[i] for i in kept]
        self._index_labels()
        self.lengths = GrowableColumn(np.float32, self.lengths.view()[keep_idx])
        self.ns = GrowableColumn(np.int32, self.ns.view()[keep_idx])
        self.types = GrowableColumn(np.int32, self.types.view()[keep_idx])
        self.nterms = GrowableColumn(np.int32, self.nterms.view()[keep_idx])
        self.counted = GrowableColumn(np.bool_, self.counted.view()[keep_idx])
        self.live = GrowableColumn(np.bool_, np.ones(len(keep_idx), dtype=np.bool_))
        self.dead_postings = 0
        self._count_uncounted_postings(n_terms)

    def _count_uncounted_postings(self, n_terms: int) -> None:
        """`uncounted_df` from the base CSR (call with an empty delta)."""
        counted = self.counted.view()
        if counted.all():
            self.uncounted_df = np.zeros(n_terms, dtype=np.int64)
            return
        # The term of each posting of an uncounted document, found from its position in the CSR
        # (no per-posting term array: that would be 8 bytes for each of tens of millions).
        positions = np.flatnonzero(~counted[self.docs])
        terms = np.searchsorted(self.starts, positions, side="right") - 1
        self.uncounted_df = np.bincount(terms, minlength=n_terms).astype(np.int64)

    def _add_name(self, name: str, doc: int) -> None:
        first = self.by_name.setdefault(name, doc)
        if first == doc:
            return
        if first != MULTI:
            self.by_name[name] = MULTI
            self.name_docs[name] = [first]
        self.name_docs[name].append(doc)

    def _docs_named(self, name: str) -> list[int]:
        doc = self.by_name.get(name)
        if doc is None:
            return []
        return self.name_docs[name] if doc == MULTI else [doc]

    def _index_labels(self) -> None:
        """`doc_of` and the name index from `ids` and `names` (every document live)."""
        self.doc_of = {eid: i for i, eid in enumerate(self.ids) if eid is not None}
        self.by_name = {}
        self.name_docs = {}
        for doc, name in enumerate(self.names):
            self._add_name(name, doc)

    # -- scoring ------------------------------------------------------------------------------
    def _postings_of(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        parts_d: list[np.ndarray] = []
        parts_f: list[np.ndarray] = []
        if tid < len(self.starts) - 1:
            lo, hi = int(self.starts[tid]), int(self.starts[tid + 1])
            parts_d.append(self.docs[lo:hi])
            parts_f.append(self.freqs[lo:hi])
        extra = self.delta.get(tid)
        if extra is not None:
            parts_d.append(np.frombuffer(extra[0], dtype=np.int32))
            parts_f.append(np.frombuffer(extra[1], dtype=np.float32))
        if not parts_d:
            return _empty_i32(), np.zeros(0, dtype=np.float32)
        if len(parts_d) == 1:
            return parts_d[0], parts_f[0]
        return np.concatenate(parts_d), np.concatenate(parts_f)

    def raw_df(self, tid: int) -> int:
        """Postings of a term in documents that count, dead documents included (as FTS5 counts
        before a merge); 1 for a term only documents that do not count hold, so that it is
        still asked for (and, being rare, never pruned)."""
        base = int(self.starts[tid + 1] - self.starts[tid]) if tid < len(self.starts) - 1 else 0
        extra = self.delta.get(tid)
        every = base + (len(extra[0]) if extra is not None else 0)
        counted = every - (int(self.uncounted_df[tid]) if tid < len(self.uncounted_df) else 0)
        return counted if counted > 0 else min(every, 1)

    def top_k(
        self,
        asked: Sequence[int],
        k: int,
        namespaces: Sequence[str] | None,
        types: Sequence[str] | None,
        counted_only: bool = False,
    ) -> list[tuple[str | None, float]]:
        """The best (entity id, bm25) for the query's term ids, at least k unless fewer match,
        unsorted; an id is None for a dead document. `asked` holds one term id per query word;
        `counted_only` leaves out the documents that do not count in the statistics."""
        n_docs = max(1, self.counted_docs)
        avgdl = self.counted_tokens / self.counted_docs if self.counted_docs else 1.0
        live = self.live.view()
        lengths = self.lengths.view()
        terms: dict[int, TermPostings] = {}
        for tid in dict.fromkeys(asked):
            term = self._term_postings(tid, n_docs, live)
            if term is not None:
                terms[tid] = term
        occurrences = [tid for tid in asked if tid in terms]  # one addend per query word, in query order
        if not occurrences:
            return []

        def addends(docs: np.ndarray, freqs: np.ndarray, idf: float) -> np.ndarray:
            # in FTS5's order of operations, so that scores agree to the last bit
            f = freqs.astype(np.float64)
            norm = K1 * (1.0 - B + B * lengths[docs].astype(np.float64) / avgdl)
            return idf * ((f * (K1 + 1.0)) / (f + norm))

        def kept(docs: np.ndarray) -> np.ndarray:
            mask = self.counted.view()[docs] if counted_only else np.ones(len(docs), dtype=np.bool_)
            inside = self._kept(docs, namespaces, types)
            return mask if inside is None else mask & inside

        postings = sum(len(terms[t].docs) for t in terms)
        if len(terms) > 1 and postings >= self.prune_from:
            candidates, totals, allowed, skipped = pruned_sums(
                terms, occurrences, k, addends, kept, self._slots, len(self.ids)
            )
            self.pruned_searches += skipped > 0
        else:
            candidates, totals = self._exhaustive_sums(terms, occurrences, addends)
            allowed = kept(candidates)
        # every addend is positive: a total above zero is a document a posting names
        keep = allowed & (totals != 0)
        candidates, scores = candidates[keep], totals[keep]
        if len(candidates) == 0:
            return []
        if len(candidates) > k:
            cut = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = scores >= cut
            candidates, scores = candidates[keep], scores[keep]
        return [(self.ids[d], float(s)) for d, s in zip(candidates.tolist(), scores.tolist(), strict=True)]

    def named(self, key: str, namespaces: Sequence[str] | None, types: Sequence[str] | None) -> list[str]:
        """Live entity ids (sorted) whose lower-cased name is `key`, within the filters."""
        docs = self._docs_named(key)
        if not docs:
            return []
        kept = self._filtered(np.asarray(docs, dtype=np.int64), namespaces, types)  # dead: id None
        return sorted(eid for eid in (self.ids[d] for d in kept.tolist()) if eid is not None)

    def _term_postings(self, tid: int, n_docs: int, live: np.ndarray) -> TermPostings | None:
        """A term's live postings and its idf (None when no live document has it)."""
        docs, freqs = self._postings_of(tid)
        if self.dead_postings:
            alive = live[docs]
            docs, freqs = docs[alive], freqs[alive]
        if len(docs) == 0:
            return None
        df = int(np.count_nonzero(self.counted.view()[docs])) if self.counted_docs != self.live_docs else len(docs)
        idf = bm25_idf(n_docs, df)
        return TermPostings(docs, freqs, idf, idf * (K1 + 1.0))

    def _exhaustive_sums(
        self,
        terms: dict[int, TermPostings],
        occurrences: Sequence[int],
        addends: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every document a posting names and its total, each word's addends summed in query order."""
        scored = {tid: addends(t.docs, t.freqs, t.idf) for tid, t in terms.items()}
        docs = np.concatenate([terms[tid].docs for tid in occurrences])
        totals = np.bincount(docs, weights=np.concatenate([scored[tid] for tid in occurrences]))
        if len(occurrences) == 1:
            candidates = np.unique(docs)
        else:
            # The documents some posting names, found through a mask of one byte per document:
            # scanning the float64 totals for all of them cost half the keyword channel's time
            # at a million entities.
            present = np.zeros(len(totals), dtype=np.bool_)
            present[docs] = True
            candidates = np.flatnonzero(present)
        return candidates, totals[candidates]

    def _kept(
        self, candidates: np.ndarray, namespaces: Sequence[str] | None, types: Sequence[str] | None
    ) -> np.ndarray | None:
        """Which candidates are in the namespaces and of the types asked for (None: no filter)."""
        keep: np.ndarray | None = None
        for wanted, table, column in ((namespaces, self.ns_code, self.ns), (types, self.type_code, self.types)):
            if wanted is None:
                continue
            codes = [table[v] for v in wanted if v in table]
            if not codes:
                return np.zeros(len(candidates), dtype=np.bool_)
            inside = np.isin(column.view()[candidates], np.asarray(codes, dtype=np.int32))
            keep = inside if keep is None else keep & inside
        return keep

    def _filtered(
        self, candidates: np.ndarray, namespaces: Sequence[str] | None, types: Sequence[str] | None
    ) -> np.ndarray:
        keep = self._kept(candidates, namespaces, types)
        return candidates if keep is None else candidates[keep]
