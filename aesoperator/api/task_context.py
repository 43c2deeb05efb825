"""Context for a task: the retrieval query, items with reasons, a pull request's neighbourhood, a
database's allowed tables, and the text an operator reads."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aesoperator.api.server import MCPServer
from aesoperator.api.task_models import ContextItem, Task
from aesoperator.api.verbs import mcp_query
from aesoperator.context import ContextEngine
from aesoperator.graph_schema.ids import entity_id


def task_query(task: Task) -> str:
    parts = [task.name.replace("_", " ")]
    for key, value in task.inputs.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        parts.append(f"{key.replace('_', ' ')}: {text}")
    return "; ".join(parts)[:2000]


def hit_item(hit: Any, server_names: Mapping[str, str], extra_reason: str | None = None) -> ContextItem:
    reasons = list(hit.reasons)
    if extra_reason:
        reasons.append(extra_reason)
    provenance = hit.provenance
    return ContextItem(
        id=hit.id,
        type=hit.type,
        name=hit.name,
        text=hit.text,
        score=float(getattr(hit, "score", 0.0)),
        reasons=reasons,
        source=hit.source,
        namespace=hit.namespace,
        uri=provenance.uri if provenance is not None else None,
        properties={"server": server_names.get(hit.namespace), **dict(hit.properties)},
    )


def _entity_item(entity: Any, reason: str, server_names: Mapping[str, str], score: float = 0.0) -> ContextItem:
    return ContextItem(
        id=entity.id,
        type=entity.type,
        name=entity.name,
        text=entity.text[:2000],
        score=score,
        reasons=[reason],
        source=entity.source,
        namespace=entity.namespace,
        uri=entity.provenance.uri if entity.provenance is not None else None,
        properties={"server": server_names.get(entity.namespace), **dict(entity.properties)},
    )


def _pull_number(inputs: Mapping[str, Any]) -> int | None:
    for key in ("pull_request", "pr", "pr_number", "pull", "number"):
        value = inputs.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            match = re.search(r"(\d+)\s*$", value)
            if match:
                return int(match.group(1))
    return None


def review_context(
    engine: ContextEngine, task: Task, servers: Sequence[MCPServer], names: Mapping[str, str]
) -> tuple[list[ContextItem], list[str]]:
    """For a pull request: the PR, its files and their history, related issues and people."""
    number = _pull_number(task.inputs)
    github = [s for s in servers if s.kind == "github"]
    if number is None or not github:
        return [], []
    items: list[ContextItem] = []
    facts: list[str] = []
    gh = github[0]
    pr_id = entity_id(gh.name, "pull", f"{gh.repo}#{number}")
    found = engine.get_entities([pr_id], namespaces=[gh.source_namespace])
    if not found:
        return [], [f"pull request #{number} is not in the graph of {gh.name!r} (synced?)"]
    pr = found[0]
    items.append(_entity_item(pr, f"the pull request under review (#{number})", names, 1.0))
    around = engine.neighbors([pr_id], depth=1, namespaces=[gh.source_namespace], limit=500)
    paths: list[str] = []
    for rel in around.relations:
        other_id = rel.dst if rel.src == pr_id else rel.src
        other = around.entities.get(other_id)
        if other is None or other_id == pr_id:
            continue
        if rel.type == "MODIFIES" and other.type == "File":
            paths.append(other.name)
            items.append(_entity_item(other, f"file changed by #{number} ({rel.properties.get('status')})", names, 0.9))
        elif rel.type == "REFERENCES":
            items.append(_entity_item(other, f"{other.type} referenced by #{number}", names, 0.85))
        elif rel.type in ("AUTHORED", "REVIEWED", "ASSIGNED_TO", "COMMENTED_ON") and other.type == "Person":
            role = {"AUTHORED": "author", "REVIEWED": "reviewer", "ASSIGNED_TO": "assignee or requested reviewer"}.get(
                rel.type, "commenter"
            )
            items.append(_entity_item(other, f"{role} of #{number}", names, 0.8))
        facts.append(f"{engine_name(around, rel.src)} {rel.type} {engine_name(around, rel.dst)}")
    for git in [s for s in servers if s.kind == "git"]:
        files = engine.store.name_lookup(paths, namespaces=[git.source_namespace], types=["File"]) if paths else {}
        file_ids = [i for ids in files.values() for i in ids]
        if not file_ids:
            continue
        changes = engine.neighbors(
            file_ids, depth=1, relation_types=["MODIFIES"], namespaces=[git.source_namespace], limit=400
        )
        commits = sorted(
            (e for e in changes.entities.values() if e.type == "Commit"),
            key=lambda e: str(e.properties.get("authored_at") or e.valid_from or ""),
            reverse=True,
        )[:15]
        touched: dict[str, list[str]] = {}
        for rel in changes.relations:
            target = changes.entities.get(rel.dst)
            if rel.type == "MODIFIES" and target is not None and rel.dst in file_ids:
                touched.setdefault(rel.src, []).append(target.name)
                facts.append(f"{engine_name(changes, rel.src)} MODIFIES {target.name}")
        for commit in commits:
            what = ", ".join(sorted(touched.get(commit.id, []))) or "a changed file"
            items.append(_entity_item(commit, f"history: commit that changed {what}", names, 0.7))
        if commits:
            authors = engine.neighbors(
                [c.id for c in commits],
                depth=1,
                relation_types=["AUTHORED"],
                namespaces=[git.source_namespace],
                limit=200,
            )
            for person in (e for e in authors.entities.values() if e.type == "Person"):
                items.append(_entity_item(person, "history: author of commits that changed these files", names, 0.6))
            for rel in authors.relations:
                if rel.type == "AUTHORED":
                    facts.append(f"{engine_name(authors, rel.src)} AUTHORED {engine_name(authors, rel.dst)}")
    return items, facts


def engine_name(subgraph: Any, eid: str) -> str:
    entity = subgraph.entities.get(eid)
    return entity.name if entity is not None else eid


def analysis_live(servers: Sequence[MCPServer]) -> dict[str, Any]:
    """For a database: the allowed tables' schema, read live through the connector's rules."""
    live: dict[str, Any] = {}
    for server in servers:
        if server.kind != "postgres":
            continue
        described = mcp_query(server, "describe_tables")
        live[server.name] = {
            "database": described.get("database"),
            "tables": described.get("tables"),
            "row_limit": described.get("row_limit"),
        }
    return live


def render_context(items: Sequence[ContextItem], facts: Sequence[str], live: Mapping[str, Any]) -> str:
    lines: list[str] = []
    for n, item in enumerate(items, 1):
        where = item.uri or item.source
        lines.append(f"[{n}] {item.type} {item.name} ({where}) — {'; '.join(item.reasons)}")
        lines.append(item.text[:1500])
        lines.append("")
    for server, info in live.items():
        if not isinstance(info, Mapping):
            continue
        lines.append(f"Tables of {server} (live, allowed tables only):")
        for table in info.get("tables") or []:
            cols = ", ".join(f"{c['name']} {c['data_type']}" for c in table.get("columns") or [])
            lines.append(f"- {table['name']}({cols})")
        lines.append("")
    if facts:
        lines.append("Facts:")
        lines.extend(f"- {f}" for f in facts[:200])
    return "\n".join(lines).strip()
