"""The explorer API's inputs: query strings and JSON bodies, checked before anything is read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.datastructures import QueryParams

from aesoperator.graph_schema.models import check_label

MAX_FILTERS = 20


def _as_utc(moment: datetime | None) -> datetime | None:
    """A time without a zone (what a datetime-local input sends) is taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


Label = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(lambda v: check_label(v, "filter"))]
EntityRef = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\x00]*$")]
AsOf = Annotated[datetime | None, AfterValidator(_as_utc)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_query(cls, query: QueryParams, lists: tuple[str, ...] = ()) -> _Params:
        """The model from a query string: `lists` are repeatable keys; empty values are left out."""
        data: dict[str, object] = {}
        for key in query:
            values = [v for v in query.getlist(key) if v.strip()]
            if not values:
                continue
            data[key] = values if key in lists else values[-1]
        return cls.model_validate(data)


class SearchParams(_Params):
    q: Annotated[str, Field(min_length=1, max_length=10_000)]
    k: Annotated[int, Field(ge=1, le=100)] = 10
    hops: Annotated[int | None, Field(ge=0, le=3)] = None
    namespace: Annotated[list[Label], Field(max_length=MAX_FILTERS)] = []
    type: Annotated[list[Label], Field(max_length=MAX_FILTERS)] = []
    source: Annotated[list[Label], Field(max_length=MAX_FILTERS)] = []
    as_of: AsOf = None


class EntityParams(_Params):
    id: EntityRef


class GraphParams(_Params):
    id: EntityRef
    relation_type: Annotated[list[Label], Field(max_length=MAX_FILTERS)] = []
    as_of: AsOf = None


class MemoryParams(_Params):
    agent: Label


class ResyncBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Annotated[str, Field(min_length=1, max_length=200)]
