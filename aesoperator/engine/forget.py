"""Forgetting memories: retire them, or purge them (the right to erasure).

What is selected is described in `forget_plan.py` (by id, by query, by entity; one namespace).

**Retire** (the default) is one store transaction: each forgotten episode (and the named entity,
when it lives in the namespace) gets `valid_to` = now and a `retired_at` property; its relations
and the facts it is the evidence of are expired. Recall and search leave retired memories out;
asked `as_of` a moment before the forget they find them as they were, and the store keeps them.

**Purge** erases them. In order, so that a process killed at any point leaves the memory either
whole or gone, and nothing of it behind once an engine opens the data directory again:

1. the extraction cache's rows for the erased texts are deleted and its file is vacuumed (a
   derived cache: losing rows of a memory that then stays costs a re-extraction, nothing else);
2. one erasing store transaction (`WriteBatch.erase`) deletes the episodes, the entities only
   they mentioned, their relations, vectors and history, and rewrites the change-log rows that
   named them; before it commits the memory is whole, after it the memory is gone;
3. the derived indexes are rebuilt from the store and saved (new files replace every older
   generation) and every other saved index under `data_dir/index` is deleted;
4. the store scrubs its files (`scrub_erased`: full-text index rebuilt, VACUUM, WAL truncated on
   the embedded store) and clears its pending mark.

A kill after step 2 leaves the mark set: the next `EngineCore.open` finishes steps 3 and 4
(`complete_pending_erasure`), and every index replica that replays the change log meets its
erasure row and rebuilds from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from aesoperator.engine.forget_plan import ForgetPlan, ForgetPlanner
from aesoperator.engine.memory import agent_namespace
from aesoperator.engine.search import RETIRED_AT
from aesoperator.engine.stores.base import WriteBatch
from aesoperator.errors import SchemaError, StoreError
from aesoperator.graph_schema.models import Entity, to_iso, utcnow

if TYPE_CHECKING:
    from aesoperator.engine.context import EngineCore

log = logging.getLogger(__name__)

ForgetMode = Literal["retire", "purge"]


class ForgetReport(BaseModel):
    """What a forget did (or, with `dry_run`, would do)."""

    namespace: str
    mode: ForgetMode
    dry_run: bool = False
    at: datetime
    episodes: list[str] = Field(default_factory=list, description="Ids of the memories forgotten.")
    entities: list[str] = Field(
        default_factory=list,
        description="Other entities retired or erased: the named entity, and on purge those only the "
        "forgotten memories mentioned and sessions left empty.",
    )
    relations: int = Field(default=0, description="Relations expired (retire) or deleted (purge).")
    unscrubbed: str | None = Field(
        default=None,
        description="Why the store's files could not be scrubbed yet after a purge (the memories are gone "
        "from the store; the scrub runs again at the next open or purge), or None.",
    )

    @property
    def count(self) -> int:
        """How many entities (memories included) were forgotten."""
        return len(self.episodes) + len(self.entities)


def forget(
    engine: EngineCore,
    agent_id: str | None = None,
    *,
    ids: Sequence[str] = (),
    query: str | None = None,
    entity: str | None = None,
    namespace: str | None = None,
    purge: bool = False,
    dry_run: bool = False,
    entity_namespaces: Sequence[str] | None = None,
) -> ForgetReport:
    """Retire (or, with `purge`, erase) memories of one namespace; see the module docstring.

    Args:
        engine: the engine.
        agent_id: the agent whose namespace (`agent:<id>`) is meant when `namespace` is not given.
        ids: forget these episodes.
        query: forget the episodes whose content contains this text (case-insensitive).
        entity: forget what is about this entity (a name or an id).
        namespace: the memory namespace (default: the agent's).
        purge: erase instead of retiring.
        dry_run: only report what would be forgotten.
        entity_namespaces: where `entity` may be looked up besides `namespace` (None: everywhere).

    Returns:
        The report.

    Raises:
        SchemaError: not exactly one of ids, query and entity is given, an id is not an episode
            of the namespace, or no entity has that name.
        StoreError: the store failed (nothing was changed by the failed step).
    """
    chosen = [bool(ids), query is not None, entity is not None]
    if sum(chosen) != 1:
        raise SchemaError("forget needs exactly one of: episode ids, a query, or an entity (a name or an id)")
    if namespace is None and not agent_id:
        raise SchemaError("forget needs the agent (agent_id) or the memory namespace to act in")
    ns = namespace or agent_namespace(str(agent_id))
    planner = ForgetPlanner(engine.store, ns)
    targets: list[Entity] = []
    if ids:
        episodes = planner.by_ids(ids)
    elif query is not None:
        episodes = planner.by_query(query)
    else:
        targets = planner.resolve_entity(str(entity), entity_namespaces)
        episodes = planner.by_entity(targets)
    plan = planner.plan(episodes, targets, purge)
    now = utcnow()
    report = ForgetReport(
        namespace=ns,
        mode="purge" if purge else "retire",
        dry_run=dry_run,
        at=now,
        episodes=sorted(plan.episodes),
        entities=sorted({*plan.entities, *plan.empty_sessions}),
        relations=len(plan.relations),
    )
    if dry_run or not (plan.episodes or plan.entities or plan.relations):
        return report
    if purge:
        report.unscrubbed = _purge(engine, plan)
    else:
        _retire(engine, plan, now)
    return report


def _retire(engine: EngineCore, plan: ForgetPlan, now: datetime) -> None:
    stamp = to_iso(now)
    retired = [
        e.model_copy(update={"valid_to": now, "properties": {**e.properties, RETIRED_AT: stamp}})
        for e in [*plan.episodes.values(), *plan.entities.values()]
    ]
    batch = WriteBatch(
        entities=[*retired, *plan.sessions],
        relations=plan.next_links,
        expire_relation_ids=sorted(plan.relations),
    )
    engine.store.write(batch)  # relations expire at the write's own time, a moment after `now`


def _purge(engine: EngineCore, plan: ForgetPlan) -> str | None:
    """Erase what `plan` names; returns why the files are not scrubbed yet, or None."""
    erased = [*plan.episodes.values(), *plan.entities.values()]
    engine._erase_caches(erased)
    engine.store.write(
        WriteBatch(
            entities=[*plan.sessions, *plan.rewritten],
            relations=plan.next_links,
            delete_entity_ids=sorted({*plan.episodes, *plan.entities, *plan.empty_sessions}),
            delete_relation_ids=sorted(plan.relations),
            erase=True,
        )
    )
    try:
        complete_pending_erasure(engine, caches=False)
    except StoreError as exc:  # e.g. another process reading: the WAL cannot be truncated yet
        log.warning("erased, but the files are not scrubbed yet: %s", exc)
        return str(exc)
    return None


def complete_pending_erasure(engine: EngineCore, caches: bool = True) -> bool:
    """Finish an erasure whose store transaction committed: renew the derived indexes (and, with
    `caches`, scrub the caches' files), then scrub the store's files. Returns whether one was pending."""
    if not engine.store.erasure_pending():
        return False
    if caches:
        engine._erase_caches([])
    engine._renew_indexes()
    engine.store.scrub_erased()
    return True
