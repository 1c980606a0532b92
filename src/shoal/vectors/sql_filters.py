"""Shoal filters → a PostgreSQL ``WHERE`` clause over a JSONB payload (used by pgvector).

Semantics follow Qdrant's where PostgreSQL can express them exactly:

- ``match.value`` is JSONB containment on the key's value, so it is true for an equal scalar or for an
  array holding the value (Qdrant's "any element matches").
- ``match.any`` is the same against any of the values; ``match.except`` is true when a scalar is none
  of them, when an array has an element that is none of them, or when the key is missing.
- ``match.text`` is a case-sensitive substring test (Qdrant without a full-text index does the same;
  with one, Qdrant matches lower-cased tokens instead).
- ``range`` on numbers compares JSON numbers only; on datetimes it compares ISO 8601 strings parsed
  as ``timestamptz`` (strings that do not parse never match). The key ``ts`` is the ``ts`` column.
- ``has_id`` tests the caller's id column.

Every leaf is ``coalesce(..., false)`` so a missing key never turns ``NOT`` into ``NULL``.
Values travel as bind parameters (``$n``); only column names and fixed SQL are spliced in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from shoal.errors import InvalidInput
from shoal.filters import FieldCondition, Filter, HasId, Match, Range
from shoal.vectors.edge_filters import TS_FIELD, rfc3339

# A cast that answers NULL instead of failing on strings that are not datetimes; created by the store.
TRY_TIMESTAMPTZ = "shoal_try_timestamptz"
TRY_TIMESTAMPTZ_DDL = f"""
CREATE OR REPLACE FUNCTION {TRY_TIMESTAMPTZ}(value text) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$
"""
_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class SqlFilter:
    """Accumulates bind parameters while rendering conditions; ``params`` follow the caller's own."""

    def __init__(self, first_param: int = 1) -> None:
        self._first = first_param
        self.params: list[Any] = []

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return f"${self._first + len(self.params) - 1}"

    def where(self, filter: Filter | None, *, exclude_ids: Sequence[str] = ()) -> str:
        """The clause for ``filter`` and ids to leave out; ``TRUE`` when nothing constrains."""
        parts = [] if filter is None or filter.is_empty() else [self._filter(filter)]
        if exclude_ids:
            parts.append(f"NOT (id = ANY({self.bind(list(exclude_ids))}::text[]))")
        return " AND ".join(parts) if parts else "TRUE"

    def order_key(self, key: str) -> str:
        """An ``ORDER BY`` expression for payload ``key`` (``ts`` is the column)."""
        return "ts" if key == TS_FIELD else f"(payload #> {self.bind(_path(key))}::text[])"

    def _filter(self, filter: Filter) -> str:
        parts: list[str] = []
        if filter.must:
            parts.append("(" + " AND ".join(self._condition(c) for c in filter.must) + ")")
        if filter.should:
            parts.append("(" + " OR ".join(self._condition(c) for c in filter.should) + ")")
        if filter.must_not:
            parts.append("NOT (" + " OR ".join(self._condition(c) for c in filter.must_not) + ")")
        return "(" + " AND ".join(parts) + ")" if parts else "TRUE"

    def _condition(self, condition: FieldCondition | HasId | Filter) -> str:
        if isinstance(condition, Filter):
            return self._filter(condition)
        if isinstance(condition, HasId):
            return f"(id = ANY({self.bind(list(condition.has_id))}::text[]))"
        if condition.match is not None:
            return f"coalesce({self._match(condition.key, condition.match)}, false)"
        assert condition.range is not None  # guaranteed by FieldCondition's validator
        return f"coalesce({self._range(condition.key, condition.range)}, false)"

    def _match(self, key: str, match: Match) -> str:
        if key == TS_FIELD:
            if match.value is None or not isinstance(match.value, str):
                raise InvalidInput("ts: only range and match on an ISO 8601 value are supported")
            return f"(ts = {self.bind(datetime.fromisoformat(rfc3339(match.value)))})"
        value = f"(payload #> {self.bind(_path(key))}::text[])"
        if match.value is not None:
            return f"({value} @> {self.bind(json.dumps(match.value))}::jsonb)"
        if match.text is not None:
            return f"(jsonb_typeof({value}) = 'string' AND strpos({value} #>> '{{}}', {self.bind(match.text)}) > 0)"
        values = match.any if match.any is not None else match.except_
        assert values is not None  # exactly one of value/any/except/text is set
        options = f"{self.bind([json.dumps(v) for v in values])}::jsonb[]"
        if match.any is not None:
            return f"({value} @> ANY({options}))"
        return (
            f"(CASE jsonb_typeof({value}) WHEN 'array' THEN "
            f"EXISTS (SELECT 1 FROM jsonb_array_elements({value}) AS e WHERE NOT (e = ANY({options}))) "
            f"ELSE NOT coalesce({value} = ANY({options}), false) END)"
        )

    def _range(self, key: str, bounds: Range) -> str:
        if bounds.is_datetime or key == TS_FIELD:
            if key == TS_FIELD:
                subject = "ts"
            else:
                path = self.bind(_path(key))
                subject = f"{TRY_TIMESTAMPTZ}(payload #>> {path}::text[])"
            bound: Callable[[str, float | datetime], Any] = _datetime
        else:
            value = f"(payload #> {self.bind(_path(key))}::text[])"
            subject = f"(CASE WHEN jsonb_typeof({value}) = 'number' THEN ({value} #>> '{{}}')::float8 END)"
            bound = _number
        tests = [
            f"{subject} {op} {self.bind(bound(key, getattr(bounds, name)))}"
            for name, op in _OPS.items()
            if getattr(bounds, name) is not None
        ]
        return "(" + " AND ".join(tests) + ")"


def _path(key: str) -> list[str]:
    """Qdrant's dotted key (``meta.lang``) → a JSONB path."""
    return key.split(".")


def _datetime(key: str, bound: float | datetime) -> datetime:
    if isinstance(bound, datetime):
        return datetime.fromisoformat(rfc3339(bound))
    raise InvalidInput(f"{key}: a datetime range needs ISO 8601 bounds")


def _number(key: str, bound: float | datetime) -> float:
    if isinstance(bound, datetime):
        raise InvalidInput(f"{key}: range bounds must be all numbers or all datetimes")
    return float(bound)
