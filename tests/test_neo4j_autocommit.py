"""Reads as auto-commit statements (`neo4j_autocommit.read_with_retries`): a transient failure is
retried with growing pauses until the retry time, anything else is raised at once, and the read
runs on a read session of the store's database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from neo4j import exceptions as neo4j_errors

from aesoperator.engine.stores.neo4j_autocommit import QueryRunner, read_with_retries


class _Driver:
    """Hands out sessions and records how they were asked for."""

    def __init__(self) -> None:
        self.sessions: list[dict[str, Any]] = []

    @contextmanager
    def session(self, **options: Any) -> Iterator[object]:
        self.sessions.append(options)
        yield object()


def _failing(failures: list[Exception], result: str = "rows") -> Any:
    def work(_runner: QueryRunner) -> str:
        if failures:
            raise failures.pop(0)
        return result

    return work


def test_a_transient_failure_is_retried_with_growing_pauses() -> None:
    driver, pauses = _Driver(), []
    failures: list[Exception] = [neo4j_errors.ServiceUnavailable("down"), neo4j_errors.SessionExpired("gone")]
    got = read_with_retries(driver, "graph", _failing(failures), max_retry_time=30, sleep=pauses.append)  # type: ignore[arg-type]
    assert got == "rows"
    assert pauses == [0.05, 0.1]
    assert driver.sessions == [{"database": "graph", "default_access_mode": "READ"}] * 3


def test_a_failure_that_is_not_transient_is_raised_at_once() -> None:
    driver, pauses = _Driver(), []
    failures: list[Exception] = [neo4j_errors.CypherSyntaxError("bad query")]
    with pytest.raises(neo4j_errors.CypherSyntaxError):
        read_with_retries(driver, None, _failing(failures), max_retry_time=30, sleep=pauses.append)  # type: ignore[arg-type]
    assert pauses == [] and len(driver.sessions) == 1
    with pytest.raises(ValueError):  # not a driver error at all
        read_with_retries(driver, None, _failing([ValueError("bug")]), max_retry_time=30, sleep=pauses.append)  # type: ignore[arg-type]


def test_retries_stop_at_the_retry_time() -> None:
    driver, pauses, now = _Driver(), [], [0.0]

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    failures: list[Exception] = [neo4j_errors.ServiceUnavailable("down") for _ in range(50)]
    with pytest.raises(neo4j_errors.ServiceUnavailable):
        read_with_retries(driver, None, _failing(failures), max_retry_time=5, sleep=sleep, clock=lambda: now[0])  # type: ignore[arg-type]
    assert pauses == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]  # doubling; the next (2.0) would pass 5 s
    assert sum(pauses) <= 5 and len(driver.sessions) == 7
