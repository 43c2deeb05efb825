"""The keyword index: BM25 over entity name and text, in memory, derived from the graph store.

It answers what `EmbeddedGraphStore.keyword_search` answers (same terms, see `fts_terms`; same
bm25 as FTS5: k1 1.2, b 0.75, a name hit weighing twice a text hit, idf clamped to 1e-6; same
query words and common-term pruning) but scores only the postings of the query's terms with
numpy, where FTS5 walks every match through its auxiliary-function interface: at a million
entities that is the difference between hundreds and tens of milliseconds. Like the vector index
it can be thrown away: it is rebuilt from `store.iter_entities` and kept current by replaying
the store's change log, so it serves the Neo4j backend too.

The pieces: `keyword_vocabulary.py` numbers the terms and turns entities into term counts,
`keyword_postings.py` holds the documents and postings (a compressed base per term plus a small
delta; dead documents dropped at the next merge) and scores them, `keyword_files.py` is the
on-disk format. This module is the public, thread-safe `KeywordIndex`: when to merge, how to
answer, and how to keep up with the store. A merge runs when the delta or the dead postings grow
past a share of the base.
"""

from __future__ import annotations

import array
import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from aesoperator.engine.fts_terms import FtsTermMaker
from aesoperator.engine.heap import release_free_heap
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
from aesoperator.engine.keyword_files import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    keyword_file_name,
    read_keyword_file,
    read_keyword_manifest,
    remove_other_generations,
    write_keyword_file,
)
from aesoperator.engine.keyword_postings import IDF_FLOOR, K1, B, KeywordPostings, bm25_idf
from aesoperator.engine.keyword_vocabulary import MULTI, WORD_MEMO_MAX, BatchPostings, KeywordVocabulary
from aesoperator.engine.query_terms import prune_common_terms
from aesoperator.engine.stores.base import ERASED_ID, EntityText, GraphStore
from aesoperator.engine.stores.embedded import BM25_WEIGHTS, KEYWORD_MAX_DF, KEYWORD_PRUNE_MIN_DOCS
from aesoperator.graph_schema.models import Entity

log = logging.getLogger(__name__)

# Merge the delta into the base when it holds this share of the base's postings (or more than
# MERGE_MIN_POSTINGS); drop dead postings when they are this share of all postings.
MERGE_SHARE = 0.10
MERGE_MIN_POSTINGS = 200_000
DEAD_SHARE = 0.25
ITER_BATCH = 5000
# close() saves when the change-log rows replayed since the last save would cost the next open more
# than writing the index does: at least this many rows ...
SAVE_AT_CLOSE_AFTER = 20_000
# ... or, for a small index (whose save costs little), this share of its document count, and at
# least SAVE_AT_CLOSE_MIN rows. A replayed row costs tens of microseconds; a saved document about
# as much, so replaying a tenth of the index's size again at every open is not worth keeping.
SAVE_AT_CLOSE_SHARE = 0.10
SAVE_AT_CLOSE_MIN = 1_000


