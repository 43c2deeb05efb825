"""Normalised names, resolution keys and ids of extracted entities.

Two mentions with the same key and type, in one namespace, are the same entity by construction
(the same id); everything subtler is left to resolution (`resolve`), which records why it merged.
"""

from __future__ import annotations

import re
import unicodedata

from aesoperator.graph_schema.ids import entity_id
from aesoperator.graph_schema.knowledge import KNOWLEDGE_SOURCE

_SPACE = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")
_POSSESSIVE = re.compile(r"['’]s$")
_LEADING_ARTICLE = re.compile(r"^(the|a|an)\s+", re.IGNORECASE)


def normalize_name(text: str) -> str:
    """Case- and width-folded, article- and possessive-free, single-spaced: 'The  NATO's' -> 'nato'."""
    folded = unicodedata.normalize("NFKC", text).casefold().strip()
    folded = _POSSESSIVE.sub("", folded)
    folded = _LEADING_ARTICLE.sub("", folded)
    folded = _EDGE_PUNCT.sub("", folded)
    return _SPACE.sub(" ", folded)


def name_key(text: str) -> str:
    return "name:" + normalize_name(text)


def email_key(email: str) -> str:
    return "email:" + email.strip().lower()


def login_key(login: str) -> str:
    return "login:" + login.strip().lstrip("@").lower()


def url_key(url: str) -> str:
    scheme, _, rest = url.strip().partition("://")
    host, _, path = rest.partition("/")
    return f"url:{scheme.lower()}://{host.lower()}/{path}".rstrip("/")


def knowledge_entity_id(namespace: str, entity_type: str, key: str) -> str:
    """The id of the entity a mention with this key and type stands for in `namespace`."""
    return entity_id(KNOWLEDGE_SOURCE, entity_type.lower(), f"{namespace}/{key}")


_NOREPLY = re.compile(r"^(?:\d+\+)?([a-z0-9](?:[a-z0-9-]{0,38}))@users\.noreply\.github\.com$")


def login_from_email(email: str) -> str | None:
    """The GitHub login in a GitHub no-reply address (`123+kim@users.noreply.github.com` -> kim)."""
    match = _NOREPLY.match(email.strip().lower())
    return match.group(1) if match else None


def initials(words: str) -> str:
    """'magnetic resonance imaging' -> 'mri' (hyphenated parts count: 'x-ray computed' -> 'xrc')."""
    parts = [p for p in re.split(r"[\s\-/]+", words) if p]
    return "".join(p[0] for p in parts if p[0].isalnum()).lower()
