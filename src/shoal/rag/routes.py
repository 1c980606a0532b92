"""RAG HTTP API: ``POST /index``, ``DELETE /index/{doc_id}``, ``POST /query`` (JSON or Server-Sent
Events) and ``POST /v1/rerank`` (Cohere / Jina shape)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from shoal.api.deps import ServicesDep
from shoal.errors import InvalidInput, ShoalError
from shoal.rag.indexer import DocumentIn
from shoal.rag.schemas import IndexBody, IndexOut, QueryBody, QueryOut, RerankBody, RerankOut, RerankResult
from shoal.rag.service import QueryParams, RagService, RagState
from shoal.services import Services

# Explicit: the app default (JSONResponse) is deprecated in this FastAPI and warns per response.
router = APIRouter(tags=["rag"], default_response_class=JSONResponse)

FEATURE = "rag"


def rag_service(services: Services) -> RagService:
    state: RagState = services.extras[FEATURE]
    return RagService(services, state)


@router.post(
    "/index",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=IndexOut,
    responses={200: {"model": IndexOut, "description": "with wait=true: searchable"}},
)
async def index_documents(
    body: IndexBody,
    services: ServicesDep,
    response: Response,
    wait: Annotated[bool, Query(description="return once the documents are searchable")] = False,
) -> IndexOut:
    """Chunk, embed and index documents; ``202`` once they are durable in the log."""
    rag = rag_service(services)
    settings = rag.settings
    collection = body.collection or settings.collection
    if len(body.documents) > settings.max_documents_per_request:
        raise InvalidInput(f"documents: at most {settings.max_documents_per_request} per request")
    ids = [d.id for d in body.documents]
    if len(set(ids)) != len(ids):
        raise InvalidInput("documents: duplicate ids in one request")
    for i, d in enumerate(body.documents):
        if len(d.text) > settings.max_document_chars:
            raise InvalidInput(f"documents.{i}.text: longer than {settings.max_document_chars} characters")
    docs = [DocumentIn(d.id, d.text, d.title, d.metadata) for d in body.documents]
    pending = await rag.submit(collection, docs, wait=wait)
    if not wait:
        return IndexOut(collection=collection, ids=ids, status="accepted")
    if not pending:
        response.status_code = status.HTTP_200_OK
    return IndexOut(collection=collection, ids=ids, status="accepted" if pending else "indexed", pending=pending)


@router.delete("/index/{doc_id}", status_code=status.HTTP_202_ACCEPTED, response_model=IndexOut)
async def delete_document(
    doc_id: str,
    services: ServicesDep,
    response: Response,
    collection: Annotated[str | None, Query(max_length=64)] = None,
    wait: bool = False,
) -> IndexOut:
    """Remove every chunk of ``doc_id``."""
    rag = rag_service(services)
    name = collection or rag.settings.collection
    pending = await rag.delete(name, doc_id, wait=wait)
    if wait and not pending:
        response.status_code = status.HTTP_200_OK
        return IndexOut(collection=name, ids=[doc_id], status="indexed")
    return IndexOut(collection=name, ids=[doc_id], status="accepted", pending=pending)


@router.post(
    "/query",
    response_model=QueryOut,
    responses={200: {"content": {"text/event-stream": {}}, "description": "with stream=true: token events"}},
)
async def query(body: QueryBody, services: ServicesDep) -> Any:
    """Hybrid retrieval, optional rerank, cited answer; ``stream: true`` answers with SSE."""
    rag = rag_service(services)
    params = QueryParams(
        query=body.query,
        collection=body.collection or rag.settings.collection,
        top_k=min(body.top_k, rag.settings.max_top_k),
        filter=body.filter,
        rerank=body.rerank,
        generate=body.generate,
        mode=body.mode,
    )
    if not body.stream:
        # Serialised directly: the dataclasses already have the documented shape (QueryOut).
        return Response(orjson.dumps((await rag.query(params)).to_json()), media_type="application/json")
    events = rag.stream(params)
    # The first event is awaited here so that a bad request (unknown collection, ...) is still an
    # ordinary HTTP error rather than an error inside a 200 stream.
    first = await anext(events)
    return StreamingResponse(
        _sse(first, events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(first: tuple[str, Any], events: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[bytes]:
    yield _event(*first)
    try:
        async for event in events:
            yield _event(*event)
    except ShoalError as exc:
        yield _event("error", {"error": exc.code, "details": exc.details})
        return
    yield _event("done", {})


def _event(kind: str, data: Any) -> bytes:
    body = {"text": data} if kind == "token" else data
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


@router.post("/v1/rerank", response_model=RerankOut)
async def rerank(body: RerankBody, services: ServicesDep) -> RerankOut:
    """Score ``documents`` against ``query`` with the cross-encoder; best first, ``top_n`` of them."""
    rag = rag_service(services)
    texts = [d if isinstance(d, str) else d.text for d in body.documents]
    scores = await rag.rerank(body.query, texts)
    order = sorted(range(len(texts)), key=lambda i: scores[i], reverse=True)[: body.top_n or len(texts)]
    model = rag.state.reranker.model_dir.name if rag.state.reranker else ""
    return RerankOut(
        model=body.model or model,
        results=[
            RerankResult(
                index=i, relevance_score=scores[i], document={"text": texts[i]} if body.return_documents else None
            )
            for i in order
        ],
    )
