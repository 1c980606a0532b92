"""``POST /dashboard/search``: semantic search with the dashboard's filters (user, time range,
sentiment), "more like this" by id, or the newest records when there is no query.

Sentiment is scored by the insights feature's local analyzer (the same model that labels
conversations); without that feature the sentiment filter is refused. Hits from the insights
feature's collection also carry their stored analysis (sentiment and topic cluster) once analysed.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shoal.api.deps import ServicesDep
from shoal.dashboard.routes import feature_collection
from shoal.errors import InvalidInput
from shoal.filters import FieldCondition, Filter, Match, Range
from shoal.search import Result, search
from shoal.services import Services

router = APIRouter(prefix="/dashboard", tags=["dashboard"])

USER_KEYS = ("user_id", "author")
"""Payload keys naming a text's user: tweets carry ``user_id``, conversations ``author``."""
MAX_LIMIT = 100
OVERFETCH = 5
"""With a sentiment filter, this many times ``limit`` nearest texts are scored, then filtered."""


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: Annotated[str, Field(min_length=1, max_length=64)]
    text: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    user: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None
    sentiment: Literal["positive", "neutral", "negative"] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 20

    @model_validator(mode="after")
    def _check(self) -> SearchIn:
        if self.text is not None and self.id is not None:
            raise ValueError("give text or id, not both")
        if self.start_time and self.end_time and self.end_time < self.start_time:
            raise ValueError("end_time: must not be before start_time")
        return self


def _filter(body: SearchIn, forced_user: str | None) -> Filter | None:
    must: list[Any] = []
    if forced_user is not None:
        must.append(FieldCondition(key="user_id", match=Match(value=forced_user)))
    if body.user is not None:
        must.append(Filter(should=[FieldCondition(key=k, match=Match(value=body.user)) for k in USER_KEYS]))
    if body.start_time or body.end_time:
        must.append(FieldCondition(key="ts", range=Range(gte=body.start_time, lte=body.end_time)))
    return Filter(must=must) if must else None


def _scoped_user(request: Request, services: Services, collection: str) -> str | None:
    """With auth on, a non-admin user sees only their own tweets (the tweet stream's rule)."""
    principal = getattr(request.state, "principal", None)
    if principal is None or principal.admin or not principal.user_bound:
        return None
    return principal.subject if collection == feature_collection(services, "tweets") else None


def _sentiments(services: Services, results: list[Result], same_model: bool) -> list[dict[str, Any] | None]:
    insights = services.extras.get("insights")
    if insights is None or not results:
        return [None] * len(results)
    vectors = None
    if same_model and all(r.vector is not None for r in results):
        vectors = np.asarray([r.vector for r in results], dtype=np.float32)
    scored = insights.local.sentiment.analyze_many([r.text or "" for r in results], vectors)
    return [{"label": s.label, "score": round(s.score, 4)} for s in scored]


async def _analyses(services: Services, collection: str, results: list[Result]) -> dict[str, dict[str, Any]] | None:
    """Stored analyses of conversations among ``results``; ``None`` for another collection."""
    if collection != feature_collection(services, "insights"):
        return None
    briefs: dict[str, dict[str, Any]] = await services.extras["insights"].store.briefs([r.id for r in results])
    return briefs


def _hit(result: Result, sentiment: dict[str, Any] | None, analyses: dict[str, Any] | None) -> dict[str, Any]:
    payload = {k: v for k, v in result.payload.items() if not k.startswith("_")}
    user = next((payload[k] for k in USER_KEYS if payload.get(k)), None)
    return {
        "id": result.id,
        "score": None if result.score is None else round(result.score, 6),
        "text": result.text,
        "ts": result.ts.isoformat() if isinstance(result.ts, datetime) else None,
        "user": user,
        "payload": payload,
        "sentiment": sentiment,
        **({} if analyses is None else {"analysis": analyses.get(result.id)}),
    }


@router.post("/search")
async def dashboard_search(body: SearchIn, request: Request, services: ServicesDep) -> dict[str, Any]:
    """``{"results": [{"id", "score", "text", "ts", "user", "payload", "sentiment", "analysis"?}],
    "took_ms"}``, best first (newest first without ``text``/``id``); ``analysis`` on conversations."""
    started = time.perf_counter()
    collection = await services.collections.get(body.collection)
    if body.sentiment is not None and "insights" not in services.extras:
        raise InvalidInput("sentiment: needs the insights feature (sentiment is scored by its analyzer)")
    if body.sentiment is not None and body.text is None and body.id is None:
        raise InvalidInput("sentiment: filter by sentiment needs a query text")
    scope = _filter(body, _scoped_user(request, services, body.collection))
    if body.text is None and body.id is None:
        points = await services.vectors.scroll(
            collection.vector_name, filter=scope, limit=body.limit, order_by="ts", descending=True
        )
        newest = [Result(p.id, 0.0, p.payload.get("_text"), _ts(p.payload.get("ts")), p.payload) for p in points]
        analyses = await _analyses(services, body.collection, newest)
        hits = [{**_hit(r, None, analyses), "score": None} for r in newest]
        return {"results": hits, "took_ms": _ms(started)}
    fetch = min(body.limit * OVERFETCH, 500) if body.sentiment else body.limit
    results = await search(
        services,
        body.collection,
        text=body.text,
        record_id=body.id,
        filter=scope,
        limit=fetch,
        with_vectors="insights" in services.extras,
    )
    same_model = collection.model == services.engine.model_id
    pairs = list(zip(results, _sentiments(services, results, same_model), strict=True))
    if body.sentiment is not None:
        pairs = [(r, s) for r, s in pairs if s is not None and s["label"] == body.sentiment]
    pairs = pairs[: body.limit]
    analyses = await _analyses(services, body.collection, [r for r, _ in pairs])
    return {"results": [_hit(r, s, analyses) for r, s in pairs], "took_ms": _ms(started)}


def _ts(raw: object) -> datetime | None:
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
