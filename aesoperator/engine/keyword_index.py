"""The keyword index: BM25 over entity name and text, in memory, derived from the graph store.

It answers what `EmbeddedGraphStore.keyword_search` answers (same terms, see `fts_terms`; same
bm25 as FTS5: k1 1.2, b 0.75, a name hit weighing twice a text hit, idf clamped to 1e-6; same
query words and common-term pruning) but scores only the postings of the query's terms with
numpy, where FTS5 walks every match through its auxiliary-function interface: at a million
entities that is the difference between hundreds and tens of milliseconds. Like the vector index
it can be thrown away: it is rebuilt from `store.iter_entities` and kept current by replaying
the store's change log, so it serves the Neo4j backend too.

Layout: an immutable compressed posting list per term (CSR: `starts`, `docs`, `freqs`) built at
rebuild or merge time, plus a small per-term delta for documents added since. An updated or
deleted entity's old document is only marked dead; dead postings are dropped at the next merge,
which runs when the delta or the dead postings grow past a share of the base.

On disk (`directory`): `manifest.json` (written last: the commit point) and one
`keywords-gNNNNNN.npz` it names with its sha256. A save always writes a new generation, so a
crash leaves the previous or the new state whole.
"""

from __future__ import annotations

import array
import contextlib
import json
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aesoperator.engine.data_dir import make_private_dir, open_private_write
from aesoperator.engine.fts_terms import FtsTermMaker
from aesoperator.engine.index_files import (
    CHANGE_PAGE,
    FETCH_BATCH,
    REBUILD_CHANGED_IDS,
    DerivedIndex,
    IndexLoadError,
    SyncReport,
    fsync_dir,
    saving,
    sha256_file,
    store_identity,
    write_bytes_atomic,
)
from aesoperator.engine.query_terms import prune_common_terms
from aesoperator.engine.stores.base import GraphStore
from aesoperator.engine.stores.embedded import BM25_WEIGHTS, KEYWORD_MAX_DF, KEYWORD_PRUNE_MIN_DOCS
from aesoperator.engine.stores.embedded_rows import query_phrases
from aesoperator.graph_schema.models import Entity

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
_FILE_PREFIX = "keywords-g"
K1 = 1.2
B = 0.75
IDF_FLOOR = 1e-6  # FTS5 clamps a non-positive idf to this
# Merge the delta into the base when it holds this share of the base's postings (or more than
# MERGE_MIN_POSTINGS); drop dead postings when they are this share of all postings.
MERGE_SHARE = 0.10
MERGE_MIN_POSTINGS = 200_000
DEAD_SHARE = 0.25
ITER_BATCH = 5000
# close() saves when at least this many change-log rows were replayed since the last save: replaying
# them again at the next open would cost more than writing the index.
SAVE_AT_CLOSE_AFTER = 20_000
WORD_MEMO_MAX = 2_000_000  # distinct words remembered with their term ids
MULTI = -1  # in the word and name maps: "several (or no) values, kept in the side table"


def _empty_i32() -> np.ndarray:
    return np.zeros(0, dtype=np.int32)


class _Grow:
    """A growable numpy column (amortised doubling)."""

    def __init__(self, dtype: Any, values: np.ndarray | None = None) -> None:
        data = np.zeros(1024, dtype=dtype) if values is None else np.asarray(values, dtype=dtype)
        self.data = data if values is None else np.concatenate([data, np.zeros(1024, dtype=dtype)])
        self.size = 0 if values is None else len(values)

    def append(self, value: Any) -> None:
        if self.size == len(self.data):
            self.data = np.concatenate([self.data, np.zeros(len(self.data), dtype=self.data.dtype)])
        self.data[self.size] = value
        self.size += 1

    def view(self) -> np.ndarray:
        return self.data[: self.size]


