"""HTTP API of conversation insights (``/api/v1``): the shapes existing clients use.

``grok_analysis`` keeps its historical name whatever produced it; ``analyzer`` inside says which.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shoal.api.deps import ServicesDep, client_key
from shoal.api.errors import describe_validation
from shoal.errors import InvalidInput, RateLimited
from shoal.ingest import RecordIn
from shoal.insights.state import InsightsState, state_of
from shoal.insights.store import Query as InsightsQuery

router = APIRouter(prefix="/api/v1", tags=["insights"])
ingest = APIRouter(prefix="/api/v1", tags=["insights"])
"""``POST /api/v1/conversations`` alone: mounted before every other route (``Feature.ingest_routers``)."""

MAX_LIMIT = 1000
MAX_BUCKETS = 5000
_BUCKET = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConversationIn(BaseModel):
    """One conversation. Only ``text`` is required; ``timestamp`` defaults to now."""

    model_config = ConfigDict(extra="ignore")

    text: Annotated[str, Field(min_length=1)]
    author: Annotated[str, Field(max_length=256)] | None = None
    timestamp: datetime | None = None
    raw_data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain non-whitespace characters")
        return value

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso(cls, value: object) -> object:
        if value is None or isinstance(value, datetime):
            return value
        return parse_time("timestamp", value)


def _json(body: dict[str, Any], status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def parse_time(name: str, value: object) -> datetime:
    """An ISO 8601 timestamp (``Z`` or an offset; naive means UTC), or 400 naming ``name``."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name}: invalid ISO 8601 timestamp (expected a string like 2025-01-20T10:00:00Z)")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{name}: invalid ISO 8601 timestamp {value[:64]!r} (expected e.g. 2025-01-20T10:00:00Z)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _validate(item: object, where: str) -> ConversationIn:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where or 'body'}: expected a JSON object with a 'text' field")
    try:
        return ConversationIn.model_validate(item)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}{exc.details}" if where else exc.details) from exc
    except ValidationError as exc:
        errors = [{**e, "loc": (*where.rstrip(".").split("."), *e["loc"]) if where else e["loc"]} for e in exc.errors()]
        raise InvalidInput(describe_validation(errors).replace("Value error, ", "")) from exc


async def _limit(services: ServicesDep, request: Request) -> None:
    wait = await services.limiter.hit(client_key(request))
    if wait is not None:
        raise RateLimited("rate_limit_exceeded", retry_after=wait)


@ingest.post("/conversations", status_code=202)
async def post_conversations(
    request: Request,
    services: ServicesDep,
    body: Annotated[Any, Body(description="a conversation object, or a list of up to 1000")],
) -> Response:
    """Queue one conversation (or a list) for analysis; 202 once durable in the log."""
    await _limit(services, request)
    state = state_of(services)
    single = not isinstance(body, list)
    items = [body] if single else list(body)
    if not items:
        raise InvalidInput("body: the list must contain at least one conversation")
    if len(items) > state.settings.max_batch:
        raise InvalidInput(f"body: at most {state.settings.max_batch} conversations per request, got {len(items)}")
    conversations = [_validate(item, "" if single else f"{i}.") for i, item in enumerate(items)]
    max_chars = services.settings.max_text_chars
    for i, c in enumerate(conversations):
        if len(c.text) > max_chars:
            raise InvalidInput(f"{'' if single else f'{i}.'}text: longer than {max_chars} characters")
    now = datetime.now(UTC)
    records = [
        RecordIn(
            id=f"conv_{uuid.uuid4().hex[:16]}",
            text=c.text,
            payload={"author": c.author, "raw_data": c.raw_data},
            ts=(c.timestamp or now).astimezone(UTC),
        )
        for c in conversations
    ]
    await services.ingest.submit(state.settings.collection, records)
    if single:
        body_out: dict[str, Any] = {
            "status": "accepted",
            "conversation_id": records[0].id,
            "message": "Conversation queued for analysis",
        }
    else:
        body_out = {
            "status": "accepted",
            "conversation_ids": [r.id for r in records],
            "count": len(records),
            "message": f"{len(records)} conversations queued for analysis",
        }
    return _json(body_out, status_code=202)


def _range(start_time: str, end_time: str) -> tuple[datetime, datetime]:
    start, end = parse_time("start_time", start_time), parse_time("end_time", end_time)
    if end < start:
        raise InvalidInput("end_time: must not be before start_time")
    return start, end


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _insight(row: dict[str, Any]) -> dict[str, Any]:
    analysis = None
    if row["status"] == "analyzed":
        analysis = {
            "sentiment_score": row["sentiment_score"],
            "sentiment": row["sentiment"],
            "clusters": row["clusters"] or [],
            "confidence": row["confidence"],
            "reasoning": row["reasoning"],
            "analyzer": row["analyzer"],
        }
    out = {
        "conversation_id": row["conversation_id"],
        "timestamp": _iso(row["ts"]),
        "text": row["text"],
        "author": row["author"],
        "grok_analysis": analysis,
    }
    if row["status"] != "analyzed":
        out["status"] = row["status"]
        out["attempts"] = row["attempts"]
        out["error"] = row["error"]
    return out


