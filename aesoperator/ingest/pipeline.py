"""extract → map → embed → load, in batches, incrementally and resumably.

Each batch is written to the graph store in one atomic write together with the sync state of
the records it holds, so a crash or kill leaves every committed batch whole and the next run
picks up where the last one stopped: records whose content hash is already recorded are skipped.
Embedding of the next batch overlaps with the store write of the previous one.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from pydantic import ValidationError

from aesoperator.engine.embeddings import TextEmbedder, embedding_text
from aesoperator.engine.entity_vectors import context_vectors
from aesoperator.engine.progress import NoProgress, ProgressReporter
from aesoperator.engine.stores.base import GraphStore, SourceItemState, WriteBatch, WriteResult
from aesoperator.engine.vector_policy import has_vector
from aesoperator.errors import AesopError, DocumentError, MappingError, SourceError, StoreError
from aesoperator.graph_schema.ids import content_hash
from aesoperator.graph_schema.knowledge import KnowledgeStage
from aesoperator.graph_schema.models import Entity, Relation, to_iso, utcnow
from aesoperator.ingest.extract.code_stage import CodeSymbolStage
from aesoperator.ingest.extract.prune import lost_mentions, unmentioned
from aesoperator.ingest.records import Mapper, SkippedRecord, SourceRecord
from aesoperator.telemetry.metrics import observe_ingest_batch
from aesoperator.telemetry.tracing import AttributeValue, set_attributes, span

SOURCE_IDENTITY_KEY = "__source__"
RESOLVE_PENDING_KEY = "__resolve_pending__"
QUARANTINE_PREFIX = "__quarantine__/"
RESERVED_PREFIX = "__"
# A record's payload may name the limits it was read under (documents): an item quarantined for
# being over a limit is read again when they change.
LIMITS_KEY = "limits"


def quarantine_key(key: str) -> str:
    return QUARANTINE_PREFIX + key


def settled_quarantine(state: SourceItemState | None, record: SourceRecord) -> str | None:
    """The reason an item is quarantined, when reading it again cannot help: the entry says its
    cause lies in the item itself (a damaged or password-protected document), the item is
    unchanged since and so are the limits it was over. None otherwise."""
    if state is None or state.content_hash != record.content_hash or not state.cursor:
        return None
    try:
        info = json.loads(state.cursor)
    except ValueError:
        return None
    if not isinstance(info, dict) or not info.get("settled"):
        return None
    if LIMITS_KEY in info and info[LIMITS_KEY] != record.payload.get(LIMITS_KEY):
        return None
    return str(info.get("reason", ""))


def quarantined(states: dict[str, SourceItemState]) -> list[tuple[str, str, str]]:
    """(item key, reason, when) for every quarantined item of a source."""
    out = []
    for key, state in states.items():
        if key.startswith(QUARANTINE_PREFIX):
            info = json.loads(state.cursor or "{}")
            out.append((key[len(QUARANTINE_PREFIX) :], str(info.get("reason", "")), str(info.get("at", ""))))
    return sorted(out)


@dataclass
class IngestReport:
    source: str
    records_seen: int = 0
    records_changed: int = 0
    records_unchanged: int = 0
    records_removed: int = 0
    entities_written: int = 0
    relations_written: int = 0
    vectors_written: int = 0
    vectors_deleted: int = 0  # of entities that get no vector (code symbols) but held one
    entities_deleted: int = 0
    relations_expired: int = 0
    texts_embedded: int = 0
    quarantined: int = 0
    batches: int = 0
    skipped: list[SkippedRecord] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(
        default_factory=lambda: {"extract": 0.0, "map": 0.0, "knowledge": 0.0, "embed": 0.0, "store": 0.0}
    )
    # knowledge extraction: items read (the rest came from the cache), mentions found, entities
    # it added, merges resolution recorded, and what it has to say (budget spent, scripts skipped)
    knowledge_items: int = 0
    knowledge_items_cached: int = 0
    mentions: int = 0
    knowledge_entities: int = 0
    merges: int = 0
    knowledge_pruned: int = 0  # extracted entities deleted with their last mention
    knowledge_notes: list[str] = field(default_factory=list)

    def add(self, result: WriteResult) -> None:
        self.entities_written += result.entities_written
        self.relations_written += result.relations_written
        self.vectors_written += result.vectors_written
        self.vectors_deleted += result.vectors_deleted
        self.entities_deleted += result.entities_deleted
        self.relations_expired += result.relations_expired
        self.batches += 1


@dataclass
class _PendingBatch:
    entities: dict[str, Entity] = field(default_factory=dict)
    relations: dict[str, Relation] = field(default_factory=dict)
    delete_entity_ids: set[str] = field(default_factory=set)
    expire_relation_ids: set[str] = field(default_factory=set)
    items: list[SourceItemState] = field(default_factory=list)
    cleared: list[tuple[str, str]] = field(default_factory=list)  # source items to delete
    owners: dict[str, int] = field(default_factory=dict)  # owned entity id -> index in `items`
    knowledge: dict[str, Entity] = field(default_factory=dict)  # entities extraction found

    def __len__(self) -> int:
        return len(self.entities) + len(self.relations)


class IngestPipeline:
    def __init__(
        self,
        store: GraphStore,
        embedder: TextEmbedder | None = None,
        batch_size: int = 1000,
        progress: ProgressReporter | None = None,
        knowledge: KnowledgeStage | None = None,
        code_symbols: bool = True,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.batch_size = batch_size
        self.progress = progress or NoProgress()
        self.knowledge = knowledge
        self.code = CodeSymbolStage(store) if knowledge is not None and code_symbols else None
        self._namespaces: set[str] = set()
        self._previous: dict[str, SourceItemState] = {}
        self._owned_ids: frozenset[str] = frozenset()
        self._source = ""

    # -- source identity ---------------------------------------------------------------------
    def claim_source(self, source: str, identity: str) -> None:
        """Record which location a source name stands for; refuse a different one under the same name."""
        known = self.store.source_items(source).get(SOURCE_IDENTITY_KEY)
        if known is not None and known.cursor != identity:
            raise SourceError(
                f"source name {source!r} already holds {known.cursor}; give {identity} another name (--name)"
            )
        if known is None:
            state = SourceItemState(source, SOURCE_IDENTITY_KEY, content_hash(identity), cursor=identity)
            self.store.write(WriteBatch(source_items=[state]))

    # -- main loop ----------------------------------------------------------------------------
    def run(
        self,
        source: str,
        records: Iterable[SourceRecord],
        mapper: Mapper,
        total: int | None = None,
        skipped: list[SkippedRecord] | None = None,
        remove_missing: bool = True,
    ) -> IngestReport:
        """Ingest `records` of `source`. A store failure (an unreachable server, a full disk) stops
        the run with a StoreError that says so; every batch written before it is kept, whole, and
        running the same ingest again resumes after them."""
        report = IngestReport(source=source)
        try:
            return self._run(report, source, records, mapper, total, skipped, remove_missing)
        except StoreError as exc:
            raise StoreError(
                f"ingest of source {source!r} stopped after {report.batches} batch(es) written in this run: "
                f"{str(exc).rstrip('.')}. The batches written are kept whole; the same ingest run again resumes "
                "after them."
            ) from exc

    def _run(
        self,
        report: IngestReport,
        source: str,
        records: Iterable[SourceRecord],
        mapper: Mapper,
        total: int | None,
        skipped: list[SkippedRecord] | None,
        remove_missing: bool,
    ) -> IngestReport:
        started = time.perf_counter()
        previous = self.store.source_items(source)
        self._previous = previous
        self._source = source
        # What this source wrote before may follow it to another namespace; nothing else may move.
        self._owned_ids = frozenset(
            item_id for state in previous.values() for item_id in (*state.entity_ids, *state.relation_ids)
        )
        self._mapped_relation_ids: set[str] = set()
        self._remapped: set[str] = set()
        self._namespaces = set()
        if self.knowledge is not None:
            self.knowledge.begin_run()
        seen: set[str] = {SOURCE_IDENTITY_KEY}
        pending = _PendingBatch()
        in_flight: Future[WriteResult] | None = None
        self.progress.start(f"ingest {source}", total)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aesop-store") as writer:
            try:
                iterator = iter(records)
                while True:
                    t0 = time.perf_counter()
                    try:
                        record = next(iterator, None)
                    except Exception:
                        # The source failed mid-way: commit what was already mapped, so the
                        # next run does not fetch it again, then report the failure.
                        in_flight = self._flush(pending, writer, in_flight, report)
                        pending = _PendingBatch()
                        if in_flight is not None:
                            report.add(in_flight.result())
                            in_flight = None
                        raise
                    report.stage_seconds["extract"] += time.perf_counter() - t0
                    if record is None:
                        break
                    report.records_seen += 1
                    seen.add(record.key)
                    before = previous.get(record.key)
                    settled = settled_quarantine(previous.get(quarantine_key(record.key)), record)
                    if settled is not None:  # unchanged since it was quarantined: not read again
                        report.records_unchanged += 1
                        report.skipped.append(SkippedRecord(record.key, f"{settled} (quarantined; unchanged since)"))
                        self.progress.advance()
                        continue
                    if (
                        before is not None
                        and before.content_hash == record.content_hash
                        and quarantine_key(record.key) not in previous  # extraction failed: try again
                    ):
                        report.records_unchanged += 1
                        self.progress.advance()
                        continue
                    report.records_changed += 1
                    self._map_into(pending, source, record, before, mapper, report)
                    self.progress.advance()
                    if len(pending) >= self.batch_size:
                        in_flight = self._flush(pending, writer, in_flight, report)
                        pending = _PendingBatch()
                in_flight = self._flush(pending, writer, in_flight, report)
                if in_flight is not None:
                    report.add(in_flight.result())
                    in_flight = None
            finally:
                if in_flight is not None:
                    in_flight.result()  # surface a store error of the last batch
                self.progress.finish()

        if skipped:
            report.skipped.extend(skipped)
            seen.update(s.key for s in skipped)  # unreadable this time is not the same as gone
        if remove_missing:
            gone = [s for k, s in previous.items() if k not in seen and not k.startswith(RESERVED_PREFIX)]
            gone_keys = {s.key for s in gone}
            gone += [
                s
                for k, s in previous.items()
                if k.startswith(QUARANTINE_PREFIX) and k[len(QUARANTINE_PREFIX) :] not in seen | gone_keys
            ]
            # A relation may be declared by several items (a directory chain shared by every
            # file below it): it is retired only when no remaining item declares it.
            gone_keys = {s.key for s in gone}
            still_declared = self._mapped_relation_ids | {
                r for k, s in previous.items() if k not in gone_keys and k not in self._remapped for r in s.relation_ids
            }
            for start in range(0, len(gone), self.batch_size):
                part = gone[start : start + self.batch_size]
                retired = {i for s in part for i in s.relation_ids} - still_declared
                pruned = self._prune(retired, lost_mentions(self.store, retired, ()), report) if retired else []
                result = self.store.write(
                    WriteBatch(
                        delete_entity_ids=[i for s in part for i in s.entity_ids] + pruned,
                        # relations an item owned between entities it did not own outlive it
                        # otherwise; they are expired, so their history stays
                        expire_relation_ids=sorted(retired),
                        delete_source_items=[(s.source, s.key) for s in part],
                    )
                )
                report.add(result)
                report.records_removed += len(part)
        self._resolve(source, previous, report)
        report.seconds = time.perf_counter() - started
        return report

    def _resolve(self, source: str, previous: dict[str, SourceItemState], report: IngestReport) -> None:
        """Entity resolution over the namespaces this run (or an interrupted earlier one) wrote
        knowledge into; the marker that says it is due is removed once it has run."""
        if self.knowledge is None:
            return
        pending = previous.get(RESOLVE_PENDING_KEY)
        namespaces = set(self._namespaces)
        if pending is not None and pending.cursor:
            namespaces.update(json.loads(pending.cursor))
        if not namespaces:
            return
        t0 = time.perf_counter()
        report.merges += self.knowledge.resolve(sorted(namespaces))
        self.store.write(WriteBatch(delete_source_items=[(source, RESOLVE_PENDING_KEY)]))
        report.stage_seconds["knowledge"] += time.perf_counter() - t0

    def _map_into(
        self,
        pending: _PendingBatch,
        source: str,
        record: SourceRecord,
        before: SourceItemState | None,
        mapper: Mapper,
        report: IngestReport,
    ) -> None:
        t0 = time.perf_counter()
        try:
            item = mapper.map(record)
        except (MappingError, ValidationError) as exc:
            # One malformed item is quarantined with its reason; the rest of the ingest goes on.
            document = isinstance(exc, DocumentError)
            reason = (str(exc) if document else f"does not fit the schema: {exc}").replace("\n", " ")[:2000]
            report.skipped.append(SkippedRecord(record.key, reason))
            report.quarantined += 1
            entry: dict[str, object] = {"reason": reason, "at": to_iso(utcnow()), "uri": record.uri}
            if isinstance(exc, DocumentError):
                entry["kind"] = exc.kind
                entry["settled"] = not exc.retry
                if exc.kind == "too-large":
                    entry[LIMITS_KEY] = record.payload.get(LIMITS_KEY)
            info = json.dumps(entry)
            pending.items.append(SourceItemState(source, quarantine_key(record.key), record.content_hash, cursor=info))
            report.stage_seconds["map"] += time.perf_counter() - t0
            return
        except AesopError:
            raise
        except Exception as exc:
            # Not bad data: a bug in the mapper. Stop, and say where, rather than quarantine.
            raise RuntimeError(
                f"mapper {type(mapper).__qualname__} failed on record {record.key!r} of source {source!r} "
                f"with {type(exc).__name__}: {exc} (a bug in the mapper; bad input raises MappingError)"
            ) from exc
        if self.code is not None:
            t1 = time.perf_counter()
            self.code.add_symbols(record, item)
            report.stage_seconds["knowledge"] += time.perf_counter() - t1
        for entity in item.shared_entities:
            pending.entities.setdefault(entity.id, entity)
        for entity in item.entities:
            pending.entities[entity.id] = entity
        for relation in item.relations:
            pending.relations[relation.id] = relation
        owned = tuple(e.id for e in item.entities)
        rel_ids = tuple(r.id for r in item.relations)
        for eid in owned:
            pending.owners[eid] = len(pending.items)
        self._mapped_relation_ids.update(rel_ids)
        self._remapped.add(record.key)
        if before is not None:
            pending.delete_entity_ids.update(set(before.entity_ids) - set(owned))
            pending.expire_relation_ids.update(set(before.relation_ids) - set(rel_ids))
        pending.items.append(SourceItemState(source, record.key, record.content_hash, owned, rel_ids))
        if quarantine_key(record.key) in self._previous:
            pending.cleared.append((source, quarantine_key(record.key)))
        report.stage_seconds["map"] += time.perf_counter() - t0

    def _movable_ids(self, pending: _PendingBatch) -> frozenset[str]:
        """Ids this source's ingest may move to the namespace it now runs in: the items it wrote
        before, the entities its own ids name (`<source>:…`) and relations leaving them. Anything
        else stored in another namespace is refused by the store (NamespaceConflict)."""
        prefix = f"{self._source}:"
        entities = {eid for eid in pending.entities if eid.startswith(prefix) or eid in self._owned_ids}
        relations = {rid for rid, rel in pending.relations.items() if rid in self._owned_ids or rel.src in entities}
        return frozenset(entities | relations)

    def _flush(
        self,
        pending: _PendingBatch,
        writer: ThreadPoolExecutor,
        in_flight: Future[WriteResult] | None,
        report: IngestReport,
    ) -> Future[WriteResult] | None:
        if not pending.items and not pending.entities:
            return in_flight
        attributes: dict[str, AttributeValue] = {
            "aesop.ingest.source": pending.items[0].source if pending.items else "",
            "aesop.ingest.items": len(pending.items),
            "aesop.ingest.entities": len(pending.entities),
            "aesop.ingest.relations": len(pending.relations),
        }
        with span("ingest.batch", attributes):
            return self._flush_batch(pending, writer, in_flight, report)

    def _flush_batch(
        self,
        pending: _PendingBatch,
        writer: ThreadPoolExecutor,
        in_flight: Future[WriteResult] | None,
        report: IngestReport,
    ) -> Future[WriteResult] | None:
        if self.knowledge is not None:
            self._extract_knowledge(pending, report)
        vectors, model = self._embed(pending, report)
        knowledge = [e for eid, e in pending.knowledge.items() if eid not in pending.entities]
        retired = pending.expire_relation_ids - set(pending.relations)
        lost = lost_mentions(self.store, retired, pending.relations.values()) if retired else {}
        pruned: list[str] = []
        if lost:
            if in_flight is not None:  # the check reads the store: mentions written before count
                report.add(in_flight.result())
                in_flight = None
            pruned = self._prune(retired, lost, report)
        batch = WriteBatch(
            entities=list(pending.entities.values()) + knowledge,
            relations=list(pending.relations.values()),
            vectors=vectors,
            vector_model=model,
            # Code symbols get no vector (`vector_policy`): one an earlier version stored goes.
            delete_vector_ids=[eid for eid, e in pending.entities.items() if not has_vector(e)],
            delete_entity_ids=sorted((pending.delete_entity_ids | set(pruned)) - set(pending.entities)),
            expire_relation_ids=sorted(retired),
            source_items=pending.items,
            delete_source_items=pending.cleared,
            movable_ids=self._movable_ids(pending),
        )
        if in_flight is not None:  # one write at a time, in order
            report.add(in_flight.result())
        # the write runs in the writer thread, its span a child of this batch's
        future = writer.submit(contextvars.copy_context().run, self._timed_write, batch, report)
        if pruned:
            # The next batch's extraction must see them gone (and add them again if it mentions them).
            report.add(future.result())
            return None
        return future

    def _prune(self, retired: set[str], lost: dict[str, int], report: IngestReport) -> list[str]:
        """The extracted entities whose last live mentions are `retired`: deleted in the same write."""
        t0 = time.perf_counter()
        pruned = unmentioned(self.store, lost, retired)
        report.knowledge_pruned += len(pruned)
        report.stage_seconds["knowledge"] += time.perf_counter() - t0
        return pruned

    def _extract_knowledge(self, pending: _PendingBatch, report: IngestReport) -> None:
        """Entities and relations found in the text of the batch's items, each relation owned by
        the item it was found in (so it goes when the item changes); written in the same batch."""
        assert self.knowledge is not None
        t0 = time.perf_counter()
        items = [pending.entities[eid] for eid in pending.owners if eid in pending.entities]
        with span("ingest.extract", {"aesop.ingest.items": len(items)}) as current:
            found = self.knowledge.process(items)
            set_attributes(
                current,
                {
                    "aesop.extract.items_extracted": found.items_extracted,
                    "aesop.extract.items_cached": found.items_from_cache,
                    "aesop.extract.entities": len(found.entities),
                    "aesop.extract.failed": len(found.failed),
                },
            )
        report.knowledge_items += found.items_extracted
        report.knowledge_items_cached += found.items_from_cache
        report.mentions += found.mentions
        report.knowledge_notes.extend(found.notes)
        for entity in found.entities:
            pending.knowledge.setdefault(entity.id, entity)
        report.knowledge_entities += len(found.entities)
        for item_id, relations in found.relations.items():
            position = pending.owners[item_id]
            state = pending.items[position]
            ids = tuple(r.id for r in relations)
            for relation in relations:
                pending.relations[relation.id] = relation
            pending.items[position] = dataclasses.replace(state, relation_ids=state.relation_ids + ids)
            self._mapped_relation_ids.update(ids)
            self._namespaces.update(r.namespace for r in relations)
        for item_id, reason in found.failed.items():
            state = pending.items[pending.owners[item_id]]
            key = quarantine_key(state.key)
            info = json.dumps(
                {"reason": f"knowledge extraction failed (the item itself is stored): {reason}", "at": to_iso(utcnow())}
            )
            pending.cleared = [c for c in pending.cleared if c != (state.source, key)]
            pending.items.append(SourceItemState(state.source, key, state.content_hash, cursor=info))
            report.quarantined += 1
        if self._namespaces:
            marker = json.dumps(sorted(self._namespaces))
            source = pending.items[0].source if pending.items else ""
            pending.items.append(SourceItemState(source, RESOLVE_PENDING_KEY, content_hash(marker), cursor=marker))
        report.stage_seconds["knowledge"] += time.perf_counter() - t0

    def _timed_write(self, batch: WriteBatch, report: IngestReport) -> WriteResult:
        t0 = time.perf_counter()
        sizes = {"aesop.ingest.entities": len(batch.entities), "aesop.ingest.relations": len(batch.relations)}
        try:
            with span("ingest.write", sizes):
                result = self.store.write(batch)
            if batch.source_items:
                observe_ingest_batch(batch.source_items[0].source, len(batch.source_items))
            return result
        finally:
            report.stage_seconds["store"] += time.perf_counter() - t0

    def _embed(
        self, pending: _PendingBatch, report: IngestReport
    ) -> tuple[dict[str, tuple[str, np.ndarray]], str | None]:
        if self.embedder is None or not pending.entities:
            return {}, None
        with span("ingest.embed", {"aesop.ingest.entities": len(pending.entities)}) as current:
            vectors, model = self._embed_batch(pending, report)
            set_attributes(current, {"aesop.embed.vectors": len(vectors)})
        return vectors, model

    def _embed_batch(
        self, pending: _PendingBatch, report: IngestReport
    ) -> tuple[dict[str, tuple[str, np.ndarray]], str | None]:
        assert self.embedder is not None
        t0 = time.perf_counter()
        model = self.embedder.model_name
        texts = {eid: embedding_text(e) for eid, e in pending.entities.items() if has_vector(e)}
        hashes = {eid: content_hash(t) for eid, t in texts.items()}
        stored = self.store.vector_hashes(list(texts), model)
        todo = [eid for eid in texts if stored.get(eid) != hashes[eid]]
        vectors: dict[str, tuple[str, np.ndarray]] = {}
        if todo:
            with span("ingest.embed.model", {"aesop.embed.texts": len(todo)}):
                matrix = self.embedder.embed([texts[eid] for eid in todo])
            report.texts_embedded += len(todo)
            for row, eid in enumerate(todo):
                vectors[eid] = (hashes[eid], matrix[row])
        found = [e for eid, e in pending.knowledge.items() if eid not in pending.entities]
        if found:  # extracted entities: the mean of the vectors of the items that mention them
            vectors.update(
                context_vectors(
                    found,
                    pending.relations.values(),
                    {eid: v for eid, (_, v) in vectors.items()},
                    lambda ids: self.store.get_vectors(ids, model),
                    embedding_text,
                )
            )
        report.stage_seconds["embed"] += time.perf_counter() - t0
        return vectors, model
