"""Which entities have a vector in the index: one rule for every path that writes vectors (the
ingest pipeline, `upsert`, `embed_missing` behind `aesop rebuild-index`, the memory-server tools),
so a rebuild keeps exactly what ingest wrote and no path re-embeds what another left out.

Left out:

- **Code symbols** (`Module`, `Class`, `Function`, `Method` with a `qualified_name`, as the code
  stage writes them, placeholders included). A source file yields hundreds of short symbol texts
  next to its few chunks; embedding them doubled the time of ingesting a source tree. A symbol is
  found by its exact name (the name channel), by the words of its signature and docstring summary
  (the keyword channel) and through the graph (the chunk that holds its code `DEFINES` it, and that
  chunk is embedded); "where is X defined" and "what calls X" are graph questions (`code_queries`).
- **Placeholders of the memory-server tools** (an entity a relation names before it is created):
  they hold no text of their own until they become real entities, which are embedded then.
"""

from __future__ import annotations

from collections.abc import Iterable

from aesoperator.graph_schema.ids import MEMORY_GRAPH_SOURCE
from aesoperator.graph_schema.models import Entity
from aesoperator.graph_schema.vocabulary import CODE_SYMBOL_TYPES

QUALIFIED_NAME = "qualified_name"  # the property every code symbol carries


def is_code_symbol(entity: Entity) -> bool:
    """Whether `entity` is a symbol the code stage wrote (or a placeholder for one)."""
    return entity.type in CODE_SYMBOL_TYPES and QUALIFIED_NAME in entity.properties


def is_memory_placeholder(entity: Entity) -> bool:
    """Whether `entity` holds a name for the memory-server tools until it is created."""
    return entity.source == MEMORY_GRAPH_SOURCE and bool(entity.properties.get("placeholder"))


def has_vector(entity: Entity) -> bool:
    """Whether `entity` gets a vector (and so a place in the vector index)."""
    return not (is_code_symbol(entity) or is_memory_placeholder(entity))


def without_vectors(entities: Iterable[Entity]) -> list[str]:
    """Ids of the entities among `entities` that get no vector, in order."""
    return [e.id for e in entities if not has_vector(e)]