@router.get("/insights")
async def get_insights(
    services: ServicesDep,
    start_time: Annotated[str, Query(description="ISO 8601, inclusive")],
    end_time: Annotated[str, Query(description="ISO 8601, inclusive")],
    limit: Annotated[int, Query(ge=1, description="default 100; values above 1000 are capped")] = 100,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    sentiment: Literal["positive", "negative", "neutral"] | None = None,
    cluster: Annotated[str | None, Query(max_length=200)] = None,
    author: Annotated[str | None, Query(max_length=256)] = None,
    status: Literal["analyzed", "pending", "failed"] = "analyzed",
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    """Analyses in ``[start_time, end_time]`` oldest first; ``metadata.next_cursor`` pages on."""
    start, end = _range(start_time, end_time)
    page = await state_of(services).store.query(
        InsightsQuery(start, end, min(limit, MAX_LIMIT), min_confidence, sentiment, cluster, author, status, cursor)
    )
    return _json(
        {
            "insights": [_insight(r) for r in page.rows],
            "metadata": {
                "total_count": page.total,
                "returned_count": len(page.rows),
                "start_time": _iso(start),
                "end_time": _iso(end),
                "next_cursor": page.next_cursor,
            },
        }
    )


def parse_bucket(value: str) -> int:
    match = _BUCKET.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(f"bucket: invalid duration {value[:32]!r} (use e.g. 30s, 15m, 1h, 1d)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _trend(before: int, after: int) -> str:
    if after > before * 1.2 + 1:
        return "rising"
    if before > after * 1.2 + 1:
        return "falling"
    return "steady"


@router.get("/insights/summary")
async def get_summary(
    services: ServicesDep,
    start_time: str,
    end_time: str,
    bucket: str = "1h",
    top: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Response:
    """Sentiment over time in buckets and the top clusters with counts and trend (second half of the
    range against the first)."""
    start, end = _range(start_time, end_time)
    seconds = parse_bucket(bucket)
    if (end - start).total_seconds() / seconds > MAX_BUCKETS:
        raise InvalidInput(f"bucket: more than {MAX_BUCKETS} buckets in the range; use a larger bucket")
    state = state_of(services)
    buckets: dict[int, dict[str, Any]] = {}
    for row in await state.store.buckets(start, end, seconds):
        b = buckets.setdefault(row["bucket"], {"count": 0, "sum": 0.0, "positive": 0, "negative": 0, "neutral": 0})
        b["count"] += row["count"]
        b["sum"] += row["sum"]
        if row["sentiment"] in ("positive", "negative", "neutral"):
            b[row["sentiment"]] += row["count"]
    series = [
        {
            "start": _iso(start + timedelta(seconds=k * seconds)),
            "count": b["count"],
            "avg_sentiment": round(b["sum"] / b["count"], 4) if b["count"] else None,
            "positive": b["positive"],
            "negative": b["negative"],
            "neutral": b["neutral"],
        }
        for k, b in sorted(buckets.items())
    ]
    middle = start + (end - start) / 2
    first, second = await state.store.cluster_counts(start, middle), await state.store.cluster_counts(middle, end)
    totals = await state.store.cluster_counts(start, end)
    top_clusters = [
        {
            "label": label,
            "count": n,
            "trend": _trend(first.get(label, 0), second.get(label, 0)),
            "first_half": first.get(label, 0),
            "second_half": second.get(label, 0),
        }
        for label, n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    ]
    counts = await state.store.counts(start, end)
    analyzed = sum(b["count"] for b in series)
    return _json(
        {
            "buckets": series,
            "top_clusters": top_clusters,
            "metadata": {
                "start_time": _iso(start),
                "end_time": _iso(end),
                "bucket": bucket,
                "total_count": analyzed,
                "avg_sentiment": round(sum(b["avg_sentiment"] * b["count"] for b in series) / analyzed, 4)
                if analyzed
                else None,
                "pending_count": counts.get("pending", 0),
                "failed_count": counts.get("failed", 0),
            },
        }
    )


@router.get("/clusters")
async def get_clusters(services: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
    """Topic clusters, largest first: label, size, distinctive terms, example texts."""
    state: InsightsState = state_of(services)
    rows = await state.store.list_clusters(limit)
    return _json(
        {
            "clusters": [
                {
                    "id": r["id"],
                    "label": r["label"],
                    "size": r["size"],
                    "cohesion": r["cohesion"],
                    "top_terms": r["top_terms"],
                    "examples": r["examples"],
                    "updated_at": _iso(r["updated_at"]),
                }
                for r in rows
            ],
            "metadata": {"returned_count": len(rows)},
        }
    )
