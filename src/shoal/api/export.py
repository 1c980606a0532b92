"""Paging through a collection's records in id order, for ``shoal export`` and migrations.

``GET /v1/collections/{c}/records?after=<id>&limit=<n>`` returns up to ``limit`` records whose id
sorts after ``after`` (keyset pagination: stable while records are being added) and ``next``, the
``after`` of the following page (``null`` on the last one). ``with_vectors=true`` adds each record's
vector from the collection's current vector collection (``null`` while it is not embedded yet).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from shoal.api.deps import ServicesDep

router = APIRouter(prefix="/v1/collections", tags=["collections"])

MAX_PAGE = 1000


class ExportedRecord(BaseModel):
    id: str
    text: str
    payload: dict[str, Any]
    ts: datetime
    status: str
    embedding_model: str | None = None
    vector: list[float] | None = None


class RecordPage(BaseModel):
    records: list[ExportedRecord]
    next: str | None
    """Pass as ``after`` to get the next page; ``null`` when this page is the last."""


@router.get("/{collection}/records", response_model=RecordPage, response_model_exclude_none=False)
async def list_records(
    collection: str,
    services: ServicesDep,
    after: Annotated[str | None, Query(max_length=256, description="id the page starts after")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 500,
    with_vectors: Annotated[bool, Query(description="include each record's current vector")] = False,
) -> RecordPage:
    found = await services.collections.get(collection)
    # One extra row tells whether another page follows without a second query.
    rows = await services.records.find(collection, after_id=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    vectors: dict[str, list[float]] = {}
    if with_vectors and rows:
        points = await services.vectors.retrieve(found.vector_name, [r.id for r in rows], with_vectors=True)
        vectors = {p.id: [float(x) for x in p.vector] for p in points if p.vector is not None}
    records = [
        ExportedRecord(
            id=r.id,
            text=r.text,
            payload=r.payload,
            ts=r.ts,
            status=r.status.value,
            embedding_model=r.embedding_model,
            vector=vectors.get(r.id),
        )
        for r in rows
    ]
    return RecordPage(records=records, next=rows[-1].id if more and rows else None)
