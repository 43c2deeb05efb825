"""Composing PostgreSQL statements that carry parameters, whatever the names in them hold.

psycopg reads every `%` of a statement executed with parameters as placeholder syntax, inside a
quoted identifier too: a column named `50%` or `a%sb` breaks the statement ("only '%s', '%b',
'%t' are allowed as placeholders", "N placeholders but M parameters") or shifts which value
binds where. `Ident` quotes like `sql.Identifier` (with the connection's own escaping) and then
doubles every `%`; `catalog_sql` does the same for SQL text read from the catalog (a type name as
`format_type` writes it). A statement built from them must be executed with a parameter
sequence, empty if need be, so that psycopg turns each `%%` back into `%`.
"""

from __future__ import annotations

from psycopg import sql
from psycopg.abc import AdaptContext


class Ident(sql.Identifier):
    """An SQL identifier (or dotted name) that no `%` in it can turn into a placeholder."""

    def as_bytes(self, context: AdaptContext | None = None) -> bytes:
        return super().as_bytes(context).replace(b"%", b"%%")


def catalog_sql(text: str) -> sql.SQL:
    """SQL text taken from the catalog (already quoted by PostgreSQL), its `%` doubled."""
    return sql.SQL(text.replace("%", "%%"))
