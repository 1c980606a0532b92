"""Recommendation API: events in (``POST /v1/events``), lists out (HTTP and a WebSocket push).

With auth on, a user-bound principal (a JWT or a ``user:key`` API key) may only post events for and
read the lists of its own user id; service keys and admins may act for anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response, WebSocket, WebSocketDisconnect, status
from pydantic import ValidationError

from shoal.api.deps import ServicesDep, ws_services
from shoal.auth import WS_POLICY_VIOLATION, authenticator_of
from shoal.errors import Forbidden, InvalidInput
from shoal.filters import Filter
from shoal.recommend.events import REQUEST_SCHEMA, parse_events
from shoal.recommend.feature_state import RecommendState, state_of
from shoal.recommend.service import channel
from shoal.services import Services

router = APIRouter(tags=["recommendations"])
events = APIRouter(tags=["recommendations"])
"""``POST /v1/events`` alone: mounted before every other route (``Feature.ingest_routers``)."""


def _check_user(principal: Any, user_id: str) -> None:
    if principal is None or principal.admin or not principal.user_bound:
        return
    if principal.subject != user_id:
        raise Forbidden(f"user_id: {principal.subject!r} may not act for {user_id!r}")


@events.post(
    "/v1/events",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": REQUEST_SCHEMA}}}},
)
async def post_events(request: Request, services: ServicesDep) -> Response:
    """Accept one event or a list; ``202`` once they are durable in the ``interactions`` log."""
    state = state_of(services)
    events = parse_events(await request.body(), state.settings.max_events_per_request)
    principal = getattr(request.state, "principal", None)
    for event in events:
        _check_user(principal, event.user_id)
    await services.log.append(state.settings.topic, [e.encode() for e in events])
    # serialised here: the hot path skips FastAPI's generic response encoding
    body = {"accepted": len(events), "event_ids": [e.event_id for e in events]}
    return Response(orjson.dumps(body), status.HTTP_202_ACCEPTED, media_type="application/json")


def _filter(raw: str | None) -> Filter | None:
    if not raw:
        return None
    try:
        return Filter.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidInput(f"filter: {where + ': ' if where else ''}{first.get('msg', 'invalid')}") from exc


@router.get("/v1/users/{user_id}/recommendations")
async def recommendations(
    user_id: str,
    request: Request,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    exclude: Annotated[str | None, Query(description="comma-separated item ids to leave out")] = None,
    filter: Annotated[str | None, Query(description="payload filter as JSON (Qdrant style)")] = None,
) -> Response:
    """The user's cached list (``source``: ``realtime`` from their taste, ``popular`` on cold start)."""
    _check_user(getattr(request.state, "principal", None), user_id)
    state = state_of(services)
    if limit > state.settings.list_size:
        raise InvalidInput(f"limit: at most {state.settings.list_size}")
    dropped = [x for x in (exclude or "").split(",") if x]
    rec = await state.recommender.get(user_id, limit=limit, exclude=dropped, filter=_filter(filter))
    return Response(orjson.dumps({**rec, "user_id": user_id}), media_type="application/json")


@router.get("/v1/users/{user_id}/profile")
async def profile(user_id: str, request: Request, services: ServicesDep) -> dict[str, Any]:
    """Counters, number of items seen and the last applied items (oldest first)."""
    _check_user(getattr(request.state, "principal", None), user_id)
    found = await state_of(services).store.get(user_id)
    if found is None:
        return {
            "user_id": user_id,
            "events": 0,
            "counters": {},
            "seen": 0,
            "recent": [],
            "has_taste": False,
            "updated_at": None,
        }
    return found.summary()


@router.get("/v1/items/{item_id}/similar")
async def similar(
    item_id: str, services: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 10
) -> dict[str, Any]:
    """Items nearest to ``item_id`` (404 when it is not indexed)."""
    return {"item_id": item_id, "items": await state_of(services).recommender.similar(item_id, limit)}


@router.websocket("/ws/recommendations/{user_id}")
async def recommendations_ws(websocket: WebSocket, user_id: str) -> None:
    """Sends the current list on connect, then each new list whenever its items change."""
    services = ws_services(websocket)
    principal = getattr(websocket.state, "principal", None)
    await websocket.accept()
    if authenticator_of(websocket.app) is not None:
        try:
            if principal is None:
                raise Forbidden("missing credentials")
            _check_user(principal, user_id)
        except Forbidden as exc:
            await websocket.close(WS_POLICY_VIOLATION, str(exc)[:120])
            return
    await _push(websocket, services, state_of(services), user_id)


async def _push(websocket: WebSocket, services: Services, state: RecommendState, user_id: str) -> None:
    async with services.bus.subscribe(channel(user_id), maxsize=64) as subscription:
        # subscribed before reading the current list: nothing published in between is missed
        current = await state.recommender.cached(user_id)
        await websocket.send_text(orjson.dumps({"type": "recommendations", **current}).decode())

        async def forward() -> None:
            async for event in subscription:
                if event.get("changed"):
                    # ``events``: the ids of the events the list reflects (a client sees its own take effect)
                    body = {k: v for k, v in event.items() if k != "changed"}
                    await websocket.send_text(orjson.dumps({"type": "recommendations", **body}).decode())

        async def drain() -> None:
            # the client sends nothing we need; reading notices when it leaves
            while True:
                if (await websocket.receive())["type"] == "websocket.disconnect":
                    return

        tasks = [asyncio.create_task(forward(), name="rec-forward"), asyncio.create_task(drain(), name="rec-drain")]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.close()
