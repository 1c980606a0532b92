"""RAG settings (``SHOAL_RAG_*``, plus ``SHOAL_RERANKER``), built by the feature at start-up."""

from __future__ import annotations

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RagSettings(BaseSettings):
    """Chunking, retrieval, reranking and caching knobs of the RAG feature."""

    model_config = SettingsConfigDict(env_prefix="SHOAL_RAG_", env_file=".env", extra="ignore", populate_by_name=True)

    collection: str = "docs"
    """Collection used when a request names none."""

    # -- chunking (tokens of the MiniLM tokenizer) ---------------------------------------------
    chunk_tokens: int = Field(200, ge=16, le=512)
    chunk_overlap_tokens: int = Field(40, ge=0)

    # -- BM25 (qdrant-edge's tokenizer, stemmer and stop words; IDF comes from the engine) -----
    bm25_k: float = Field(1.2, ge=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    bm25_avg_len: float = Field(120.0, gt=0, description="average chunk length in BM25 tokens")
    bm25_language: str = "english"

    # -- retrieval -----------------------------------------------------------------------------
    rrf_k: int = Field(60, ge=1)
    dense_weight: float = Field(1.0, ge=0)
    sparse_weight: float = Field(1.0, ge=0)
    candidates: int = Field(50, ge=1, le=1000, description="hits fetched from each retriever")
    max_top_k: int = Field(50, ge=1)

    # -- reranking -----------------------------------------------------------------------------
    reranker: str | None = Field(
        None,
        validation_alias=AliasChoices("SHOAL_RERANKER", "SHOAL_RAG_RERANKER"),
        description="local CrossEncoder directory or model id in the Hugging Face cache",
    )
    rerank_candidates: int = Field(20, ge=1, le=200)
    rerank_max_tokens: int = Field(256, ge=16, le=512)
    rerank_threads: int = Field(2, ge=1)

    # -- answers -------------------------------------------------------------------------------
    extractive_sentences: int = Field(3, ge=1, le=10)
    context_chunks: int = Field(5, ge=1, le=50, description="chunks given to the LLM")

    # -- caching and ingest --------------------------------------------------------------------
    cache_size: int = Field(10_000, ge=0, description="whole-query results kept per process")
    cache_ttl_s: float = Field(600.0, gt=0)
    max_documents_per_request: int = Field(1000, ge=1)
    max_document_chars: int = Field(1_000_000, ge=1)
    index_batch_size: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> RagSettings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("SHOAL_RAG_CHUNK_OVERLAP_TOKENS must be smaller than SHOAL_RAG_CHUNK_TOKENS")
        return self
