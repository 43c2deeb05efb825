"""The relational sources' catalog, options and keys, shared by the walk and the mapper.

The catalog dataclasses describe what a `RelationalReader` (the SQL side, in each adapter) reports:
the database, its allowed tables with their columns and keys, foreign keys, pages of rows.
Ids are `<source>:<kind>:<natural key>` with the natural keys `<schema>.<table>`,
`<schema>.<table>.<column>` and `<schema>.<table>:<primary key values>` (each part
percent-encoded where it holds `%`, `.`, `,`, `:` or `/`, so no two keys collide).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aesoperator.errors import ConfigError
from aesoperator.graph_schema.ids import entity_id

DEFAULT_ROW_LIMIT = 10_000
DEFAULT_PAGE_SIZE = 500
DEFAULT_MAX_VALUE_CHARS = 2_000


# -- catalog ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ColumnInfo:
    name: str
    data_type: str
    nullable: bool = True
    default: str | None = None
    position: int = 0
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class TableInfo:
    """An allowed table. `key_columns` order its rows and identify them: the primary key, or a
    reader's own row key (SQLite's rowid) when the table has none; empty when rows can't be keyed."""

    schema: str
    name: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...] = ()
    key_columns: tuple[str, ...] = ()
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class ForeignKeyInfo:
    name: str
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    name: str
    dialect: str  # "PostgreSQL", "SQLite"
    version: str
    uri: str  # where it lives, without credentials
    default_schema: str  # the schema whose tables are shown without a prefix


@dataclass(frozen=True, slots=True)
class RowPage:
    """One page of rows in key order: JSON-safe values per row, and the reader's cursor after
    the last row (what `rows(..., after=cursor)` continues from)."""

    rows: list[dict[str, Any]]
    cursor: Any = None
    key_values: list[dict[str, Any]] | None = None  # per row, key columns that are not table columns


class RelationalReader(Protocol):
    """The SQL side of a relational source. Every method names allowed tables only."""

    async def database(self) -> DatabaseInfo: ...

    async def tables(self, allowed: Sequence[str]) -> list[TableInfo]:
        """The allowed tables that exist, with their columns and keys (others are not asked about)."""
        ...

    async def foreign_keys(self, tables: Sequence[TableInfo]) -> list[ForeignKeyInfo]:
        """Foreign keys whose both ends are among `tables`."""
        ...

    async def rows(self, table: TableInfo, after: Any, limit: int) -> RowPage:
        """Up to `limit` rows of `table` in key order, after the cursor `after` (None: from the start)."""
        ...


# -- options ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RelationalOptions:
    allowed_tables: tuple[str, ...]
    row_limit: int = DEFAULT_ROW_LIMIT
    page_size: int = DEFAULT_PAGE_SIZE
    max_value_chars: int = DEFAULT_MAX_VALUE_CHARS

    @classmethod
    def parse(cls, source: str, options: Mapping[str, Any]) -> RelationalOptions:
        allowed = options.get("allowed_tables")
        if (
            not isinstance(allowed, list | tuple)
            or not allowed
            or not all(isinstance(t, str) and t.strip() for t in allowed)
        ):
            raise ConfigError(
                f"source {source!r}: options.allowed_tables must list the tables to read, e.g. "
                'allowed_tables = ["orders", "customers"]; no table is read without it'
            )

        def positive(name: str, default: int) -> int:
            value = options.get(name, default)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"source {source!r}: options.{name} must be a positive integer, got {value!r}")
            return value

        return cls(
            allowed_tables=tuple(dict.fromkeys(allowed)),
            row_limit=positive("row_limit", DEFAULT_ROW_LIMIT),
            page_size=positive("page_size", DEFAULT_PAGE_SIZE),
            max_value_chars=positive("max_value_chars", DEFAULT_MAX_VALUE_CHARS),
        )


# -- keys and ids ----------------------------------------------------------------------------------
_SEPARATORS = str.maketrans({"%": "%25", ".": "%2E", ",": "%2C", ":": "%3A", "/": "%2F"})


def id_part(text: str) -> str:
    """A name or key value as an id part: the separators ids use are percent-encoded, nothing else.

    Args:
        text: A schema, table or column name, or a key value as text.

    Returns:
        The text with `%`, `.`, `,`, `:` and `/` percent-encoded.
    """
    return text.translate(_SEPARATORS)


def table_key(schema: str, table: str) -> str:
    """A table's natural key.

    Args:
        schema: The table's schema.
        table: The table's name.

    Returns:
        `<schema>.<table>`, each part encoded by `id_part`.
    """
    return f"{id_part(schema)}.{id_part(table)}"


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def pk_key(values: Sequence[Any]) -> str:
    """The primary key values as one id part.

    Args:
        values: The key values, in key column order.

    Returns:
        `7`, or `1,2` for a composite key (each value encoded by `id_part`).
    """
    return ",".join(id_part(_scalar_text(v)) for v in values)


def row_natural_key(schema: str, table: str, pk: Sequence[Any]) -> str:
    """A row's natural key.

    Args:
        schema: The table's schema.
        table: The table's name.
        pk: The row's key values, in key column order.

    Returns:
        `<schema>.<table>:<primary key values>`.
    """
    return f"{table_key(schema, table)}:{pk_key(pk)}"


class RelationalIds:
    def __init__(self, source: str) -> None:
        self.source = source

    def database(self, name: str) -> str:
        return entity_id(self.source, "database", id_part(name))

    def table(self, schema: str, table: str) -> str:
        return entity_id(self.source, "table", table_key(schema, table))

    def column(self, schema: str, table: str, column: str) -> str:
        return entity_id(self.source, "column", f"{table_key(schema, table)}.{id_part(column)}")

    def row(self, schema: str, table: str, pk: Sequence[Any]) -> str:
        return entity_id(self.source, "row", row_natural_key(schema, table, pk))


def display_table(schema: str, table: str, default_schema: str) -> str:
    """How a table is named in text: without its schema when that is the default one.

    Args:
        schema: The table's schema.
        table: The table's name.
        default_schema: The database's default schema.

    Returns:
        `table` or `schema.table`.
    """
    return table if schema == default_schema else f"{schema}.{table}"


def row_pk(table: TableInfo, values: Mapping[str, Any], key_values: Mapping[str, Any] | None = None) -> list[Any]:
    """A row's key values, in key column order.

    Args:
        table: The row's table.
        values: The row's column values.
        key_values: Key columns that are not table columns (SQLite's rowid), if any.

    Returns:
        The values of `table.key_columns`.

    Raises:
        KeyError: A key column is in neither `values` nor `key_values`.
    """
    out = []
    for col in table.key_columns:
        if key_values is not None and col in key_values:
            out.append(key_values[col])
        else:
            out.append(values[col])
    return out
