"""Entity and relation type names.

Types become Neo4j labels and relationship types, which cannot be passed as query parameters,
so every type name must match a strict identifier pattern before any store sees it. The known
vocabulary documents what the built-in mappers produce; other well-formed names are allowed so
that sources such as the MCP memory server can bring their own types.
"""

from __future__ import annotations

import re

TYPE_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")

ENTITY_TYPES: frozenset[str] = frozenset(
    {
        "Repository",
        "Branch",
        "Commit",
        "Person",
        "File",
        "Directory",
        "Chunk",
        "Document",
        "Page",
        "Block",
        "Database",
        "Table",
        "Column",
        "Row",
        "Issue",
        "PullRequest",
        "Comment",
        "Label",
        "Folder",
        "Concept",
        "Episode",
        "Session",
        "Agent",
        "Task",
        # knowledge extracted from text (aesoperator.ingest.extract)
        "Organization",
        "Place",
        "Product",
        "Project",
        "Event",
        "DateTime",
        "Quantity",
        "Url",
        "Handle",
        "IssueRef",
        "Identifier",
        # code symbols
        "Module",
        "Class",
        "Function",
        "Method",
    }
)

# Types an extractor may give an entity it finds in text; resolution merges only within a type
# (after mapping source-specific spellings onto these, see `canonical_entity_type`).
KNOWLEDGE_TYPES: frozenset[str] = frozenset(
    {
        "Person",
        "Organization",
        "Place",
        "Product",
        "Project",
        "Concept",
        "Event",
        "DateTime",
        "Quantity",
        "Url",
        "Handle",
        "IssueRef",
        "Identifier",
    }
)
CODE_SYMBOL_TYPES: frozenset[str] = frozenset({"Module", "Class", "Function", "Method"})

RELATION_TYPES: frozenset[str] = frozenset(
    {
        "CONTAINS",
        "AUTHORED",
        "MODIFIES",
        "PARENT_OF",
        "REFERENCES",
        "FOREIGN_KEY",
        "MENTIONS",
        "LINKS_TO",
        "HAS_COLUMN",
        "HAS_ROW",
        "HAS_LABEL",
        "COMMENTED_ON",
        "ASSIGNED_TO",
        "HEAD_OF",
        "PART_OF",
        "RELATED_TO",
        "NEXT",
        "IN_SESSION",
        # knowledge: co-occurrence in one sentence, typed facts, resolution decisions
        "CO_OCCURS_WITH",
        "ACRONYM_OF",
        "SAME_AS",
        "NOT_SAME_AS",
        # memory facts (graph_schema.facts) and the link from an old version to its replacement
        "LIVES_IN",
        "WORKS_AT",
        "HAS_ROLE",
        "HAS_STATUS",
        "OWNED_BY",
        "HAS_VERSION",
        "VISITED",
        "LIKES",
        "SUPERSEDED_BY",
        # code
        "DEFINES",
        "IMPORTS",
        "CALLS",
        "INHERITS",
    }
)

# Relation weights for graph expansion: structural containment says little about relevance,
# explicit references and mentions say more.
RELATION_WEIGHTS: dict[str, float] = {
    "MENTIONS": 1.0,
    "REFERENCES": 1.0,
    "LINKS_TO": 0.8,
    "FOREIGN_KEY": 0.8,
    "AUTHORED": 0.7,
    "MODIFIES": 0.7,
    "COMMENTED_ON": 0.7,
    "RELATED_TO": 0.7,
    "PARENT_OF": 0.5,
    "CONTAINS": 0.4,
    "PART_OF": 0.4,
    "NEXT": 0.5,
    "IN_SESSION": 0.3,
    "SAME_AS": 1.0,
    "ACRONYM_OF": 1.0,
    "CO_OCCURS_WITH": 0.5,
    "SUPERSEDED_BY": 0.8,  # an old memory leads to what replaced it
    "DEFINES": 0.4,  # a module or chunk defining a symbol is containment, and the two share their text
    "CALLS": 0.7,
    "IMPORTS": 0.5,
    "INHERITS": 0.7,
}

_TYPE_SYNONYMS: dict[str, str] = {
    "person": "Person",
    "people": "Person",
    "user": "Person",
    "human": "Person",
    "organization": "Organization",
    "organisation": "Organization",
    "org": "Organization",
    "company": "Organization",
    "team": "Organization",
    "place": "Place",
    "location": "Place",
    "city": "Place",
    "country": "Place",
    "product": "Product",
    "system": "Product",
    "software": "Product",
    "tool": "Product",
    "service": "Product",
    "project": "Project",
    "concept": "Concept",
    "topic": "Concept",
    "event": "Event",
    "date": "DateTime",
    "time": "DateTime",
    "datetime": "DateTime",
}


def canonical_entity_type(raw: str) -> str:
    """The knowledge type a source's type name stands for ('person', 'company' -> Person,
    Organization); a name with no known meaning is returned unchanged."""
    if raw in KNOWLEDGE_TYPES:
        return raw
    return _TYPE_SYNONYMS.get(raw.strip().lower().replace("_", ""), raw)


def type_spellings(canonical: frozenset[str]) -> list[str]:
    """Type names that stand for one of `canonical` (the names themselves, and each synonym in
    lower, Title and UPPER case): a store can then select those entities by type."""
    names = set(canonical)
    for raw, kind in _TYPE_SYNONYMS.items():
        if kind in canonical:
            names.update((raw, raw.title(), raw.upper()))
    names.update(n.lower() for n in canonical)
    return sorted(names)


DEFAULT_RELATION_WEIGHT = 0.6


def check_type_name(name: str, what: str = "type") -> str:
    """Return `name` if it is a safe identifier, else raise ValueError naming the problem."""
    if not isinstance(name, str) or not TYPE_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a valid type name: use a letter followed by up to 63 letters, "
            "digits or underscores"
        )
    return name


def normalize_type_name(raw: str, upper: bool = False) -> str:
    """Turn a free-form type such as 'works at' into a safe name ('works_at' / 'WORKS_AT')."""
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", raw.strip()).strip("_")
    if not cleaned:
        cleaned = "Unknown"
    if not cleaned[0].isalpha():
        cleaned = "T_" + cleaned
    cleaned = cleaned[:64]
    return cleaned.upper() if upper else cleaned
