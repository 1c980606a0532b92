"""The remote (OpenAI-compatible) provider's limits, retries and the Redis L2 content cache,
against a local server speaking the embeddings API and the real Redis."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest
import redis.asyncio as aioredis

from shoal.embedding.openai import OpenAIProvider, retry_after
from tests.embedops.conftest import DIM, ScriptedOpenAI, ops_app
from tests.embedops.helpers import add, events, settled

FAST = {"dim": DIM, "api_key": "sk-test", "backoff_initial": 0.01, "backoff_max": 0.05}
THIRTY_DAYS = 30 * 24 * 3600


def provider(fake: ScriptedOpenAI, **options: object) -> OpenAIProvider:
    return OpenAIProvider("fake", base_url=fake.url, **{**FAST, **options})  # type: ignore[arg-type]


async def test_batches_never_exceed_2048_inputs(openai_server: ScriptedOpenAI) -> None:
    async with provider(openai_server, max_batch=5000, max_batch_tokens=10**9) as p:
        assert p.max_batch == 2048
        vectors = await p.embed([f"text {i}" for i in range(2100)])
    assert vectors.shape == (2100, DIM)
    assert openai_server.sizes == [2048, 52]


async def test_requests_per_minute_are_paced(openai_server: ScriptedOpenAI) -> None:
    async with provider(openai_server, max_batch=1, requests_per_minute=3) as p:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):  # the 4th request may only start ~20 s after the 1st
                await p.embed([f"paced {i}" for i in range(4)])
    assert openai_server.requests == 3


async def test_tokens_per_minute_are_paced(openai_server: ScriptedOpenAI) -> None:
    texts = [f"{i} " + "x" * 38 for i in range(4)]  # 40 characters: 10 estimated tokens each
    async with provider(openai_server, max_batch=1, tokens_per_minute=30) as p:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):
                await p.embed(texts)
    assert openai_server.requests == 3


async def test_429_without_retry_after_backs_off_and_succeeds(openai_server: ScriptedOpenAI) -> None:
    openai_server.script = [(429, {}), (429, {}), (500, {})]
    async with provider(openai_server) as p:
        assert (await p.embed(["eventually"])).shape == (1, DIM)
    assert openai_server.requests == 4


def status_error(headers: dict[str, str]) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/embeddings")
    response = httpx.Response(429, headers=headers, request=request)
    return openai.RateLimitError("slow down", response=response, body=None)  # type: ignore[arg-type]


def test_retry_after_in_every_form() -> None:
    assert retry_after(status_error({"retry-after-ms": "1500"})) == 1.5
    assert retry_after(status_error({"Retry-After": "7"})) == 7.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after(status_error({"Retry-After": when})) or 0) <= 31
    assert retry_after(status_error({})) is None
    assert retry_after(ValueError("not an HTTP error")) is None


async def test_redis_l2_keeps_vectors_30_days_and_a_rerun_does_not_pay(
    tmp_path: Path, openai_server: ScriptedOpenAI, redis_url: str
) -> None:
    tag = uuid.uuid4().hex
    texts = {"a": f"first {tag}", "b": f"second {tag}", "c": f"first {tag}"}  # c repeats a's text
    async with ops_app(tmp_path / "one", openai_server, remote_main=True, cache_url=redis_url) as (client, _):
        await client.post("/v1/collections", json={"name": "docs"})
        await add(client, "docs", texts)
        await settled(client, "docs")
    assert openai_server.embedded == {f"first {tag}": 1, f"second {tag}": 1}  # identical texts once

    key = "shoal:emb:" + hashlib.sha256(f"openai:fake\0first {tag}".encode()).hexdigest()
    client_redis = aioredis.Redis.from_url(redis_url)
    try:
        ttl = await client_redis.ttl(key)
    finally:
        await client_redis.aclose()
    assert THIRTY_DAYS - 120 <= ttl <= THIRTY_DAYS

    # A new server (empty L1, its own data dir) re-embeds everything: the Redis L2 answers.
    requests = openai_server.requests
    async with ops_app(tmp_path / "two", openai_server, remote_main=True, cache_url=redis_url) as (client, _):
        await client.post("/v1/collections", json={"name": "docs"})
        openai_server.down = 503  # the provider is down: only the cache can answer
        await add(client, "docs", texts)
        openai_server.down = None
        await settled(client, "docs")
        openai_server.down = 503
        final = events(await client.post("/v1/collections/docs/backfill", json={"force": True}))[-1]
        assert (final["event"], final["succeeded"], final["failed"]) == ("done", 3, 0)
    assert openai_server.requests == requests
