"""The insights HTTP API in process, on the real app (embedded stores, local model, local analyzer)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from tests.insights.conftest import make_app
from tests.waiting import eventually

DAY = {"start_time": "2025-01-20T00:00:00Z", "end_time": "2025-01-20T23:59:59Z"}
SEED = [
    ("2025-01-20T00:00:00Z", "alice", "My package never arrived and support is useless. Terrible service."),
    ("2025-01-20T06:00:00Z", "bob", "Thank you so much, the refund came through quickly! Great help."),
    ("2025-01-20T12:00:00Z", "alice", "Great, another delay. Thanks for nothing 🙄"),
    ("2025-01-20T18:00:00Z", "carol", "What time does the store open on Sunday?"),
    ("2025-01-20T23:59:59Z", "bob", "The app keeps crashing when I log in, still not fixed"),
    ("2025-01-21T00:00:00Z", "dave", "Outside the range: my order is late"),
]


async def analyzed(client: httpx.AsyncClient, expected: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        r = await client.get("/api/v1/insights", params={**DAY, **(params or {})})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    return await eventually(probe, until=lambda b: b["metadata"]["total_count"] >= expected, timeout=60)


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    body = [{"text": t, "author": a, "timestamp": ts, "raw_data": {"n": i}} for i, (ts, a, t) in enumerate(SEED)]
    r = await client.post("/api/v1/conversations", json=body)
    assert r.status_code == 202, r.text
    await analyzed(client, 5)
    return client


async def test_post_single_returns_the_202_shape(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/conversations", json={"text": "where is my parcel?"})
    assert r.status_code == 202
    body = r.json()
    assert set(body) == {"status", "conversation_id", "message"}
    assert body["status"] == "accepted"
    assert body["message"] == "Conversation queued for analysis"
    assert re.fullmatch(r"conv_[0-9a-f]+", body["conversation_id"])


async def test_timestamp_defaults_to_now(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    r = await client.post("/api/v1/conversations", json={"text": "hello there, my card is blocked"})
    cid = r.json()["conversation_id"]
    window = {"start_time": before.isoformat(), "end_time": (datetime.now(UTC) + timedelta(seconds=5)).isoformat()}

    async def probe() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = (await client.get("/api/v1/insights", params=window)).json()["insights"]
        return rows

    rows = await eventually(probe, timeout=60)
    assert rows[0]["conversation_id"] == cid


async def test_batch_form(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/conversations", json=[{"text": f"message {i}"} for i in range(3)])
    assert r.status_code == 202
    assert r.json()["status"] == "accepted"
    assert len(r.json()["conversation_ids"]) == 3
    too_many = [{"text": "x"}] * 1001
    r = await client.post("/api/v1/conversations", json=too_many)
    assert r.status_code == 400
    assert "at most 1000" in r.json()["details"]
    r = await client.post("/api/v1/conversations", json=[{"text": "ok"}, {"author": "x"}])
    assert r.status_code == 400
    assert r.json()["details"] == "Missing required field: 1.text"


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({"author": "customer123"}, "Missing required field: text"),
        ({"text": "   "}, "text: must contain non-whitespace characters"),
        ({"text": 5}, "text: Input should be a valid string"),
        ({"text": "hi", "timestamp": "yesterday"}, "timestamp: invalid ISO 8601 timestamp 'yesterday'"),
        ({"text": "hi", "raw_data": [1]}, "raw_data: Input should be a valid dictionary"),
        ("just a string", "body: expected a JSON object with a 'text' field"),
        ([], "body: the list must contain at least one conversation"),
    ],
)
async def test_post_validation_names_the_field(client: httpx.AsyncClient, body: Any, details: str) -> None:
    r = await client.post("/api/v1/conversations", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_schema"
    assert r.json()["details"].startswith(details)


@pytest.mark.parametrize(
    ("params", "details"),
    [
        ({"end_time": "2025-01-20T00:00:00Z"}, "Missing required field: start_time"),
        ({"start_time": "2025-01-20T00:00:00Z"}, "Missing required field: end_time"),
        ({**DAY, "start_time": "20-01-2025"}, "start_time: invalid ISO 8601"),
        ({**DAY, "end_time": "nope"}, "end_time: invalid ISO 8601"),
        ({"start_time": "2025-01-21T00:00:00Z", "end_time": "2025-01-20T00:00:00Z"}, "end_time: must not be before"),
        ({**DAY, "limit": 0}, "limit:"),
        ({**DAY, "limit": "many"}, "limit:"),
        ({**DAY, "min_confidence": 1.5}, "min_confidence:"),
        ({**DAY, "sentiment": "angry"}, "sentiment:"),
        ({**DAY, "status": "done"}, "status:"),
        ({**DAY, "cursor": "!!!"}, "cursor:"),
    ],
)
async def test_query_validation_names_the_parameter(
    client: httpx.AsyncClient, params: dict[str, Any], details: str
) -> None:
    r = await client.get("/api/v1/insights", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["details"].startswith(details)


async def test_time_range_is_inclusive_at_both_ends(seeded: httpx.AsyncClient) -> None:
    body = await analyzed(seeded, 5)
    stamps = [i["timestamp"] for i in body["insights"]]
    assert stamps[0] == "2025-01-20T00:00:00Z"
    assert stamps[-1] == "2025-01-20T23:59:59Z"
    assert body["metadata"] == {
        "total_count": 5,
        "returned_count": 5,
        "start_time": DAY["start_time"],
        "end_time": DAY["end_time"],
        "next_cursor": None,
    }
    narrow = {"start_time": "2025-01-20T00:00:00.000001Z", "end_time": "2025-01-20T23:59:58.999999Z"}
    r = await seeded.get("/api/v1/insights", params=narrow)
    assert r.json()["metadata"]["total_count"] == 3
    offset = {"start_time": "2025-01-20T01:00:00+01:00", "end_time": "2025-01-20T01:00:00+01:00"}
    r = await seeded.get("/api/v1/insights", params=offset)
    assert [i["timestamp"] for i in r.json()["insights"]] == ["2025-01-20T00:00:00Z"]


async def test_each_insight_has_the_grok_analysis_shape(seeded: httpx.AsyncClient) -> None:
    insight = (await analyzed(seeded, 5))["insights"][0]
    assert {"conversation_id", "timestamp", "text", "grok_analysis"} <= set(insight)
    analysis = insight["grok_analysis"]
    assert {"sentiment_score", "clusters", "confidence", "reasoning", "analyzer"} <= set(analysis)
    assert -1 <= analysis["sentiment_score"] <= 1
    assert 0 <= analysis["confidence"] <= 1
    assert analysis["analyzer"] == "local"
    assert all(re.fullmatch(r"[a-z0-9_]+", c) for c in analysis["clusters"])
    assert "similarity" in analysis["reasoning"]


async def test_filters(seeded: httpx.AsyncClient) -> None:
    rows = (await analyzed(seeded, 5))["insights"]
    by_text = {r["text"][:12]: r for r in rows}
    assert by_text["My package n"]["grok_analysis"]["sentiment_score"] < 0
    assert by_text["Great, anoth"]["grok_analysis"]["sentiment_score"] < 0  # sarcasm
    assert by_text["Thank you so"]["grok_analysis"]["sentiment_score"] > 0

    negative = (await analyzed(seeded, 1, {"sentiment": "negative"}))["insights"]
    assert negative and all(r["grok_analysis"]["sentiment"] == "negative" for r in negative)
    positive = (await analyzed(seeded, 1, {"sentiment": "positive"}))["insights"]
    assert [r["text"][:12] for r in positive] == ["Thank you so"]

    alice = (await analyzed(seeded, 2, {"author": "alice"}))["insights"]
    assert {r["author"] for r in alice} == {"alice"} and len(alice) == 2

    label = rows[0]["grok_analysis"]["clusters"][0]
    in_cluster = (await analyzed(seeded, 1, {"cluster": label}))["insights"]
    assert in_cluster and all(label in r["grok_analysis"]["clusters"] for r in in_cluster)

    cutoff = sorted(r["grok_analysis"]["confidence"] for r in rows)[2]
    confident = (await analyzed(seeded, 1, {"min_confidence": cutoff}))["insights"]
    assert len(confident) == 3 and all(r["grok_analysis"]["confidence"] >= cutoff for r in confident)


async def test_limit_cap_and_cursor_pagination(seeded: httpx.AsyncClient) -> None:
    r = await seeded.get("/api/v1/insights", params={**DAY, "limit": 5000})
    assert r.status_code == 200 and r.json()["metadata"]["returned_count"] == 5
    seen: list[str] = []
    cursor = None
    while True:
        params = {**DAY, "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await seeded.get("/api/v1/insights", params=params)).json()
        assert body["metadata"]["total_count"] == 5
        assert body["metadata"]["returned_count"] <= 2
        seen += [i["conversation_id"] for i in body["insights"]]
        cursor = body["metadata"]["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5


async def test_summary_and_clusters(seeded: httpx.AsyncClient) -> None:
    r = await seeded.get("/api/v1/insights/summary", params={**DAY, "bucket": "6h"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [b["start"] for b in body["buckets"]] == [
        "2025-01-20T00:00:00Z",
        "2025-01-20T06:00:00Z",
        "2025-01-20T12:00:00Z",
        "2025-01-20T18:00:00Z",
    ]
    assert sum(b["count"] for b in body["buckets"]) == 5
    assert body["buckets"][-1]["count"] == 2
    assert body["metadata"]["total_count"] == 5 and body["metadata"]["pending_count"] == 0
    assert sum(c["count"] for c in body["top_clusters"]) == 5
    assert all(c["trend"] in {"rising", "falling", "steady"} for c in body["top_clusters"])
    bad = await seeded.get("/api/v1/insights/summary", params={**DAY, "bucket": "1 week"})
    assert bad.status_code == 400 and bad.json()["details"].startswith("bucket:")

    clusters = (await seeded.get("/api/v1/clusters")).json()["clusters"]
    assert sum(c["size"] for c in clusters) == 6
    for c in clusters:
        assert re.fullmatch(r"[a-z0-9_]+", c["label"])
        assert c["examples"] and isinstance(c["top_terms"], list)


async def test_inbound_rate_limit_gives_a_deterministic_429(tmp_path: Path) -> None:
    app = make_app(tmp_path, rate_limit_per_s=0.01, rate_limit_burst=2)
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            codes = [(await client.post("/api/v1/conversations", json={"text": "hi"})).status_code for _ in range(2)]
            assert codes == [202, 202]
            r = await client.post("/api/v1/conversations", json={"text": "hi"})
    assert r.status_code == 429
    assert r.json()["error"] == "rate_limit_exceeded"
    assert r.json()["retry_after"] >= 1
    assert int(r.headers["Retry-After"]) == r.json()["retry_after"]
