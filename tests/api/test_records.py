"""End to end through the HTTP API, in process with the real lifespan, model and embedded stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.app_fixtures import make_settings, running_app

TEXTS = {
    "r1": ("I love programming in Rust, the borrow checker is great", {"lang": "en", "stars": 5}),
    "r2": ("The delivery of my package is late again, very annoying", {"lang": "en", "stars": 1}),
    "r3": ("Rust and Go are both fast systems programming languages", {"lang": "en", "stars": 4}),
    "r4": ("Mi paquete no ha llegado todavía", {"lang": "es", "stars": 2}),
}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(tmp_path)) as (client, _):
        r = await client.post("/v1/collections", json={"name": "docs"})
        assert r.status_code == 201, r.text
        yield client


async def add(client: httpx.AsyncClient, **extra: object) -> httpx.Response:
    base = datetime(2025, 1, 20, tzinfo=UTC)
    records = [
        {"id": rid, "text": text, "payload": payload, "ts": (base + timedelta(days=i)).isoformat()}
        for i, (rid, (text, payload)) in enumerate(TEXTS.items())
    ]
    return await client.post("/v1/collections/docs/records", params=extra, json={"records": records})


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


async def test_records_are_searchable_after_wait(client: httpx.AsyncClient) -> None:
    r = await add(client, wait="true")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "indexed"
    assert sorted(r.json()["ids"]) == sorted(TEXTS)

    r = await client.post("/v1/collections/docs/search", json={"text": "rust programming language", "limit": 2})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert {h["id"] for h in hits} == {"r1", "r3"}
    assert hits[0]["score"] >= hits[1]["score"]
    assert hits[0]["text"] == TEXTS[hits[0]["id"]][0]
    assert hits[0]["payload"] == TEXTS[hits[0]["id"]][1]


async def test_accepted_records_become_searchable(client: httpx.AsyncClient) -> None:
    from tests.waiting import eventually

    r = await add(client)
    assert r.status_code == 202
    assert r.json() == {"status": "accepted", "ids": list(TEXTS), "failed": {}, "pending": []}

    async def count() -> int:
        stats = (await client.get("/v1/collections/docs/stats")).json()
        return int(stats["embedded"])

    await eventually(count, until=lambda n: n == len(TEXTS))
    stats = (await client.get("/v1/collections/docs/stats")).json()
    assert stats["count"] == 4 and stats["pending"] == 0 and stats["failed"] == 0
    assert stats["coverage"] == 1.0
    assert stats["model"] == "local:minilm"
    assert stats["vectors"] == 4


async def test_search_filters(client: httpx.AsyncClient) -> None:
    await add(client, wait="true")
    search = "/v1/collections/docs/search"
    r = await client.post(
        search, json={"text": "package", "filter": {"must": [{"key": "lang", "match": {"value": "es"}}]}}
    )
    assert [h["id"] for h in r.json()["results"]] == ["r4"]

    r = await client.post(search, json={"text": "package", "filter": {"must": [{"key": "stars", "range": {"gte": 4}}]}})
    assert {h["id"] for h in r.json()["results"]} == {"r1", "r3"}

    r = await client.post(
        search,
        json={
            "text": "x",
            "filter": {"must": [{"key": "ts", "range": {"gte": "2025-01-21T00:00:00Z", "lt": "2025-01-23T00:00:00Z"}}]},
        },
    )
    assert {h["id"] for h in r.json()["results"]} == {"r2", "r3"}

    r = await client.post(search, json={"text": "x", "filter": {"must_not": [{"has_id": ["r1", "r2"]}]}})
    assert {h["id"] for h in r.json()["results"]} == {"r3", "r4"}

    r = await client.post(
        search, json={"text": "x", "filter": {"must": [{"key": "lang", "match": {"except": ["en"]}}]}}
    )
    assert [h["id"] for h in r.json()["results"]] == ["r4"]


async def test_more_like_this_and_by_vector(client: httpx.AsyncClient) -> None:
    await add(client, wait="true")
    r = await client.post("/v1/collections/docs/search", json={"id": "r1", "limit": 1})
    assert [h["id"] for h in r.json()["results"]] == ["r3"]

    r = await client.post("/v1/collections/docs/search", json={"id": "r2", "limit": 1, "with_vector": True})
    vector = r.json()["results"][0]["vector"]
    assert len(vector) == 384
    r = await client.post("/v1/collections/docs/search", json={"vector": vector, "limit": 1})
    assert r.json()["results"][0]["id"] == r.json()["results"][0]["id"]
    assert r.json()["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)


async def test_get_and_delete_record(client: httpx.AsyncClient) -> None:
    from tests.waiting import eventually

    await add(client, wait="true")
    r = await client.get("/v1/collections/docs/records/r2")
    body = r.json()
    assert body["text"] == TEXTS["r2"][0]
    assert body["status"] == "embedded"
    assert body["embedding_model"] == "local:minilm" and body["embedding_dim"] == 384
    assert body["embedded_at"] is not None

    assert (await client.delete("/v1/collections/docs/records/r2")).status_code == 202

    async def gone() -> int:
        return (await client.get("/v1/collections/docs/records/r2")).status_code

    await eventually(gone, until=lambda s: s == 404)
    r = await client.post("/v1/collections/docs/search", json={"text": "late delivery", "limit": 10})
    assert "r2" not in {h["id"] for h in r.json()["results"]}


async def test_upsert_is_idempotent(client: httpx.AsyncClient) -> None:
    await add(client, wait="true")
    await add(client, wait="true")
    stats = (await client.get("/v1/collections/docs/stats")).json()
    assert stats["count"] == 4 and stats["vectors"] == 4


async def test_collections_lifecycle(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/collections", json={"name": "docs"})).status_code == 409
    names = [c["name"] for c in (await client.get("/v1/collections")).json()["collections"]]
    assert "docs" in names
    assert (await client.delete("/v1/collections/docs")).status_code == 200
    assert "docs" not in [c["name"] for c in (await client.get("/v1/collections")).json()["collections"]]
    assert (await client.get("/v1/collections/docs")).status_code == 404
    r = await client.post("/v1/collections/docs/records", json={"records": [{"text": "x"}]})
    assert r.status_code == 404
    assert r.json()["error"] == "collection_not_found"


async def test_embeddings_endpoint_openai_shape(client: httpx.AsyncClient) -> None:
    import base64

    import numpy as np

    r = await client.post("/v1/embeddings", json={"input": ["hello world", "goodbye"]})
    body = r.json()
    assert body["object"] == "list" and body["model"] == "local:minilm"
    assert [d["index"] for d in body["data"]] == [0, 1]
    first = np.array(body["data"][0]["embedding"], dtype=np.float32)
    assert first.shape == (384,) and float(np.linalg.norm(first)) == pytest.approx(1.0, abs=1e-3)

    r = await client.post("/v1/embeddings", json={"input": "hello world", "encoding_format": "base64"})
    decoded = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, first, atol=1e-6)
    assert r.json()["usage"]["total_tokens"] > 0


async def test_metrics_exposes_pipeline_numbers(client: httpx.AsyncClient) -> None:
    await add(client, wait="true")
    text = (await client.get("/metrics")).text
    assert "shoal_records_indexed_total 4.0" in text
    assert 'shoal_collection_coverage_ratio{collection="docs"} 1.0' in text
    assert "shoal_embed_cache_hit_ratio" in text
    # offsets are committed just after the `indexed` event that released wait=true
    from tests.waiting import eventually

    async def scrape() -> str:
        return (await client.get("/metrics")).text

    await eventually(scrape, until=lambda t: 'shoal_log_lag{group="indexer",topic="records"} 0.0' in t)

    def value(text: str, name: str) -> float:
        return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))

    # every provider call is observed once: a second scrape with nothing embedded in between adds nothing
    first, second = await scrape(), await scrape()
    calls, texts = value(first, "shoal_embed_batch_size_count"), value(first, "shoal_embed_texts_total")
    assert calls >= 1 and texts >= 4  # the 4 records (and the warm-up text) went through the model
    assert value(first, "shoal_embed_batch_size_sum") == texts
    assert (value(second, "shoal_embed_batch_size_count"), value(second, "shoal_embed_texts_total")) == (calls, texts)

    # the records' vector collection is optimised once writes pause (0.2 s here): the backlog empties
    optimised = await eventually(
        scrape, until=lambda t: "shoal_vector_optimize_backlog_points 0.0" in t and "optimize_seconds_count{" in t
    )
    assert 'shoal_vector_optimize_seconds_count{vector_collection="docs__' in optimised
