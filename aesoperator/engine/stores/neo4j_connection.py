"""Reaching a Neo4j server: URI checks, the driver and its settings, and error translation.

Driver and server failures surface as `StoreError` naming the server URI (never the password)
and what could not be done; an unreachable server says for how long the driver retried.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from neo4j import Driver, GraphDatabase
from neo4j import exceptions as neo4j_errors

from aesoperator.errors import SchemaError, StoreError

BOLT_SCHEMES = frozenset({"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"})
CONNECT_TIMEOUT_S = 15.0
RETRY_TIME_S = 30.0
# Writes set labels and relationship types from parameters (`:$(row.type)`), new in Neo4j 5.26.
MIN_SERVER_VERSION = (5, 26)


def _one_line(exc: BaseException) -> str:
    """The driver's message on one line (it spreads connection failures over several)."""
    return " ".join(str(exc).split())


def shown_uri(uri: str) -> str:
    """The URI as messages may show it, after checking its scheme.

    Args:
        uri: A Bolt URI, e.g. "neo4j://127.0.0.1:7687" (possibly with credentials in it).

    Returns:
        The URI with any user info replaced by "***".

    Raises:
        StoreError: The scheme is not a Bolt scheme or nothing follows it.
    """
    scheme, _, rest = uri.partition("://")
    # Never echo credentials someone put into the URI.
    shown = f"{scheme}://***@{rest.split('@', 1)[1]}" if "@" in rest.split("/", 1)[0] else uri
    if scheme not in BOLT_SCHEMES or not rest:
        raise StoreError(
            f"invalid Neo4j URI {shown!r}: use bolt:// or neo4j:// (optionally +s or +ssc), e.g. neo4j://127.0.0.1:7687"
        )
    return shown


def open_driver(uri: str, user: str, password: str, connection_timeout: float, max_retry_time: float) -> Driver:
    """A driver for `uri` (no connection is made yet).

    Args:
        uri: The Bolt URI, already checked by `shown_uri`.
        user: The user name.
        password: The password.
        connection_timeout: Seconds one connection attempt may take.
        max_retry_time: Seconds a managed transaction is retried on transient errors.

    Returns:
        The driver.

    Raises:
        StoreError: The driver refuses the URI or its options.
    """
    try:
        return GraphDatabase.driver(
            uri,
            auth=(user, password),
            connection_timeout=connection_timeout,
            max_transaction_retry_time=max_retry_time,
            connection_acquisition_timeout=connection_timeout * 2,
            # Queries on an empty database name labels and keys that do not exist yet; the
            # server's hints about that are noise here (filtering needs Neo4j 5.7+).
            notifications_min_severity="OFF",
        )
    except (ValueError, neo4j_errors.ConfigurationError) as exc:
        shown = shown_uri(uri)
        raise StoreError(f"invalid Neo4j URI {shown!r}: {exc}".replace(uri, shown)) from None


def require_server_version(driver: Driver, uri: str) -> None:
    """Refuse a server older than `MIN_SERVER_VERSION` (see `check_server_agent`)."""
    check_server_agent(driver.get_server_info().agent, uri)


def check_server_agent(agent: str, uri: str) -> None:
    """Refuse a server whose agent string (e.g. "Neo4j/5.26.0") is older than `MIN_SERVER_VERSION`.

    Args:
        agent: The server's agent string, from the Bolt handshake.
        uri: The URI as shown in messages.

    Raises:
        StoreError: The server is too old; the message names both versions.
    """
    numbers = re.findall(r"\d+", agent.partition("/")[2])
    version = tuple(int(n) for n in numbers[:2])
    if len(version) == 2 and version < MIN_SERVER_VERSION:
        need = ".".join(map(str, MIN_SERVER_VERSION))
        raise StoreError(
            f"Neo4j at {uri} is {agent}; aesoperator needs Neo4j {need} or newer (writes set labels from "
            f"parameters): upgrade the server, or use the embedded store"
        )


def home_database(driver: Driver, uri: str) -> str:
    """The name of the server's home database for the driver's user.

    Args:
        driver: A connected driver.
        uri: The URI as shown in messages.

    Returns:
        The database name.

    Raises:
        StoreError: The server did not name one.
    """
    with driver.session() as session:
        record = session.run("CALL db.info() YIELD name RETURN name").single()
    if record is None:
        raise StoreError(f"Neo4j at {uri} did not name its home database")
    return str(record["name"])


@contextmanager
def neo4j_errors_as_store_errors(
    action: str, uri: str, user: str, max_retry_time: float, connection_timeout: float
) -> Iterator[None]:
    """Turn driver and server errors raised inside the block into `StoreError`.

    `SchemaError` and `StoreError` pass through unchanged.

    Args:
        action: What was being done, e.g. "read entities" (the message says it could not).
        uri: The server URI as shown in messages.
        user: The user name, named when the credentials are rejected.
        max_retry_time: The driver's retry time, named when the server is unreachable.
        connection_timeout: The driver's connection timeout, named likewise.

    Returns:
        A context manager.

    Raises:
        StoreError: Naming the server, the action and what went wrong.
    """
    where = f"Neo4j at {uri}"
    try:
        yield
    except (SchemaError, StoreError):
        raise
    except neo4j_errors.AuthError:
        raise StoreError(
            f"{where} rejected the credentials of user {user!r} (could not {action}): check the user name and password"
        ) from None
    except neo4j_errors.IncompleteCommit as exc:
        raise StoreError(
            f"{where} is not reachable: the connection was lost while committing (could not {action}), "
            f"so the write may or may not have been applied ({_one_line(exc)}); writes are idempotent: "
            "once the server is back, run the same write or ingest again"
        ) from exc
    except (neo4j_errors.ServiceUnavailable, neo4j_errors.SessionExpired) as exc:
        raise StoreError(
            f"{where} is not reachable (could not {action}; retried for up to {max_retry_time:g} s, "
            f"connection timeout {connection_timeout:g} s): {_one_line(exc)}; "
            "check that the server is running"
        ) from exc
    except neo4j_errors.Neo4jError as exc:
        raise StoreError(f"{where} could not {action}: {exc.code}: {exc.message}") from exc
    except neo4j_errors.DriverError as exc:
        raise StoreError(f"{where}: could not {action}: {exc}") from exc
    except OSError as exc:
        raise StoreError(f"{where}: could not {action}: {exc}") from exc
