"""The dashboard's own HTTP surface, in process: the page and its assets (cache headers, no CDN),
``/dashboard/config``, ``/dashboard/metrics`` (the numbers of ``/metrics``) and ``/dashboard/search``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from shoal.dashboard.feature import STATIC_DIR
from tests.dashboard.conftest import NOW, conversations, dashboard_app, tweet_records
from tests.waiting import eventually


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = dashboard_app(tmp_path)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shoal.test", timeout=60) as http:
            r = await http.post("/v1/collections/tweets/records?wait=true", json={"records": tweet_records()})
            assert r.status_code == 200, r.text
            yield http


async def test_page_and_assets_are_served_with_cache_headers_and_no_cdn(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert assets and not re.search(r'(?:src|href)="(?:https?:)?//', page.text), "everything comes from this server"
    for path in assets:
        r = await client.get(path)
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        again = await client.get(path, headers={"if-none-match": r.headers["etag"]})
        assert again.status_code == 304
    assert (await client.get("/static/assets/missing.js")).status_code == 404
    assert not list(STATIC_DIR.rglob("*.map")), "no source maps in the committed build"


async def test_config_names_features_and_their_collections(client: httpx.AsyncClient) -> None:
    r = await client.get("/dashboard/config")
    assert r.status_code == 200
    body = r.json()
    assert body["tweets"] == "tweets" and body["conversations"] == "conversations" and body["items"] == "items"
    assert {"core", "tweets", "insights", "recommend", "dashboard"} <= set(body["features"])
    assert body["auth"] is False and body["principal"] is None
    assert "tweets" in body["collections"]


async def test_metrics_json_carries_the_numbers_of_metrics(client: httpx.AsyncClient) -> None:
    body = (await client.get("/dashboard/metrics")).json()
    assert body["ready"]["status"] == "ready"
    by_name = {(s["name"], tuple(sorted(s["labels"].items()))): s["value"] for s in body["samples"]}
    assert by_name[("shoal_records_indexed_total", ())] >= len(tweet_records())
    assert by_name[("shoal_collection_coverage_ratio", (("collection", "tweets"),))] == 1.0
    assert ("shoal_log_lag", (("group", "indexer"), ("topic", "records"))) in by_name
    text = (await client.get("/metrics")).text
    indexed = re.search(r"^shoal_records_indexed_total (\S+)$", text, re.M)
    assert indexed and float(indexed.group(1)) == by_name[("shoal_records_indexed_total", ())]


async def test_search_with_user_time_and_id(client: httpx.AsyncClient) -> None:
    async def ids(**body: object) -> list[str]:
        r = await client.post("/dashboard/search", json={"collection": "tweets", **body})
        assert r.status_code == 200, r.text
        return [hit["id"] for hit in r.json()["results"]]

    found = await ids(text="rust programming")
    assert set(found[:3]) == {"t1", "t2", "t3"}
    assert set(await ids(text="rust programming", user="bob")) == {"t3", "t4"}
    window = {"start_time": (NOW - timedelta(hours=1, minutes=30)).isoformat(), "end_time": NOW.isoformat()}
    assert set(await ids(text="rust", **window)) == {"t1", "t2"}
    assert "t1" not in await ids(id="t1") and (await ids(id="t1"))[0] in {"t2", "t3"}
    assert await ids(limit=2) == ["t1", "t2"], "without a query: newest first"


async def test_search_by_sentiment_uses_the_insights_analyzer(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/dashboard/search", json={"collection": "tweets", "text": "travel trouble", "sentiment": "negative"}
    )
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert {h["id"] for h in hits} >= {"t4", "t6"}
    assert all(h["sentiment"]["label"] == "negative" for h in hits)
    r = await client.post(
        "/dashboard/search", json={"collection": "tweets", "text": "love rust", "sentiment": "positive"}
    )
    assert "t2" in {h["id"] for h in r.json()["results"]}


async def test_bad_searches_name_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/dashboard/search", json={"collection": "tweets", "text": "x", "sentiment": "angry"})
    assert r.status_code == 400 and "sentiment" in r.text
    r = await client.post("/dashboard/search", json={"collection": "tweets", "sentiment": "negative"})
    assert r.status_code == 400 and "sentiment" in r.json()["details"]
    r = await client.post("/dashboard/search", json={"collection": "nope", "text": "x"})
    assert r.status_code == 404
    r = await client.post("/dashboard/search", json={"collection": "tweets", "text": "x", "limit": 1000})
    assert r.status_code == 400 and "limit" in r.text


async def test_conversations_are_searchable_by_author_and_carry_their_analysis(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/conversations", json=conversations())
    assert r.status_code == 202, r.text

    async def search(body: dict[str, object]) -> list[dict[str, Any]]:
        r = await client.post("/dashboard/search", json={"collection": "conversations", **body})
        results: list[dict[str, Any]] = r.json()["results"]
        return results

    newest = await eventually(
        lambda: search({"limit": 20}),
        until=lambda h: len(h) == len(conversations()) and all(x["analysis"] for x in h),
        timeout=30,
    )
    assert {h["analysis"]["sentiment"] for h in newest} <= {"positive", "neutral", "negative"}
    assert all(h["analysis"]["cluster"] and h["analysis"]["analyzer"] == "local" for h in newest)
    hits = await search({"text": "late delivery", "user": "customer1"})
    assert len(hits) >= 2 and all(h["user"] == "customer1" and h["analysis"] for h in hits)
    tweets = await client.post("/dashboard/search", json={"collection": "tweets", "limit": 1})
    assert "analysis" not in tweets.json()["results"][0], "only conversations have an insights analysis"


async def test_auth_on_needs_a_token_and_scopes_tweets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "/" cannot be listed yet: a public path ending in "/" is a prefix, so it would open every route.
    monkeypatch.setenv("SHOAL_AUTH_PUBLIC_PATHS", '["/health", "/ready", "/dashboard", "/static/"]')
    app = dashboard_app(tmp_path, api_keys="alice:alice-key", admin_api_keys="admin-key")
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shoal.test", timeout=60) as http:
            admin = {"authorization": "Bearer admin-key"}
            r = await http.post(
                "/v1/collections/tweets/records?wait=true", json={"records": tweet_records()}, headers=admin
            )
            assert r.status_code == 200, r.text
            assert (await http.get("/dashboard")).status_code == 200, "the page itself is public; its data is not"
            assert (await http.get("/static/index.html")).status_code == 200
            assert (await http.get("/dashboard/config")).status_code == 401
            r = await http.get("/dashboard/config", headers={"authorization": "Bearer alice-key"})
            assert r.json()["auth"] is True and r.json()["principal"] == {"subject": "alice", "admin": False}
            r = await http.post(
                "/dashboard/search",
                json={"collection": "tweets", "text": "rust"},
                headers={"authorization": "Bearer alice-key"},
            )
            assert {h["user"] for h in r.json()["results"]} == {"alice"}, "a user sees only their own tweets"
            r = await http.post("/dashboard/search", json={"collection": "tweets", "text": "rust"}, headers=admin)
            assert {h["user"] for h in r.json()["results"]} >= {"alice", "bob"}
