"""The sources view: each source the caller may see with its last sync, counts and quarantined
items, and re-syncs started from the page, run in the background one per source.

What a caller may see is decided as for the MCP `sources` tool (`serve/tools_engine.py`): a
source shows only to callers that read the namespaces of all its data. Re-syncing needs the
scope `source:<name>` and write access to the namespace the source writes into.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from aesoperator.context import ContextEngine
from aesoperator.errors import PermissionDenied, SchemaError
from aesoperator.explore.models import ResyncJob, SourceRow, SourcesOut
from aesoperator.graph_schema.models import to_iso, utcnow
from aesoperator.ingest.mcp_ingest import record_run
from aesoperator.ingest.registry import source_status
from aesoperator.security.principal import Principal
from aesoperator.serve.tools_engine import Runtime, _registered, _source_names, _source_out, _source_readable

QUARANTINE_ROWS = 50


def _namespace_of(engine: ContextEngine, runtime: Runtime, name: str) -> str | None:
    """The namespace a source writes into: its declaration's, else that of an entity it brought in."""
    entry = _registered(runtime).get(name)
    if entry is not None:
        return str(entry.definition.namespace)
    for state in engine.store.source_items(name).values():
        if state.entity_ids:
            found = engine.get_entities(state.entity_ids[:1])
            if found:
                return found[0].namespace
    return None


def _folder(identity: str | None) -> Path | None:
    """The local folder a source was ingested from (its identity is the folder's file:// URI)."""
    if not identity or not identity.startswith("file://"):
        return None
    return Path(unquote(urlsplit(identity).path))


class ResyncJobs:
    """Re-syncs running in background threads (one per source at a time), kept for the page to show."""

    def __init__(self, engine: ContextEngine) -> None:
        self.engine = engine
        self._jobs: dict[str, ResyncJob] = {}
        self._lock = threading.Lock()

    def latest(self, source: str) -> ResyncJob | None:
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.source == source]
        return max(jobs, key=lambda j: j.started_at) if jobs else None

    def start(self, principal: Principal, source: str) -> ResyncJob:
        runtime = Runtime(self.engine, lambda: principal)
        allowed, why = resync_allowed(self.engine, runtime, principal, source)
        if not allowed:
            raise PermissionDenied(why)
        with self._lock:
            if any(j.source == source and j.state == "running" for j in self._jobs.values()):
                raise SchemaError(f"source {source!r} is being re-synced already; wait for it to finish")
            job = ResyncJob(id=uuid.uuid4().hex[:12], source=source, state="running", started_at=utcnow())
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, runtime), name=f"aesop-resync-{source}", daemon=True).start()
        return job

    def _run(self, job: ResyncJob, runtime: Runtime) -> None:
        try:
            if job.source in _registered(runtime):
                report = self.engine.ingest_source(job.source)
            else:
                status = source_status(self.engine.store, job.source)
                folder = _folder(status.get("identity"))
                if folder is None:
                    raise SchemaError(f"source {job.source!r} is neither registered nor a local folder")
                namespace = _namespace_of(self.engine, runtime, job.source)
                report = self.engine.ingest_path(folder, name=job.source, namespace=namespace)
                # a folder ingest keeps no run record of its own: keep one so the view shows the last sync
                now = to_iso(utcnow())
                record_run(
                    self.engine.store,
                    job.source,
                    {
                        "status": "ok",
                        "mode": "folder",
                        "started_at": to_iso(job.started_at),
                        "finished_at": now,
                        "last_ok_at": now,
                        "entities_written": report.entities_written,
                        "relations_written": report.relations_written,
                    },
                )
            message = f"{report.entities_written} entities, {report.relations_written} relations written"
            state = "ok"
        except Exception as exc:  # the page shows why; the server keeps running
            message, state = f"{type(exc).__name__}: {exc}"[:500], "failed"
        with self._lock:
            job.state = state  # type: ignore[assignment]
            job.message = message
            job.finished_at = utcnow()


def resync_allowed(engine: ContextEngine, runtime: Runtime, principal: Principal, source: str) -> tuple[bool, str]:
    """May `principal` re-sync `source`, and if not, why."""
    if not principal.can_see_source(source):
        return False, f"re-syncing {source!r} needs the scope source:{source}"
    namespace = _namespace_of(engine, runtime, source)
    if namespace is None:
        return False, f"source {source!r} has no data and no declaration to re-sync from"
    try:
        principal.require_write(namespace)
    except PermissionDenied:
        return False, f"re-syncing {source!r} needs the scope write:{namespace}"
    if source not in _registered(runtime) and _folder(source_status(engine.store, source).get("identity")) is None:
        return False, f"source {source!r} is neither registered nor a local folder"
    return True, ""


def list_sources(engine: ContextEngine, principal: Principal, jobs: ResyncJobs) -> SourcesOut:
    """Every source the caller may see (as the MCP `sources` tool decides), with its quarantine."""
    runtime = Runtime(engine, lambda: principal)
    names, _ = _source_names(runtime, principal, None)
    try:
        readable = principal.read_namespaces()
    except PermissionDenied:
        readable = []
    rows: list[SourceRow] = []
    for name in names:
        if not principal.can_see_source(name) or not _source_readable(runtime, name, readable):
            continue
        base = _source_out(runtime, name)
        if base.namespace is None:
            base.namespace = _namespace_of(engine, runtime, name)
        status = source_status(engine.store, name)
        allowed, why = resync_allowed(engine, runtime, principal, name)
        rows.append(
            SourceRow(
                **base.model_dump(),
                quarantined_items=list(status.get("quarantined", []))[:QUARANTINE_ROWS],
                can_resync=allowed,
                resync_note=why,
                job=jobs.latest(name),
            )
        )
    return SourcesOut(sources=rows)