class KeywordIndex(DerivedIndex):
    """BM25 keyword search over every entity of a store. Thread-safe; `sync(store)` before use."""

    def __init__(
        self,
        directory: Path | None,
        max_df: float = KEYWORD_MAX_DF,
        prune_min_docs: int = KEYWORD_PRUNE_MIN_DOCS,
        weights: tuple[float, float] = BM25_WEIGHTS,
    ) -> None:
        self.directory = None if directory is None else Path(directory)
        self.max_df = max_df
        self.prune_min_docs = prune_min_docs
        self.weights = weights
        super().__init__()
        self._generation = 0
        self._replayed_since_save = 0  # change-log rows applied since the last save or load
        self._terms = FtsTermMaker()
        self._lock = threading.RLock()
        self._reset()

    # -- state --------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._term_of: dict[str, int] = {}
        self._term_str: list[str] = []
        # word -> its term id (a memo of the vocabulary above, so it goes with it); words FTS5
        # cuts into several terms, or none, map to MULTI and their terms are in `_word_terms`.
        # Plain ints keep these dicts out of the garbage collector's traversals.
        self._word_ids: dict[str, int] = {}
        self._word_terms: dict[str, tuple[int, ...]] = {}
        self._starts = np.zeros(1, dtype=np.int64)  # base CSR over term ids < len(starts) - 1
        self._docs = _empty_i32()
        self._freqs = np.zeros(0, dtype=np.float32)
        self._delta: dict[int, tuple[array.array[int], array.array[float]]] = {}
        self._delta_postings = 0
        self._ids: list[str | None] = []
        self._doc_of: dict[str, int] = {}
        self._names: list[str] = []  # lower-cased name per document (dead ones too)
        # lower-cased name -> its document, or -1 when several documents share it (they are in
        # `_name_docs`); dead documents stay until the next merge (their id is None).
        self._by_name: dict[str, int] = {}
        self._name_docs: dict[str, list[int]] = {}
        self._len = _Grow(np.float32)
        self._live = _Grow(np.bool_)
        self._ns = _Grow(np.int32)
        self._type = _Grow(np.int32)
        self._nterms = _Grow(np.int32)  # distinct terms per document: its postings
        self._ns_code: dict[str, int] = {}
        self._type_code: dict[str, int] = {}
        self._live_docs = 0
        self._live_tokens = 0.0
        self._dead_postings = 0

    def __len__(self) -> int:
        with self._lock:
            return self._live_docs

    def __contains__(self, entity_id: object) -> bool:
        with self._lock:
            return entity_id in self._doc_of

    @property
    def postings(self) -> int:
        with self._lock:
            return len(self._docs) + self._delta_postings

    def _code(self, table: dict[str, int], value: str) -> int:
        code = table.get(value)
        if code is None:
            code = table[value] = len(table)
        return code

    def _term_id(self, term: str) -> int:
        tid = self._term_of.get(term)
        if tid is None:
            tid = self._term_of[term] = len(self._term_str)
            self._term_str.append(term)
        return tid

    def _learn(self, word_lists: Sequence[Sequence[str]]) -> None:
        """Give every word not seen yet its term ids (one SQLite round trip for all of them)."""
        known = self._word_ids
        new = list({w: None for words in word_lists for w in words if w not in known})
        if not new:
            return
        if len(known) + len(new) > WORD_MEMO_MAX:
            known.clear()
            self._word_terms.clear()
        for word, terms in zip(new, self._terms.tokenize(new), strict=True):
            if len(terms) == 1:
                known[word] = self._term_id(terms[0])
            else:
                known[word] = MULTI
                self._word_terms[word] = tuple(self._term_id(t) for t in terms)

    def _term_ids_of(self, words: Sequence[str]) -> list[int]:
        try:
            ids = list(map(self._word_ids.__getitem__, words))
        except KeyError:  # the memo was cleared by a batch learned meanwhile
            self._learn([words])
            ids = list(map(self._word_ids.__getitem__, words))
        if ids and min(ids) == MULTI:
            ids = self._expand_multi(words, ids)
        return ids

    def _expand_multi(self, words: Sequence[str], ids: list[int]) -> list[int]:
        out: list[int] = []
        for word, tid in zip(words, ids, strict=True):
            if tid == MULTI:
                out.extend(self._word_terms[word])
            else:
                out.append(tid)
        return out

    def _weighted_counts(self, name_words: Sequence[str], text_words: Sequence[str]) -> tuple[dict[int, float], int]:
        """term id -> weighted frequency (name hits count `weights[0]`, text hits `weights[1]`),
        and the document's length in tokens (both columns, unweighted, as FTS5 counts it)."""
        name_ids = self._term_ids_of(name_words)
        text_ids = self._term_ids_of(text_words)
        w_name, w_text = self.weights
        counts: dict[int, float] = {tid: n * w_text for tid, n in Counter(text_ids).items()}
        for tid, n in Counter(name_ids).items():
            counts[tid] = counts.get(tid, 0.0) + n * w_name
        return counts, len(name_ids) + len(text_ids)

    def _documents(self, entities: Sequence[Entity]) -> list[tuple[dict[int, float], int]]:
        """`_weighted_counts` of each entity, with the batch's new words learned in one go."""
        words = [(self._terms.words(e.name), self._terms.words(e.text or "")) for e in entities]
        self._learn([w for pair in words for w in pair])
        return [self._weighted_counts(name, text) for name, text in words]

    def _new_doc(self, entity: Entity, length: int, distinct: int) -> int:
        doc = len(self._ids)
        self._ids.append(entity.id)
        self._doc_of[entity.id] = doc
        name = entity.name.lower()
        self._names.append(name)
        self._add_name(name, doc)
        self._len.append(length)
        self._live.append(True)
        self._ns.append(self._code(self._ns_code, entity.namespace))
        self._type.append(self._code(self._type_code, entity.type))
        self._nterms.append(distinct)
        self._live_docs += 1
        self._live_tokens += length
        return doc

    def _kill(self, entity_id: str) -> bool:
        doc = self._doc_of.pop(entity_id, None)
        if doc is None:
            return False
        self._live.data[doc] = False
        self._ids[doc] = None  # also takes it out of `_by_name` lookups until the next merge
        self._live_docs -= 1
        self._live_tokens -= float(self._len.data[doc])
        self._dead_postings += int(self._nterms.data[doc])
        return True

    # -- writing ------------------------------------------------------------------------------
    def upsert(self, entities: Sequence[Entity]) -> int:
        """Index (or re-index) entities; their previous documents are dropped."""
        with self._lock:
            for entity, (counts, length) in zip(entities, self._documents(entities), strict=True):
                self._kill(entity.id)
                doc = self._new_doc(entity, length, len(counts))
                for tid, freq in counts.items():
                    slot = self._delta.get(tid)
                    if slot is None:
                        slot = self._delta[tid] = (array.array("i"), array.array("f"))
                    slot[0].append(doc)
                    slot[1].append(freq)
                self._delta_postings += len(counts)
            self._maybe_merge()
            return len(entities)

    def remove(self, entity_ids: Sequence[str]) -> int:
        with self._lock:
            removed = sum(self._kill(eid) for eid in entity_ids)
            self._maybe_merge()
            return removed

    def _maybe_merge(self) -> None:
        base = len(self._docs)
        total = base + self._delta_postings
        if self._delta_postings > max(MERGE_MIN_POSTINGS, MERGE_SHARE * base) or (
            total and self._dead_postings > DEAD_SHARE * total and self._dead_postings > 10_000
        ):
            self._merge()

    def _merge(self) -> None:
        """Fold the delta into the base and drop dead documents (renumbering the live ones)."""
        n_terms = len(self._term_str)
        base_terms = np.repeat(np.arange(len(self._starts) - 1, dtype=np.int32), np.diff(self._starts))
        parts_t, parts_d, parts_f = [base_terms], [self._docs], [self._freqs]
        for tid, (delta_docs, delta_freqs) in self._delta.items():
            parts_t.append(np.full(len(delta_docs), tid, dtype=np.int32))
            parts_d.append(np.frombuffer(delta_docs, dtype=np.int32))
            parts_f.append(np.frombuffer(delta_freqs, dtype=np.float32))
        terms = np.concatenate(parts_t)
        docs = np.concatenate(parts_d)
        freqs = np.concatenate(parts_f)
        live = self._live.view()
        keep = live[docs]
        new_number = np.cumsum(live, dtype=np.int64) - 1
        self._install(terms[keep], new_number[docs[keep]].astype(np.int32), freqs[keep], n_terms, live)

    def _install(self, terms: np.ndarray, docs: np.ndarray, freqs: np.ndarray, n_terms: int, live: np.ndarray) -> None:
        order = np.argsort(terms, kind="stable")
        self._docs = docs[order]
        self._freqs = freqs[order]
        self._starts = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(terms, minlength=n_terms), out=self._starts[1:])
        self._delta = {}
        self._delta_postings = 0
        keep_idx = np.flatnonzero(live)
        kept = keep_idx.tolist()
        self._ids = [self._ids[i] for i in kept]
        self._names = [self._names[i] for i in kept]
        self._index_labels()
        self._len = _Grow(np.float32, self._len.view()[keep_idx])
        self._ns = _Grow(np.int32, self._ns.view()[keep_idx])
        self._type = _Grow(np.int32, self._type.view()[keep_idx])
        self._nterms = _Grow(np.int32, self._nterms.view()[keep_idx])
        self._live = _Grow(np.bool_, np.ones(len(keep_idx), dtype=np.bool_))
        self._dead_postings = 0

    def _add_name(self, name: str, doc: int) -> None:
        first = self._by_name.setdefault(name, doc)
        if first == doc:
            return
        if first != MULTI:
            self._by_name[name] = MULTI
            self._name_docs[name] = [first]
        self._name_docs[name].append(doc)

    def _docs_named(self, name: str) -> list[int]:
        doc = self._by_name.get(name)
        if doc is None:
            return []
        return self._name_docs[name] if doc == MULTI else [doc]

    def _index_labels(self) -> None:
        """`_doc_of` and the name index from `_ids` and `_names` (every document live)."""
        self._doc_of = {eid: i for i, eid in enumerate(self._ids) if eid is not None}
        self._by_name = {}
        self._name_docs = {}
        for doc, name in enumerate(self._names):
            self._add_name(name, doc)

    def _bulk_load(
        self, entities: Sequence[Entity], terms: array.array[int], docs: array.array[int], freqs: array.array[float]
    ) -> None:
        for entity, (counts, length) in zip(entities, self._documents(entities), strict=True):
            if entity.id in self._doc_of:
                self._kill(entity.id)
            doc = self._new_doc(entity, length, len(counts))
            terms.extend(counts.keys())
            docs.extend([doc] * len(counts))
            freqs.extend(counts.values())

    # -- searching ----------------------------------------------------------------------------
    def _postings_of(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        parts_d: list[np.ndarray] = []
        parts_f: list[np.ndarray] = []
        if tid < len(self._starts) - 1:
            lo, hi = int(self._starts[tid]), int(self._starts[tid + 1])
            parts_d.append(self._docs[lo:hi])
            parts_f.append(self._freqs[lo:hi])
        extra = self._delta.get(tid)
        if extra is not None:
            parts_d.append(np.frombuffer(extra[0], dtype=np.int32))
            parts_f.append(np.frombuffer(extra[1], dtype=np.float32))
        if not parts_d:
            return _empty_i32(), np.zeros(0, dtype=np.float32)
        if len(parts_d) == 1:
            return parts_d[0], parts_f[0]
        return np.concatenate(parts_d), np.concatenate(parts_f)

    def _raw_df(self, tid: int) -> int:
        base = int(self._starts[tid + 1] - self._starts[tid]) if tid < len(self._starts) - 1 else 0
        extra = self._delta.get(tid)
        return base + (len(extra[0]) if extra is not None else 0)

    def query_terms(self, query: str) -> list[tuple[str, str]]:
        """(query word, FTS5 term) pairs in query order, before pruning. Each word is one phrase of
        the store's FTS5 query; a word FTS5 cuts into several terms (rare: some scripts with
        combining marks) is scored as separate terms here, where FTS5 would match the phrase."""
        words = query_phrases(query)
        return [(w, t) for w, terms in zip(words, self._terms.terms_of_words(words), strict=True) for t in terms]

    def _scored_terms(self, query: str, n_docs: int) -> list[int]:
        """The term ids of the kept query words, in query order. Two words with one term (`run`,
        `running`) count twice, as two phrases do in FTS5's bm25; pruning, like the store's,
        goes word by word."""
        known = [(f"{w}\x00{t}", self._term_of[t]) for w, t in self.query_terms(query) if t in self._term_of]
        df = {key: self._raw_df(tid) for key, tid in known}
        keys = [key for key, _ in known]
        if n_docs >= self.prune_min_docs:
            kept = set(prune_common_terms(keys, df, n_docs, self.max_df))
        else:
            kept = {key for key in keys if df[key] > 0}
        return [tid for key, tid in known if key in kept]

    def search(
        self,
        query: str,
        k: int = 10,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """The k best (entity id, bm25) for `query`, best first, ties broken by entity id."""
        if k <= 0:
            return []
        with self._lock:
            n_docs = self._live_docs
            if n_docs == 0:
                return []
            asked = self._scored_terms(query, n_docs)
            if not asked:
                return []
            avgdl = self._live_tokens / n_docs
            live = self._live.view()
            lengths = self._len.view()
            all_docs: list[np.ndarray] = []
            all_scores: list[np.ndarray] = []
            scored: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
            for tid in asked:  # one addend per query word, in query order, as FTS5 sums them
                if tid not in scored:
                    scored[tid] = self._term_scores(tid, n_docs, avgdl, live, lengths)
                found = scored[tid]
                if found is not None:
                    all_docs.append(found[0])
                    all_scores.append(found[1])
            if not all_docs:
                return []
            docs = np.concatenate(all_docs)
            totals = np.bincount(docs, weights=np.concatenate(all_scores))
            candidates = np.flatnonzero(totals) if len(all_docs) > 1 else np.unique(docs)
            candidates = self._filtered(candidates, namespaces, types)
            if len(candidates) == 0:
                return []
            scores = totals[candidates]
            if len(candidates) > k:
                cut = np.partition(scores, len(scores) - k)[len(scores) - k]
                keep = scores >= cut
                candidates, scores = candidates[keep], scores[keep]
            hits = [(self._ids[d], float(s)) for d, s in zip(candidates.tolist(), scores.tolist(), strict=True)]
        ranked = sorted(((eid, s) for eid, s in hits if eid is not None), key=lambda h: (-h[1], h[0]))
        return ranked[:k]

    def name_lookup(
        self, names: Sequence[str], namespaces: Sequence[str] | None = None, types: Sequence[str] | None = None
    ) -> dict[str, list[str]]:
        """Case-insensitive exact name matches: lower-cased name -> entity ids (sorted), as
        `GraphStore.name_lookup` answers, without a store round trip."""
        out: dict[str, list[str]] = {}
        with self._lock:
            for key in dict.fromkeys(n.lower() for n in names):
                docs = self._docs_named(key)
                if not docs:
                    continue
                kept = self._filtered(np.asarray(docs, dtype=np.int64), namespaces, types)  # dead: id None
                ids = sorted(eid for eid in (self._ids[d] for d in kept.tolist()) if eid is not None)
                if ids:
                    out[key] = ids
        return out

    def _term_scores(
        self, tid: int, n_docs: int, avgdl: float, live: np.ndarray, lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(documents, bm25 addend) of one term, computed in FTS5's order of operations so that
        scores agree to the last bit."""
        docs, freqs = self._postings_of(tid)
        if self._dead_postings:
            alive = live[docs]
            docs, freqs = docs[alive], freqs[alive]
        df = len(docs)
        if df == 0:
            return None
        idf = math.log((n_docs - df + 0.5) / (df + 0.5))
        if idf <= 0.0:
            idf = IDF_FLOOR
        f = freqs.astype(np.float64)
        norm = K1 * (1.0 - B + B * lengths[docs].astype(np.float64) / avgdl)
        return docs, idf * ((f * (K1 + 1.0)) / (f + norm))

    def _filtered(
        self, candidates: np.ndarray, namespaces: Sequence[str] | None, types: Sequence[str] | None
    ) -> np.ndarray:
        for wanted, table, column in ((namespaces, self._ns_code, self._ns), (types, self._type_code, self._type)):
            if wanted is None:
                continue
            codes = [table[v] for v in wanted if v in table]
            if not codes:
                return candidates[:0]
            candidates = candidates[np.isin(column.view()[candidates], np.asarray(codes, dtype=np.int32))]
        return candidates

    # -- keeping up with the store ------------------------------------------------------------
    def _has_saved_index(self) -> bool:
        return self.directory is not None and (self.directory / MANIFEST_NAME).exists()

    def _rebuild(self, store: GraphStore, reason: str, persist: bool, started: float) -> SyncReport:
        target = store.last_seq()  # read first: writes during the scan are replayed by the next sync
        with self._lock:
            self._reset()
            terms, docs, freqs = array.array("i"), array.array("i"), array.array("f")
            for batch in store.iter_entities(batch_size=ITER_BATCH):
                self._bulk_load(batch, terms, docs, freqs)
            term_arr = np.frombuffer(terms, dtype=np.int32)
            doc_arr = np.frombuffer(docs, dtype=np.int32)
            freq_arr = np.frombuffer(freqs, dtype=np.float32)
            live = self._live.view()
            if not live.all():  # an id the scan returned twice: keep its last document only
                keep = live[doc_arr]
                renumber = np.cumsum(live, dtype=np.int64) - 1
                term_arr, doc_arr, freq_arr = term_arr[keep], renumber[doc_arr[keep]].astype(np.int32), freq_arr[keep]
            self._install(term_arr, doc_arr, freq_arr, len(self._term_str), live.copy())
            self.store_seq = target
            self._store_identity = store_identity(store)
            count = self._live_docs
        if persist:
            self.save_if_room()
        seconds = time.perf_counter() - started
        log.info("rebuilt keyword index: %d entities in %.2fs (%s)", count, seconds, reason)
        return SyncReport(rebuilt=True, reason=reason, added=count, seconds=seconds, store_seq=target, count=count)

    def _catch_up(self, store: GraphStore, persist: bool | None, started: float) -> SyncReport:
        assert self.store_seq is not None
        since = cursor = self.store_seq
        target = store.last_seq()
        changed: dict[str, str] = {}  # entity id -> "fetch" or "remove"
        rows_read = 0
        while cursor < target:
            changes = store.changes_since(cursor, limit=CHANGE_PAGE)
            if not changes:
                break
            for change in changes:
                cursor = max(cursor, change.seq)
                if change.kind == "entity":
                    changed[change.id] = "remove" if change.op == "delete" else "fetch"
            rows_read += len(changes)
            self._replayed_since_save += len(changes)
            if len(changed) > max(REBUILD_CHANGED_IDS, len(self) // 2):
                return self._rebuild(
                    store,
                    f"{len(changed)}+ changed ids since seq {since}: rebuilding is cheaper",
                    persist is not False,
                    started,
                )
        removed = self.remove([eid for eid, what in changed.items() if what == "remove"])
        to_fetch = [eid for eid, what in changed.items() if what == "fetch"]
        added = 0
        for start in range(0, len(to_fetch), FETCH_BATCH):
            batch = to_fetch[start : start + FETCH_BATCH]
            found = store.get_entities(batch)
            added += self.upsert(found)
            present = {e.id for e in found}
            removed += self.remove([eid for eid in batch if eid not in present])
        with self._lock:
            moved = max(target, cursor) != self.store_seq
            self.store_seq = max(target, cursor)
            self._store_identity = store_identity(store)
        if persist is True and (moved or changed):
            self.save_if_room()
        return SyncReport(
            rebuilt=False,
            reason="incremental",
            added=added,
            removed=removed,
            seconds=time.perf_counter() - started,
            store_seq=self.store_seq,
            count=len(self),
            changes=rows_read,
        )

    # -- persistence --------------------------------------------------------------------------
    def save(self) -> None:
        """Persist atomically (a new generation file, then the manifest). No-op without a directory."""
        if self.directory is None:
            return
        new_files: list[Path] = []
        with self._lock, saving(self.directory, "the keyword index", new_files):
            if self._delta or self._dead_postings:
                self._merge()
            make_private_dir(self.directory)
            generation = self._generation + 1
            name = f"{_FILE_PREFIX}{generation:06d}.npz"
            path = self.directory / name
            tmp = self.directory / f".{name}.tmp"
            new_files += [tmp, path]
            labels = {
                "ids": self._ids,
                "names": self._names,
                "terms": self._term_str,
                "namespaces": sorted(self._ns_code, key=self._ns_code.__getitem__),
                "types": sorted(self._type_code, key=self._type_code.__getitem__),
            }
            with open_private_write(tmp) as handle:
                np.savez(
                    handle,
                    starts=self._starts,
                    docs=self._docs,
                    freqs=self._freqs,
                    lengths=self._len.view(),
                    ns=self._ns.view(),
                    types=self._type.view(),
                    nterms=self._nterms.view(),
                    labels=np.frombuffer(json.dumps(labels, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
                )
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(path)
            manifest = {
                "format_version": FORMAT_VERSION,
                "file": name,
                "sha256": sha256_file(path),
                "count": self._live_docs,
                "store_seq": self.store_seq,
                "store": self._store_identity,
                "tokenizer": self._terms.tokenizer,
                "weights": list(self.weights),
                "generation": generation,
                "saved_at": datetime.now(UTC).isoformat(),
            }
            write_bytes_atomic(self.directory / MANIFEST_NAME, json.dumps(manifest, indent=1).encode("utf-8"))
            new_files.clear()  # committed: the manifest names the new file now
            fsync_dir(self.directory)
            self._generation = generation
            self._replayed_since_save = 0
            for old in self.directory.glob(f"{_FILE_PREFIX}*.npz"):
                if old.name != name:
                    with contextlib.suppress(OSError):
                        old.unlink()

    def load(self) -> None:
        """Replace the in-memory index with the saved one; IndexLoadError says why it cannot."""
        if self.directory is None:
            raise IndexLoadError("the keyword index has no directory")
        manifest_path = self.directory / MANIFEST_NAME
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise IndexLoadError("no saved keyword index") from exc
        except (OSError, ValueError) as exc:
            raise IndexLoadError(f"unreadable keyword manifest: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            raise IndexLoadError("keyword manifest of another format")
        if manifest.get("tokenizer") != self._terms.tokenizer or manifest.get("weights") != list(self.weights):
            raise IndexLoadError("keyword index saved with another tokenizer or weights")
        path = self.directory / str(manifest.get("file"))
        try:
            if sha256_file(path) != manifest.get("sha256"):
                raise IndexLoadError(f"keyword index file {path.name} does not match its checksum")
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            labels = json.loads(arrays.pop("labels").tobytes().decode("utf-8"))
        except (OSError, ValueError, KeyError) as exc:
            raise IndexLoadError(f"unreadable keyword index file {path.name}: {exc}") from exc
        ids: list[str | None] = labels["ids"]
        n = len(ids)
        if (
            not all(len(arrays[c]) == n for c in ("lengths", "ns", "types", "nterms"))
            or len(labels["names"]) != n
            or len(arrays["starts"]) != len(labels["terms"]) + 1
        ):
            raise IndexLoadError("keyword index arrays disagree in length")
        with self._lock:
            self._reset()
            self._term_str = list(labels["terms"])
            self._term_of = {t: i for i, t in enumerate(self._term_str)}
            self._starts, self._docs, self._freqs = arrays["starts"], arrays["docs"], arrays["freqs"]
            self._ids = ids
            self._names = list(labels["names"])
            self._index_labels()
            self._len = _Grow(np.float32, arrays["lengths"])
            self._ns = _Grow(np.int32, arrays["ns"])
            self._type = _Grow(np.int32, arrays["types"])
            self._nterms = _Grow(np.int32, arrays["nterms"])
            self._live = _Grow(np.bool_, np.ones(n, dtype=np.bool_))
            self._ns_code = {v: i for i, v in enumerate(labels["namespaces"])}
            self._type_code = {v: i for i, v in enumerate(labels["types"])}
            self._live_docs = n
            self._live_tokens = float(self._len.view().astype(np.float64).sum())
            self.store_seq = int(manifest["store_seq"])
            store = manifest.get("store")
            self._store_identity = store if isinstance(store, dict) else {}
            self._generation = int(manifest.get("generation") or 0)

    def close(self) -> None:
        """Release the tokenizer; save first when the next open would otherwise replay a long log."""
        try:
            if self._replayed_since_save >= SAVE_AT_CLOSE_AFTER and self.directory is not None:
                self.save_if_room()
        finally:
            self._terms.close()

    def __repr__(self) -> str:
        return f"KeywordIndex(directory={self.directory!s}, count={len(self)}, store_seq={self.store_seq})"
