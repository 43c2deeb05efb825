"""Reading the knowledge in the graph: entities (merged across sources by their SAME_AS
decisions), what mentions them, how they relate, where they come from, and the merge decisions
themselves, which can be undone.

Everything here reads the store through the namespaces the caller may read: a merge decision,
a mention or a relation in another namespace is not seen.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from aesoperator.engine.results import SearchHit
from aesoperator.engine.stores.base import GraphStore
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.knowledge import KNOWLEDGE_SOURCE
from aesoperator.graph_schema.models import Entity, Relation, to_iso, utcnow
from aesoperator.graph_schema.vocabulary import KNOWLEDGE_TYPES, canonical_entity_type

MERGE = "SAME_AS"
NOT_MERGE = "NOT_SAME_AS"
STRUCTURE = frozenset({"CONTAINS", "IN_SESSION", "NEXT", "PART_OF"})
MAX_CLUSTER = 500


class EntitySummary(BaseModel):
    id: str = Field(description="The representative: a source's own entity when there is one.")
    type: str
    name: str
    namespace: str
    members: list[str] = Field(default_factory=list, description="Every entity merged into this one.")
    names: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    mentions: int = 0


class MentionInfo(BaseModel):
    item_id: str
    item_type: str
    item_name: str
    entity_id: str
    text: str
    spans: list[list[int]] = Field(default_factory=list)
    extractor: str = ""
    confidence: float = 0.0
    source: str = ""


class RelationInfo(BaseModel):
    type: str
    direction: str
    other_id: str
    other_name: str
    other_type: str
    evidence: str = ""
    item: str | None = None


class MergeInfo(BaseModel):
    id: str
    a: str
    b: str
    a_name: str = ""
    b_name: str = ""
    rule: str = ""
    score: float = 0.0
    evidence: str = ""
    decided_at: str | None = None
    live: bool = True
    kind: str = MERGE


class EntityProfile(BaseModel):
    entity: EntitySummary
    mentions: list[MentionInfo] = Field(default_factory=list)
    relations: list[RelationInfo] = Field(default_factory=list)
    merges: list[MergeInfo] = Field(default_factory=list)


def _representative(members: Sequence[Entity]) -> Entity:
    """A source's own entity (a git author, a GitHub user) over one extraction made up."""
    return sorted(members, key=lambda e: (e.source == KNOWLEDGE_SOURCE, e.type not in KNOWLEDGE_TYPES, e.id))[0]


def _merge_info(rel: Relation, names: dict[str, str]) -> MergeInfo:
    props = rel.properties
    return MergeInfo(
        id=rel.id,
        a=rel.src,
        b=rel.dst,
        a_name=names.get(rel.src, ""),
        b_name=names.get(rel.dst, ""),
        rule=str(props.get("rule", "")),
        score=float(props.get("score", 0.0) or 0.0),
        evidence=str(props.get("evidence", "")),
        decided_at=props.get("decided_at") or props.get("at"),
        live=rel.is_live(),
        kind=rel.type,
    )


