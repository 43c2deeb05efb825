"""`EngineServer`: the local context engine reachable under a name, like any other server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aesoperator.api.errors import UnknownEventType, UnknownOperation
from aesoperator.api.server import DEFAULT_RATE_LIMIT, ENGINE
from aesoperator.api.subscriptions import Event, Subscription
from aesoperator.context import ContextEngine
from aesoperator.errors import AesopError, PermissionDenied, SchemaError
from aesoperator.graph_schema.ids import entity_id
from aesoperator.graph_schema.models import Entity, Relation, from_iso
from aesoperator.security.failures import classify
from aesoperator.security.guard import CallGuard
from aesoperator.security.principal import Principal

ENGINE_EVENTS = ("entity.updated", "entity.deleted", "relation.updated", "relation.deleted", "episode.created")
ENGINE_OPERATIONS = ("remember", "upsert_entities", "delete_entities")


class EngineServer:
    """The local context engine under a name: queries are hybrid searches, updates are memory and
    entity writes (in `write_namespace`), events come from the store's change log. Every call is
    audited in the engine's data dir."""

    def __init__(
        self,
        engine: ContextEngine | None = None,
        name: str = ENGINE,
        *,
        namespaces: Sequence[str] | None = None,
        write_namespace: str | None = None,
        read_only: bool = False,
        rate_limit: str | None = DEFAULT_RATE_LIMIT,
    ) -> None:
        self.name = name
        self._engine = engine
        self._owned = engine is None
        self.namespaces = list(namespaces) if namespaces is not None else None
        self.write_namespace = write_namespace
        self.read_only = read_only
        self.rate_limit = rate_limit
        self._guard: Any = None
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return ENGINE

    @property
    def engine(self) -> ContextEngine:
        with self._lock:
            if self._engine is None:
                self._engine = ContextEngine.open()
            return self._engine

    def _audited(self, operation: str, arguments: Any, work: Callable[[], Any]) -> Any:
        if self._guard is None:
            self._guard = CallGuard.for_data_dir(self.engine.settings.data_dir, self.rate_limit)
        principal = Principal.full_access("api", "stdio")
        started = time.perf_counter()
        try:
            self._guard.admit(principal, operation)
            result = work()
        except Exception as exc:
            decision = classify(exc, operation).decision
            self._guard.record(principal, operation, arguments, decision, 0, (time.perf_counter() - started) * 1000)
            raise
        count = len(result) if isinstance(result, list) else 1
        self._guard.record(principal, operation, arguments, "allow", count, (time.perf_counter() - started) * 1000)
        return result

    def query(self, query: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        p = dict(params or {})
        allowed = {"k", "hops", "types", "namespaces", "as_of", "token_budget"}
        unknown = sorted(set(p) - allowed)
        if unknown:
            raise SchemaError(f"engine query: unknown parameters {unknown}; use {sorted(allowed)}")
        namespaces = p.pop("namespaces", None)
        if self.namespaces is not None:
            if namespaces is not None and set(namespaces) - set(self.namespaces):
                raise PermissionDenied(f"server {self.name!r} reads only namespaces {self.namespaces}")
            namespaces = namespaces or self.namespaces
        if isinstance(p.get("as_of"), str):
            p["as_of"] = from_iso(p["as_of"])

        def run() -> dict[str, Any]:
            result = self.engine.search(query, namespaces=namespaces, **p)
            return {
                "server": self.name,
                "query": query,
                "hits": [h.model_dump(mode="json") for h in result.hits],
                "triples": [t.model_dump(mode="json") for t in result.triples],
                "context": result.context_text(),
                "tokens_used": result.tokens_used,
            }

        found: dict[str, Any] = self._audited("search", {"query": query, **p}, run)
        return found

    def update(self, operation: str, data: Mapping[str, Any]) -> None:
        if operation not in ENGINE_OPERATIONS:
            raise UnknownOperation(
                f"server {self.name!r} has no operation {operation!r}; use {list(ENGINE_OPERATIONS)}"
            )
        if self.read_only:
            raise PermissionDenied(f"server {self.name!r} is read-only")
        d = dict(data)
        ns = d.pop("namespace", None) or self.write_namespace
        if self.write_namespace is not None and ns != self.write_namespace:
            raise PermissionDenied(f"server {self.name!r} writes only namespace {self.write_namespace!r}")
        if operation == "remember":
            content = d.pop("content", None)
            agent = d.pop("agent_id", None)
            if not content or not agent:
                raise SchemaError("remember needs content and agent_id")
            known = {"session_id", "task_id", "metadata", "mentions"}
            if set(d) - known:
                raise SchemaError(f"remember: unknown fields {sorted(set(d) - known)}")
            self._audited(
                "remember", {"agent_id": agent}, lambda: self.engine.remember(content, agent, namespace=ns, **d)
            )
        elif operation == "upsert_entities":
            entities, relations = _api_graph(d, ns or self.engine.settings.default_namespace)
            self._audited(
                "upsert_entities",
                {"entities": len(entities), "relations": len(relations)},
                lambda: self.engine.upsert(entities, relations),
            )
        else:
            ids = list(d.get("ids") or [])
            if not ids:
                raise SchemaError("delete_entities needs ids")
            found = self.engine.get_entities(ids, namespaces=[ns] if ns else None)
            if ns is not None and len(found) != len(set(ids)):
                raise PermissionDenied(f"some ids are not in namespace {ns!r}")
            self._audited("delete_entities", {"ids": ids}, lambda: self.engine.delete(ids))

    def subscribe(self, event_type: str, handler: Callable[[Event], Any], poll_seconds: float = 0.2) -> Subscription:
        if event_type not in ENGINE_EVENTS:
            raise UnknownEventType(f"server {self.name!r} delivers {list(ENGINE_EVENTS)}, not {event_type!r}")
        engine = self.engine
        sub = Subscription(self.name, event_type)
        seq = engine.store.last_seq()
        kind, _, what = event_type.partition(".")
        op = "delete" if what == "deleted" else "upsert"

        def run() -> None:
            nonlocal seq
            sub.ready.set()
            while not sub._stop.wait(poll_seconds):
                try:
                    changes = engine.store.changes_since(seq, 10_000)
                except Exception as exc:  # the store may be busy: try again
                    sub.errors.append(str(exc))
                    continue
                if not changes:
                    continue
                seq = changes[-1].seq
                picked = [
                    c
                    for c in changes
                    if c.op == op
                    and c.kind == ("entity" if kind in ("entity", "episode") else "relation")
                    and (self.namespaces is None or c.namespace in self.namespaces)
                ]
                if kind in ("entity", "episode") and picked:
                    types = {e.id: e.type for e in engine.store.get_entities([c.id for c in picked])}
                    picked = [
                        c
                        for c in picked
                        if (types.get(c.id) == "Episode") == (kind == "episode")
                        or (op == "delete" and kind == "entity")
                    ]
                for c in picked:
                    sub._deliver(
                        handler, Event(type=event_type, server=self.name, id=c.id, namespace=c.namespace, seq=c.seq)
                    )

        thread = threading.Thread(target=run, name=f"aesop-subscribe-{self.name}", daemon=True)
        thread.start()
        return sub

    def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        out: dict[str, Any] = {"server": self.name, "kind": ENGINE, "ok": False, "error": None}
        try:
            stats = self.engine.stats()
            out.update(ok=True, entities=stats.entities, relations=stats.relations, backend=stats.backend)
        except AesopError as exc:
            out["error"] = str(exc)
        out["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return out

    def close(self) -> None:
        if self._guard is not None:
            self._guard.close()
            self._guard = None
        if self._owned and self._engine is not None:
            self._engine.close()
            self._engine = None


def _api_graph(data: Mapping[str, Any], namespace: str) -> tuple[list[Any], list[Any]]:
    entities = []
    for raw in data.get("entities") or []:
        if not isinstance(raw, Mapping) or not raw.get("type") or not raw.get("name"):
            raise SchemaError("each entity needs type and name (and text)")
        eid = raw.get("id") or entity_id("api", str(raw["type"]).lower(), str(raw["name"]))
        entities.append(
            Entity(
                id=eid,
                type=raw["type"],
                name=raw["name"],
                text=str(raw.get("text") or raw["name"]),
                properties=dict(raw.get("properties") or {}),
                source="api",
                namespace=namespace,
            )
        )
    relations = []
    for raw in data.get("relations") or []:
        relations.append(Relation(type=raw["type"], src=raw["src"], dst=raw["dst"], source="api", namespace=namespace))
    if not entities and not relations:
        raise SchemaError("upsert_entities needs entities (and optionally relations)")
    return entities, relations
