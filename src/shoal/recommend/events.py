"""Interaction events: the HTTP model, its validation and its encoding in the ``interactions`` topic."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from shoal.api.errors import describe_validation
from shoal.errors import InvalidInput

EventType = Literal["view", "click", "add_to_cart", "purchase", "rating", "dislike"]
EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "rating", "dislike")
Id = Field(min_length=1, max_length=256, pattern=r"^[^\s/][^/]*$")


class EventIn(BaseModel):
    """One interaction. ``event_id`` makes retries idempotent (generated when absent); ``ts``
    defaults to the time the server accepts it; ``value`` is required for ``rating``."""

    model_config = ConfigDict(extra="forbid")

    event_id: str | None = Field(None, min_length=1, max_length=256)
    user_id: str = Id
    item_id: str = Id
    type: EventType
    value: float | None = Field(None, ge=-1e6, le=1e6, allow_inf_nan=False)
    ts: datetime | None = None

    @model_validator(mode="after")
    def _rating_has_value(self) -> EventIn:
        if self.type == "rating" and self.value is None:
            raise ValueError("value: required for rating events")
        return self


_ONE: TypeAdapter[EventIn] = TypeAdapter(EventIn)
_MANY: TypeAdapter[list[EventIn]] = TypeAdapter(list[EventIn])
REQUEST_SCHEMA: dict[str, Any] = {
    "anyOf": [EventIn.model_json_schema(), {"type": "array", "items": EventIn.model_json_schema(), "minItems": 1}]
}


@dataclass(frozen=True, slots=True)
class Event:
    """An accepted event as the profiler sees it (``ts`` in epoch seconds)."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    value: float | None
    ts: float

    def encode(self) -> tuple[str, bytes]:
        """The log item: keyed by user so one user's events share a partition and keep their order."""
        return self.user_id, orjson.dumps(
            {
                "event_id": self.event_id,
                "user_id": self.user_id,
                "item_id": self.item_id,
                "type": self.type,
                "value": self.value,
                "ts": self.ts,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Event:
        """Raises ``ValueError`` on a message that is not an event (counted and skipped by the caller)."""
        data = orjson.loads(raw)
        if not isinstance(data, dict) or data.get("type") not in EVENT_TYPES:
            raise ValueError("not an interaction event")
        value = data.get("value")
        return cls(
            str(data["event_id"]),
            str(data["user_id"]),
            str(data["item_id"]),
            str(data["type"]),
            float(value) if value is not None else None,
            float(data["ts"]),
        )


def parse_events(body: bytes, max_events: int) -> list[Event]:
    """Validate a request body (one event or a list) into events with ids and times filled in.

    Raises:
        InvalidInput: naming the field, e.g. ``Missing required field: user_id`` or
            ``2.type: Input should be 'view', ...``.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: invalid JSON ({exc})") from exc
    try:
        if isinstance(data, list):
            if not data:
                raise InvalidInput("body: at least one event is required")
            if len(data) > max_events:
                raise InvalidInput(f"body: at most {max_events} events per request, got {len(data)}")
            models = _MANY.validate_python(data)
        elif isinstance(data, dict):
            models = [_ONE.validate_python(data)]
        else:
            raise InvalidInput("body: expected an event object or a list of events")
    except ValidationError as exc:
        raise InvalidInput(describe_validation(exc.errors())) from exc
    now = datetime.now(UTC).timestamp()
    return [
        Event(
            m.event_id or uuid.uuid4().hex,
            m.user_id,
            m.item_id,
            m.type,
            m.value,
            (m.ts if m.ts.tzinfo else m.ts.replace(tzinfo=UTC)).timestamp() if m.ts is not None else now,
        )
        for m in models
    ]
