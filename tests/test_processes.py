"""Two API processes and two worker processes sharing PostgreSQL, Redis, Kafka (Tansu) and pgvector.

- the worker role serves only the operations endpoints;
- a record posted to API 1 reaches a WebSocket subscriber on API 2 (the bus crosses processes), and
  ``?wait=true`` on one API returns once a worker has indexed the records;
- the inbound rate limit holds across both API processes (one budget, not two);
- a worker killed with SIGKILL mid-batch loses nothing: the other takes over its partitions and every
  acknowledged record becomes searchable. (Last: it leaves one worker.)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import Backends, Cluster, shared_backends
from tests.tweets.conftest import client as ws_client
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.service]

RATE, BURST = 4.0, 4


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    with shared_backends(tmp_path_factory.mktemp("backends")) as found:
        yield found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, backends: Backends) -> Iterator[Cluster]:
    env = {
        "SHOAL_RATE_LIMIT_PER_S": str(RATE),
        "SHOAL_RATE_LIMIT_BURST": str(BURST),
        "SHOAL_INGEST_BATCH_SIZE": "64",  # small batches: a kill lands mid-batch, with more in the log
        "SHOAL_EMBED_THREADS": "1",  # four processes on two cores
    }
    with Cluster(tmp_path_factory.mktemp("cluster"), backends, apis=2, workers=2, **env) as running:
        yield running
        if any(not p.alive for p in running.processes if p is not running.workers[0]):
            print(running.logs())


async def test_worker_role_serves_only_operations_endpoints(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.workers[0].url, timeout=10) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        assert (await http.get("/ready")).status_code == 200
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and "shoal_" in metrics.text
        for path in ("/", "/v1/collections", "/openapi.json", "/docs", "/api/v1/insights"):
            assert (await http.get(path)).status_code == 404, path
        assert (await http.post("/v1/collections", json={"name": "x"})).status_code == 404
    async with httpx.AsyncClient(base_url=cluster.apis[1].url, timeout=10) as http:
        assert (await http.get("/v1/collections")).status_code == 200


async def test_record_posted_to_api_1_reaches_a_websocket_subscriber_on_api_2(cluster: Cluster) -> None:
    api1, api2 = (p.url for p in cluster.apis)
    async with ws_client(api2.replace("http://", "ws://") + "/ws") as ws:
        await ws.send({"type": "subscribe", "id": "q1", "query": "trains running late in the rain", "min_score": 0.3})
        await ws.wait_type("subscribed", id="q1")
        async with httpx.AsyncClient(base_url=api1, timeout=60) as http:
            body = {
                "records": [
                    {
                        "id": "proc-t1",
                        "text": "my train is late again because of the heavy rain",
                        "payload": {"user_id": "u1", "username": "ann"},
                    },
                ]
            }
            r = await http.post("/v1/collections/tweets/records", json=body)
            assert r.status_code == 202, r.text
        match = await ws.wait_type("match", timeout=60, subscription="q1", tweet_id="proc-t1")
    assert match["score"] >= 0.3
    assert match["payload"]["user_id"] == "u1"


async def test_wait_true_returns_once_a_worker_indexed_the_records(cluster: Cluster) -> None:
    api1, api2 = (p.url for p in cluster.apis)
    async with httpx.AsyncClient(base_url=api1, timeout=60) as http:
        assert (await http.post("/v1/collections", json={"name": "waits"})).status_code == 201
        body = {"records": [{"id": f"w{i}", "text": f"waiting for record {i}"} for i in range(10)]}
        r = await http.post("/v1/collections/waits/records", json=body, params={"wait": "true"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "indexed"
    async with httpx.AsyncClient(base_url=api2, timeout=60) as http:  # the other API sees them at once
        r = await http.post("/v1/collections/waits/search", json={"text": "waiting for record 3", "limit": 1})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["id"] == "w3"


async def test_inbound_rate_limit_holds_across_both_api_processes(cluster: Cluster, backends: Backends) -> None:
    import redis.asyncio as aioredis

    redis = aioredis.from_url(backends.redis_url)
    try:
        # Start from a full bucket whatever ran before (the key expires on its own once refilled).
        await redis.delete("shoal:ratelimit:ip:127.0.0.1")
    finally:
        await redis.aclose()
    apis = [httpx.AsyncClient(base_url=p.url, timeout=30) for p in cluster.apis]
    allowed: dict[str, int] = {p.url: 0 for p in cluster.apis}
    limited: dict[str, int] = {p.url: 0 for p in cluster.apis}
    started = time.monotonic()
    try:
        for http in itertools.islice(itertools.cycle(apis), 40):
            r = await http.post("/api/v1/conversations", json={"text": "the app keeps crashing", "author": "bob"})
            assert r.status_code in (202, 429), r.text
            if r.status_code == 202:
                allowed[str(http.base_url).rstrip("/")] += 1
            else:
                limited[str(http.base_url).rstrip("/")] += 1
                assert float(r.headers["Retry-After"]) > 0
    finally:
        elapsed = time.monotonic() - started
        await asyncio.gather(*(http.aclose() for http in apis))
    total = sum(allowed.values())
    # One shared budget: the burst plus what refilled meanwhile. Two separate limiters would let
    # through about twice that (each API its own burst).
    budget = BURST + RATE * elapsed
    assert BURST <= total <= budget + 1, (allowed, limited, elapsed)
    assert all(n > 0 for n in limited.values()), f"both APIs must refuse once the shared bucket is empty: {limited}"


async def _ingest(http: httpx.AsyncClient, collection: str, prefix: str, batches: int, acked: list[str]) -> None:
    for n in range(batches):
        ids = [f"{prefix}-{n}-{i}" for i in range(50)]
        body = {"records": [{"id": rid, "text": f"record {rid} about topic {hash(rid) % 23}"} for rid in ids]}
        r = await http.post(f"/v1/collections/{collection}/records", json=body)
        assert r.status_code == 202, r.text
        acked.extend(ids)


async def test_worker_killed_mid_batch_loses_nothing(cluster: Cluster) -> None:
    api1, api2 = (p.url for p in cluster.apis)
    async with (
        httpx.AsyncClient(base_url=api1, timeout=60) as http,
        httpx.AsyncClient(base_url=api2, timeout=60) as other,
    ):
        assert (await http.post("/v1/collections", json={"name": "kill"})).status_code == 201

        async def stats() -> dict[str, int]:
            r = await http.get("/v1/collections/kill/stats")
            return dict(r.json())

        acked: list[str] = []
        await asyncio.gather(_ingest(http, "kill", "a", 12, acked), _ingest(other, "kill", "b", 12, acked))
        # Both workers are indexing the backlog (each owns partitions) when one dies.
        await eventually(stats, until=lambda s: s["embedded"] >= 150, timeout=120)
        cluster.workers[0].kill()
        # Records accepted after the kill go to the survivor too.
        await asyncio.gather(_ingest(http, "kill", "c", 3, acked), _ingest(other, "kill", "d", 3, acked))

        # Records are written before their vectors: wait for both.
        final = await eventually(
            stats, until=lambda s: s["embedded"] >= len(acked) and s["vectors"] >= len(acked), timeout=240
        )
        assert final["count"] == final["embedded"] == final["vectors"] == len(set(acked)) == len(acked), final
        gate = asyncio.Semaphore(16)

        async def check(rid: str) -> str | None:
            async with gate:
                r = await http.get(f"/v1/collections/kill/records/{rid}")
                if r.status_code != 200 or r.json()["status"] != "embedded":
                    return f"{rid}: {r.status_code} {r.text[:100]}"
                return None

        problems = [p for p in await asyncio.gather(*(check(rid) for rid in acked)) if p]
        assert not problems, f"{len(problems)} acknowledged records lost, e.g. {problems[:5]}"
        text = f"record {acked[-1]} about topic {hash(acked[-1]) % 23}"
        r = await other.post("/v1/collections/kill/search", json={"text": text, "limit": 1})
        assert r.status_code == 200 and r.json()["results"][0]["id"] == acked[-1]
    assert cluster.workers[1].alive
