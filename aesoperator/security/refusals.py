"""Refused calls and failed authentications, counted and written to the audit log in aggregate.

A refusal is cheap to provoke: a client over its rate limit, or one sending bad tokens, can make
thousands a second. Writing each as its own durable record (a write, an fsync and a checkpoint
rewrite, under the log's lock) would let such a client fill the disk and slow every other caller.
So refusals are only counted here, under a lock held for a dictionary update, and a background
thread writes one record per (principal, kind, tool, decision) every `interval` seconds with the
number of refusals (`count`) and when the first one happened (`since`).

At most `max_keys` distinct keys are kept per interval; the rest are counted under an overflow
key per kind and decision (principal and tool "*"), so many distinct bad tokens or made-up tool
names still give a bounded number of records.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from aesoperator.security.audit import AuditLog

log = logging.getLogger("aesoperator.security.refusals")

OVERFLOW = "*"
RefusalKey = tuple[str, str, str, str]  # principal, kind, tool, decision


@dataclass
class _Tally:
    count: int
    since: datetime
    last: datetime


class RefusalRecorder:
    """Counts refusals and writes them to `audit` in aggregate (see the module docstring)."""

    def __init__(self, audit: AuditLog, *, interval: float = 1.0, max_keys: int = 32) -> None:
        self.audit = audit
        self.interval = interval
        self.max_keys = max(1, max_keys)
        self._lock = threading.Lock()
        self._pending: dict[RefusalKey, _Tally] = {}
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()  # one flush at a time keeps records in order

    def add(self, principal: str, kind: str, tool: str, decision: str) -> None:
        """Count one refusal (never blocks on I/O)."""
        now = datetime.now(UTC)
        key: RefusalKey = (principal, kind, tool, decision)
        with self._lock:
            tally = self._pending.get(key)
            if tally is None and len(self._pending) >= self.max_keys:
                key = (OVERFLOW, kind, OVERFLOW, decision)  # kinds are few; principals and tools are not
                tally = self._pending.get(key)
            if tally is None:
                self._pending[key] = _Tally(1, now, now)
            else:
                tally.count += 1
                tally.last = now
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="aesop-audit-refusals", daemon=True)
                self._thread.start()

    def pending(self) -> int:
        """Refusals counted but not yet written."""
        with self._lock:
            return sum(t.count for t in self._pending.values())

    def flush(self) -> int:
        """Write the counted refusals now; returns how many records were written."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            written = 0
            for (principal, kind, tool, decision), tally in batch.items():
                try:
                    self.audit.append(
                        principal=principal,
                        kind=kind,
                        tool=tool,
                        arguments=None,
                        decision=decision,
                        now=tally.last,
                        count=tally.count,
                        since=tally.since,
                    )
                    written += 1
                except Exception as exc:  # the log is unwritable: keep the counts for the next try
                    log.error("could not record %d refused call(s) in the audit log: %s", tally.count, exc)
                    self._restore((principal, kind, tool, decision), tally)
            return written

    def _restore(self, key: RefusalKey, tally: _Tally) -> None:
        with self._lock:
            current = self._pending.get(key)
            if current is None:
                self._pending[key] = tally
            else:
                current.count += tally.count
                current.since = min(current.since, tally.since)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stop the background writer and write what is still counted."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None:
            thread.join(timeout=10)
        self.flush()
