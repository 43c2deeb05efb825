"""Agent memory: episodes an agent remembers across calls and sessions, and recall over them.

An episode is stored as an entity of type `Episode` in the agent's namespace (`agent:<id>` unless
told otherwise), linked to its Session by IN_SESSION and to the entities it names by MENTIONS.
Because it lives in the same graph, recall can follow those links to the knowledge the agent
talked about, and search over sources can reach the memories that mention a hit.

Episodes and sessions belong to their namespace: their ids carry it (`scoped_entity_id`; the
agent's own namespace keeps the short form), so the same agent and session ids remembered in two
namespaces make two sessions, and a write in one never reads or rewrites the other.
"""

from __future__ import annotations

import html
import itertools
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from aesoperator.engine.embeddings import embedding_text
from aesoperator.engine.entity_vectors import context_vectors
from aesoperator.engine.memory_facts import (
    RETIRED_REASON,
    FactKeeper,
    MemoryFact,
    fact_view,
    facts_of_episodes,
    retired_at,
)
from aesoperator.engine.memory_hygiene import CompactReport, count_repeat, outlived, plan_compaction, stored_duplicates
from aesoperator.engine.memory_revisions import CorrectionResult, MemoryHistory, correct_episode, memory_history
from aesoperator.engine.query_terms import name_candidates
from aesoperator.engine.results import SearchHit
from aesoperator.engine.stores.base import WriteBatch
from aesoperator.errors import SchemaError
from aesoperator.graph_schema.facts import SUPERSEDED_BY_PROPERTY, is_fact_type, retirement_note
from aesoperator.graph_schema.ids import content_hash, entity_id, scoped_entity_id
from aesoperator.graph_schema.models import Entity, Episode, Relation, to_iso, utcnow

if TYPE_CHECKING:
    from aesoperator.engine.context import EngineCore

MEMORY_SOURCE = "memory"
MIN_MENTION_NAME_CHARS = 3


def agent_namespace(agent_id: str) -> str:
    return f"agent:{agent_id}"


def episode_id(key: str, agent_id: str, namespace: str) -> str:
    """The id of an episode with natural key `key` (or an id the caller chose) in `namespace`."""
    return scoped_entity_id(MEMORY_SOURCE, "episode", key, namespace, agent_namespace(agent_id))


def session_id_of(agent_id: str, session: str, namespace: str) -> str:
    """The id of the Session entity of an agent's session in `namespace`."""
    return scoped_entity_id(MEMORY_SOURCE, "session", f"{agent_id}/{session}", namespace, agent_namespace(agent_id))


def _unscoped_session_id(agent_id: str, session: str) -> str:
    """The id sessions had before ids carried their namespace (still the id in the agent's own)."""
    return entity_id(MEMORY_SOURCE, "session", f"{agent_id}/{session}")


