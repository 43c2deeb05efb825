"""Relations between items of one source that are written after both ends exist.

A page that mentions another page, an issue that says "see #12", a web page that links to another:
the target is an item of the same source, but it may come later in the walk, not exist at all,
or be unchanged (and so not mapped) this run. The store refuses a relation whose endpoint it does
not hold, so such relations are not part of the item's own record. Instead each item that declares
links gets a second record, ``links:<item key>``, yielded after every item of the run, that holds
only the links whose targets exist:

- a *declared* link is ``[relation type, source entity id, target key]``, where the target key is
  the source's natural key for an item (a Notion page id, ``owner/repo#12``, a URL);
- the adapter resolves target keys to the entity ids of the items present this run, and the
  record's content hash is ``<digest of the resolved links>:<declared links as JSON>``. So the
  record is re-mapped exactly when the set of resolved relations changes (a target appeared or
  disappeared), and the next run can read an unchanged item's declared links back from its
  stored state without fetching the item again.

When an item stops declaring links, or is gone, its links record is not yielded again and the
pipeline expires the relations it held (history kept).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aesoperator.engine.stores.base import SourceItemState
from aesoperator.graph_schema.ids import content_hash, relation_id
from aesoperator.graph_schema.models import Provenance, Relation
from aesoperator.ingest.adapters.base import unchanged
from aesoperator.ingest.records import MappedItem, SourceRecord

LINKS_PREFIX = "links:"
LINKS_KIND = "links"

Declared = list[list[str]]  # [[relation type, source entity id, target key], ...]


def links_key(item_key: str) -> str:
    return LINKS_PREFIX + item_key


def declared_from_state(state: SourceItemState | None) -> Declared:
    """The declared links a previous links record carried (empty when unknown)."""
    if state is None or ":" not in state.content_hash:
        return []
    try:
        data = json.loads(state.content_hash.split(":", 1)[1])
    except ValueError:
        return []
    if not isinstance(data, list):
        return []
    return [[str(x) for x in link] for link in data if isinstance(link, list) and len(link) == 3]


def normalise(declared: Iterable[Sequence[str]]) -> Declared:
    """Sorted, without duplicates and without links that miss an end."""
    return [[t, s, k] for t, s, k in sorted({(t, s, k) for t, s, k in declared if s and k})]


def links_record(
    item_key: str,
    declared: Iterable[Sequence[str]],
    targets: Mapping[str, str],
    uri: str,
    previous: Mapping[str, SourceItemState],
) -> SourceRecord | None:
    """The links record of one item, or None when it declares nothing.

    `targets` maps target keys to the entity ids of the items present this run; links to other
    keys are kept as declared but not resolved. A record whose hash is unchanged is yielded as
    `unchanged`, so the pipeline leaves it alone."""
    links = normalise(declared)
    if not links:
        return None
    resolved = sorted(
        {(t, s, targets[k]) for t, s, k in links if k in targets and targets[k] != s},
    )
    digest = content_hash(json.dumps(resolved, ensure_ascii=False))
    version = f"{digest}:{json.dumps(links, ensure_ascii=False, separators=(',', ':'))}"
    key = links_key(item_key)
    state = previous.get(key)
    if state is not None and state.content_hash == version:
        return unchanged(state, uri)
    payload: dict[str, Any] = {"resolved": [list(r) for r in resolved]}
    return SourceRecord(key=key, kind=LINKS_KIND, content_hash=version, payload=payload, uri=uri)


def map_links(record: SourceRecord, source: str, namespace: str) -> MappedItem:
    """The relations of a links record (both ends exist by the time it is written)."""
    provenance = Provenance(uri=record.uri, version=record.content_hash.split(":", 1)[0])
    relations = [
        Relation(
            id=relation_id(rtype, src, dst),
            type=rtype,
            src=src,
            dst=dst,
            source=source,
            namespace=namespace,
            provenance=provenance,
        )
        for rtype, src, dst in record.payload["resolved"]
    ]
    return MappedItem(relations=relations)
