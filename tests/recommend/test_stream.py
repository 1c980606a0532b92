"""Ordering, exactly-once application across restarts, and live pushes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from shoal.app import CoreFeature, create_app
from shoal.recommend import RecommendFeature
from shoal.recommend.service import channel, list_key
from tests.app_fixtures import make_settings, services_of
from tests.recommend.conftest import catalog, post_events, profile, rec_app, rec_settings, wait_events
from tests.servers import running_server
from tests.waiting import eventually

ITEMS = [item["id"] for item in catalog()]


async def test_each_users_events_apply_in_order_under_concurrent_posting(app_client: httpx.AsyncClient) -> None:
    users = [f"order{n}" for n in range(8)]
    sequences = {u: [ITEMS[(n * 7 + k * 5) % len(ITEMS)] for k in range(30)] for n, u in enumerate(users)}

    async def client_of(user: str) -> None:
        for item in sequences[user]:  # one user's events are sent one after the other, users in parallel
            await post_events(app_client, {"user_id": user, "item_id": item, "type": "view"})

    await asyncio.gather(*(client_of(u) for u in users))
    for user in users:
        found = await wait_events(app_client, user, 30)
        assert found["recent"] == sequences[user]
        assert found["events"] == 30


async def test_replayed_and_retried_events_apply_once(app_client: httpx.AsyncClient) -> None:
    batch = [{"event_id": f"e{n}", "user_id": "retry", "item_id": ITEMS[n], "type": "view"} for n in range(10)]
    await post_events(app_client, batch)
    await post_events(app_client, batch[:5])  # a client retry with the same ids
    await post_events(app_client, {"event_id": "last", "user_id": "retry", "item_id": ITEMS[11], "type": "click"})
    found = await wait_events(app_client, "retry", 11)
    assert found["events"] == 11 and found["counters"] == {"view": 10, "click": 1}
    metrics = (await app_client.get("/metrics")).text
    assert "shoal_recommend_duplicate_events_total 5.0" in metrics


async def test_stop_mid_stream_and_restart_applies_every_event_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    users = [f"r{n}" for n in range(5)]
    events = [
        {"event_id": f"ev{k}", "user_id": users[k % 5], "item_id": ITEMS[k % len(ITEMS)], "type": "view"}
        for k in range(600)
    ]
    settings = rec_settings(batch_size=16)
    async with rec_app(data, settings) as (client, app):
        for start in range(0, len(events), 100):
            await post_events(client, events[start : start + 100])
        # leave while the profiler is part-way through the stream
        await eventually(lambda: profile(client, "r0"), until=lambda p: p["events"] > 0)
        lag = await services_of(app).log.lag("interactions", "profiler")
    assert lag > 0, "the stream finished before the stop; nothing tested"
    async with rec_app(data, settings, load_catalog=False) as (client, app):
        await post_events(client, events[:300])  # clients retrying after the restart
        log = services_of(app).log
        await eventually(lambda: log.lag("interactions", "profiler"), until=lambda n: n == 0, timeout=60)
        for user in users:
            found = await profile(client, user)
            assert found["events"] == 120, found
            assert found["counters"] == {"view": 120}


async def test_websocket_pushes_the_new_list_when_it_changes(tmp_path: Path) -> None:
    features = [CoreFeature(), RecommendFeature(rec_settings())]
    app = create_app(make_settings(tmp_path / "data"), features)
    async with running_server(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        r = await client.post("/v1/collections/items/records?wait=true", json={"records": catalog()})
        assert r.status_code == 200
        async with connect(base_url.replace("http://", "ws://") + "/ws/recommendations/live") as ws:
            first = orjson.loads(await asyncio.wait_for(ws.recv(), 20))
            assert first["type"] == "recommendations" and first["source"] == "popular"
            (event_id,) = await post_events(client, {"user_id": "live", "item_id": "television-2", "type": "purchase"})
            pushed = orjson.loads(await asyncio.wait_for(ws.recv(), 20))
            assert pushed["source"] == "realtime" and pushed["user_id"] == "live"
            assert pushed["events"] == [event_id]  # the client can tell its event took effect
            assert pushed["items"][0]["item_id"].startswith("television")
            assert "television-2" not in {i["item_id"] for i in pushed["items"]}
            # a second taste moves the list: another push
            for item in itertools.islice((i for i in ITEMS if i.startswith("cable")), 4):
                await post_events(client, {"user_id": "live", "item_id": item, "type": "purchase"})
            moved = await eventually(
                lambda: _next(ws), until=lambda m: m["items"][0]["item_id"].startswith("cable"), timeout=20
            )
            assert moved["type"] == "recommendations"


async def _next(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), 20))
    return message


async def test_a_batch_replayed_after_a_crash_is_skipped(tmp_path: Path) -> None:
    """A crash after the profile transaction but before the offset commit replays the batch: the
    processor sees the very same messages again and must not apply them twice, but stores the list
    the crash may have kept from being stored."""
    async with rec_app(tmp_path / "data") as (client, app):
        events = [{"user_id": "crash", "item_id": ITEMS[n], "type": "view"} for n in range(12)]
        await post_events(client, events)
        await wait_events(client, "crash", 12)
        services = services_of(app)
        feature = services.extras["_features"]["recommend"]
        (processor,) = feature.processors(services)
        await services.cache.delete(list_key("crash"))  # the crash came before the list was stored
        async with services.log.consumer("interactions", "replay-test") as consumer:
            batch = await consumer.poll(1000, timeout=5)
            assert len(batch) == 12
            await processor.handle(batch)
        found = await profile(client, "crash")
        assert found["events"] == 12 and found["counters"] == {"view": 12}
        stored = await services.cache.get(list_key("crash"))
        assert stored is not None and orjson.loads(stored)["source"] == "realtime"


async def test_a_batch_gives_each_user_one_list_from_their_own_events(tmp_path: Path) -> None:
    """Several users' events in one batch: each user gets one list, computed after all of their
    events were applied (its push names them all), from their own taste — the users' nearest-item
    queries are batched, and no user may get another's results."""
    tastes = {"p": "phone", "t": "television", "c": "cable"}
    # taste only: the trending items this very batch makes would top every list
    async with rec_app(tmp_path / "data", rec_settings(popularity_blend=0.0)) as (client, app):
        services = services_of(app)
        async with contextlib.AsyncExitStack() as stack:
            subscriptions = {
                u: await stack.enter_async_context(services.bus.subscribe(channel(u), maxsize=16)) for u in tastes
            }
            # one request is one log append, so the profiler takes these events as one batch
            events = [
                {"user_id": u, "item_id": f"{kind}-{k}", "type": "purchase"}
                for k in (0, 1)
                for u, kind in tastes.items()
            ]
            ids = await post_events(client, events)
            for u, kind in tastes.items():
                pushed = await asyncio.wait_for(anext(aiter(subscriptions[u])), 20)
                assert pushed["user_id"] == u and pushed["source"] == "realtime"
                assert pushed["events"] == [i for i, e in zip(ids, events, strict=True) if e["user_id"] == u]
                listed = [i["item_id"] for i in pushed["items"]]
                assert not {f"{kind}-0", f"{kind}-1"} & set(listed)  # seen items are never recommended
                assert all(i.startswith(kind) for i in listed[:3]), listed
