"""The shapes clients send on ``/ws`` and to ``/search_payload`` (validated once, at the edge)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator


def _id_text(value: object) -> object:
    # Tweet ids often arrive as JSON numbers; they are stored as strings.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


TweetId = Annotated[str, BeforeValidator(_id_text), Field(min_length=1, max_length=256)]


class TweetIn(BaseModel):
    """One tweet; fields beyond these are kept in the payload as they are."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: TweetId
    user_id: TweetId
    text: Annotated[str, Field(min_length=1)]
    username: Annotated[str, Field(max_length=256)] | None = None

    @model_validator(mode="after")
    def _no_reserved_extras(self) -> TweetIn:
        for key in self.model_extra or {}:
            if key.startswith("_") or key == "ts":
                raise ValueError(f"field {key!r}: 'ts' and names starting with '_' are reserved")
        return self

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"user_id": self.user_id}
        if self.username is not None:
            payload["username"] = self.username
        payload.update(self.model_extra or {})
        return payload


class TweetBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tweets: Annotated[list[TweetIn], Field(min_length=1)]


BATCH = TypeAdapter(TweetBatch)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str


class SubscribeIn(_Message):
    query: Annotated[str, Field(min_length=1, max_length=2000)]
    min_score: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.5
    id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    user_id: TweetId | None = None
    collection: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """Whose new records are matched; default the tweets (any collection of the server's model)."""


class UnsubscribeIn(_Message):
    id: Annotated[str, Field(min_length=1, max_length=64)]


class ConfigIn(_Message):
    k: Annotated[int, Field(ge=1)] | None = None
    scope: Literal["own", "all"] | None = None


class SearchPayloadIn(BaseModel):
    """``POST /search_payload``: a user's tweets, newest first, or ranked by ``query``."""

    model_config = ConfigDict(extra="forbid")

    user_id: TweetId
    limit: Annotated[int, Field(ge=1)] = 5
    query: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
