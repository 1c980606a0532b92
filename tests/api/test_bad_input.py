"""Bad input gets a clear 4xx naming the field, never a 5xx, and never hurts other data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.app_fixtures import make_settings, running_app

URL = "/v1/collections/docs/records"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(tmp_path, max_body_bytes=1024 * 1024)) as (client, _):
        assert (await client.post("/v1/collections", json={"name": "docs"})).status_code == 201
        yield client


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"records": [{"text": 5}]}, "records.0.text"),
        ({"records": [{"text": ""}]}, "records.0.text"),
        ({"records": [{"text": "   "}]}, "records.0.text"),
        ({"records": [{}]}, "Missing required field: records.0.text"),
        ({"records": []}, "records"),
        ({"records": [{"text": "ok", "colour": "red"}]}, "Unknown field: records.0.colour"),
        ({"records": [{"text": "ok", "payload": {"_text": 1}}]}, "records.0.payload"),
        ({"records": [{"text": "ok", "ts": "yesterday"}]}, "records.0.ts"),
        ({"records": [{"text": "ok", "id": ""}]}, "records.0.id"),
        ({"records": [{"text": "a", "id": "x"}, {"text": "b", "id": "x"}]}, "duplicate"),
        ({"rows": []}, "Missing required field: records"),
    ],
)
async def test_bad_records_named(client: httpx.AsyncClient, body: object, field: str) -> None:
    r = await client.post(URL, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_schema"
    assert field in r.json()["details"]


async def test_too_many_records(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"records": [{"text": f"t{i}"} for i in range(1001)]})
    assert r.status_code == 400
    assert "at most 1000" in r.json()["details"]


async def test_body_too_large_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"records": [{"text": "x" * (2 * 1024 * 1024)}]})
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"


async def test_long_text_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"records": [{"text": "x" * 200_000}]})
    assert r.status_code == 400
    assert "records.0.text" in r.json()["details"]


async def test_invalid_utf8_and_json(client: httpx.AsyncClient) -> None:
    r = await client.post(
        URL, content=b'{"records": [{"text": "\xff\xfe"}]}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_schema"
    r = await client.post(URL, content=b'{"records": [', headers={"content-type": "application/json"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    "filter_",
    [
        {"must": [{"key": "lang"}]},
        {"must": [{"key": "lang", "match": {}}]},
        {"must": [{"key": "lang", "match": {"value": "a", "any": ["b"]}}]},
        {"must": [{"key": "n", "range": {}}]},
        {"must": [{"key": "n", "range": {"gte": 1, "lt": "2025-01-01T00:00:00Z"}}]},
        {"must": "lang"},
        {"bogus": []},
    ],
)
async def test_malformed_filters(client: httpx.AsyncClient, filter_: object) -> None:
    r = await client.post("/v1/collections/docs/search", json={"text": "x", "filter": filter_})
    assert r.status_code == 400, r.text
    assert "filter" in r.json()["details"]


async def test_search_needs_exactly_one_query(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/collections/docs/search", json={"text": "a", "id": "b"})
    assert r.status_code == 400
    r = await client.post("/v1/collections/docs/search", json={"vector": [0.1, 0.2]})
    assert r.status_code == 400
    assert "384" in r.json()["details"]


async def test_bad_collection_name(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/collections", json={"name": "has space"})
    assert r.status_code == 400
    assert "name" in r.json()["details"]


async def test_worker_survives_bad_input(client: httpx.AsyncClient) -> None:
    """After a barrage of bad requests, good records still flow end to end."""
    for body in ({"records": [{"text": 1}]}, {"records": "x"}, [], None):
        assert (await client.post(URL, json=body)).status_code == 400
    r = await client.post(URL, params={"wait": "true"}, json={"records": [{"id": "ok", "text": "still works"}]})
    assert r.status_code == 200, r.text
    r = await client.post("/v1/collections/docs/search", json={"text": "still works", "limit": 1})
    assert r.json()["results"][0]["id"] == "ok"
