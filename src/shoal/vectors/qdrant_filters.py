"""Translation between Shoal's filters and points and qdrant-client's models.

The stored layout is Qdrant Edge's (see ``edge_filters``): UUID5 point ids, the caller's id under
``_id``, the record time under ``_ts``, vectors named ``dense`` and ``bm25``. Keeping one layout means
an Edge shard snapshot restores into a Qdrant server collection and is read back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from qdrant_client import models

from shoal.errors import InvalidInput
from shoal.filters import FieldCondition, Filter, HasId, Match, Range
from shoal.vectors.base import Hit, Point, SparseVector
from shoal.vectors.edge_filters import (
    DENSE,
    SPARSE,
    decode_payload,
    dense,
    encode_payload,
    field_key,
    point_uuid,
    rfc3339,
)

__all__ = ["DENSE", "SPARSE", "dense", "point_id", "sparse", "to_hit", "to_point", "to_qdrant", "to_struct"]


def point_id(caller_id: str) -> str:
    return str(point_uuid(caller_id))


def to_qdrant(filter: Filter | None, *, exclude_ids: Sequence[str] = ()) -> models.Filter | None:
    """Shoal filter (and ids to leave out) → qdrant-client filter; ``None`` when nothing constrains."""
    conditions: list[models.Filter] = [] if filter is None or filter.is_empty() else [_filter(filter)]
    if exclude_ids:
        conditions.append(models.Filter(must_not=[_has_id(exclude_ids)]))
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else models.Filter(must=list(conditions))


def _has_id(ids: Iterable[str]) -> models.HasIdCondition:
    return models.HasIdCondition(has_id=[point_id(i) for i in dict.fromkeys(ids)])


def _filter(filter: Filter) -> models.Filter:
    return models.Filter(
        must=_conditions(filter.must),
        should=_conditions(filter.should),
        must_not=_conditions(filter.must_not),
    )


def _conditions(conditions: Sequence[FieldCondition | HasId | Filter] | None) -> list[Any] | None:
    return [_condition(c) for c in conditions] if conditions else None


def _condition(condition: FieldCondition | HasId | Filter) -> Any:
    if isinstance(condition, Filter):
        return _filter(condition)
    if isinstance(condition, HasId):
        return _has_id(condition.has_id)
    key = field_key(condition.key)
    if condition.match is not None:
        return models.FieldCondition(key=key, match=_match(condition.key, condition.match))
    assert condition.range is not None  # guaranteed by FieldCondition's validator
    return models.FieldCondition(key=key, range=_range(condition.range))


def _match(key: str, match: Match) -> Any:
    if match.value is not None:
        return models.MatchValue(value=match.value)
    if match.text is not None:
        return models.MatchText(text=match.text)
    values = match.any if match.any is not None else match.except_
    assert values is not None  # exactly one of value/any/except/text is set
    if any(isinstance(v, bool) for v in values) or len({type(v) for v in values}) > 1:
        raise InvalidInput(f"{key}: match any/except needs all strings or all integers")
    same: Any = values
    return models.MatchAny(any=same) if match.any is not None else models.MatchExcept(**{"except": same})


def _range(bounds: Range) -> models.Range | models.DatetimeRange:
    if bounds.is_datetime:
        return models.DatetimeRange(gte=_iso(bounds.gte), gt=_iso(bounds.gt), lte=_iso(bounds.lte), lt=_iso(bounds.lt))
    return models.Range(gte=_num(bounds.gte), gt=_num(bounds.gt), lte=_num(bounds.lte), lt=_num(bounds.lt))


def _iso(bound: float | datetime | None) -> str | None:
    return None if bound is None else rfc3339(bound)


def _num(bound: float | datetime | None) -> float | None:
    return bound if bound is None or isinstance(bound, float | int) else None


def sparse(vector: SparseVector) -> models.SparseVector:
    if len(vector.indices) != len(vector.values):
        raise InvalidInput("sparse vector: indices and values differ in length")
    return models.SparseVector(indices=list(vector.indices), values=[float(v) for v in vector.values])


def to_struct(point: Point, dim: int, has_sparse: bool) -> models.PointStruct:
    vectors: dict[str, Any] = {}
    if point.vector is not None:
        vectors[DENSE] = dense(point.vector, dim)
    if point.sparse is not None:
        if not has_sparse:
            raise InvalidInput(f"point {point.id!r} has a sparse vector but the collection has none")
        vectors[SPARSE] = sparse(point.sparse)
    return models.PointStruct(id=point_id(point.id), vector=vectors, payload=encode_payload(point.id, point.payload))


def _vectors(raw: Any) -> tuple[list[float] | None, SparseVector | None]:
    if not isinstance(raw, dict):
        return None, None
    dense_values = raw.get(DENSE)
    stored = raw.get(SPARSE)
    found = None if stored is None else SparseVector(list(stored.indices), list(stored.values))
    return (list(dense_values) if dense_values is not None else None), found


def to_point(record: models.Record) -> Point:
    caller_id, payload = decode_payload(record.payload)
    dense_values, sparse_values = _vectors(record.vector)
    return Point(id=caller_id, vector=dense_values, payload=payload, sparse=sparse_values)


def to_hit(scored: models.ScoredPoint) -> Hit:
    caller_id, payload = decode_payload(scored.payload)
    dense_values, _ = _vectors(scored.vector)
    return Hit(id=caller_id, score=scored.score, payload=payload, vector=dense_values)