class RecalledEpisode(BaseModel):
    episode: Episode
    score: float
    reasons: list[str] = Field(default_factory=list)
    entities: list[SearchHit] = Field(default_factory=list, description="What the episode mentions.")
    facts: list[MemoryFact] = Field(
        default_factory=list, description="The facts the episode states, each saying whether it holds."
    )
    valid_to: datetime | None = Field(default=None, description="When the episode stopped holding, if it did.")
    superseded_by: str | None = Field(default=None, description="The episode that replaced it, if one did.")
    retired_reason: str | None = Field(
        default=None, description="Why it stopped holding: superseded, corrected, duplicate or expired."
    )


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
    def __init__(self, engine: EngineCore) -> None:
        self.engine = engine
        self.facts = FactKeeper(engine.store, supersede=engine.settings.memory_supersede)
        self.write_lock = threading.Lock()  # a timeline is read, decided and written by one writer at a time

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
        extract: bool = True,
    ) -> Episode:
        """Store one memory event; returns the stored Episode (with its id and mentions)."""
        meta = dict(metadata or {})
        if speaker:
            meta["speaker"] = speaker
        episode = Episode(
            id=episode_id or "",
            content=content,
            agent_id=agent_id,
            session_id=session_id,
            task_id=task_id,
            created_at=created_at or utcnow(),
            namespace=namespace,
            metadata=meta,
            mentions=list(mentions),
        )
        return self.remember_many([episode], detect_mentions, mention_namespaces, extract=extract)[0]

    def remember_many(
        self,
        episodes: Sequence[Episode],
        detect_mentions: bool = True,
        mention_namespaces: Sequence[str] | None = None,
        batch_size: int = 256,
        extract: bool = True,
    ) -> list[Episode]:
        """Store many episodes (e.g. an imported conversation) with batched embedding.

        With `extract` (and a knowledge stage on the engine), the people, places, things and
        dates each episode names become entities linked by MENTIONS: the ones already known in
        `mention_namespaces` (default: the engine's default namespace) are linked, others are
        created in the episode's namespace; entity resolution then runs there.

        Episodes of one session are chained in time order by NEXT relations, continuing from the
        last episode the session already holds, so recall can step to the turns around a hit.
        """
        stored: list[Episode] = []
        introduced: set[str] = set()  # namespaces where extraction created entities (or saw acronyms)
        created: set[str] = set()  # the entities it created: resolution compares only them when few
        for start in range(0, len(episodes), batch_size):
            batch = episodes[start : start + batch_size]
            stored.extend(
                self._remember_batch(batch, detect_mentions, mention_namespaces, extract, introduced, created)
            )
        knowledge = self.engine.knowledge if extract else None
        if knowledge is not None and introduced:  # with nothing new there is nothing new to merge
            knowledge.resolve(sorted(introduced), new_ids=sorted(created))
        return stored

    def _prepare(self, episode: Episode, detect: bool, mention_ns: Sequence[str] | None) -> tuple[Episode, Entity]:
        ns = episode.namespace or agent_namespace(episode.agent_id)
        key = episode.id or (
            f"{episode.agent_id}/{episode.session_id or '-'}/{to_iso(episode.created_at)}/"
            f"{content_hash(episode.content)[:12]}"
        )
        ep = episode.model_copy(update={"namespace": ns, "id": episode_id(key, episode.agent_id, ns)})
        mentioned = set(episode.mentions)
        if detect:
            mentioned.update(self._detect_mentions(episode.content, mention_ns))
        ep.mentions = sorted(mentioned)
        speaker = ep.metadata.get("speaker")
        name = f"{speaker}: {ep.content[:60]}" if speaker else ep.content[:80]
        entity = Entity(
            id=ep.id,
            type="Episode",
            name=" ".join(name.split()) or "episode",  # one spacing, so a repeat is found by its name
            text=f"{speaker}: {ep.content}" if speaker else ep.content,
            properties={
                "agent_id": ep.agent_id,
                "session_id": ep.session_id,
                "task_id": ep.task_id,
                "metadata": ep.metadata,
                "mentions": ep.mentions,
            },
            source=MEMORY_SOURCE,
            namespace=ns,
            valid_from=ep.created_at,
        )
        return ep, entity

    def _count_repeats(self, prepared: list[tuple[Episode, Entity]], explicit: set[int]) -> dict[str, Episode]:
        """Count the episodes that repeat what their session already holds on the stored ones
        (`memory_merge_duplicates`). Returns, for each repeat's id, the stored episode standing
        for it. Episodes given an id by the caller are always stored as given."""
        if not self.engine.settings.memory_merge_duplicates:
            return {}
        candidates = [entity for i, (_, entity) in enumerate(prepared) if i not in explicit]
        with self.write_lock:
            repeats = stored_duplicates(self.engine.store, candidates)
            if not repeats:
                return {}
            survivors: dict[str, Entity] = {}
            for ep, entity in prepared:
                match = repeats.get(entity.id)
                if match is not None:
                    survivors[match.id] = count_repeat(survivors.get(match.id, match), ep.created_at)
            self.engine.store.upsert(list(survivors.values()))
        return {new_id: episode_from_entity(survivors[match.id]) for new_id, match in repeats.items()}

    def _remember_batch(
        self,
        episodes: Sequence[Episode],
        detect: bool,
        mention_ns: Sequence[str] | None,
        extract: bool = True,
        introduced: set[str] | None = None,
        created: set[str] | None = None,
    ) -> list[Episode]:
        everything = [self._prepare(e, detect, mention_ns) for e in episodes]
        repeated = self._count_repeats(everything, {i for i, e in enumerate(episodes) if e.id})
        prepared = [(ep, entity) for ep, entity in everything if entity.id not in repeated]
        order = [repeated.get(entity.id, ep) for ep, entity in everything]
        if not prepared:
            return order
        store = self.engine.store
        wanted = sorted({m for ep, _ in prepared for m in ep.mentions})
        known = {e.id for e in store.get_entities(wanted, mention_ns)} if wanted else set()
        entities: dict[str, Entity] = {}
        relations: list[Relation] = []
        for ep, entity in prepared:
            ep.mentions = [m for m in ep.mentions if m in known]
            entity.properties["mentions"] = ep.mentions
            entities[entity.id] = entity
            for target in ep.mentions:
                relations.append(
                    Relation(type="MENTIONS", src=ep.id, dst=target, source=MEMORY_SOURCE, namespace=entity.namespace)
                )
        relations.extend(self._session_links(prepared, entities))
        found: list[Entity] = []
        facts: list[tuple[Relation, Entity]] = []
        knowledge = self.engine.knowledge if extract else None
        if knowledge is not None:
            link_ns = list(mention_ns) if mention_ns else [self.engine.settings.default_namespace]
            batch = knowledge.process([entity for _, entity in prepared], link_namespaces=link_ns)
            found = [e for e in batch.entities if e.id not in entities]
            new = {e.id for e in found}
            if introduced is not None:
                introduced.update(e.namespace for e in found)
                introduced.update(r.namespace for rs in batch.relations.values() for r in rs if r.type == "ACRONYM_OF")
            if created is not None:
                created.update(new)
            for ep, entity in prepared:
                extracted = batch.relations.get(entity.id, [])
                facts.extend((r, entity) for r in extracted if is_fact_type(r.type))  # placed on timelines below
                relations.extend(r for r in extracted if not is_fact_type(r.type))
                targets = {r.dst for r in extracted if r.type == "MENTIONS"}
                # `mentions` lists what the graph already knew; what the episode introduced is kept apart
                ep.mentions = sorted(set(ep.mentions) | (targets - new))
                entity.properties["mentions"] = ep.mentions
                entity.properties["introduces"] = sorted(targets & new)

        texts = {entity.id: embedding_text(entity) for _, entity in prepared}
        matrix = self.engine.embedder.embed(list(texts.values()))
        vectors = {eid: (content_hash(text), matrix[row]) for row, (eid, text) in enumerate(texts.items())}
        model = self.engine.embedder.model_name
        vectors.update(
            context_vectors(
                found,
                relations,
                {eid: v for eid, (_, v) in vectors.items()},
                lambda ids: store.get_vectors(ids, model),
                embedding_text,
            )
        )
        with self.write_lock:
            plan = self.facts.plan(facts, entities, found)
            store.write(
                WriteBatch(
                    entities=list(entities.values()) + found + list(plan.entities.values()),
                    relations=relations + list(plan.relations.values()),
                    vectors=vectors,
                    vector_model=model,
                    delete_relation_ids=plan.delete_relation_ids,
                )
            )
        return order

    def _session_links(self, prepared: list[tuple[Episode, Entity]], entities: dict[str, Entity]) -> list[Relation]:
        """IN_SESSION and NEXT relations; adds/updates each Session entity in `entities`.
        A session remembers its latest episode so that the NEXT chain continues across calls."""
        by_session: dict[str, list[tuple[Episode, Entity]]] = {}
        for ep, entity in prepared:
            if ep.session_id:
                sid = session_id_of(ep.agent_id, ep.session_id, entity.namespace)
                by_session.setdefault(sid, []).append((ep, entity))
        existing = self._stored_sessions(by_session)
        relations: list[Relation] = []
        for sid, members in by_session.items():
            # Stable: turns of one moment (a transcript's session shares one time) keep the order
            # they were given in; sorting them by id would put turn 10 before turn 2.
            members.sort(key=lambda pair: pair[0].created_at)
            first = members[0][0]
            ns = members[0][1].namespace
            before = existing.get(sid)
            last_id = before.properties.get("last_episode_id") if before else None
            last_at = str(before.properties.get("last_at") or "") if before else ""
            chain = [ep.id for ep, _ in members]
            if last_id and last_id not in chain and last_at <= (to_iso(first.created_at) or ""):
                chain.insert(0, str(last_id))
            for prev, nxt in itertools.pairwise(chain):
                relations.append(Relation(type="NEXT", src=prev, dst=nxt, source=MEMORY_SOURCE, namespace=ns))
            newest = members[-1][0]
            keep_last = before is not None and last_at > (to_iso(newest.created_at) or "")
            entities[sid] = Entity(
                id=sid,
                type="Session",
                name=f"session {first.session_id}",
                text=f"Session {first.session_id} of agent {first.agent_id}",
                properties={
                    "agent_id": first.agent_id,
                    "session_id": first.session_id,
                    "last_episode_id": last_id if keep_last else newest.id,
                    "last_at": last_at if keep_last else to_iso(newest.created_at),
                },
                source=MEMORY_SOURCE,
                namespace=ns,
            )
            for ep, entity in members:
                relations.append(
                    Relation(type="IN_SESSION", src=ep.id, dst=sid, source=MEMORY_SOURCE, namespace=entity.namespace)
                )
        return relations

    def _stored_sessions(self, by_session: dict[str, list[tuple[Episode, Entity]]]) -> dict[str, Entity]:
        """The stored Session of each session id, read in the session's own namespace only. A
        session outside the agent's namespace that was stored before ids carried their namespace
        is found under its old id (in the same namespace), so its episode chain continues."""
        by_namespace: dict[str, dict[str, str]] = {}  # namespace -> {id to read: session id}
        for sid, members in by_session.items():
            ep, entity = members[0]
            wanted = by_namespace.setdefault(entity.namespace, {})
            wanted[sid] = sid
            if ep.session_id and entity.namespace != agent_namespace(ep.agent_id):
                wanted.setdefault(_unscoped_session_id(ep.agent_id, ep.session_id), sid)
        found: dict[str, Entity] = {}
        for ns, wanted in by_namespace.items():
            for stored in self.engine.store.get_entities(sorted(wanted), [ns]):
                if stored.type != "Session":
                    continue
                sid = wanted[stored.id]
                if stored.id == sid or sid not in found:
                    found[sid] = stored
        return found

    def recall(
        self,
        query: str,
        agent_id: str,
        session_id: str | None = None,
        k: int = 10,
        namespaces: Sequence[str] | None = None,
        include_entities: bool = True,
        recency_half_life_days: float | Literal["settings"] | None = "settings",
        as_of: datetime | None = None,
        hops: int = 0,
    ) -> RecallResult:
        """Episodes of this agent relevant to `query` (by meaning, words, names and recency), with
        the entities each one mentions and the facts it states.

        By default only what holds now: an episode whose facts were all superseded (or that was
        corrected, merged into a duplicate, or outlived its time-to-live) is left out; with `as_of`,
        the episodes that held then, each saying when and by what it was superseded later.
        `recency_half_life_days` defaults to the `memory_recency_half_life_days` setting."""
        settings = self.engine.settings
        half_life = (
            settings.memory_recency_half_life_days if recency_half_life_days == "settings" else recency_half_life_days
        )
        ns = list(namespaces) if namespaces else [agent_namespace(agent_id)]
        ttl = settings.memory_ttl_days
        result = self.engine.search(
            query,
            k=min(k * (4 if session_id else 1) * (2 if ttl else 1), 500),
            hops=hops,
            namespaces=ns,
            types=["Episode"],
            as_of=as_of,
            token_budget=1_000_000,
            mmr_lambda=1.0,
            recency_half_life_days=half_life,
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
            if ttl and outlived(entity, ttl, as_of):
                continue
            recalled.append(
                RecalledEpisode(
                    episode=episode,
                    score=hit.score,
                    reasons=hit.reasons,
                    valid_to=retired_at(entity),
                    superseded_by=entity.properties.get(SUPERSEDED_BY_PROPERTY),
                    retired_reason=entity.properties.get(RETIRED_REASON),
                )
            )
            if len(recalled) >= k:
                break
        self._attach_facts(recalled, stored, as_of)
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

    def _attach_facts(self, recalled: list[RecalledEpisode], stored: dict[str, Entity], as_of: datetime | None) -> None:
        """Each recalled episode's facts, as they stand at `as_of` (now when None)."""
        facts = facts_of_episodes(self.engine.store, [stored[r.episode.id] for r in recalled])
        ends = sorted({i for rs in facts.values() for r in rs for i in (r.src, r.dst)})
        names = {e.id: e.name for e in self.engine.store.get_entities(ends)} if ends else {}
        for r in recalled:
            r.facts = [fact_view(f, names, as_of) for f in facts.get(r.episode.id, [])]
            note = retirement_note(stored[r.episode.id].properties)
            if note is not None:
                r.reasons.append(note)

    def forget(self, agent_id: str, **kwargs: Any) -> Any:
        """Retire an agent's memories, or erase them with `purge=True` (`aesoperator.engine.forget`).

        Args:
            agent_id: the agent (its namespace is meant unless `namespace` is given).
            **kwargs: `ids`, `query` or `entity` (exactly one), and `namespace`, `purge`, `dry_run`.

        Returns:
            The `ForgetReport`.
        """
        return self.engine.forget(agent_id, **kwargs)

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

    # -- keeping memory true: corrections, history, hygiene ----------------------------------------
    def update(
        self, episode_id: str, new_content: str, namespaces: Sequence[str] | None = None, at: datetime | None = None
    ) -> CorrectionResult:
        """Correct an episode: store `new_content` as its new version, which supersedes it from
        `at` (now) on; the old version and its history are kept (`memory_revisions`)."""
        return correct_episode(self, episode_id, new_content, namespaces, at)

    def history(self, target: str, namespaces: Sequence[str] | None = None) -> MemoryHistory:
        """Every version of an episode, a fact, or everything stated about an entity (name or id),
        with times and evidence."""
        return memory_history(self.engine.store, target, namespaces)

    def compact(self, agent_id: str | None = None, namespace: str | None = None, apply: bool = False) -> CompactReport:
        """Find duplicate episodes (merged into the earliest, which counts them) and episodes past
        their time-to-live (retired) in an agent's namespace; change nothing unless `apply`."""
        if namespace is None and agent_id is None:
            raise SchemaError("compact needs an agent id or a namespace")
        ns = namespace or agent_namespace(str(agent_id))
        settings = self.engine.settings
        model = self.engine.embedder.model_name if settings.memory_duplicate_similarity is not None else None
        with self.write_lock:
            report, writes = plan_compaction(
                self.engine.store, [ns], settings.memory_ttl_days, settings.memory_duplicate_similarity, model, agent_id
            )
            if apply and writes:
                self.engine.store.upsert(writes)
                report.applied = True
        return report
