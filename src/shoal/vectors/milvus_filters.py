"""Shoal filters → a Milvus boolean expression over the JSON ``payload`` field and the ``ts`` column.

Milvus(-lite) has no bind parameters for filter values, so values are written as literals (JSON
strings and numbers, which Milvus's expression grammar reads the same way). Semantics, where they
differ from Qdrant's, are listed in docs/backends.md:

- ``match.value`` is equality or array membership (``json_contains``).
- ``match.any``: equal to one of the values, or an array sharing one (``json_contains_any``).
- ``match.except``: a missing key, or a scalar that is none of the values, or an array with *no*
  element among them (Qdrant: an array with *some* element not among them).
- ``match.text``: substring (``like "%text%"``), case-sensitive.
- ``range``: numbers on payload keys; datetimes only on ``ts`` (an INT64 column of epoch µs).
- Every leaf is guarded with ``exists``, so ``must_not`` on a missing key matches, as in Qdrant.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shoal.errors import InvalidInput
from shoal.filters import FieldCondition, Filter, HasId, Match, Range
from shoal.vectors.edge_filters import TS_FIELD, rfc3339

_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def epoch_us(value: datetime | str | float) -> int:
    """A timestamp (datetime, ISO 8601 string or epoch seconds) as integer epoch microseconds."""
    moment = datetime.fromisoformat(rfc3339(value))
    return int(moment.timestamp() * 1_000_000)


def literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def to_expression(filter: Filter | None, *, exclude_ids: Sequence[str] = ()) -> str:
    """The expression for ``filter`` and ids to leave out; ``""`` when nothing constrains."""
    parts = [] if filter is None or filter.is_empty() else [_filter(filter)]
    if exclude_ids:
        parts.append(f"not (id in {literal(list(exclude_ids))})")
    return " and ".join(parts)


def _filter(filter: Filter) -> str:
    parts: list[str] = []
    if filter.must:
        parts.append("(" + " and ".join(_condition(c) for c in filter.must) + ")")
    if filter.should:
        parts.append("(" + " or ".join(_condition(c) for c in filter.should) + ")")
    if filter.must_not:
        parts.append("not (" + " or ".join(_condition(c) for c in filter.must_not) + ")")
    return "(" + " and ".join(parts) + ")" if parts else '(id != "")'


def _condition(condition: FieldCondition | HasId | Filter) -> str:
    if isinstance(condition, Filter):
        return _filter(condition)
    if isinstance(condition, HasId):
        return f"(id in {literal(list(condition.has_id))})"
    if condition.key == TS_FIELD:
        if condition.range is None:
            raise InvalidInput("ts: only range conditions are supported on the Milvus vector store")
        return _ts_range(condition.range)
    field = _field(condition.key)
    if condition.match is not None:
        return _match(condition.key, field, condition.match)
    assert condition.range is not None  # guaranteed by FieldCondition's validator
    return f"(exists {field} and {_number_range(condition.key, field, condition.range)})"


def _field(key: str) -> str:
    return "payload" + "".join(f"[{literal(part)}]" for part in key.split("."))


def _match(key: str, field: str, match: Match) -> str:
    if match.value is not None:
        value = literal(match.value)
        return f"(exists {field} and ({field} == {value} or json_contains({field}, {value})))"
    if match.text is not None:
        pattern = match.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"(exists {field} and {field} like {literal('%' + pattern + '%')})"
    values = match.any if match.any is not None else match.except_
    assert values is not None  # exactly one of value/any/except/text is set
    if any(isinstance(v, bool) for v in values) or len({type(v) for v in values}) > 1:
        raise InvalidInput(f"{key}: match any/except needs all strings or all integers")
    hit = " or ".join([*(f"{field} == {literal(v)}" for v in values), f"json_contains_any({field}, {literal(values)})"])
    if match.any is not None:
        return f"(exists {field} and ({hit}))"
    return f"((not exists {field}) or not ({hit}))"


def _number_range(key: str, field: str, bounds: Range) -> str:
    if bounds.is_datetime:
        raise InvalidInput(f"{key}: the Milvus vector store supports datetime ranges only on ts")
    tests = [
        f"{field} {op} {float(getattr(bounds, name))!r}"
        for name, op in _OPS.items()
        if getattr(bounds, name) is not None
    ]
    return "(" + " and ".join(tests) + ")"


def _ts_range(bounds: Range) -> str:
    tests = []
    for name, op in _OPS.items():
        bound = getattr(bounds, name)
        if bound is not None:
            if not isinstance(bound, datetime):
                raise InvalidInput("ts: range bounds must be ISO 8601 datetimes")
            tests.append(f"ts {op} {epoch_us(bound)}")
    return "(ts is not null and " + " and ".join(tests) + ")"
