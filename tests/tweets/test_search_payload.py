"""``POST /search_payload``: a user's tweets newest first, or ranked by a query (auth off)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.tweets.conftest import client, tweet


async def ingest(base: str, batches: list[list[dict[str, object]]]) -> None:
    """Send each batch and wait for its pushes: once pushed, a tweet is indexed."""
    async with client(f"{base}/ws") as c:
        for batch in batches:
            await c.send({"tweets": batch})
            for t in batch:
                await c.wait_type("similar", tweet_id=t["id"])


async def test_newest_first_semantic_and_shapes(server: tuple[str, FastAPI]) -> None:
    base, _ = server
    await ingest(
        base,
        [
            [tweet("u1-old", "Rust borrow checker explained", user_id="u1")],
            [tweet("u1-mid", "Baking sourdough bread at home", user_id="u1", lang="en")],
            [tweet("u1-new", "Tokio makes async Rust easy", user_id="u1")],
            [tweet("u2-one", "Rust is great", user_id="u2", username="bob")],
        ],
    )
    async with httpx.AsyncClient(base_url=base.replace("ws://", "http://"), timeout=30) as api:
        newest = (await api.post("/search_payload", json={"user_id": "u1", "limit": 2})).json()
        assert newest["status"] == "success"
        points = newest["payload"]["points"]
        assert [p["id"] for p in points] == ["u1-new", "u1-mid"]
        assert points[0]["payload"] == {"user_id": "u1", "username": "alice", "text": "Tokio makes async Rust easy"}
        assert points[1]["payload"]["lang"] == "en"
        ranked = (await api.post("/search_payload", json={"user_id": "u1", "query": "Rust", "limit": 5})).json()
        ranked_points = ranked["payload"]["points"]
        assert {p["id"] for p in ranked_points} == {"u1-old", "u1-mid", "u1-new"}
        assert ranked_points[-1]["id"] == "u1-mid" and all("score" in p for p in ranked_points)
        assert ranked_points[0]["payload"]["user_id"] == "u1" and "text" in ranked_points[0]["payload"]
        nobody = (await api.post("/search_payload", json={"user_id": "nobody"})).json()
        assert nobody == {"status": "success", "payload": {"points": []}}


async def test_bad_bodies_are_400_naming_the_field(server: tuple[str, FastAPI]) -> None:
    base, _ = server
    async with httpx.AsyncClient(base_url=base.replace("ws://", "http://"), timeout=30) as api:
        cases = [
            ({}, "user_id"),
            ({"user_id": "u", "limit": 0}, "limit"),
            ({"user_id": "u", "limit": 1000}, "limit"),
            ({"user_id": "u", "query": ""}, "at least 1 character"),
            ({"user_id": "u", "extra": 1}, "extra"),
        ]
        for body, field in cases:
            response = await api.post("/search_payload", json=body)
            assert response.status_code == 400, body
            assert response.json()["error"] == "invalid_schema" and field in response.json()["details"]
