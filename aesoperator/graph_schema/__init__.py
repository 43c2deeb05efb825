"""What the graph holds: models, deterministic ids and the type vocabulary."""

from aesoperator.graph_schema.ids import content_hash, entity_id, relation_id
from aesoperator.graph_schema.models import (
    DEFAULT_NAMESPACE,
    Direction,
    Entity,
    Episode,
    Provenance,
    Relation,
    from_iso,
    to_iso,
    utcnow,
)
from aesoperator.graph_schema.vocabulary import (
    ENTITY_TYPES,
    RELATION_TYPES,
    RELATION_WEIGHTS,
    check_type_name,
    normalize_type_name,
)

SCHEMA_VERSION = 1

__all__ = [
    "DEFAULT_NAMESPACE",
    "ENTITY_TYPES",
    "RELATION_TYPES",
    "RELATION_WEIGHTS",
    "SCHEMA_VERSION",
    "Direction",
    "Entity",
    "Episode",
    "Provenance",
    "Relation",
    "check_type_name",
    "content_hash",
    "entity_id",
    "from_iso",
    "normalize_type_name",
    "relation_id",
    "to_iso",
    "utcnow",
]
