"""Plain documents as a source: each becomes a Document entity; documents that name each other
(by exact title) are linked with MENTIONS, deterministically, so graph expansion can follow
one document to the next on multi-hop questions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel, Field

from aesoperator.engine.query_terms import name_candidates
from aesoperator.engine.stores.base import GraphStore
from aesoperator.graph_schema.ids import content_hash, entity_id
from aesoperator.graph_schema.models import Entity, Provenance, Relation
from aesoperator.ingest.records import MappedItem, SourceRecord

MIN_LINK_NAME_CHARS = 4


class DocumentInput(BaseModel):
    """A document to ingest. `key` identifies it within its source (default: the title)."""

    title: str
    text: str
    key: str | None = None
    type: str = "Document"
    metadata: dict[str, Any] = Field(default_factory=dict)
    uri: str | None = None


def document_records(source: str, docs: Iterable[DocumentInput]) -> Iterator[SourceRecord]:
    for doc in docs:
        key = doc.key or doc.title
        yield SourceRecord(
            key=key,
            kind="document",
            content_hash=content_hash(f"{doc.type}\x1f{doc.title}\x1f{doc.text}\x1f{sorted(doc.metadata.items())}"),
            payload=doc.model_dump(),
            uri=doc.uri or f"{source}:{key}",
        )


class DocumentsMapper:
    kind = "documents"

    def __init__(self, source: str, namespace: str) -> None:
        self.source = source
        self.namespace = namespace

    def map(self, record: SourceRecord) -> MappedItem:
        doc = DocumentInput.model_validate(record.payload)
        entity = Entity(
            id=entity_id(self.source, "doc", record.key),
            type=doc.type,
            name=doc.title,
            text=doc.text if doc.title in doc.text[:200] else f"{doc.title}\n{doc.text}",
            properties={"key": record.key, **doc.metadata},
            source=self.source,
            provenance=Provenance(uri=record.uri, version=record.content_hash),
            namespace=self.namespace,
        )
        return MappedItem(entities=[entity])


def mention_links(
    store: GraphStore, entities: Sequence[Entity], namespaces: Sequence[str] | None = None, max_words: int = 6
) -> list[Relation]:
    """MENTIONS relations from each entity to the stored entities whose exact name its text contains."""
    relations: list[Relation] = []
    for entity in entities:
        names = [
            n for n in name_candidates(entity.text, max_words=max_words, limit=4000) if len(n) >= MIN_LINK_NAME_CHARS
        ]
        found = store.name_lookup(names, namespaces=namespaces)
        targets = sorted({i for ids in found.values() for i in ids if i != entity.id})
        relations.extend(
            Relation(type="MENTIONS", src=entity.id, dst=t, source=entity.source, namespace=entity.namespace)
            for t in targets
        )
    return relations
