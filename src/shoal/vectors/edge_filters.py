"""Translation between Shoal's points, ids, payloads and filters and Qdrant Edge's.

Edge point ids must be integers or UUIDs, so a caller's string id becomes a UUID5 over a fixed
namespace; the original string rides in the payload under ``_id``. The record timestamp (payload
key ``ts``) is stored as an RFC 3339 UTC string under ``_ts`` so a datetime index can serve range
filters and newest-first ordering. Reserved keys never leave this module's decoder.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import qdrant_edge as edge

from shoal.errors import InvalidInput
from shoal.filters import FieldCondition, Filter, HasId, Match, Range
from shoal.vectors.base import Hit, Point, SparseVector

ID_KEY = "_id"
TS_KEY = "_ts"
RESERVED = frozenset({ID_KEY, TS_KEY})
TS_FIELD = "ts"
DENSE = "dense"
SPARSE = "bm25"

# Fixed forever: changing it would orphan every stored point.
_NAMESPACE = uuid.UUID("6f1c1e0a-5b7d-4a52-9d8e-3c2f0b9a7e41")


@functools.lru_cache(maxsize=1 << 15)
def point_uuid(point_id: str) -> uuid.UUID:
    """The deterministic Edge id for a caller's string id. Cached: a search that excludes a user's
    seen items converts every one of them (uuid5 is a SHA-1, ~2 µs), each time the list is rebuilt."""
    return uuid.uuid5(_NAMESPACE, point_id)


def field_key(key: str) -> str:
    """Payload path as stored: the virtual ``ts`` key lives under ``_ts``."""
    return TS_KEY if key == TS_FIELD else key


def stored_keys(keys: Sequence[str]) -> list[str]:
    """The stored payload paths a hit needs to return ``keys``: the caller's id always, ``ts`` as ``_ts``."""
    return [ID_KEY, *(field_key(k) for k in keys)]


def rfc3339(value: datetime | str | float) -> str:
    """Normalise a timestamp (datetime, ISO 8601 string or epoch seconds) to RFC 3339 UTC.

    Naive datetimes are taken as UTC.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidInput(f"ts: not an ISO 8601 datetime: {value!r}") from exc
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        raise InvalidInput(f"ts: expected a datetime, ISO 8601 string or epoch seconds, got {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_payload(point_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Caller payload → stored payload (adds ``_id``, moves ``ts`` to ``_ts``)."""
    clash = RESERVED.intersection(payload)
    if clash:
        raise InvalidInput(f"payload keys {sorted(clash)} are reserved")
    stored: dict[str, Any] = {}
    for key, value in payload.items():
        if key == TS_FIELD:
            stored[TS_KEY] = rfc3339(value)
        elif isinstance(value, datetime):
            stored[key] = rfc3339(value)
        else:
            stored[key] = value
    stored[ID_KEY] = point_id
    return stored


