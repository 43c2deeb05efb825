"""Deterministic ids: the same source item always yields the same id, so upserts are idempotent."""

from __future__ import annotations

import hashlib

MAX_ID_CHARS = 512
_KEY_HASH_CHARS = 16


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


def relation_id(rel_type: str, src: str, dst: str, key: str = "") -> str:
    """A relation is identified by its type and endpoints (plus an optional key for parallel edges)."""
    raw = "\x1f".join((rel_type, src, dst, key))
    return "rel:" + hashlib.blake2b(raw.encode("utf-8"), digest_size=12).hexdigest()