class KeywordIndex(DerivedIndex):
    """BM25 keyword search over every entity of a store. Thread-safe; `sync(store)` before use."""

    metric_label = "keyword"

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
        self._vocab = KeywordVocabulary(self._terms, self.weights)
        self._post = KeywordPostings()

    def __len__(self) -> int:
        with self._lock:
            return self._post.live_docs

    def __contains__(self, entity_id: object) -> bool:
        with self._lock:
            return entity_id in self._post.doc_of

    @property
    def postings(self) -> int:
        with self._lock:
            return self._post.postings

    # -- writing ------------------------------------------------------------------------------
    def upsert(self, entities: Sequence[Entity]) -> int:
        """Index (or re-index) entities; their previous documents are dropped."""
        with self._lock:
            post = self._post
            for entity, (counts, length) in zip(entities, self._vocab.documents(entities), strict=True):
                post.kill(entity.id)
                doc = post.new_doc(entity.id, entity.name, entity.namespace, entity.type, length, len(counts))
                post.add_delta(doc, counts)
            self._maybe_merge()
            return len(entities)

    def remove(self, entity_ids: Sequence[str]) -> int:
        with self._lock:
            removed = sum(self._post.kill(eid) for eid in entity_ids)
            self._maybe_merge()
            return removed

    def _maybe_merge(self) -> None:
        post = self._post
        base = len(post.docs)
        total = base + post.delta_postings
        if post.delta_postings > max(MERGE_MIN_POSTINGS, MERGE_SHARE * base) or (
            total and post.dead_postings > DEAD_SHARE * total and post.dead_postings > 10_000
        ):
            post.merge(len(self._vocab))

    def _bulk_load(self, rows: Sequence[EntityText]) -> BatchPostings:
        """Documents for a page of a full scan; their postings are returned for one install."""
        post = self._post
        batch = self._vocab.batch_postings([r.name for r in rows], [r.text for r in rows])
        for row in rows:  # an id the scan returned before (pages are in id order, so never within one)
            post.kill(row.id)
        ids, types, names, _, namespaces = zip(*rows, strict=True) if rows else ((), (), (), (), ())
        post.new_docs(ids, names, namespaces, types, batch.lengths, batch.distinct)
        return batch

    # -- searching ----------------------------------------------------------------------------
    def query_terms(self, query: str) -> list[tuple[str, str]]:
        """(query word, FTS5 term) pairs in query order, before pruning. Each word is one phrase of
        the store's FTS5 query; a word FTS5 cuts into several terms (rare: some scripts with
        combining marks) is scored as separate terms here, where FTS5 would match the phrase."""
        return self._vocab.query_terms(query)

    def _scored_terms(self, query: str, n_docs: int) -> list[int]:
        """The term ids of the kept query words, in query order. Two words with one term (`run`,
        `running`) count twice, as two phrases do in FTS5's bm25; pruning, like the store's,
        goes word by word."""
        term_of = self._vocab.term_of
        known = [(f"{w}\x00{t}", term_of[t]) for w, t in self.query_terms(query) if t in term_of]
        df = {key: self._post.raw_df(tid) for key, tid in known}
        keys = [key for key, _ in known]
        if n_docs >= self.prune_min_docs:
            kept = set(prune_common_terms(keys, df, n_docs, self.max_df))
        else:
            kept = {key for key in keys if df[key] > 0}
        return [tid for key, tid in known if key in kept]

    def specificity(self, text: str) -> float:
        """How specific the rarest word of `text` is in the indexed items: log(N/df) / log(N) of its
        least frequent term, 1 for a word one item holds, near 0 for one nearly every item holds
        (0 when no word of it is indexed). The self-information of seeing the word, on a fixed scale."""
        with self._lock:
            n_docs = self._post.counted_docs
            if n_docs < 2:
                return 1.0
            term_of = self._vocab.term_of
            dfs = [self._post.raw_df(term_of[t]) for _, t in self.query_terms(text) if t in term_of]
        dfs = [d for d in dfs if d > 0]
        if not dfs:
            return 0.0
        return max(0.0, min(1.0, math.log(n_docs / min(dfs)) / math.log(n_docs)))

    def score_ceiling(self, query: str) -> float:
        """The BM25 a document matching every kept query word as strongly as BM25 allows would
        score: the sum of (k1 + 1) × idf over the words `search` scores (0 when none is indexed).
        Dividing by it puts scores of different queries on one scale."""
        with self._lock:
            n_docs = max(1, self._post.counted_docs)
            asked = self._scored_terms(query, n_docs)
            return sum((K1 + 1.0) * bm25_idf(n_docs, self._post.raw_df(tid)) for tid in asked)

    def search(
        self,
        query: str,
        k: int = 10,
        namespaces: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        include_extracted: bool = True,
    ) -> list[tuple[str, float]]:
        """The k best (entity id, bm25) for `query`, best first, ties broken by entity id;
        `include_extracted=False` leaves out the entities extraction found."""
        if k <= 0:
            return []
        with self._lock:
            if self._post.live_docs == 0:
                return []
            asked = self._scored_terms(query, max(1, self._post.counted_docs))
            if not asked:
                return []
            hits = self._post.top_k(asked, k, namespaces, types, counted_only=not include_extracted)
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
                ids = self._post.named(key, namespaces, types)
                if ids:
                    out[key] = ids
        return out

    # -- keeping up with the store ------------------------------------------------------------
    def _has_saved_index(self) -> bool:
        return self.directory is not None and (self.directory / MANIFEST_NAME).exists()

    def _rebuild(self, store: GraphStore, reason: str, persist: bool, started: float) -> SyncReport:
        target = store.last_seq()  # read first: writes during the scan are replayed by the next sync
        with self._lock:
            self._reset()
            # Growable buffers that numpy then reads in place: no second copy of every posting.
            terms, docs, freqs = array.array("i"), array.array("i"), array.array("f")
            for batch in store.iter_texts(batch_size=ITER_BATCH):
                first = len(self._post.ids)
                page = self._bulk_load(batch)
                terms.frombytes(page.terms.tobytes())
                docs.frombytes((page.docs + first).astype(np.int32).tobytes())
                freqs.frombytes(page.freqs.tobytes())
            term_arr = np.frombuffer(terms, dtype=np.int32)
            doc_arr = np.frombuffer(docs, dtype=np.int32)
            freq_arr = np.frombuffer(freqs, dtype=np.float32)
            live = self._post.live.view()
            if not live.all():  # an id the scan returned twice: keep its last document only
                keep = live[doc_arr]
                renumber = np.cumsum(live, dtype=np.int64) - 1
                term_arr, doc_arr, freq_arr = term_arr[keep], renumber[doc_arr[keep]].astype(np.int32), freq_arr[keep]
            self._post.install(term_arr, doc_arr, freq_arr, len(self._vocab), live.copy())
            self.store_seq = target
            self._store_identity = store_identity(store)
            count = self._post.live_docs
        if persist:
            self.save_if_room()
        release_free_heap()  # the scan's texts and the postings' sort buffers
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
                if change.id == ERASED_ID:  # what was erased is no longer named in the log
                    return self._rebuild(store, f"an erasure at seq {change.seq}", persist is not False, started)
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
            if self._post.delta or self._post.dead_postings:
                self._post.merge(len(self._vocab))
            generation = self._generation + 1
            name = keyword_file_name(generation)
            arrays, labels = self._post.saved_form()
            labels["terms"] = self._vocab.term_str
            path = write_keyword_file(self.directory, name, arrays, labels, new_files)
            manifest = {
                "format_version": FORMAT_VERSION,
                "file": name,
                "sha256": sha256_file(path),
                "count": self._post.live_docs,
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
            remove_other_generations(self.directory, name)

    def load(self) -> None:
        """Replace the in-memory index with the saved one; IndexLoadError says why it cannot."""
        if self.directory is None:
            raise IndexLoadError("the keyword index has no directory")
        manifest = read_keyword_manifest(self.directory, self._terms.tokenizer, self.weights)
        arrays, labels = read_keyword_file(self.directory, manifest)
        with self._lock:
            self._vocab = KeywordVocabulary(self._terms, self.weights, labels["terms"])
            self._post = KeywordPostings.from_saved(arrays, labels)
            self.store_seq = int(manifest["store_seq"])
            store = manifest.get("store")
            self._store_identity = store if isinstance(store, dict) else {}
            self._generation = int(manifest.get("generation") or 0)
        release_free_heap()

    def _save_at_close_after(self) -> int:
        """How many replayed change-log rows make `close` save (see SAVE_AT_CLOSE_*)."""
        return min(SAVE_AT_CLOSE_AFTER, max(SAVE_AT_CLOSE_MIN, int(len(self) * SAVE_AT_CLOSE_SHARE)))

    def close(self) -> None:
        """Release the tokenizer; save first when the next open would otherwise replay a long log."""
        try:
            if self._replayed_since_save >= self._save_at_close_after() and self.directory is not None:
                self.save_if_room()
        finally:
            self._terms.close()

    def __repr__(self) -> str:
        return f"KeywordIndex(directory={self.directory!s}, count={len(self)}, store_seq={self.store_seq})"


__all__ = [
    "FORMAT_VERSION",
    "IDF_FLOOR",
    "K1",
    "MANIFEST_NAME",
    "MULTI",
    "WORD_MEMO_MAX",
    "B",
    "KeywordIndex",
]
