"""Output schemas with their `$defs` written out in place.

pydantic publishes a nested model as a `$ref` into `$defs`. A client that checks a tool's
structured content against its output schema (the MCP SDK's does, with `jsonschema`) resolves
every `$ref` again for every item: for a `search_nodes` answer of 56 entities, validating against
the schema with references took twice as long as against the same schema written out. The
published meaning is the same either way.
"""

from __future__ import annotations

from typing import Any

_DEFS_PREFIX = "#/$defs/"


class _Recursive(Exception):
    """A definition refers to itself: it cannot be written out."""


def _expanded(node: Any, defs: dict[str, Any], open_refs: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_expanded(item, defs, open_refs) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_DEFS_PREFIX):
        name = ref.removeprefix(_DEFS_PREFIX)
        if name in open_refs or name not in defs:
            raise _Recursive(name)
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        return {**_expanded(defs[name], defs, (*open_refs, name)), **_expanded(siblings, defs, open_refs)}
    return {key: _expanded(value, defs, open_refs) for key, value in node.items() if key != "$defs"}


def inline_definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every local `$ref` replaced by the definition it names and `$defs` dropped;
    `schema` itself when a definition refers to itself (directly or not) or a reference names no
    definition.

    Args:
        schema: A JSON schema, as pydantic generates it.

    Returns:
        An equivalent schema without local references, or `schema` unchanged.
    """
    defs = schema.get("$defs")
    if not isinstance(defs, dict) or not defs:
        return schema
    try:
        expanded: dict[str, Any] = _expanded(schema, defs, ())
    except _Recursive:
        return schema
    return expanded
