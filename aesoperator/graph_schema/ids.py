"""Deterministic ids: the same source item always yields the same id, so upserts are idempotent."""

from __future__ import annotations

import hashlib
from urllib.parse import quote

MAX_ID_CHARS = 512
_KEY_HASH_CHARS = 16
# Namespaces longer than this (once percent-encoded) appear in ids as a digest.
_MAX_ID_NAMESPACE_CHARS = 64
# The memory-server-compatible graph: its source, and the namespace it lives in by default.
MEMORY_GRAPH_SOURCE = "memory-graph"
MEMORY_GRAPH_HOME = "memory-graph"


def content_hash(text: str) -> str:
    """A stable digest of text, used to skip unchanged items and reuse embeddings."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def entity_id(source: str, kind: str, natural_key: str) -> str:
    """`<source>:<kind>:<natural key>`, e.g. `git:commit:3f2a…` or `fs:file:docs/intro.md`.

    Keys too long to be readable ids are shortened to a prefix plus a digest of the whole key,
    which keeps them unique and deterministic.
    """
    if not source or not kind or not natural_key:
        raise ValueError("entity_id needs a non-empty source, kind and natural key")
    full = f"{source}:{kind}:{natural_key}"
    if len(full) <= MAX_ID_CHARS:
        return full
    digest = hashlib.blake2b(natural_key.encode("utf-8"), digest_size=_KEY_HASH_CHARS // 2).hexdigest()
    keep = MAX_ID_CHARS - len(source) - len(kind) - len(digest) - 4
    return f"{source}:{kind}:{natural_key[:keep]}~{digest}"


def scoped_entity_id(source: str, kind: str, natural_key: str, namespace: str, home_namespace: str) -> str:
    """The id of a thing that exists once per namespace (a session, an episode, a memory-graph
    entity), so that the same natural key in two namespaces never names one entity.

    In its home namespace (`agent:<id>` for an agent's sessions, `memory-graph` for the memory
    graph) the id is the plain `entity_id`, the form these things had before ids were scoped, so
    stored data keeps its ids. Anywhere else the namespace joins the kind, percent-encoded
    (`memory-graph:entity@team2:<name>`): an encoded namespace holds no `:`, so no key in one
    namespace can spell an id of another.
    """
    if namespace == home_namespace:
        return entity_id(source, kind, natural_key)
    label = quote(namespace, safe="")
    if len(label) > _MAX_ID_NAMESPACE_CHARS:  # `#` is always encoded, so a digest cannot pass for a name
        label = "#" + hashlib.blake2b(namespace.encode("utf-8"), digest_size=12).hexdigest()
    return entity_id(source, f"{kind}@{label}", natural_key)


def memory_graph_entity_id(name: str, namespace: str = MEMORY_GRAPH_HOME) -> str:
    """The id of the memory-graph entity called `name` in `namespace` (`memory-graph:entity:<name>`
    in the memory graph's own namespace)."""
    return scoped_entity_id(MEMORY_GRAPH_SOURCE, "entity", name, namespace, MEMORY_GRAPH_HOME)


def relation_id(rel_type: str, src: str, dst: str, key: str = "") -> str:
    """A relation is identified by its type and endpoints (plus an optional key for parallel edges)."""
    raw = "\x1f".join((rel_type, src, dst, key))
    return "rel:" + hashlib.blake2b(raw.encode("utf-8"), digest_size=12).hexdigest()
