"""Checks that what the configuration points at answers: each registered MCP source starts (or is
reached) and lists its tools, and Neo4j accepts a connection when the graph lives there."""

from __future__ import annotations

import anyio

from aesoperator.config import Settings
from aesoperator.doctor.findings import Finding
from aesoperator.errors import AesopError
from aesoperator.ingest.client.connection import open_connection
from aesoperator.ingest.registry import SourceRegistry
from aesoperator.ingest.sources import SourceDefinition

SOURCE_TIMEOUT_SECONDS = 30.0
NEO4J_TIMEOUT_SECONDS = 5.0


async def _list_tools(definition: SourceDefinition) -> int:
    with anyio.fail_after(min(SOURCE_TIMEOUT_SECONDS, definition.timeout_seconds)):
        async with open_connection(definition) as conn:
            return len(await conn.list_tools())


def sources(settings: Settings) -> list[Finding]:
    """Every registered source's server starts (stdio) or answers (HTTP) and lists its tools."""
    name = "sources"
    try:
        entries = SourceRegistry.for_settings(settings).entries()
    except AesopError as exc:
        return [Finding(check=name, ok=False, message=f"the sources cannot be read: {exc}")]
    if not entries:
        return [Finding(check=name, ok=True, message="no sources registered (`aesop sources add`)")]
    found = []
    for source, entry in sorted(entries.items()):
        definition = entry.definition
        where = definition.url or " ".join([definition.command or "", *definition.args]).strip()
        try:
            tools = anyio.run(_list_tools, definition)
        except TimeoutError:
            found.append(
                Finding(
                    check=name,
                    ok=False,
                    message=f"source {source!r} ({where}) did not answer within {SOURCE_TIMEOUT_SECONDS:g} s",
                    fix=f"aesop sources status {source}",
                )
            )
        except Exception as exc:  # any failure to start or reach it is the finding
            found.append(
                Finding(
                    check=name,
                    ok=False,
                    message=f"source {source!r} ({where}) cannot be reached: {exc}",
                    fix=f"check [sources.{source}] in {entry.path}",
                )
            )
        else:
            found.append(Finding(check=name, ok=True, message=f"source {source!r} answers: {tools} tool(s)"))
    return found


def neo4j(settings: Settings) -> list[Finding]:
    """The Neo4j server accepts a connection with the configured credentials (when configured)."""
    name = "neo4j"
    if not settings.uses_neo4j:
        return [Finding(check=name, ok=True, message="not configured: the graph is embedded")]
    from neo4j import GraphDatabase  # the driver is imported only when Neo4j is configured

    try:
        with GraphDatabase.driver(
            settings.graph,
            auth=(settings.neo4j_user, settings.neo4j_password),
            connection_timeout=NEO4J_TIMEOUT_SECONDS,
            max_connection_lifetime=60,
        ) as driver:
            driver.verify_connectivity()
    except Exception as exc:  # unreachable, refused, bad credentials: all say the same to the user
        return [
            Finding(
                check=name,
                ok=False,
                message=f"Neo4j at {settings.graph} cannot be reached: {type(exc).__name__}: {exc}",
                fix="start Neo4j, or correct the graph setting (AESOP_GRAPH) and AESOP_NEO4J_PASSWORD",
            )
        ]
    return [Finding(check=name, ok=True, message=f"Neo4j at {settings.graph} accepts connections")]
