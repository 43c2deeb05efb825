"""What the postgres connector's tools take (filters, orders, metrics, groupings) and what it
says about a table (its columns, keys and comment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from aesoperator.errors import SchemaError

FilterOp = Literal[
    "=", "!=", "<", "<=", ">", ">=", "in", "not in", "like", "ilike", "is null", "is not null", "between"
]


class Filter(BaseModel):
    """One condition on a column; the value travels as a parameter."""

    column: str = Field(max_length=200)
    op: FilterOp = "="
    value: Any = None


class OrderBy(BaseModel):
    column: str = Field(max_length=200)
    direction: Literal["asc", "desc"] = "asc"


class Metric(BaseModel):
    fn: Literal["count", "count_distinct", "sum", "avg", "min", "max"]
    column: str | None = Field(default=None, max_length=200, description="None only for count (all rows).")
    alias: str | None = Field(default=None, max_length=63)


class GroupBy(BaseModel):
    column: str = Field(max_length=200)
    trunc: Literal["minute", "hour", "day", "week", "month", "quarter", "year"] | None = Field(
        default=None, description="Truncate a date/time column to this unit."
    )
    alias: str | None = Field(default=None, max_length=63)


Filters = Annotated[
    list[Filter] | dict[str, Any] | None,
    Field(description="Conditions, all of which must hold: a list of {column, op, value}, or {column: value}."),
]


@dataclass(frozen=True)
class ColumnSchema:
    name: str
    data_type: str
    nullable: bool
    default: str | None
    position: int
    comment: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data_type": self.data_type,
            "nullable": self.nullable,
            "default": self.default,
            "position": self.position,
            "comment": self.comment,
        }


@dataclass(frozen=True)
class TableSchema:
    schema: str
    name: str
    kind: str
    columns: tuple[ColumnSchema, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[dict[str, Any], ...]
    comment: str | None
    row_estimate: int | None

    def column(self, name: str) -> ColumnSchema:
        for c in self.columns:
            if c.name == name:
                return c
        raise SchemaError(
            f"table {self.name!r} has no column {name!r}; its columns are {[c.name for c in self.columns]}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "name": self.name,
            "kind": self.kind,
            "comment": self.comment,
            "columns": [c.as_dict() for c in self.columns],
            "primary_key": list(self.primary_key),
            "foreign_keys": list(self.foreign_keys),
            "row_estimate": self.row_estimate,
        }
