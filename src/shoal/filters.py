"""Qdrant-style payload filters, validated once at the API edge and translated by each vector store.

```json
{"must": [{"key": "lang", "match": {"value": "en"}},
          {"key": "ts", "range": {"gte": "2025-01-01T00:00:00Z"}}],
 "must_not": [{"has_id": ["r1"]}],
 "should": [{"key": "tags", "match": {"any": ["a", "b"]}}]}
```

Keys address the record payload; ``ts`` addresses the record timestamp; ``has_id`` takes record ids.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = str | int | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """Exactly one of ``value`` / ``any`` / ``except`` / ``text``."""

    value: Scalar | None = None
    any: list[Scalar] | None = None
    except_: list[Scalar] | None = Field(None, alias="except")
    text: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Match:
        given = [n for n in ("value", "any", "except_", "text") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("match needs exactly one of: value, any, except, text")
        return self


class Range(_Strict):
    """Numeric or datetime bounds (ISO 8601 strings are parsed as datetimes)."""

    gt: float | datetime | None = None
    gte: float | datetime | None = None
    lt: float | datetime | None = None
    lte: float | datetime | None = None

    @model_validator(mode="after")
    def _some(self) -> Range:
        bounds = [b for b in (self.gt, self.gte, self.lt, self.lte) if b is not None]
        if not bounds:
            raise ValueError("range needs at least one of: gt, gte, lt, lte")
        kinds = {isinstance(b, datetime) for b in bounds}
        if len(kinds) > 1:
            raise ValueError("range bounds must be all numbers or all datetimes")
        return self

    @property
    def is_datetime(self) -> bool:
        return any(isinstance(b, datetime) for b in (self.gt, self.gte, self.lt, self.lte))


class FieldCondition(_Strict):
    key: Annotated[str, Field(min_length=1, max_length=256)]
    match: Match | None = None
    range: Range | None = None

    @model_validator(mode="after")
    def _one(self) -> FieldCondition:
        if (self.match is None) == (self.range is None):
            raise ValueError(f"condition on {self.key!r} needs exactly one of: match, range")
        return self


class HasId(_Strict):
    has_id: Annotated[list[str], Field(min_length=1, max_length=10_000)]


class IsEmpty(_Strict):
    is_empty: dict[str, str]


Condition = Union[FieldCondition, HasId, "Filter"]


class Filter(_Strict):
    must: list[Condition] | None = None
    should: list[Condition] | None = None
    must_not: list[Condition] | None = None

    def is_empty(self) -> bool:
        return not (self.must or self.should or self.must_not)


Filter.model_rebuild()


def combine(*filters: Filter | None) -> Filter | None:
    """AND several optional filters together."""
    present = [f for f in filters if f is not None and not f.is_empty()]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return Filter(must=list(present))
