"""Agent memory: episodes an agent remembers across calls and sessions, and recall over them.

An episode is stored as an entity of type `Episode` in the agent's namespace (`agent:<id>` unless
told otherwise), linked to its Session by IN_SESSION and to the entities it names by MENTIONS.
Because it lives in the same graph, recall can follow those links to the knowledge the agent
talked about, and search over sources can reach the memories that mention a hit.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from aesoperator.engine.query_terms import name_candidates
from aesoperator.engine.results import SearchHit
from aesoperator.graph_schema.ids import content_hash, entity_id
from aesoperator.graph_schema.models import Entity, Episode, Relation, to_iso, utcnow

if TYPE_CHECKING:
    from aesoperator.engine.context import ContextEngine

MEMORY_SOURCE = "memory"
MIN_MENTION_NAME_CHARS = 3


def agent_namespace(agent_id: str) -> str:
    return f"agent:{agent_id}"


class RecalledEpisode(BaseModel):
    episode: Episode
    score: float
    reasons: list[str] = Field(default_factory=list)
    entities: list[SearchHit] = Field(default_factory=list, description="What the episode mentions.")


class RecallResult(BaseModel):
    query: str
    agent_id: str
    episodes: list[RecalledEpisode]
    timings_ms: dict[str, float] = Field(default_factory=dict)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(to_iso(r.episode.created_at) or '')}</td><td>{html.escape(r.episode.session_id or '')}</td>"
            f"<td>{html.escape(r.episode.content[:300])}</td><td>{r.score:.4f}</td><td>{html.escape('; '.join(r.reasons))}</td></tr>"
            for r in self.episodes
        )
        return (
            "<table><thead><tr><th>when</th><th>session</th><th>content</th><th>score</th><th>why</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )


def episode_from_entity(entity: Entity) -> Episode:
    props = entity.properties
    return Episode(
        id=entity.id,
        content=entity.text,
        agent_id=str(props.get("agent_id", "")) or "unknown",
        session_id=props.get("session_id"),
        task_id=props.get("task_id"),
        created_at=entity.valid_from or entity.created_at or utcnow(),
        namespace=entity.namespace,
        metadata=dict(props.get("metadata") or {}),
        mentions=list(props.get("mentions") or []),
    )


class AgentMemory:
    def __init__(self, engine: ContextEngine) -> None:
        self.engine = engine

    def _detect_mentions(self, content: str, namespaces: Sequence[str] | None) -> list[str]:
        names = [n for n in name_candidates(content) if len(n) >= MIN_MENTION_NAME_CHARS]
        found = self.engine.store.name_lookup(names, namespaces=namespaces)
        ids: list[str] = []
        for ids_for_name in found.values():
            for eid in ids_for_name:
                if not eid.startswith(f"{MEMORY_SOURCE}:"):
                    ids.append(eid)
        return sorted(set(ids))

    def remember(
        self,
        content: str,
        agent_id: str,
        session_id: str | None = None,
        task_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        namespace: str | None = None,
        mentions: Sequence[str] = (),
        created_at: datetime | None = None,
        speaker: str | None = None,
        detect_mentions: bool = True,
        mention_namespaces: Sequence[str] | None = None,
        episode_id: str | None = None,
    ) -> Episode:
        """Store one memory event; returns the stored Episode (with its id and mentions)."""
        created = created_at or utcnow()
        ns = namespace or agent_namespace(agent_id)
        meta = dict(metadata or {})
        if speaker:
            meta["speaker"] = speaker
        episode = Episode(
            content=content,
            agent_id=agent_id,
            session_id=session_id,
            task_id=task_id,
            created_at=created,
            namespace=ns,
            metadata=meta,
            mentions=list(mentions),
        )
        key = episode_id or f"{agent_id}/{session_id or '-'}/{to_iso(created)}/{content_hash(content)[:12]}"
        episode.id = entity_id(MEMORY_SOURCE, "episode", key)
        mentioned = set(mentions)
        if detect_mentions:
            mentioned.update(self._detect_mentions(content, mention_namespaces))
        known = {e.id for e in self.engine.store.get_entities(sorted(mentioned))}
        episode.mentions = sorted(mentioned & known)

        entities: list[Entity] = []
        relations: list[Relation] = []
        name = f"{speaker}: {content[:60]}" if speaker else content[:80]
        ep_entity = Entity(
            id=episode.id,
            type="Episode",
            name=name.replace("\n", " ").strip() or "episode",
            text=f"{speaker}: {content}" if speaker else content,
            properties={
                "agent_id": agent_id,
                "session_id": session_id,
                "task_id": task_id,
                "metadata": meta,
                "mentions": episode.mentions,
            },
            source=MEMORY_SOURCE,
            namespace=ns,
            valid_from=created,
        )
        entities.append(ep_entity)
        if session_id:
            session = Entity(
                id=entity_id(MEMORY_SOURCE, "session", f"{agent_id}/{session_id}"),
                type="Session",
                name=f"session {session_id}",
                text=f"Session {session_id} of agent {agent_id}",
                properties={"agent_id": agent_id, "session_id": session_id},
                source=MEMORY_SOURCE,
                namespace=ns,
            )
            entities.append(session)
            relations.append(
                Relation(type="IN_SESSION", src=episode.id, dst=session.id, source=MEMORY_SOURCE, namespace=ns)
            )
        for target in episode.mentions:
            relations.append(Relation(type="MENTIONS", src=episode.id, dst=target, source=MEMORY_SOURCE, namespace=ns))
        self._write(entities, relations, ep_entity)
        return episode

    def _write(self, entities: list[Entity], relations: list[Relation], embed_entity: Entity) -> None:
        from aesoperator.ingest.pipeline import embedding_text

        engine = self.engine
        text = embedding_text(embed_entity)
        vector = engine.embedder.embed([text])[0]
        engine.store.upsert(
            entities,
            relations,
            vectors={embed_entity.id: (content_hash(text), vector)},
            vector_model=engine.embedder.model_name,
        )

    def recall(
        self,
        query: str,
        agent_id: str,
        session_id: str | None = None,
        k: int = 10,
        namespaces: Sequence[str] | None = None,
        include_entities: bool = True,
        recency_half_life_days: float | None = 30.0,
        as_of: datetime | None = None,
    ) -> RecallResult:
        """Episodes of this agent relevant to `query` (by meaning, words, names and recency), with
        the entities each one mentions."""
        ns = list(namespaces) if namespaces else [agent_namespace(agent_id)]
        result = self.engine.search(
            query,
            k=k * (4 if session_id else 1),
            hops=0,
            namespaces=ns,
            types=["Episode"],
            as_of=as_of,
            token_budget=1_000_000,
            mmr_lambda=1.0,
            recency_half_life_days=recency_half_life_days,
        )
        stored = {e.id: e for e in self.engine.store.get_entities([h.id for h in result.hits], ns)}
        recalled: list[RecalledEpisode] = []
        for hit in result.hits:
            entity = stored.get(hit.id)
            if entity is None:
                continue
            episode = episode_from_entity(entity)
            if episode.agent_id != agent_id and not namespaces:
                continue
            if session_id and episode.session_id != session_id:
                continue
            recalled.append(RecalledEpisode(episode=episode, score=hit.score, reasons=hit.reasons))
            if len(recalled) >= k:
                break
        if include_entities:
            mention_ids = sorted({m for r in recalled for m in r.episode.mentions})
            found = {e.id: e for e in self.engine.store.get_entities(mention_ids)}
            for r in recalled:
                r.entities = [
                    SearchHit(
                        id=e.id,
                        type=e.type,
                        name=e.name,
                        text=e.text[:500],
                        score=0.0,
                        reasons=["mentioned by the episode"],
                        namespace=e.namespace,
                        source=e.source,
                        provenance=e.provenance,
                    )
                    for e in (found.get(m) for m in r.episode.mentions)
                    if e is not None
                ]
        return RecallResult(query=query, agent_id=agent_id, episodes=recalled, timings_ms=result.timings_ms)

    def episodes(self, agent_id: str, session_id: str | None = None, namespace: str | None = None) -> list[Episode]:
        """Every episode of an agent (optionally one session), oldest first: a timeline."""
        ns = namespace or agent_namespace(agent_id)
        out: list[Episode] = []
        for batch in self.engine.store.iter_entities(namespaces=[ns], types=["Episode"]):
            for entity in batch:
                episode = episode_from_entity(entity)
                if session_id is None or episode.session_id == session_id:
                    out.append(episode)
        out.sort(key=lambda e: e.created_at)
        return out
