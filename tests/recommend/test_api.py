"""Events in, lists out: taste, seen items, exclude / filter, cold start, unknown items, bad input."""

from __future__ import annotations

import json

import httpx

from tests.recommend.conftest import post_events, profile, recommendations, wait_events


def kinds(items: list[dict[str, object]]) -> list[str]:
    return [str(i["item_id"]).rsplit("-", 1)[0] for i in items]


async def test_taste_follows_events_and_seen_items_are_never_recommended(app_client: httpx.AsyncClient) -> None:
    seen = ["headphones-0", "headphones-1", "headphones-3"]
    await post_events(app_client, [{"user_id": "u1", "item_id": i, "type": "purchase"} for i in seen])
    await wait_events(app_client, "u1", 3)
    rec = await recommendations(app_client, "u1", limit=20)
    assert rec["source"] == "realtime"
    assert rec["user_id"] == "u1" and rec["updated_at"]
    ids = [i["item_id"] for i in rec["items"]]
    assert not set(ids) & set(seen)
    assert kinds(rec["items"])[:3] == ["headphones"] * 3
    assert len(ids) == 20  # 21 unseen items, capped at list_size
    assert all(i["title"] for i in rec["items"])


async def test_dislike_pushes_away(app_client: httpx.AsyncClient) -> None:
    await post_events(
        app_client,
        [
            {"user_id": "u2", "item_id": "television-0", "type": "view"},
            {"user_id": "u2", "item_id": "television-1", "type": "dislike"},
            {"user_id": "u2", "item_id": "television-2", "type": "rating", "value": 1},
        ],
    )
    await wait_events(app_client, "u2", 3)
    rec = await recommendations(app_client, "u2", limit=5)
    assert "television" not in kinds(rec["items"])


async def test_exclude_and_filter(app_client: httpx.AsyncClient) -> None:
    await post_events(app_client, [{"user_id": "u3", "item_id": "phone-0", "type": "click"}])
    await wait_events(app_client, "u3", 1)
    first = await recommendations(app_client, "u3", limit=3)
    drop = [i["item_id"] for i in first["items"][:2]]
    rec = await recommendations(app_client, "u3", limit=3, exclude=",".join(drop))
    assert not set(drop) & {i["item_id"] for i in rec["items"]}
    assert rec["items"][0]["item_id"] == first["items"][2]["item_id"]

    only_cables = json.dumps({"must": [{"key": "category", "match": {"value": "cable"}}]})
    rec = await recommendations(app_client, "u3", limit=4, filter=only_cables)
    assert kinds(rec["items"]) == ["cable"] * 4
    cheap = json.dumps({"must": [{"key": "price", "range": {"lt": 12}}]})
    rec = await recommendations(app_client, "u3", limit=10, filter=cheap)
    assert rec["items"] and all(str(i["item_id"]).endswith(("-0", "-1")) for i in rec["items"])
    assert "phone-0" not in {i["item_id"] for i in rec["items"]}

    r = await app_client.get("/v1/users/u3/recommendations", params={"filter": '{"must": [{"key": "x"}]}'})
    assert r.status_code == 400 and "filter" in r.json()["details"]


async def test_cold_start_serves_trending(app_client: httpx.AsyncClient) -> None:
    cold = await recommendations(app_client, "nobody")
    assert cold["source"] == "popular" and cold["items"] == []
    events = [{"user_id": f"buyer{n}", "item_id": "cable-3", "type": "purchase"} for n in range(3)]
    events += [{"user_id": "buyer9", "item_id": "phone-4", "type": "view"}]
    await post_events(app_client, events)
    await wait_events(app_client, "buyer9", 1)
    for n in range(3):
        await wait_events(app_client, f"buyer{n}", 1)
    cold = await recommendations(app_client, "newcomer", limit=5)
    assert cold["source"] == "popular" and cold["user_id"] == "newcomer"
    assert [i["item_id"] for i in cold["items"]] == ["cable-3", "phone-4"]


async def test_unknown_items_are_counted_and_skipped(app_client: httpx.AsyncClient) -> None:
    await post_events(
        app_client,
        [
            {"user_id": "u4", "item_id": "no-such-item", "type": "purchase"},
            {"user_id": "u4", "item_id": "cable-0", "type": "view"},
        ],
    )
    found = await wait_events(app_client, "u4", 2)
    assert found["counters"] == {"purchase": 1, "view": 1, "unknown_items": 1}
    metrics = (await app_client.get("/metrics")).text
    assert "shoal_recommend_unknown_items_total 1.0" in metrics
    rec = await recommendations(app_client, "u4")
    assert rec["source"] == "realtime" and kinds(rec["items"])[0] == "cable"

    await post_events(app_client, {"user_id": "u5", "item_id": "ghost", "type": "view"})
    await wait_events(app_client, "u5", 1)
    assert (await recommendations(app_client, "u5"))["source"] == "popular"


async def test_bad_events_name_the_field(app_client: httpx.AsyncClient) -> None:
    cases = [
        ({"item_id": "a", "type": "view"}, "user_id"),
        ({"user_id": "u", "item_id": "a", "type": "teleport"}, "type"),
        ({"user_id": "u", "item_id": "a", "type": "rating"}, "value"),
        ({"user_id": "u", "item_id": "a", "type": "view", "colour": 1}, "colour"),
        ({"user_id": "u", "item_id": "a", "type": "view", "ts": "yesterday"}, "ts"),
        ([{"user_id": "u", "item_id": "a", "type": "view"}, {"user_id": "u", "type": "view"}], "1.item_id"),
        ([], "at least one"),
        ("just a string", "body"),
    ]
    for body, field in cases:
        r = await app_client.post("/v1/events", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"] == "invalid_schema"
        assert field in r.json()["details"], (field, r.json())
    r = await app_client.post("/v1/events", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["details"]
    assert (await profile(app_client, "u"))["events"] == 0


async def test_similar_items(app_client: httpx.AsyncClient) -> None:
    r = await app_client.get("/v1/items/television-0/similar", params={"limit": 3})
    assert r.status_code == 200
    items = r.json()["items"]
    assert len(items) == 3 and "television-0" not in {i["item_id"] for i in items}
    assert kinds(items) == ["television"] * 3
    assert (await app_client.get("/v1/items/nope/similar")).status_code == 404
