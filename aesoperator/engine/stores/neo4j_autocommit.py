"""Reads as auto-commit statements: one round trip per statement instead of a managed
transaction's begin, run and commit.

`Neo4jGraphStore` reads through `read_with_retries`: the read function gets the session itself,
so each of its statements is sent as an auto-commit query (with its results pulled in the same
exchange). A managed read transaction gives no stronger guarantee between its statements (Neo4j
reads are read-committed), and the driver's retry of transient failures is kept here: the whole
read is run again, as `execute_read` would, until it succeeds, fails for good, or `max_retry_time`
has passed. Reads change nothing, so running one again is safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from neo4j import Driver, Result
from neo4j import exceptions as neo4j_errors

T = TypeVar("T")

# The first pause between attempts, doubled each time up to the last one (as the driver does).
_FIRST_PAUSE_S = 0.05
_MAX_PAUSE_S = 2.0


class QueryRunner(Protocol):
    """What a read function needs of a session or transaction: run one Cypher statement."""

    def run(self, query: Any, parameters: dict[str, Any] | None = None, **kwargs: Any) -> Result: ...


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, neo4j_errors.Neo4jError | neo4j_errors.DriverError):
        return bool(exc.is_retryable())
    return False


def read_with_retries(
    driver: Driver,
    database: str | None,
    work: Callable[[QueryRunner], T],
    max_retry_time: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run the read function `work` on a read session, its statements as auto-commit queries.

    Args:
        driver: The driver.
        database: The database (None: the server's default).
        work: The read: it may run several statements; it is run again after a transient failure.
        max_retry_time: Seconds after which a transient failure is no longer retried.
        sleep: How to wait between attempts (tests pass a fake, with its `clock`).
        clock: Seconds on a monotonic clock.

    Returns:
        What `work` returns.

    Raises:
        The driver's error when it is not transient or the retry time has passed.
    """
    started = clock()
    pause = _FIRST_PAUSE_S
    while True:
        try:
            with driver.session(database=database, default_access_mode="READ") as session:
                return work(session)
        except Exception as exc:
            if not _retryable(exc) or clock() - started + pause > max_retry_time:
                raise
        sleep(pause)
        pause = min(pause * 2, _MAX_PAUSE_S)


__all__ = ["QueryRunner", "read_with_retries"]
