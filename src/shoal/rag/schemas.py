"""Request and response bodies of the RAG API (strict: unknown fields are 400)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from shoal.api.schemas import Payload, RecordId, Strict
from shoal.filters import Filter

CollectionName = Annotated[str, Field(min_length=1, max_length=64)]


class DocumentBody(Strict):
    id: RecordId
    title: Annotated[str, Field(max_length=2000)] = ""
    text: Annotated[str, Field(min_length=1)]
    metadata: Payload = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain non-whitespace characters")
        return value


class IndexBody(Strict):
    documents: Annotated[list[DocumentBody], Field(min_length=1)]
    collection: CollectionName | None = None


class IndexOut(BaseModel):
    collection: str
    ids: list[str]
    status: Literal["accepted", "indexed"]
    pending: list[str] = Field(default_factory=list)


class QueryBody(Strict):
    query: Annotated[str, Field(min_length=1, max_length=10_000)]
    collection: CollectionName | None = None
    top_k: Annotated[int, Field(ge=1, le=100)] = 5
    filter: Filter | None = None
    rerank: bool = True
    generate: bool = True
    stream: bool = False
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain non-whitespace characters")
        return value


class SourceOut(BaseModel):
    n: int
    doc_id: str
    chunk_id: str
    title: str
    text: str
    score: float


class TimingsOut(BaseModel):
    embed: float
    retrieve: float
    rerank: float
    generate: float
    total: float


class QueryOut(BaseModel):
    answer: str | None
    sources: list[SourceOut]
    timings_ms: TimingsOut
    cached: bool


class RerankDocument(Strict):
    text: str


class RerankBody(Strict):
    """Cohere / Jina shape: documents as strings or ``{"text": ...}`` objects."""

    query: Annotated[str, Field(min_length=1, max_length=10_000)]
    documents: Annotated[list[str | RerankDocument], Field(min_length=1, max_length=1000)]
    top_n: Annotated[int, Field(ge=1)] | None = None
    return_documents: bool = False
    model: str | None = None


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = None


class RerankOut(BaseModel):
    model: str
    results: list[RerankResult]
