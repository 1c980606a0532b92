"""RAG orchestration: accept documents into the log, answer queries (hybrid retrieval, rerank,
cited answer), cache whole query results per index version.

A query embeds its text through the shared engine (and its cache), searches the dense and the BM25
vectors of the collection at once, keeps only chunks of each document's live version (see
``versions.py``), fuses the two rankings by weighted RRF, optionally reranks the best with the
cross-encoder, and answers from the top chunks: through the LLM when one is configured, extractively
otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson
from cachetools import TTLCache

from shoal.errors import BackendError, InvalidInput, NotFound
from shoal.filters import Filter
from shoal.rag.bm25 import Bm25Encoder
from shoal.rag.chunking import Chunker
from shoal.rag.extractive import extractive_answer
from shoal.rag.fusion import fuse_hits
from shoal.rag.indexer import (
    DOC,
    DOCUMENTS_TOPIC,
    TEXT,
    TITLE,
    VERSION,
    DocumentIn,
    encode_delete,
    encode_upsert,
)
from shoal.rag.llm import LLM, ContextSource
from shoal.rag.metrics import RagMetrics
from shoal.rag.rerank import CrossEncoderReranker
from shoal.rag.settings import RagSettings
from shoal.rag.versions import DocVersions, VersionMap
from shoal.records import Collection
from shoal.services import Services
from shoal.vectors.base import Hit

Mode = Literal["hybrid", "dense", "sparse"]


@dataclass(frozen=True, slots=True)
class Source:
    n: int
    doc_id: str
    chunk_id: str
    title: str
    text: str
    score: float


@dataclass(slots=True)
class Timings:
    """Milliseconds spent per stage."""

    embed: float = 0.0
    retrieve: float = 0.0
    rerank: float = 0.0
    generate: float = 0.0
    total: float = 0.0


@dataclass(slots=True)
class Answer:
    answer: str | None
    sources: list[Source]
    timings_ms: Timings = field(default_factory=Timings)
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class QueryParams:
    query: str
    collection: str
    top_k: int = 5
    filter: Filter | None = None
    rerank: bool = True
    generate: bool = True
    mode: Mode = "hybrid"

    def cache_key(self, generation: int) -> str:
        material = orjson.dumps(
            [
                self.collection,
                generation,
                self.query,
                self.top_k,
                self.filter.model_dump(mode="json", by_alias=True, exclude_none=True) if self.filter else None,
                self.rerank,
                self.generate,
                self.mode,
            ]
        )
        return hashlib.sha256(material).hexdigest()


class RagState:
    """Per-process RAG state shared by routes and the processor: models, version maps, result cache."""

    def __init__(
        self,
        settings: RagSettings,
        *,
        reranker: CrossEncoderReranker | None = None,
        llm: LLM | None = None,
        metrics: RagMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.versions = DocVersions()
        self.chunker = Chunker(settings.chunk_tokens, settings.chunk_overlap_tokens)
        self.bm25 = Bm25Encoder(
            k=settings.bm25_k, b=settings.bm25_b, avg_len=settings.bm25_avg_len, language=settings.bm25_language
        )
        self.reranker = reranker
        self.llm = llm
        self.metrics = metrics
        self.origin = uuid.uuid4().hex
        self.following = asyncio.Event()
        self.results: TTLCache[str, Answer] = TTLCache(max(settings.cache_size, 1), settings.cache_ttl_s)
        self._indexed: set[str] = set()

    def apply(self, collection: str, changes: Mapping[str, int | None], versions: Mapping[str, int]) -> None:
        """Swap document versions in; cached results are dropped when the index changes."""
        if self.versions.apply(collection, changes, versions):
            self.results.clear()

    async def ensure_collection(self, services: Services, name: str) -> Collection:
        """The RAG collection ``name`` (created with BM25 vectors on first use)."""
        collection = await services.collections.ensure(name, sparse=True, config={"rag": True})
        if not collection.config.get("sparse"):
            raise InvalidInput(f"collection: {name!r} exists without BM25 vectors; use another name for RAG")
        if collection.vector_name not in self._indexed:
            # Payload indexes make replacing a document's chunks a lookup, not a scan (stores that
            # index everything treat this as a no-op).
            await services.vectors.ensure_index(collection.vector_name, DOC, "keyword")
            await services.vectors.ensure_index(collection.vector_name, VERSION, "integer")
            self._indexed.add(collection.vector_name)
        return collection


class RagService:
    """What the routes call; one per request (cheap)."""

    def __init__(self, services: Services, state: RagState) -> None:
        self.services = services
        self.state = state
        self.settings = state.settings

    # -- indexing --------------------------------------------------------------------------------
    async def submit(self, collection: str, docs: Sequence[DocumentIn], *, wait: bool) -> list[str]:
        """Append ``docs`` to the log (durable on return). With ``wait``, also wait until they are
        searchable; returns the ids still pending after the wait timeout."""
        await self.state.ensure_collection(self.services, collection)
        messages = await self.services.log.append(DOCUMENTS_TOPIC, [encode_upsert(collection, d) for d in docs])
        return await self._wait(collection, [d.id for d in docs], messages, wait)

    async def delete(self, collection: str, doc_id: str, *, wait: bool) -> list[str]:
        if not (await self.services.collections.get(collection)).config.get("rag"):
            raise InvalidInput(f"collection: {collection!r} holds records, not documents indexed through /index")
        messages = await self.services.log.append(DOCUMENTS_TOPIC, [encode_delete(collection, doc_id)])
        return await self._wait(collection, [doc_id], messages, wait)

    async def _wait(self, collection: str, ids: list[str], messages: Sequence[Any], wait: bool) -> list[str]:
        if not wait:
            return []
        versions = {doc_id: m.offset for doc_id, m in zip(ids, messages, strict=True)}
        return await self.state.versions.wait_applied(collection, versions, self.services.settings.wait_timeout_s)

    # -- querying --------------------------------------------------------------------------------
    async def query(self, params: QueryParams) -> Answer:
        """The whole answer (cached per index version)."""
        started = time.perf_counter()
        # The key is taken before retrieval: a result computed while the index changed is stored
        # under the old index version, where no later query looks.
        key = params.cache_key(self.state.versions.generation(params.collection))
        cached = self._cached(key)
        if cached is not None:
            return cached
        result = await self.retrieve_sources(params)
        if params.generate:
            t = time.perf_counter()
            if self.state.llm is not None:
                result.answer = await self.state.llm.complete(params.query, self._context(result.sources))
            else:
                result.answer = self._extractive(params.query, result.sources)
            result.timings_ms.generate = _ms(t)
        result.timings_ms.total = _ms(started)
        self._store(key, result)
        return result

    async def stream(self, params: QueryParams) -> AsyncIterator[tuple[str, Any]]:
        """``("token", text)`` events, then ``("sources", answer_json)`` (the full answer)."""
        started = time.perf_counter()
        key = params.cache_key(self.state.versions.generation(params.collection))
        cached = self._cached(key)
        if cached is not None:
            if cached.answer:
                yield "token", cached.answer
            yield "sources", cached.to_json()
            return
        result = await self.retrieve_sources(params)
        if params.generate:
            t = time.perf_counter()
            if self.state.llm is not None:
                parts: list[str] = []
                async for token in self.state.llm.stream(params.query, self._context(result.sources)):
                    parts.append(token)
                    yield "token", token
                result.answer = "".join(parts)
            else:
                result.answer = self._extractive(params.query, result.sources)
                yield "token", result.answer
            result.timings_ms.generate = _ms(t)
        result.timings_ms.total = _ms(started)
        self._store(key, result)
        yield "sources", result.to_json()

    def _cached(self, key: str) -> Answer | None:
        found = self.state.results.get(key)
        if found is None:
            return None
        if self.state.metrics is not None:
            self.state.metrics.observe({}, cached=True)
        return Answer(found.answer, found.sources, Timings(), cached=True)

    def _store(self, key: str, answer: Answer) -> None:
        if self.state.metrics is not None:
            self.state.metrics.observe(asdict(answer.timings_ms), cached=False)
        if self.settings.cache_size:
            self.state.results[key] = answer

    def _context(self, sources: Sequence[Source]) -> list[ContextSource]:
        return [ContextSource(s.n, s.title, s.text) for s in sources[: self.settings.context_chunks]]

    def _extractive(self, query: str, sources: Sequence[Source]) -> str:
        return extractive_answer(
            query, self._context(sources), self.state.bm25, max_sentences=self.settings.extractive_sentences
        )

    async def retrieve_sources(self, params: QueryParams) -> Answer:
        """Sources for ``params`` (no answer yet), with embed / retrieve / rerank timings."""
        collection = await self.services.collections.get(params.collection)
        if not collection.config.get("rag"):
            raise InvalidInput(f"collection: {params.collection!r} holds records, not documents indexed through /index")
        timings = Timings()
        t = time.perf_counter()
        vector = (await self.services.engine.embed([params.query]))[0].tolist() if params.mode != "sparse" else None
        timings.embed = _ms(t)
        t = time.perf_counter()
        use_reranker = params.rerank and self.state.reranker is not None
        limit = max(params.top_k, self.settings.rerank_candidates) if use_reranker else params.top_k
        with self.state.versions.reading():
            snapshot = self.state.versions.snapshot(params.collection)
            hits = await self.search(
                collection, params.query, vector, snapshot, limit=limit, filter=params.filter, mode=params.mode
            )
        timings.retrieve = _ms(t)
        if use_reranker and hits:
            t = time.perf_counter()
            hits = await self._rerank(params.query, hits)
            timings.rerank = _ms(t)
        sources = [
            Source(n, h.payload[DOC], h.id, h.payload.get(TITLE, ""), h.payload.get(TEXT, ""), round(h.score, 6))
            for n, h in enumerate(hits[: params.top_k], start=1)
        ]
        return Answer(None, sources, timings)

    async def search(
        self,
        collection: Collection,
        query: str,
        vector: Sequence[float] | None,
        snapshot: VersionMap,
        *,
        limit: int,
        filter: Filter | None = None,
        mode: Mode = "hybrid",
        weights: tuple[float, float] | None = None,
    ) -> list[Hit]:
        """Live chunks best first: dense, BM25 or both fused by weighted RRF."""
        settings, vectors, name = self.settings, self.services.vectors, collection.vector_name
        depth = max(limit, settings.candidates)
        searches = []
        if mode != "sparse" and vector is not None:
            searches.append(vectors.search(name, vector, limit=depth, filter=filter))
        sparse = self.state.bm25.query(query)
        if mode != "dense" and sparse.indices:
            searches.append(vectors.search_sparse(name, sparse, limit=depth, filter=filter))
        ranked = [
            [h for h in hits if snapshot.get(h.payload.get(DOC, "")) == h.payload.get(VERSION)]
            for hits in await asyncio.gather(*searches)
        ]
        if mode != "hybrid" or len(ranked) < 2:
            return ranked[0][:limit] if ranked else []
        weights = weights or (settings.dense_weight, settings.sparse_weight)
        return fuse_hits(ranked, k=settings.rrf_k, weights=weights)[:limit]

    async def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        assert self.state.reranker is not None
        candidates = hits[: self.settings.rerank_candidates]
        try:
            scores = await self.state.reranker.score(query, [h.payload.get(TEXT, "") for h in candidates])
        except Exception as exc:  # onnxruntime raises untyped errors
            raise BackendError(f"reranker: {exc}") from exc
        order = sorted(range(len(candidates)), key=lambda i: scores[i], reverse=True)
        return [Hit(candidates[i].id, scores[i], candidates[i].payload) for i in order]

    async def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        """Cross-encoder scores for ``documents`` (``POST /v1/rerank``)."""
        if self.state.reranker is None:
            raise NotFound("reranker: not configured (set SHOAL_RERANKER to a CrossEncoder directory)")
        return await self.state.reranker.score(query, documents)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
