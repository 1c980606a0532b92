"""Core v1 API: collections, records, search and stats."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from shoal.api.deps import ServicesDep
from shoal.api.schemas import (
    AcceptedOut,
    CollectionBody,
    CollectionOut,
    Hit,
    RecordOut,
    RecordsBody,
    SearchBody,
    SearchOut,
    StatsOut,
)
from shoal.embedops.coverage import coverage
from shoal.errors import InvalidInput, NotFound
from shoal.ingest import RecordIn
from shoal.records import Collection
from shoal.search import search

router = APIRouter(prefix="/v1/collections", tags=["collections"])
ingest = APIRouter(prefix="/v1/collections", tags=["collections"])
"""``POST …/records`` alone: mounted before every other route (``Feature.ingest_routers``)."""


def collection_out(c: Collection) -> CollectionOut:
    return CollectionOut(
        name=c.name,
        model=c.model,
        dim=c.dim,
        created_at=c.created_at,
        vector_name=c.vector_name,
        shadow_model=c.shadow_model,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CollectionOut)
async def create_collection(body: CollectionBody, services: ServicesDep) -> CollectionOut:
    return collection_out(await services.collections.create(body.name, sparse=body.sparse, config=body.config))


@router.get("")
async def list_collections(services: ServicesDep) -> dict[str, list[CollectionOut]]:
    return {"collections": [collection_out(c) for c in await services.records.list_collections()]}


@router.get("/{collection}", response_model=CollectionOut)
async def get_collection(collection: str, services: ServicesDep) -> CollectionOut:
    return collection_out(await services.collections.get(collection))


@router.delete("/{collection}")
async def delete_collection(collection: str, services: ServicesDep) -> dict[str, str]:
    await services.collections.delete(collection)
    return {"status": "deleted", "collection": collection}


@ingest.post(
    "/{collection}/records",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AcceptedOut,
    responses={200: {"model": AcceptedOut, "description": "with wait=true: indexed"}},
)
async def add_records(
    collection: str,
    body: RecordsBody,
    services: ServicesDep,
    response: Response,
    wait: Annotated[bool, Query(description="return once the records are searchable")] = False,
) -> AcceptedOut:
    settings = services.settings
    await services.collections.get(collection)
    if len(body.records) > settings.max_records_per_request:
        raise InvalidInput(f"records: at most {settings.max_records_per_request} per request, got {len(body.records)}")
    now = datetime.now(UTC)
    records = []
    for i, r in enumerate(body.records):
        if len(r.text) > settings.max_text_chars:
            raise InvalidInput(f"records.{i}.text: longer than {settings.max_text_chars} characters")
        records.append(RecordIn(id=r.id or uuid.uuid4().hex, text=r.text, payload=r.payload, ts=r.ts or now))
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise InvalidInput("records: duplicate ids in one request")
    services.metrics.records_accepted.inc(len(records))
    if not wait:
        await services.ingest.submit(collection, records)
        return AcceptedOut(status="accepted", ids=ids)
    result = await services.ingest.submit_and_wait(collection, records, settings.wait_timeout_s)
    if result.pending or result.failed:
        return AcceptedOut(status="partial", ids=ids, failed=result.failed, pending=result.pending)
    response.status_code = status.HTTP_200_OK
    return AcceptedOut(status="indexed", ids=ids)


@router.get("/{collection}/records/{record_id}", response_model=RecordOut)
async def get_record(collection: str, record_id: str, services: ServicesDep) -> RecordOut:
    await services.collections.get(collection)
    found = await services.records.get(collection, [record_id])
    if not found:
        raise NotFound(f"record {record_id!r} not found in {collection!r} (it may still be in the log)")
    r = found[0]
    return RecordOut(
        id=r.id,
        collection=r.collection,
        text=r.text,
        payload=r.payload,
        ts=r.ts,
        status=r.status.value,
        embedding_model=r.embedding_model,
        embedding_dim=r.embedding_dim,
        embedded_at=r.embedded_at,
        error=r.error,
    )


@router.delete("/{collection}/records/{record_id}", status_code=status.HTTP_202_ACCEPTED)
async def delete_record(collection: str, record_id: str, services: ServicesDep) -> dict[str, str]:
    await services.collections.get(collection)
    await services.ingest.delete(collection, [record_id])
    return {"status": "accepted", "id": record_id}


@router.post("/{collection}/search", response_model=SearchOut)
async def search_records(collection: str, body: SearchBody, services: ServicesDep) -> SearchOut:
    started = time.perf_counter()
    found = await services.collections.get(collection)
    results = await search(
        services,
        collection,
        text=body.text,
        vector=body.vector,
        record_id=body.id,
        filter=body.filter,
        limit=body.limit,
        offset=body.offset,
        score_threshold=body.score_threshold,
        with_vectors=body.with_vector,
    )
    return SearchOut(
        results=[
            Hit(id=r.id, score=r.score, text=r.text, ts=r.ts, payload=r.payload, vector=r.vector) for r in results
        ],
        model=found.model,
        took_ms=round((time.perf_counter() - started) * 1000, 3),
    )


@router.get("/{collection}/stats", response_model=StatsOut)
async def collection_stats(collection: str, services: ServicesDep) -> StatsOut:
    c = await coverage(services, collection)
    return StatsOut(
        collection=collection,
        model=c.model,
        dim=c.dim,
        count=c.total,
        total=c.total,
        embedded=c.embedded,
        pending=c.pending,
        failed=c.failed,
        last_error=c.last_error,
        current=c.current,
        coverage=c.coverage,
        coverage_pct=round(100 * c.coverage, 4),
        backlog=c.backlog,
        log_lag=c.log_lag,
        oldest_pending_age_s=c.oldest_pending_age_s,
        models=c.models,
        vectors=c.vectors,
        shadow_model=c.shadow_model,
        shadow_vectors=c.shadow_vectors,
        shadow_coverage=c.shadow_coverage,
        previous_model=c.previous_model,
    )