def decode_payload(stored: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Stored payload → (caller id, caller payload with ``ts`` restored as an RFC 3339 string)."""
    if not stored:
        raise InvalidInput("point without a stored id (not written by Shoal)")
    payload = {k: v for k, v in stored.items() if k not in RESERVED}
    if TS_KEY in stored:
        payload[TS_FIELD] = stored[TS_KEY]
    return str(stored[ID_KEY]), payload


def to_edge(filter: Filter | None, *, exclude_ids: Sequence[str] = ()) -> edge.Filter | None:
    """Shoal filter (and ids to leave out) → Edge filter; ``None`` when nothing constrains."""
    conditions: list[Any] = [] if filter is None or filter.is_empty() else [_filter(filter)]
    if exclude_ids:
        conditions.append(edge.Filter(must_not=[has_id(exclude_ids)]))
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else edge.Filter(must=conditions)


def has_id(ids: Iterable[str]) -> edge.HasIdCondition:
    return edge.HasIdCondition({point_uuid(i) for i in ids})


def _filter(filter: Filter) -> edge.Filter:
    return edge.Filter(
        must=_conditions(filter.must),
        should=_conditions(filter.should),
        must_not=_conditions(filter.must_not),
    )


def _conditions(conditions: Sequence[FieldCondition | HasId | Filter] | None) -> list[Any] | None:
    if not conditions:
        return None
    return [_condition(c) for c in conditions]


def _condition(condition: FieldCondition | HasId | Filter) -> Any:
    if isinstance(condition, Filter):
        return _filter(condition)
    if isinstance(condition, HasId):
        return has_id(condition.has_id)
    key = field_key(condition.key)
    if condition.match is not None:
        return edge.FieldCondition(key, match=_match(condition.key, condition.match))
    assert condition.range is not None  # guaranteed by FieldCondition's validator
    return edge.FieldCondition(key, range=_range(condition.range))


def _match(key: str, match: Match) -> Any:
    if match.value is not None:
        return edge.MatchValue(match.value)
    if match.text is not None:
        return edge.MatchText(match.text)
    values = match.any if match.any is not None else match.except_
    assert values is not None  # exactly one of value/any/except/text is set
    if any(isinstance(v, bool) for v in values) or len({type(v) for v in values}) > 1:
        # Edge matches lists of all-strings or all-integers only.
        raise InvalidInput(f"{key}: match any/except needs all strings or all integers")
    same: Any = values  # checked above: all str or all int
    return edge.MatchAny(same) if match.any is not None else edge.MatchExcept(same)


def _range(bounds: Range) -> Any:
    if bounds.is_datetime:
        return edge.RangeDateTime(gte=_iso(bounds.gte), gt=_iso(bounds.gt), lte=_iso(bounds.lte), lt=_iso(bounds.lt))
    return edge.RangeFloat(gte=_num(bounds.gte), gt=_num(bounds.gt), lte=_num(bounds.lte), lt=_num(bounds.lt))


def _iso(bound: float | datetime | None) -> str | None:
    return None if bound is None else rfc3339(bound)


def _num(bound: float | datetime | None) -> float | None:
    return bound if bound is None or isinstance(bound, float | int) else None


def dense(vector: Sequence[float], dim: int) -> list[float]:
    values: list[float] = np.asarray(vector, dtype=np.float32).ravel().tolist()
    if len(values) != dim:
        raise InvalidInput(f"vector has {len(values)} dimensions, the collection expects {dim}")
    return values


def sparse(sparse: SparseVector) -> edge.SparseVector:
    if len(sparse.indices) != len(sparse.values):
        raise InvalidInput("sparse vector: indices and values differ in length")
    return edge.SparseVector(list(sparse.indices), [float(v) for v in sparse.values])


def to_edge_point(point: Point, dim: int, has_sparse: bool) -> edge.Point:
    vectors: dict[str, Any] = {}
    if point.vector is not None:
        vectors[DENSE] = dense(point.vector, dim)
    if point.sparse is not None:
        if not has_sparse:
            raise InvalidInput(f"point {point.id!r} has a sparse vector but the collection has none")
        vectors[SPARSE] = sparse(point.sparse)
    return edge.Point(point_uuid(point.id), vectors, encode_payload(point.id, point.payload))


def _vectors(raw: Any) -> tuple[list[float] | None, SparseVector | None]:
    if not isinstance(raw, dict):
        return None, None
    dense_values = raw.get(DENSE)
    stored_sparse = raw.get(SPARSE)
    found = None if stored_sparse is None else SparseVector(stored_sparse.indices, stored_sparse.values)
    return (list(dense_values) if dense_values is not None else None), found


def to_point(record: edge.Record) -> Point:
    point_id, payload = decode_payload(record.payload)
    dense_values, sparse_values = _vectors(record.vector)
    return Point(id=point_id, vector=dense_values, payload=payload, sparse=sparse_values)


def to_hit(scored: edge.ScoredPoint) -> Hit:
    point_id, payload = decode_payload(scored.payload)
    dense_values, _ = _vectors(scored.vector)
    return Hit(id=point_id, score=scored.score, payload=payload, vector=dense_values)
