"""The extraction stage: graph items in, knowledge out.

For each item with text worth reading (a chunk, a document, an issue, a commit message, an
episode, ...), the extractor's mentions become typed entities (one per key, type and namespace;
an entity already stored is linked, never rewritten), linked from the item by MENTIONS that carry
the spans, the extractor and its confidence; relations between mentions become relations between
the entities with the sentence that is their evidence. Results are cached by content hash, so an
unchanged text is never read twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from aesoperator.engine.stores.base import GraphStore
from aesoperator.errors import AesopError
from aesoperator.graph_schema.facts import SELF_KEY
from aesoperator.graph_schema.ids import content_hash, relation_id
from aesoperator.graph_schema.knowledge import (
    CODE,
    PROSE,
    TERSE,
    EntityExtractor,
    ItemExtraction,
    KnowledgeBatch,
    Mention,
    MentionRelation,
    TextItem,
)
from aesoperator.graph_schema.models import Entity, Provenance, Relation
from aesoperator.graph_schema.vocabulary import KNOWLEDGE_TYPES, canonical_entity_type
from aesoperator.ingest.extract.cache import ExtractionCache
from aesoperator.ingest.extract.keys import KNOWLEDGE_SOURCE, knowledge_entity_id, name_key, normalize_name
from aesoperator.ingest.extract.resolve import EntityResolver

# Items whose text is prose worth reading: what files, documents, trackers, wikis, commits and
# conversations bring. Structure (directories, tables, rows), identities (people, labels) and the
# entities of a memory server (already knowledge) are not read.
TEXT_ITEM_TYPES: frozenset[str] = frozenset(
    {
        "Chunk",
        "Document",
        "Page",
        "Block",
        "Issue",
        "PullRequest",
        "Comment",
        "Commit",
        "Episode",
        "Message",
        "Email",
        "Note",
        "Article",
        "Paper",
        "Post",
        "Review",
    }
)
CODE_SUFFIXES = (
    ".py", ".pyi", ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".go", ".java", ".rs", ".c", ".h",
    ".cc", ".cpp", ".hpp", ".cs", ".rb", ".php", ".kt", ".scala", ".swift", ".sh", ".sql", ".toml",
    ".yaml", ".yml", ".json", ".xml", ".css", ".html",
)  # fmt: skip
MAX_SPANS_KEPT = 16
MAX_RELATIONS_PER_ITEM = 300


def item_kind(entity: Entity) -> str:
    if entity.type == "Commit":
        return TERSE
    path = entity.properties.get("path")
    if isinstance(path, str) and path.lower().endswith(CODE_SUFFIXES):
        return CODE
    return PROSE


def wants_extraction(entity: Entity) -> bool:
    return entity.type in TEXT_ITEM_TYPES and entity.source != KNOWLEDGE_SOURCE and bool(entity.text.strip())


def extraction_text(entity: Entity) -> str:
    """The prose of an item: a commit's message without the trailer the git mapper adds (sha,
    author, date, changed files), which is structure the graph already holds."""
    sha = entity.properties.get("sha")
    if entity.type == "Commit" and isinstance(sha, str):
        return entity.text.split(f"\n\nCommit {sha}", 1)[0]
    return entity.text


def item_speaker(entity: Entity) -> str | None:
    """Who "I" is in an item's text: its speaker (an episode's `speaker` metadata, an item's
    `speaker` property), else the agent that remembered it; None when the item does not say."""
    meta = entity.properties.get("metadata")
    spoken = meta.get("speaker") if isinstance(meta, dict) else None
    for value in (spoken, entity.properties.get("speaker"), entity.properties.get("agent_id")):
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:200]
    return None


def first_person_as_speaker(entity: Entity, result: ItemExtraction) -> tuple[ItemExtraction, set[int]]:
    """`result` with its first-person mentions (key `SELF_KEY`) standing for the item's speaker,
    and the positions of those mentions (they carry facts, not MENTIONS). Without a speaker they
    are dropped with the relations that use them. The cached result itself is never changed."""
    selves = [i for i, m in enumerate(result.mentions) if m.key == SELF_KEY]
    if not selves:
        return result, set()
    speaker = item_speaker(entity)
    if speaker is not None:
        mentions = [
            Mention(m.start, m.end, speaker, "Person", name_key(speaker), m.extractor, m.confidence)
            if m.key == SELF_KEY
            else m
            for m in result.mentions
        ]
        return ItemExtraction(result.item_id, mentions, list(result.relations), result.error), set(selves)
    dropped = set(selves)
    position: dict[int, int] = {}
    for i in range(len(result.mentions)):
        if i not in dropped:
            position[i] = len(position)
    relations = [
        MentionRelation(position[r.src], position[r.dst], r.type, r.start, r.end, r.extractor, r.confidence)
        for r in result.relations
        if r.src in position and r.dst in position
    ]
    kept = [m for i, m in enumerate(result.mentions) if i in position]
    return ItemExtraction(result.item_id, kept, relations, result.error), set()


@dataclass
class KnowledgeExtractionStage:
    """`KnowledgeStage` over a graph store with one extractor, a cache and a resolver."""

    store: GraphStore
    extractor: EntityExtractor
    cache: ExtractionCache = field(default_factory=lambda: ExtractionCache(None))
    resolver: EntityResolver | None = None
    seconds: float = 0.0

    def _extract(self, items: Sequence[TextItem], batch: KnowledgeBatch) -> list[ItemExtraction]:
        signature = self.extractor.signature
        digests = {i.id: content_hash(f"{i.kind}\x1f{i.text}") for i in items}
        cached = self.cache.get(signature, list(digests.items()))
        todo = [i for i in items if i.id not in cached]
        fresh: list[ItemExtraction] = []
        if todo:
            try:
                fresh = self.extractor.extract(todo)
            except AesopError as exc:  # an LLM endpoint down, a budget spent: the ingest goes on
                batch.notes.append(f"{self.extractor.name} extractor: {exc}")
                fresh = [ItemExtraction(i.id, error=str(exc)) for i in todo]
            self.cache.put(signature, ((digests[r.item_id], r) for r in fresh))
        notes = getattr(self.extractor, "notes", None)
        if isinstance(notes, list):
            batch.notes.extend(notes)
            notes.clear()
        batch.items_extracted += len(todo)
        batch.items_from_cache += len(cached)
        by_id = {r.item_id: r for r in fresh} | cached
        return [by_id.get(i.id, ItemExtraction(i.id)) for i in items]

    def process(self, items: Sequence[Entity], link_namespaces: Sequence[str] | None = None) -> KnowledgeBatch:
        started = time.perf_counter()
        batch = KnowledgeBatch()
        chosen = [e for e in items if wants_extraction(e)]
        if not chosen:
            return batch
        texts = [TextItem(e.id, extraction_text(e), item_kind(e)) for e in chosen]
        speaking = [first_person_as_speaker(e, r) for e, r in zip(chosen, self._extract(texts, batch), strict=True)]
        results = [r for r, _ in speaking]

        # Every entity a mention could stand for, so that stored ones are linked, not rewritten; the
        # item's own namespace last, as that is where a new one is made (its id names that namespace).
        def candidates(entity: Entity, m: Mention) -> list[str]:
            spaces = [*(ns for ns in link_namespaces or () if ns != entity.namespace), entity.namespace]
            return [knowledge_entity_id(ns, m.type, m.key) for ns in dict.fromkeys(spaces)]

        wanted = sorted({c for e, r in zip(chosen, results, strict=True) for m in r.mentions for c in candidates(e, m)})
        stored: set[str] = set()
        for start in range(0, len(wanted), 1000):
            stored.update(x.id for x in self.store.get_entities(wanted[start : start + 1000]))
        named = self._named_entities(chosen, results, link_namespaces)
        stored.update(named.values())  # a source's own entity is linked to, never rewritten here
        new: dict[str, Entity] = {}
        for entity, (result, first_person) in zip(chosen, speaking, strict=True):
            if result.error is not None:
                batch.failed[entity.id] = result.error
                continue
            ids: list[str] = []
            for m in result.mentions:
                options = candidates(entity, m)
                eid = next((c for c in options if c in stored), None)
                if eid is None:
                    eid = named.get((entity.namespace, m.type, normalize_name(m.text)), options[-1])
                ids.append(eid)
                if eid not in stored and eid not in new:
                    new[eid] = self._entity(eid, m, entity)
            batch.mentions += len(result.mentions)
            batch.relations[entity.id] = self._relations(entity, result, ids, first_person)
            if self.resolver is not None:
                self.resolver.note_acronyms(batch.relations[entity.id])
        batch.entities = list(new.values())
        self.seconds += time.perf_counter() - started
        return batch

    def _named_entities(
        self, items: Sequence[Entity], results: Sequence[ItemExtraction], link_namespaces: Sequence[str] | None
    ) -> dict[tuple[str, str, str], str]:
        """(item namespace, type, normalised name) -> a stored entity of that name and type that a
        source brought (a person from git, an entity of the memory server): mentions link to it."""
        spaces = {e.namespace for e in items} | set(link_namespaces or ())
        names = sorted({m.text for r in results for m in r.mentions if len(m.text) >= 3})
        if not names:
            return {}
        found = self.store.name_lookup(names, namespaces=sorted(spaces))
        ids = sorted({i for hits in found.values() for i in hits})
        out: dict[tuple[str, str, str], str] = {}
        entities = self.store.get_entities(ids) if ids else []
        for e in sorted(entities, key=lambda x: (x.source == KNOWLEDGE_SOURCE, x.id)):
            kind = canonical_entity_type(e.type)
            if kind not in KNOWLEDGE_TYPES or e.source == KNOWLEDGE_SOURCE:
                continue
            for ns in {x.namespace for x in items}:
                if e.namespace == ns or e.namespace in (link_namespaces or ()):
                    out.setdefault((ns, kind, normalize_name(e.name)), e.id)
        return out

    @staticmethod
    def _entity(eid: str, m: Mention, item: Entity) -> Entity:
        name = " ".join(m.text.split())[:200] or m.key
        aliases = [a for a in m.aliases if a != normalize_name(name)]
        text = f"{name} ({m.type})" + (f", also known as {', '.join(aliases)}" if aliases else "")
        return Entity(
            id=eid,
            type=m.type,
            name=name,
            text=text,
            properties={"key": m.key, "aliases": aliases, "first_seen_in": item.id, "extractor": m.extractor},
            source=KNOWLEDGE_SOURCE,
            provenance=Provenance(uri=item.provenance.uri if item.provenance else item.id),
            namespace=item.namespace,
        )

    @staticmethod
    def _relations(
        item: Entity, result: ItemExtraction, ids: list[str], first_person: AbstractSet[int] = frozenset()
    ) -> list[Relation]:
        mentions: dict[str, list[Mention]] = {}
        for pos, (m, eid) in enumerate(zip(result.mentions, ids, strict=True)):
            if pos not in first_person:  # "I" names the speaker; the episode already says who spoke
                mentions.setdefault(eid, []).append(m)
        out: list[Relation] = []
        for eid, ms in mentions.items():
            out.append(
                Relation(
                    type="MENTIONS",
                    src=item.id,
                    dst=eid,
                    properties={
                        "spans": [[m.start, m.end] for m in ms[:MAX_SPANS_KEPT]],
                        "count": len(ms),
                        "text": ms[0].text[:200],
                        "extractor": ms[0].extractor,
                        "confidence": max(m.confidence for m in ms),
                    },
                    source=item.source,
                    namespace=item.namespace,
                )
            )
        seen: dict[str, Relation] = {}
        for r in result.relations:
            a, b = ids[r.src], ids[r.dst]
            if a == b:
                continue
            if r.type == "CO_OCCURS_WITH" and b < a:
                a, b = b, a
            rid = relation_id(r.type, a, b, item.id)
            if rid in seen:
                seen[rid].properties["count"] += 1
                continue
            if len(seen) >= MAX_RELATIONS_PER_ITEM:
                break
            seen[rid] = Relation(
                id=rid,
                type=r.type,
                src=a,
                dst=b,
                properties={
                    "item": item.id,
                    "span": [r.start, r.end],
                    "evidence": item.text[r.start : r.end][:300],
                    "extractor": r.extractor,
                    "confidence": r.confidence,
                    "count": 1,
                },
                source=item.source,
                namespace=item.namespace,
            )
        return out + list(seen.values())

    def begin_run(self) -> None:
        self.extractor.begin_run()

    def resolve(self, namespaces: Sequence[str], new_ids: Sequence[str] | None = None) -> int:
        if self.resolver is None:
            return 0
        return self.resolver.resolve(namespaces, new_ids)
