"""Neo4j layout of the graph store: labels, constraints, indexes and the schema version.

Entities are nodes labelled `:Entity` plus their type, holding the model's fields (properties
and provenance as JSON text, times as ISO text), `name_lower`, `fp` (a digest of the content that
decides whether an upsert changes anything) and `seq` (the change-log position of their last
change). Relations are relationships of their own type between entity nodes, with `id`, the
model's fields and `seq`; each type gets a uniqueness constraint on `id` when first written.
Everything else the store keeps lives on nodes whose labels start with
an underscore, which no entity type can (type names start with a letter), so store bookkeeping can
never be mistaken for data:

- `:_ChangeLog {first, last, kinds, ids, ops, namespaces}`: the change log, one node per write
  (or per `CHANGES_PER_NODE` changes of a large write) holding parallel lists; change `seq` is
  `first` plus the position in the lists. One node per change would cost as much as the data
  it describes;
- `:_Counter {name: 'changes', seq}`: the last change-log position; every write locks it first,
  which serialises writers and keeps `seq` in commit order;
- `:_Vector {key, entity_id, model, hash, dim, values}`: one stored vector (float32 bytes);
- `:_SourceItem {uid, source, key, content_hash, entity_ids, relation_ids, cursor}`;
- `:_EntityVersion {entity_id, version, replaced_at, seq}`: an entity as it was before an update;
- `:_Schema {name: 'aesoperator', version}`: the layout version of this database.

Labels and relationship types cannot be query parameters. `cypher_name` is the only way a type
name gets into query text: it must match the strict type-name pattern, and is then quoted.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

from neo4j import ManagedTransaction, Session

from aesoperator.errors import SchemaError, StoreError
from aesoperator.graph_schema.vocabulary import TYPE_NAME_PATTERN

STORE_SCHEMA_VERSION = 1
SCHEMA_NODE_NAME = "aesoperator"
FULLTEXT_INDEX = "aesop_entity_fulltext"
REL_CONSTRAINT_PREFIX = "aesop_rel_id_"

ENTITY = "Entity"
CHANGE_LOG = "_ChangeLog"
COUNTER = "_Counter"
VECTOR = "_Vector"
SOURCE_ITEM = "_SourceItem"
ENTITY_VERSION = "_EntityVersion"
SCHEMA = "_Schema"

DDL: tuple[str, ...] = (
    "CREATE CONSTRAINT aesop_entity_id IF NOT EXISTS FOR (e:Entity) REQUIRE e.id IS UNIQUE",
    "CREATE INDEX aesop_entity_name_lower IF NOT EXISTS FOR (e:Entity) ON (e.name_lower)",
    "CREATE FULLTEXT INDEX aesop_entity_fulltext IF NOT EXISTS FOR (e:Entity) ON EACH [e.name, e.text] "
    "OPTIONS {indexConfig: {`fulltext.analyzer`: 'english', `fulltext.eventually_consistent`: false}}",
    "CREATE CONSTRAINT aesop_change_log_first IF NOT EXISTS FOR (c:_ChangeLog) REQUIRE c.first IS UNIQUE",
    "CREATE INDEX aesop_change_log_last IF NOT EXISTS FOR (c:_ChangeLog) ON (c.last)",
    "CREATE CONSTRAINT aesop_counter_name IF NOT EXISTS FOR (c:_Counter) REQUIRE c.name IS UNIQUE",
    "CREATE CONSTRAINT aesop_vector_key IF NOT EXISTS FOR (v:_Vector) REQUIRE v.key IS UNIQUE",
    "CREATE INDEX aesop_vector_entity IF NOT EXISTS FOR (v:_Vector) ON (v.entity_id)",
    "CREATE INDEX aesop_vector_model IF NOT EXISTS FOR (v:_Vector) ON (v.model)",
    "CREATE CONSTRAINT aesop_source_item_uid IF NOT EXISTS FOR (s:_SourceItem) REQUIRE s.uid IS UNIQUE",
    "CREATE INDEX aesop_source_item_source IF NOT EXISTS FOR (s:_SourceItem) ON (s.source)",
    "CREATE INDEX aesop_entity_version_id IF NOT EXISTS FOR (v:_EntityVersion) ON (v.entity_id)",
    "CREATE CONSTRAINT aesop_schema_name IF NOT EXISTS FOR (s:_Schema) REQUIRE s.name IS UNIQUE",
)

INDEX_WAIT_SECONDS = 300
SCHEMA_RETRIES = 8
# What a server says when another process created the same rule between our `IF NOT EXISTS`
# check and our creation (two replicas opening an empty database at once): already done.
CONCURRENT_SCHEMA_CODES = frozenset(
    {
        "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists",
        "Neo.ClientError.Schema.ConstraintAlreadyExists",
        "Neo.ClientError.Schema.IndexAlreadyExists",
        "Neo.ClientError.Schema.ConstraintWithNameAlreadyExists",
        "Neo.ClientError.Schema.IndexWithNameAlreadyExists",
    }
)


def cypher_name(name: str, what: str = "type") -> str:
    """`name` quoted for use as a label or relationship type, after checking it is a safe name.

    The pattern admits letters, digits and underscores only, so the backticks cannot be escaped
    from; anything else is refused before a query is built.
    """
    if not isinstance(name, str) or not TYPE_NAME_PATTERN.fullmatch(name):
        raise SchemaError(
            f"{what} {name!r} is not a valid type name: use a letter followed by up to 63 letters, "
            "digits or underscores"
        )
    return f"`{name}`"


def _read_version(tx: ManagedTransaction) -> int | None:
    record = tx.run("MATCH (s:_Schema {name: $name}) RETURN s.version AS v", name=SCHEMA_NODE_NAME).single()
    return None if record is None or record["v"] is None else int(record["v"])


def _write_version(tx: ManagedTransaction, version: int) -> None:
    tx.run("MERGE (s:_Schema {name: $name}) SET s.version = $version", name=SCHEMA_NODE_NAME, version=version).consume()


def _check_version(stored: int | None) -> None:
    if stored is not None and stored > STORE_SCHEMA_VERSION:
        raise StoreError(
            f"the Neo4j database was written by a newer version (schema {stored}, this one reads "
            f"{STORE_SCHEMA_VERSION}): upgrade aesoperator to open it (pip install --upgrade aesoperator)"
        )


def setup_schema(session: Session) -> None:
    """Create missing constraints and indexes, then record the schema version. Idempotent.

    When the database already holds the current version, the constraints are there and nothing
    is run but one read.
    """
    stored = session.execute_read(_read_version)
    _check_version(stored)
    if stored == STORE_SCHEMA_VERSION and _indexes_present(session):
        return
    for statement in DDL:
        run_schema_statement(session, statement)
    session.run("CALL db.awaitIndexes($seconds)", seconds=INDEX_WAIT_SECONDS).consume()
    session.execute_write(_write_version, STORE_SCHEMA_VERSION)


def run_schema_statement(session: Session, statement: str) -> None:
    """Run one `CREATE ... IF NOT EXISTS`, treating a rule another process created at the same
    moment as created: several engine processes may open one empty database together."""
    for attempt in range(SCHEMA_RETRIES):
        try:
            session.run(statement).consume()
            return
        except Exception as exc:
            code = str(getattr(exc, "code", ""))
            if code in CONCURRENT_SCHEMA_CODES:
                return
            # Two processes creating schema at once can deadlock on the label lock; the server
            # aborts one of them, which tries again.
            if not code.startswith("Neo.TransientError.") or attempt == SCHEMA_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1) + random.random() * 0.1)


def _indexes_present(session: Session) -> bool:
    names = {r["name"] for r in session.run("SHOW INDEXES YIELD name, state WHERE state = 'ONLINE' RETURN name")}
    return FULLTEXT_INDEX in names and "aesop_entity_id" in names


def ensure_relation_types(session: Session, types: Iterable[str]) -> None:
    """A uniqueness constraint on `id` for each relationship type, so relations are found by id.

    Schema changes cannot share a transaction with data, so this runs before a write; creating a
    constraint that exists is a no-op. Servers without relationship uniqueness constraints
    (before Neo4j 5.7) get a plain relationship index instead.
    """
    for name in types:
        quoted = cypher_name(name, "relation type")
        constraint = f"{REL_CONSTRAINT_PREFIX}{name}"
        try:
            run_schema_statement(
                session, f"CREATE CONSTRAINT {constraint} IF NOT EXISTS FOR ()-[r:{quoted}]-() REQUIRE r.id IS UNIQUE"
            )
        except Exception as exc:  # older servers: fall back to an index
            if "Neo.ClientError.Statement.SyntaxError" not in str(getattr(exc, "code", "")):
                raise
            run_schema_statement(session, f"CREATE INDEX {constraint} IF NOT EXISTS FOR ()-[r:{quoted}]-() ON (r.id)")
    session.run("CALL db.awaitIndexes($seconds)", seconds=INDEX_WAIT_SECONDS).consume()
