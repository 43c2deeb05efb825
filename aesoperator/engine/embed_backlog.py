"""Embedding off the write path: a writer commits entities without vectors and a background worker
embeds them from the store's change log, in batches, and stores their vectors.

The graph store is the source of truth and holds every vector; the FAISS index is derived from the
vectors the store holds and catches up from the change log on its next access. So an entity that
is committed but not embedded yet is found at once by the keyword and name channels, and by the
vector channel once the worker has stored its vector (a few seconds later, plus the model's load
on the first one). An updated entity keeps its previous vector until then. The vector index is
never half-written: each search sees it as of one change-log position.

The worker remembers how far it has read the change log in a small file beside the indexes,
written after each page of the log, and a write is committed before anything is queued: a process
killed before the catch-up loses nothing, the next `EmbeddingBacklog` on the same store replays
the log from the saved position (or, when the log no longer reaches back, scans the namespace) and
embeds what has no vector for its current text. Replaying what was already embedded costs no
encoding: the stored vector's content hash is compared first.

Several processes on one store (server replicas on one Neo4j) each run a backlog; each embeds
only what it was told of (`notify(seq, ids)`: its own writes) plus everything up to the store's
position when it started (what a stopped process may have left), so two replicas do not both
embed one entity. The others' writes only move its position along.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aesoperator.engine.embeddings import TextEmbedder, embedding_text
from aesoperator.engine.index_files import change_log_gap, store_identity, write_bytes_atomic
from aesoperator.engine.stores.base import GraphStore
from aesoperator.errors import AesopError, SchemaError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.graph_schema.models import Entity
from aesoperator.telemetry.metrics import BACKGROUND_EMBEDDED

log = logging.getLogger(__name__)

CHANGE_PAGE = 5_000  # change-log rows per step; the position is saved after each
QUIET_SECONDS = 1.0  # start once writes have paused this long ...
MAX_DELAY_SECONDS = 10.0  # ... or once the oldest waiting write is this old
RETRY_SECONDS = (1.0, 5.0, 30.0)  # after a failed step (store or model unavailable)


@dataclass(frozen=True, slots=True)
class BacklogStatus:
    """How far the worker is: `caught_up_seq` is the change-log position up to which every
    accepted entity has a vector for its current text."""

    namespace: str
    caught_up_seq: int
    store_seq: int
    embedded: int  # entities embedded by this worker since it started
    last_error: str | None

    @property
    def pending(self) -> bool:
        return self.caught_up_seq < self.store_seq


class EmbeddingBacklog:
    """Embeds, in a background thread, the entities of one namespace that `accept` picks and whose
    stored vector is missing or was made from other text.

    `notify()` after each write wakes it; `wait(timeout)` blocks until every write committed
    before the call is embedded; `close()` stops it after the batch in hand (what is left is
    embedded by the next backlog on this store, from the saved position).
    """

    def __init__(
        self,
        store: GraphStore,
        embedder: Callable[[], TextEmbedder],
        namespace: str,
        accept: Callable[[Entity], bool],
        state_file: Path,
        batch_size: int = 64,
        quiet_seconds: float = QUIET_SECONDS,
        max_delay_seconds: float = MAX_DELAY_SECONDS,
    ) -> None:
        if batch_size < 1:
            raise SchemaError(f"embedding backlog batch_size must be at least 1, got {batch_size}")
        self.store = store
        self._embedder = embedder
        self.namespace = namespace
        self.accept = accept
        self.state_file = Path(state_file)
        self.batch_size = batch_size
        self.quiet_seconds = quiet_seconds
        self.max_delay_seconds = max_delay_seconds
        self._cond = threading.Condition()
        self._cursor = self._saved_cursor()
        self._wanted = self._cursor  # a change-log position someone asked to be embedded up to
        # Which changes are this backlog's to embed: every one up to `_claimed_through`, and of
        # later ones those of the ids this process wrote (id -> seq of its last such write).
        self._claimed_through = self._cursor
        self._own: dict[str, int] = {}
        self._first_wait: float | None = None  # when the oldest unhandled notify came
        self._last_notify = 0.0
        self._stopping = False
        self._embedded = 0
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"aesop-embed-{namespace}", daemon=True)
        self._thread.start()
        self.notify()  # writes of an earlier process that were not embedded before it stopped

    # -- position on disk ---------------------------------------------------------------------
    def _saved_cursor(self) -> int:
        """The saved position, or 0 (replay everything) when there is none or it belongs to
        another store, or the log no longer reaches back to it (then the namespace is scanned)."""
        try:
            saved = json.loads(self.state_file.read_text(encoding="utf-8"))
            seq = int(saved["seq"])
            identity = saved.get("store") if isinstance(saved.get("store"), dict) else {}
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        gap = change_log_gap(seq, identity, self.store)
        if gap is not None:
            log.info("embedding backlog for %s starts over: %s", self.namespace, gap)
            return -1  # scan the namespace, then follow the log
        return seq

    def _save_cursor(self, seq: int) -> None:
        state = {"seq": seq, "namespace": self.namespace, "store": store_identity(self.store)}
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(self.state_file, json.dumps(state).encode("utf-8"))
        except (OSError, AesopError) as exc:  # only a head start for the next process
            log.warning("could not save the embedding backlog position to %s: %s", self.state_file, exc)

    # -- API ------------------------------------------------------------------------------------
    def notify(self, seq: int | None = None, ids: Sequence[str] | None = None) -> None:
        """Say the store has moved (to `seq`, or to its current position) by a write of this
        process: of `ids` when given (only those are embedded here), else of everything up to it."""
        target = self.store.last_seq() if seq is None else seq
        with self._cond:
            if ids is None:
                self._claimed_through = max(self._claimed_through, target)
            else:
                for item_id in ids:
                    self._own[item_id] = max(self._own.get(item_id, 0), target)
            if target > self._wanted:
                self._wanted = target
            now = time.monotonic()
            self._last_notify = now
            # Only a notify that leaves work waiting starts the delay: one with nothing to embed
            # (the one at start on an up-to-date store) would otherwise make the next write, once
            # `max_delay_seconds` later, be embedded at once instead of after a pause in writes.
            if self._first_wait is None and self._wanted > self._cursor:
                self._first_wait = now
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every entity committed before this call is embedded, or `timeout` seconds
        pass. Returns whether it caught up."""
        goal = self.store.last_seq()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._wanted = max(self._wanted, goal)
            self._claimed_through = max(self._claimed_through, goal)  # someone here needs them all
            self._first_wait = time.monotonic() - self.max_delay_seconds  # no debounce: someone waits
            self._cond.notify_all()
            while self._cursor < goal and not self._stopping:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return self._cursor >= goal

    def status(self) -> BacklogStatus:
        store_seq = self.store.last_seq()
        with self._cond:
            return BacklogStatus(self.namespace, max(self._cursor, 0), store_seq, self._embedded, self._error)

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the batch in hand and save the position; the rest is left to the next open."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the embedding worker for %s did not stop within %.0fs", self.namespace, timeout)

    # -- the worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._stopping and self._wanted <= self._cursor:
                    self._cond.wait()
                if self._stopping:
                    return
                # Let a burst of writes finish first: the writer owns the cores while it writes.
                while not self._stopping:
                    now = time.monotonic()
                    quiet_left = self._last_notify + self.quiet_seconds - now
                    first = self._first_wait if self._first_wait is not None else now
                    delay_left = first + self.max_delay_seconds - now
                    if quiet_left <= 0 or delay_left <= 0:
                        break
                    self._cond.wait(min(quiet_left, delay_left))
                if self._stopping:
                    return
                self._first_wait = None
            try:
                self._step()
                failures = 0
            except Exception as exc:  # the store or the model failed: keep the position, retry
                failures += 1
                pause = RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1]
                with self._cond:
                    self._error = f"{type(exc).__name__}: {exc}"
                    self._first_wait = time.monotonic()
                    self._cond.wait(pause)
                log.warning("embedding backlog for %s failed (retrying in %.0fs): %s", self.namespace, pause, exc)

    def _step(self) -> None:
        """Embed what the next page of the change log names (or the whole namespace after a gap)."""
        with self._cond:
            cursor = self._cursor
        if cursor < 0:
            target = self.store.last_seq()
            for batch in self.store.iter_entities(batch_size=self.batch_size, namespaces=[self.namespace]):
                if self._stopping:
                    return
                self._embed([e for e in batch if self.accept(e)])
            self._advance(target)
            return
        changes = self.store.changes_since(cursor, limit=CHANGE_PAGE)
        if not changes:
            self._advance(max(cursor, self.store.last_seq()))
            return
        with self._cond:
            ids = list(
                dict.fromkeys(
                    c.id
                    for c in changes
                    if c.kind == "entity"
                    and c.op != "delete"
                    and c.namespace == self.namespace
                    and (c.seq <= self._claimed_through or c.seq <= self._own.get(c.id, -1))
                )
            )
        for batch_ids in _chunks(ids, self.batch_size):
            if self._stopping:
                return  # the page is replayed by the next process
            found = self.store.get_entities(batch_ids, [self.namespace])
            self._embed([e for e in found if self.accept(e)])
        page_end = max(c.seq for c in changes)
        with self._cond:  # written again after this page: kept for the next one
            self._own = {i: s for i, s in self._own.items() if s > page_end}
        self._advance(page_end)

    def _advance(self, seq: int) -> None:
        self._save_cursor(seq)
        with self._cond:
            self._cursor = max(self._cursor, seq)
            self._error = None
            self._cond.notify_all()

    def _embed(self, entities: Sequence[Entity]) -> None:
        """Store vectors for those of `entities` whose stored vector is not of their current text."""
        if not entities:
            return
        embedder = self._embedder()
        model = embedder.model_name
        texts = {e.id: embedding_text(e) for e in entities}
        stored = self.store.vector_hashes(list(texts), model)
        todo = [i for i, text in texts.items() if stored.get(i) != content_hash(text)]
        if not todo:
            return
        matrix = embedder.embed([texts[i] for i in todo])
        vectors = {i: (content_hash(texts[i]), matrix[row]) for row, i in enumerate(todo)}
        written = len(vectors)
        try:
            self.store.upsert(vectors=vectors, vector_model=model)
        except SchemaError:
            # Some were deleted since they were read: store the vectors of those still there.
            alive = {e.id for e in self.store.get_entities(todo, [self.namespace])}
            vectors = {i: v for i, v in vectors.items() if i in alive}
            written = len(vectors)
            if vectors:
                self.store.upsert(vectors=vectors, vector_model=model)
        BACKGROUND_EMBEDDED.inc(written)
        with self._cond:
            self._embedded += written
            # The vectors just written moved the log: follow it past them so `status` reads idle.
            self._wanted = max(self._wanted, self.store.last_seq())


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def backlog_state_name(namespace: str, store_label: str, model: str) -> str:
    """The file name of a backlog's saved position (one per store, model and namespace)."""
    tag = hashlib.blake2b(f"{store_label}|{model}|{namespace}".encode(), digest_size=6).hexdigest()
    return f"embed-backlog-{tag}.json"


__all__ = ["BacklogStatus", "EmbeddingBacklog", "backlog_state_name"]
