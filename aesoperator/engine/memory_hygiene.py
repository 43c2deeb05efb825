"""Memory hygiene: repeated episodes counted instead of piling up, episodes that outlive their
time-to-live left out of recall, and `compact`, which reports (and with `apply` carries out) both
over a namespace.

Two episodes are duplicates when they belong to one session, have one speaker and say the same
thing up to case, spacing and end punctuation (`normalized_content`); with a similarity setting,
`compact` also merges episodes of a session whose embeddings are that close. The episode kept is
the earliest; it counts the others (`count`, `seen_at`), which are retired with `retired_reason`
"duplicate" and `superseded_by` naming it, so history keeps them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np
from pydantic import BaseModel, Field

from aesoperator.engine.memory_facts import RETIRED_REASON
from aesoperator.engine.stores.base import GraphStore
from aesoperator.graph_schema.facts import SUPERSEDED_AT_PROPERTY, SUPERSEDED_BY_PROPERTY
from aesoperator.graph_schema.models import Entity, to_iso, utcnow

DUPLICATE = "duplicate"
EXPIRED = "expired"
COUNT_PROPERTY = "count"
SEEN_AT_PROPERTY = "seen_at"
MAX_SEEN_AT = 50
_SPACE = re.compile(r"\s+")
_END_PUNCT = re.compile(r"[\s.!?,;:…]+$")


def normalized_content(text: str) -> str:
    """What two duplicate episodes share: the text case-folded, spaces collapsed, end punctuation off."""
    folded = _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return _END_PUNCT.sub("", folded)


def duplicate_key(entity: Entity) -> tuple[str, str, str, str]:
    """(namespace, session, speaker, normalised content) of an episode entity."""
    props = entity.properties
    meta = props.get("metadata") if isinstance(props.get("metadata"), dict) else {}
    speaker = str((meta or {}).get("speaker") or "")
    return (entity.namespace, str(props.get("session_id") or ""), speaker, normalized_content(entity.text))


def is_retired(entity: Entity) -> bool:
    return entity.properties.get(RETIRED_REASON) is not None


def count_repeat(survivor: Entity, seen: datetime | None) -> Entity:
    """`survivor` counting one more occurrence, seen at `seen`."""
    props = dict(survivor.properties)
    props[COUNT_PROPERTY] = int(props.get(COUNT_PROPERTY) or 1) + 1
    stamps = [s for s in props.get(SEEN_AT_PROPERTY) or [] if isinstance(s, str)]
    props[SEEN_AT_PROPERTY] = [*stamps, to_iso(seen or utcnow())][-MAX_SEEN_AT:]
    return survivor.model_copy(update={"properties": props})


def _name_variants(name: str) -> set[str]:
    """The names a repeat of a short episode may have been stored under: with or without its end
    punctuation (case and the rest of the text are compared after the lookup)."""
    base = _END_PUNCT.sub("", " ".join(name.split()))
    return {name, base, *(base + end for end in (".", "!", "?", "..."))}


def stored_duplicates(store: GraphStore, episodes: Sequence[Entity]) -> dict[str, Entity]:
    """For each new episode entity that repeats a stored, unretired episode of its session: the
    stored one (new id -> stored entity). Looked up by name (an episode's name holds the start of
    its content), so the check costs one indexed read."""
    wanted = [e for e in episodes if e.properties.get("session_id")]
    if not wanted:
        return {}
    spaces = sorted({e.namespace for e in wanted})
    names = {variant for e in wanted for variant in _name_variants(e.name)}  # names are stored single-spaced
    found = store.name_lookup(sorted(names), namespaces=spaces, types=["Episode"])
    ids = sorted({i for hits in found.values() for i in hits} - {e.id for e in wanted})
    by_key: dict[tuple[str, str, str, str], Entity] = {}
    for stored in sorted(store.get_entities(ids, spaces), key=lambda e: (to_iso(e.valid_from) or "", e.id)):
        if not is_retired(stored):
            by_key.setdefault(duplicate_key(stored), stored)
    out: dict[str, Entity] = {}
    for entity in wanted:
        match = by_key.get(duplicate_key(entity))
        if match is not None:
            out[entity.id] = match
    return out


def ttl_days(settings_ttl: Mapping[str, float], namespace: str, entity_type: str = "Episode") -> float | None:
    """The time-to-live that applies to an item: the shortest of its namespace's and its type's."""
    found = [days for key, days in settings_ttl.items() if key in (namespace, entity_type)]
    return min(found) if found else None


def outlived(entity: Entity, settings_ttl: Mapping[str, float], at: datetime | None = None) -> bool:
    """Whether an episode is older than its time-to-live at `at` (now when None)."""
    days = ttl_days(settings_ttl, entity.namespace, entity.type)
    born = entity.valid_from or entity.created_at
    if days is None or born is None:
        return False
    return born + timedelta(days=days) <= (at or utcnow())


class DuplicateGroup(BaseModel):
    keep: str = Field(description="The episode kept (the earliest).")
    merged: list[str] = Field(description="Episodes merged into it.")
    count: int = Field(description="How many times the content occurs in all.")
    reason: str = Field(description="'same content' or 'similar embedding (cosine >= x)'.")
    content: str = Field(description="The start of the kept episode's content.")


class CompactReport(BaseModel):
    """What `compact` found, and whether it was carried out."""

    namespaces: list[str]
    episodes: int = Field(description="Live episodes read.")
    duplicates: list[DuplicateGroup] = Field(default_factory=list)
    expired: list[str] = Field(default_factory=list, description="Episodes past their time-to-live.")
    applied: bool = False


def _duplicate_groups(
    episodes: Sequence[Entity], vectors: Mapping[str, np.ndarray], similarity: float | None
) -> list[tuple[list[Entity], str]]:
    """Groups of duplicates (earliest first), exact ones by key, then near ones by cosine."""
    by_key: dict[tuple[str, str, str, str], list[Entity]] = {}
    for e in sorted(episodes, key=lambda x: (to_iso(x.valid_from) or "", x.id)):
        by_key.setdefault(duplicate_key(e), []).append(e)
    groups = [(members, "same content") for members in by_key.values()]
    if similarity is None:
        return [g for g in groups if len(g[0]) > 1]
    # near duplicates: per session and speaker, join groups whose first members are that similar
    merged: list[tuple[list[Entity], str]] = []
    by_session: dict[tuple[str, str, str], list[list[Entity]]] = {}
    for members, _ in groups:
        key = duplicate_key(members[0])
        by_session.setdefault(key[:3], []).append(members)
    for session_groups in by_session.values():
        taken = [False] * len(session_groups)
        for i, group in enumerate(session_groups):
            if taken[i]:
                continue
            joined, near = list(group), False
            head = vectors.get(group[0].id)
            for j in range(i + 1, len(session_groups)):
                other = vectors.get(session_groups[j][0].id)
                if taken[j] or head is None or other is None:
                    continue
                if float(np.dot(head, other)) >= similarity:
                    joined.extend(session_groups[j])
                    taken[j] = near = True
            joined.sort(key=lambda x: (to_iso(x.valid_from) or "", x.id))
            merged.append((joined, f"similar embedding (cosine >= {similarity})" if near else "same content"))
    return [g for g in merged if len(g[0]) > 1]


def plan_compaction(
    store: GraphStore,
    namespaces: Sequence[str],
    settings_ttl: Mapping[str, float],
    similarity: float | None,
    vector_model: str | None,
    agent_id: str | None = None,
) -> tuple[CompactReport, list[Entity]]:
    """What compacting `namespaces` would do, and the episode entities it would write."""
    live: list[Entity] = []
    for batch in store.iter_entities(namespaces=list(namespaces), types=["Episode"]):
        live.extend(
            e for e in batch if not is_retired(e) and (agent_id is None or e.properties.get("agent_id") == agent_id)
        )
    now = utcnow()
    report = CompactReport(namespaces=list(namespaces), episodes=len(live))
    writes: dict[str, Entity] = {}
    expired = [e for e in live if outlived(e, settings_ttl, now)]
    for e in expired:
        report.expired.append(e.id)
        props = {**e.properties, RETIRED_REASON: EXPIRED, SUPERSEDED_AT_PROPERTY: to_iso(now)}
        writes[e.id] = e.model_copy(update={"properties": props, "valid_to": now})
    gone = {e.id for e in expired}
    remaining = [e for e in live if e.id not in gone]
    vectors: dict[str, np.ndarray] = {}
    if similarity is not None and vector_model is not None and remaining:
        raw = store.get_vectors([e.id for e in remaining], vector_model)
        vectors = {i: v / (np.linalg.norm(v) or 1.0) for i, v in raw.items()}
    for members, reason in _duplicate_groups(remaining, vectors, similarity):
        keep, rest = members[0], members[1:]
        count = sum(int(m.properties.get(COUNT_PROPERTY) or 1) for m in members)
        report.duplicates.append(
            DuplicateGroup(
                keep=keep.id, merged=[m.id for m in rest], count=count, reason=reason, content=keep.text[:120]
            )
        )
        stamps = sorted(
            {to_iso(m.valid_from) or "" for m in rest}
            | {s for m in members for s in m.properties.get(SEEN_AT_PROPERTY) or [] if isinstance(s, str)}
        )
        writes[keep.id] = keep.model_copy(
            update={"properties": {**keep.properties, COUNT_PROPERTY: count, SEEN_AT_PROPERTY: stamps[-MAX_SEEN_AT:]}}
        )
        for m in rest:
            props = {**m.properties, RETIRED_REASON: DUPLICATE, SUPERSEDED_BY_PROPERTY: keep.id}
            props[SUPERSEDED_AT_PROPERTY] = to_iso(now)
            writes[m.id] = m.model_copy(update={"properties": props, "valid_to": now})
    return report, list(writes.values())


__all__ = [
    "DUPLICATE",
    "EXPIRED",
    "CompactReport",
    "DuplicateGroup",
    "count_repeat",
    "duplicate_key",
    "is_retired",
    "normalized_content",
    "outlived",
    "plan_compaction",
    "stored_duplicates",
    "ttl_days",
]
