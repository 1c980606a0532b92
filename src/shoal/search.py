"""Semantic search over a collection: by text, by vector, or "more like this" by record id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shoal.errors import InvalidInput, NotFound
from shoal.filters import Filter
from shoal.services import Services
from shoal.vectors import Hit


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    score: float
    text: str | None
    ts: datetime | None
    payload: dict[str, Any]
    vector: list[float] | None = None


def to_result(hit: Hit) -> Result:
    payload = dict(hit.payload)
    text = payload.pop("_text", None)
    raw_ts = payload.pop("ts", None)
    ts = datetime.fromisoformat(raw_ts) if isinstance(raw_ts, str) else None
    return Result(hit.id, hit.score, text, ts, payload, hit.vector)


async def search(
    services: Services,
    collection_name: str,
    *,
    text: str | None = None,
    vector: Sequence[float] | None = None,
    record_id: str | None = None,
    filter: Filter | None = None,
    limit: int = 10,
    offset: int = 0,
    score_threshold: float | None = None,
    exclude_ids: Sequence[str] = (),
    with_vectors: bool = False,
) -> list[Result]:
    """Nearest records of ``collection_name`` to exactly one of ``text`` / ``vector`` / ``record_id``.

    One snapshot of the collection gives both the model that embeds the query and the vector
    collection searched, so a search during a model switch never mixes two models.
    """
    collection = await services.collections.get(collection_name)
    exclude = list(exclude_ids)
    if text is not None:
        engine = await services.engines.get(collection.model)
        query = (await engine.embed([text]))[0].tolist()
    elif vector is not None:
        if len(vector) != collection.dim:
            raise InvalidInput(f"vector: expected {collection.dim} dimensions, got {len(vector)}")
        query = list(vector)
    elif record_id is not None:
        found = await services.vectors.retrieve(collection.vector_name, [record_id], with_vectors=True)
        if not found or found[0].vector is None:
            raise NotFound(f"record {record_id!r} is not indexed in {collection_name!r}")
        query = list(found[0].vector)
        exclude.append(record_id)
    else:
        raise InvalidInput("give exactly one of: text, vector, id")
    hits = await services.vectors.search(
        collection.vector_name,
        query,
        limit=limit,
        offset=offset,
        filter=filter,
        exclude_ids=exclude,
        score_threshold=score_threshold,
        ef=max(128, limit + offset + len(exclude)) if exclude or limit + offset > 64 else None,
        with_vectors=with_vectors,
    )
    return [to_result(h) for h in hits]
