"""The predicates of memory facts: what a remembered statement can say about a subject, and
which predicates hold one value at a time.

A fact is a relation `subject -[PREDICATE]-> object` whose evidence is the episode that stated it.
For a single-valued predicate a subject has one current value: a newer fact with another object
closes the older one (`valid_to`, `superseded_by`) instead of sitting beside it. Multi-valued
predicates (and relation types not listed here) only ever add.
"""

from __future__ import annotations

from dataclasses import dataclass

# Property markers on fact relations and on the episodes and entities that take part in them.
FACT_PROPERTY = "fact"  # relation property: True on a fact relation
SUPERSEDED_BY = "SUPERSEDED_BY"  # relation type: an old version -> the one that replaced it
SUPERSEDED_BY_PROPERTY = "superseded_by"  # entity/relation property: id of the replacement
SUPERSEDED_AT_PROPERTY = "superseded_at"  # entity/relation property: ISO time it stopped holding
# entity property: why a memory stopped holding (superseded, corrected, duplicate, expired)
RETIRED_REASON_PROPERTY = "retired_reason"
# An extractor's mention key for the first person ("I", "my"): the item's speaker, resolved by the
# extraction stage from the item (an episode's speaker, else its agent).
SELF_KEY = "self:"


@dataclass(frozen=True, slots=True)
class Predicate:
    """One predicate: its relation type, whether a subject holds one value at a time, the entity
    type its object usually has (used when no extractor typed the object) and how it reads."""

    name: str
    single_valued: bool
    object_type: str
    phrase: str


PREDICATES: dict[str, Predicate] = {
    p.name: p
    for p in (
        Predicate("LIVES_IN", True, "Place", "lives in"),
        Predicate("WORKS_AT", True, "Organization", "works at"),
        Predicate("HAS_ROLE", True, "Concept", "has the role"),
        Predicate("HAS_STATUS", True, "Concept", "has the status"),
        Predicate("OWNED_BY", True, "Person", "is owned by"),
        Predicate("HAS_VERSION", True, "Identifier", "is at version"),
        Predicate("VISITED", False, "Place", "visited"),
        Predicate("LIKES", False, "Concept", "likes"),
    )
}

# Relation types other extractors (an LLM) use for the same facts.
PREDICATE_ALIASES: dict[str, str] = {
    "RESIDES_IN": "LIVES_IN",
    "LIVES_AT": "LIVES_IN",
    "MOVED_TO": "LIVES_IN",
    "WORKS_FOR": "WORKS_AT",
    "EMPLOYED_BY": "WORKS_AT",
    "EMPLOYED_AT": "WORKS_AT",
    "ROLE": "HAS_ROLE",
    "HAS_TITLE": "HAS_ROLE",
    "JOB_TITLE": "HAS_ROLE",
    "STATUS": "HAS_STATUS",
    "OWNER": "OWNED_BY",
    "HAS_OWNER": "OWNED_BY",
    "VERSION": "HAS_VERSION",
}


def retirement_note(properties: dict[str, object]) -> str | None:
    """'superseded at <time> by <id>' for a retired memory's properties, None for one that holds."""
    reason = properties.get(RETIRED_REASON_PROPERTY)
    if reason is None:
        return None
    at = properties.get(SUPERSEDED_AT_PROPERTY)
    by = properties.get(SUPERSEDED_BY_PROPERTY)
    return f"{reason}" + (f" at {at}" if at else "") + (f" by {by}" if by else "")


def canonical_predicate(relation_type: str) -> str:
    """The vocabulary's name for a relation type (`WORKS_FOR` -> `WORKS_AT`); others unchanged."""
    return PREDICATE_ALIASES.get(relation_type, relation_type)


def is_fact_type(relation_type: str) -> bool:
    """Whether a relation of this type is a memory fact (a predicate of the vocabulary)."""
    return canonical_predicate(relation_type) in PREDICATES


def is_single_valued(relation_type: str) -> bool:
    """Whether a subject holds one value of this predicate at a time (a new value supersedes)."""
    predicate = PREDICATES.get(canonical_predicate(relation_type))
    return predicate is not None and predicate.single_valued


__all__ = [
    "FACT_PROPERTY",
    "PREDICATES",
    "PREDICATE_ALIASES",
    "RETIRED_REASON_PROPERTY",
    "SELF_KEY",
    "SUPERSEDED_AT_PROPERTY",
    "SUPERSEDED_BY",
    "SUPERSEDED_BY_PROPERTY",
    "Predicate",
    "canonical_predicate",
    "is_fact_type",
    "is_single_valued",
    "retirement_note",
]
