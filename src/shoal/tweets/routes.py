"""``POST /search_payload``: a user's tweets, newest first, or ranked by similarity to ``query``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from shoal.api.deps import ServicesDep
from shoal.errors import Forbidden, InvalidInput
from shoal.search import search
from shoal.tweets.messages import SearchPayloadIn
from shoal.tweets.push import public_payload, user_filter, visible
from shoal.tweets.settings import TweetSettings

router = APIRouter(tags=["tweets"])


@router.post("/search_payload")
async def search_payload(body: SearchPayloadIn, request: Request, services: ServicesDep) -> dict[str, Any]:
    """``{"status": "success", "payload": {"points": [{"id", "payload": {...}}]}}``; with ``query``
    each point also has ``score``. With auth on, a non-admin may only ask for their own user id."""
    settings: TweetSettings = services.extras["tweets"].settings
    principal = getattr(request.state, "principal", None)
    if principal is not None and not principal.admin and principal.subject != body.user_id:
        raise Forbidden("user_id: you can only search your own tweets")
    if body.limit > settings.max_search_limit:
        raise InvalidInput(f"limit: at most {settings.max_search_limit}")
    scope = user_filter(body.user_id)
    points: list[dict[str, Any]]
    if body.query is not None:
        results = await search(services, settings.collection, text=body.query, filter=scope, limit=body.limit)
        points = [
            {"id": r.id, "score": round(r.score, 6), "payload": {**visible(r.payload), "text": r.text}} for r in results
        ]
    else:
        collection = await services.collections.get(settings.collection)
        found = await services.vectors.scroll(
            collection.vector_name, filter=scope, limit=body.limit, order_by="ts", descending=True
        )
        points = [{"id": p.id, "payload": public_payload(p)} for p in found]
    return {"status": "success", "payload": {"points": points}}
