"""Request and response bodies of the core v1 API (validated strictly: unknown fields are 400)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from shoal.filters import Filter

RecordId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f/]+$")]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_reserved(payload: dict[str, Any]) -> dict[str, Any]:
    reserved = [k for k in payload if k.startswith("_") or k == "ts"]
    if reserved:
        raise ValueError(
            f"'ts' and keys starting with '_' are reserved (the record time is the top-level ts): {reserved[:3]}"
        )
    return payload


Payload = Annotated[dict[str, Any], AfterValidator(_no_reserved)]


class RecordBody(Strict):
    id: RecordId | None = None
    text: Annotated[str, Field(min_length=1)]
    payload: Payload = Field(default_factory=dict)
    ts: AwareDatetime | None = None

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain non-whitespace characters")
        return value


class RecordsBody(Strict):
    records: Annotated[list[RecordBody], Field(min_length=1)]


class CollectionBody(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    sparse: bool = False
    config: dict[str, Any] = Field(default_factory=dict)


class CollectionOut(BaseModel):
    name: str
    model: str
    dim: int
    created_at: datetime
    vector_name: str
    shadow_model: str | None = None


class SearchBody(Strict):
    text: Annotated[str, Field(min_length=1)] | None = None
    vector: list[float] | None = None
    id: RecordId | None = None
    filter: Filter | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 10
    offset: Annotated[int, Field(ge=0, le=10_000)] = 0
    score_threshold: float | None = None
    with_vector: bool = False

    @model_validator(mode="after")
    def _one_query(self) -> SearchBody:
        given = [n for n in ("text", "vector", "id") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of: text, vector, id")
        return self


class Hit(BaseModel):
    id: str
    score: float
    text: str | None = None
    ts: datetime | None = None
    payload: dict[str, Any]
    vector: list[float] | None = None


class SearchOut(BaseModel):
    results: list[Hit]
    model: str
    took_ms: float


class RecordOut(BaseModel):
    id: str
    collection: str
    text: str
    payload: dict[str, Any]
    ts: datetime
    status: str
    embedding_model: str | None
    embedding_dim: int | None
    embedded_at: datetime | None
    error: str | None


class AcceptedOut(BaseModel):
    status: Literal["accepted", "indexed", "partial"]
    ids: list[str]
    failed: dict[str, str] = Field(default_factory=dict)
    pending: list[str] = Field(default_factory=list)


class StatsOut(BaseModel):
    collection: str
    model: str
    dim: int = Field(description="dimension of the current model's vectors")
    count: int = Field(description="records in the record store (same as total)")
    total: int
    embedded: int = Field(description="records with an embedding (of any model)")
    pending: int
    failed: int
    last_error: str | None = Field(description="error of the latest failed record")
    current: int = Field(description="records embedded with the current model")
    coverage: float = Field(description="current / total, 0..1")
    coverage_pct: float = Field(description="coverage in percent")
    backlog: int = Field(description="records lacking a current-model embedding + log messages not yet indexed")
    log_lag: int = Field(description="records-log messages not yet indexed (all collections)")
    oldest_pending_age_s: float | None = Field(description="seconds the oldest pending record has waited")
    models: dict[str, int] = Field(description="embedded records per model")
    vectors: int = Field(description="points in the current vector collection")
    shadow_model: str | None = Field(None, description="model being switched to, if any")
    shadow_vectors: int | None = None
    shadow_coverage: float | None = Field(None, description="shadow points / total, 0..1")
    previous_model: str | None = Field(None, description="model a rollback returns to")


class EmbeddingsBody(Strict):
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