class EntityCatalog:
    """Entities, mentions, relations and merges as stored in `store`."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store

    def cluster(self, entity_id: str, namespaces: Sequence[str] | None) -> list[Entity]:
        """The entity and everything merged with it (following live SAME_AS)."""
        ns = list(namespaces) if namespaces is not None else None
        sub = self.store.neighbors([entity_id], depth=3, relation_types=[MERGE], namespaces=ns, limit=MAX_CLUSTER)
        return sorted(sub.entities.values(), key=lambda e: e.id)

    def _summaries(self, entities: Sequence[Entity], namespaces: Sequence[str] | None) -> list[EntitySummary]:
        ns = list(namespaces) if namespaces is not None else None
        ids = [e.id for e in entities]
        by_id = {e.id: e for e in entities}
        merges = self.store.neighbors(ids, depth=1, relation_types=[MERGE], namespaces=ns, limit=10 * len(ids) + 100)
        by_id.update(merges.entities)
        parent = {i: i for i in by_id}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for rel in merges.relations:
            if rel.type == MERGE and rel.src in parent and rel.dst in parent:
                parent[max(find(rel.src), find(rel.dst))] = min(find(rel.src), find(rel.dst))
        groups: dict[str, list[Entity]] = {}
        for eid in sorted(by_id):
            groups.setdefault(find(eid), []).append(by_id[eid])
        counts: dict[str, int] = {}
        mentions = self.store.neighbors(
            list(by_id),
            depth=1,
            relation_types=["MENTIONS"],
            direction="in",
            namespaces=ns,
            limit=100 * len(by_id) + 100,
        )
        for rel in mentions.relations:
            if rel.type == "MENTIONS" and rel.dst in by_id:
                counts[rel.dst] = counts.get(rel.dst, 0) + 1
        out: list[EntitySummary] = []
        for members in groups.values():
            rep = _representative(members)
            out.append(
                EntitySummary(
                    id=rep.id,
                    type=canonical_entity_type(rep.type),
                    name=rep.name,
                    namespace=rep.namespace,
                    members=[m.id for m in members],
                    names=sorted({m.name for m in members}),
                    sources=sorted({m.source for m in members}),
                    mentions=sum(counts.get(m.id, 0) for m in members),
                )
            )
        out.sort(key=lambda s: (-s.mentions, s.name.casefold(), s.id))
        return out

    def summaries(
        self,
        query: str | None = None,
        types: Sequence[str] | None = None,
        namespaces: Sequence[str] | None = None,
        limit: int = 50,
        scan_limit: int = 20_000,
    ) -> list[EntitySummary]:
        """Entities of the knowledge types (or `types`), merged, most mentioned first; `query`
        keeps those whose name contains it (case-insensitive)."""
        wanted = set(types) if types else None
        needle = query.casefold() if query else None
        found: list[Entity] = []
        ns = list(namespaces) if namespaces is not None else None
        for batch in self.store.iter_entities(namespaces=ns, types=sorted(wanted) if wanted else None):
            for e in batch:
                if wanted is None and canonical_entity_type(e.type) not in KNOWLEDGE_TYPES:
                    continue
                if needle is not None and needle not in e.name.casefold():
                    continue
                found.append(e)
            if len(found) >= scan_limit:
                break
        return self._summaries(found, namespaces)[:limit]

    def find(self, name_or_id: str, namespaces: Sequence[str] | None = None) -> list[Entity]:
        """Entities with this id, or this exact name (case-insensitive)."""
        ns = list(namespaces) if namespaces is not None else None
        direct = self.store.get_entities([name_or_id], ns)
        if direct:
            return direct
        hits = self.store.name_lookup([name_or_id], namespaces=ns)
        ids = sorted({i for found in hits.values() for i in found})
        return [e for e in self.store.get_entities(ids, ns) if e.type not in ("Chunk", "File", "Directory")]

    def show(self, name_or_id: str, namespaces: Sequence[str] | None = None, max_items: int = 200) -> EntityProfile:
        matches = self.find(name_or_id, namespaces)
        if not matches:
            raise SchemaError(f"no entity named {name_or_id!r} (or with that id) in the namespaces you can read")
        members: dict[str, Entity] = {}
        for m in matches:
            for e in self.cluster(m.id, namespaces):
                members[e.id] = e
        summary = self._summaries(list(members.values()), namespaces)[0]
        ns = list(namespaces) if namespaces is not None else None
        around = self.store.neighbors(list(members), depth=1, namespaces=ns, limit=max_items * 5 + 100)
        names = {i: e.name for i, e in around.entities.items()}
        profile = EntityProfile(entity=summary)
        for rel in around.relations:
            inside_src, inside_dst = rel.src in members, rel.dst in members
            if rel.type == "MENTIONS" and inside_dst and not inside_src:
                item = around.entities.get(rel.src)
                if item is None:
                    continue
                props = rel.properties
                profile.mentions.append(
                    MentionInfo(
                        item_id=item.id,
                        item_type=item.type,
                        item_name=item.name,
                        entity_id=rel.dst,
                        text=str(props.get("text", members[rel.dst].name)),
                        spans=[list(s) for s in props.get("spans", [])],
                        extractor=str(props.get("extractor", "")),
                        confidence=float(props.get("confidence", 1.0) or 0.0),
                        source=item.source,
                    )
                )
            elif rel.type in (MERGE, NOT_MERGE):
                continue
            elif rel.type not in STRUCTURE and inside_src != inside_dst:
                other = rel.dst if inside_src else rel.src
                entity = around.entities.get(other)
                if entity is None:
                    continue
                profile.relations.append(
                    RelationInfo(
                        type=rel.type,
                        direction="out" if inside_src else "in",
                        other_id=other,
                        other_name=entity.name,
                        other_type=entity.type,
                        # a fact keeps its sentence apart from its evidence episodes' ids
                        evidence=str(rel.properties.get("evidence_text") or rel.properties.get("evidence", ""))[:300],
                        item=rel.properties.get("item"),
                    )
                )
        profile.mentions = profile.mentions[:max_items]
        profile.relations = sorted(profile.relations, key=lambda r: (r.type, r.other_name))[:max_items]
        profile.merges = [m for m in self.merges(namespaces, include_undone=True) if m.a in members or m.b in members]
        for decision in profile.merges:
            decision.a_name = names.get(decision.a, decision.a_name)
            decision.b_name = names.get(decision.b, decision.b_name)
        return profile

    def merges(self, namespaces: Sequence[str] | None = None, include_undone: bool = False) -> list[MergeInfo]:
        """Every merge decision (and, with `include_undone`, the undone ones and the refusals)."""
        allowed = set(namespaces) if namespaces is not None else None
        rels: list[Relation] = []
        for batch in self.store.iter_relations():
            for rel in batch:
                wanted = rel.type == MERGE or (include_undone and rel.type == NOT_MERGE)
                readable = allowed is None or rel.namespace in allowed
                if wanted and readable and (include_undone or rel.is_live()):
                    rels.append(rel)
        ends = sorted({i for r in rels for i in (r.src, r.dst)})
        names = {e.id: e.name for e in self.store.get_entities(ends)}
        return sorted((_merge_info(r, names) for r in rels), key=lambda m: (m.decided_at or "", m.id))

    def unmerge(self, decision_id: str, namespaces: Sequence[str] | None = None) -> MergeInfo:
        """Undo a merge: its SAME_AS is expired (history kept) and NOT_SAME_AS recorded, so
        resolution does not merge the two again."""
        found = self.store.get_relations([decision_id])
        rel = found[0] if found else None
        if rel is None or rel.type != MERGE or (namespaces is not None and rel.namespace not in namespaces):
            raise SchemaError(f"no merge decision {decision_id!r}; `aesop entities merges` lists them")
        if not rel.is_live():
            raise SchemaError(f"merge decision {decision_id!r} was already undone")
        self.store.expire_relations([rel.id])
        refusal = Relation(
            type=NOT_MERGE,
            src=rel.src,
            dst=rel.dst,
            properties={"rule": "unmerge", "undoes": rel.id, "evidence": str(rel.properties.get("evidence", ""))},
            source=rel.source,
            namespace=rel.namespace,
        )
        refusal.properties["at"] = to_iso(utcnow())
        self.store.upsert(relations=[refusal])
        names = {e.id: e.name for e in self.store.get_entities([rel.src, rel.dst])}
        info = _merge_info(rel, names)
        info.live = False
        return info

    def mentioning_items(self, entity_ids: Sequence[str], namespaces: Sequence[str] | None) -> dict[str, int]:
        """item id -> how many times it mentions any of `entity_ids`."""
        ns = list(namespaces) if namespaces is not None else None
        sub = self.store.neighbors(
            list(entity_ids), depth=1, relation_types=["MENTIONS"], direction="in", namespaces=ns, limit=100_000
        )
        counts: dict[str, int] = {}
        for rel in sub.relations:
            if rel.type == "MENTIONS" and rel.dst in entity_ids and rel.src not in entity_ids:
                counts[rel.src] = counts.get(rel.src, 0) + int(rel.properties.get("count", 1) or 1)
        return counts

    def about_hits(
        self, name_or_id: str, namespaces: Sequence[str] | None = None, k: int = 10
    ) -> tuple[EntitySummary, list[SearchHit]]:
        """The items that mention an entity (any member of its merge), most mentions first."""
        matches = self.find(name_or_id, namespaces)
        if not matches:
            raise SchemaError(f"no entity named {name_or_id!r} (or with that id) in the namespaces you can read")
        members = {e.id: e for m in matches for e in self.cluster(m.id, namespaces)}
        summary = self._summaries(list(members.values()), namespaces)[0]
        counts = self.mentioning_items(list(members), namespaces)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        items = {e.id: e for e in self.store.get_entities([i for i, _ in ranked], namespaces)}
        hits = [
            SearchHit(
                id=item.id,
                type=item.type,
                name=item.name,
                text=item.text[:500],
                truncated=len(item.text) > 500,
                score=float(n),
                reasons=[f"mentions {summary.name} ({n}×)"],
                namespace=item.namespace,
                source=item.source,
                provenance=item.provenance,
                properties=dict(item.properties),
                valid_from=item.valid_from,
                valid_to=item.valid_to,
            )
            for item_id, n in ranked
            if (item := items.get(item_id)) is not None
        ]
        return summary, hits
