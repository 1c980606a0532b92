"""The LLM analyzer against a local server that speaks the OpenAI chat-completions protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from asgi_lifespan import LifespanManager

from shoal.embedding.onnx import OnnxProvider
from shoal.insights.analyzer import LocalAnalyzer
from shoal.insights.clusters import OnlineClusterer
from shoal.insights.llm import LLMAnalyzer, LLMBatch
from shoal.insights.sentiment import SentimentAnalyzer, SentimentHead
from shoal.llm_settings import LLMSettings
from shoal.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from tests.insights.conftest import make_app
from tests.insights.openai_server import FakeInsightsModel, serve
from tests.waiting import eventually

TEXTS = ["my order is late again", "thanks, all good now", "the parcel is late", "love the new app"]


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    import asyncio

    async def embed() -> np.ndarray:
        async with OnnxProvider() as provider:
            return await provider.embed(TEXTS * 10)

    return asyncio.run(embed())


def local() -> LocalAnalyzer:
    return LocalAnalyzer(SentimentAnalyzer(head=SentimentHead.load()), OnlineClusterer(384))


@pytest.fixture
async def model_url() -> AsyncIterator[tuple[FakeInsightsModel, str]]:
    model = FakeInsightsModel()
    async with serve(model) as url:
        yield model, url


def analyzer(url: str, limiter: RateLimiter | None = None, **kwargs: object) -> LLMAnalyzer:
    timeout = float(kwargs.pop("timeout_s", 5.0))  # type: ignore[arg-type]
    settings = LLMSettings(base_url=url, api_key="sk-test", model="fake-grok", timeout_s=timeout)
    return LLMAnalyzer(settings, local(), limiter or MemoryRateLimiter(1000), **kwargs)  # type: ignore[arg-type]


async def test_request_shape_and_validated_results(
    model_url: tuple[FakeInsightsModel, str], vectors: np.ndarray
) -> None:
    model, url = model_url
    llm = analyzer(url, batch_size=2)
    try:
        out = await llm.analyze(TEXTS, vectors[: len(TEXTS)])
    finally:
        await llm.aclose()
    assert len(model.requests) == 2  # batched: 4 texts, 2 per prompt
    body = model.requests[0]
    assert body["model"] == "fake-grok"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == LLMBatch.model_json_schema()
    assert model.headers[0]["authorization"] == "Bearer sk-test"
    assert [a.analyzer for a in out] == ["llm:fake-grok"] * 4
    assert out[0].sentiment_score == -0.8 and out[0].sentiment == "negative"
    assert out[0].clusters == ["delivery_problems"]
    assert out[0].cluster is not None  # the online cluster is still assigned locally


async def test_invalid_json_is_retried_then_falls_back_to_local(
    model_url: tuple[FakeInsightsModel, str], vectors: np.ndarray
) -> None:
    model, url = model_url
    model.mode = "invalid"
    llm = analyzer(url, batch_size=10, max_retries=2)
    try:
        out = await llm.analyze(TEXTS, vectors[: len(TEXTS)])
    finally:
        await llm.aclose()
    assert len(model.requests) == 3
    assert llm.fallbacks == 1
    assert [a.analyzer for a in out] == ["local"] * 4


@pytest.mark.parametrize("bad", ["invalid", "wrong_ids", "slow"])
async def test_a_bad_answer_then_a_good_one_succeeds(
    model_url: tuple[FakeInsightsModel, str], vectors: np.ndarray, bad: str
) -> None:
    model, url = model_url
    model.script = [bad]
    model.delay_s = 3.0
    llm = analyzer(url, batch_size=10, max_retries=1, timeout_s=0.5)
    try:
        out = await llm.analyze(TEXTS, vectors[: len(TEXTS)])
    finally:
        await llm.aclose()
    assert len(model.requests) == 2
    assert llm.fallbacks == 0
    assert out[1].analyzer == "llm:fake-grok"


async def test_timeouts_fall_back_to_local(model_url: tuple[FakeInsightsModel, str], vectors: np.ndarray) -> None:
    model, url = model_url
    model.mode = "slow"
    llm = analyzer(url, batch_size=10, max_retries=0, timeout_s=0.3)
    try:
        out = await llm.analyze(TEXTS, vectors[: len(TEXTS)])
    finally:
        await llm.aclose()
    assert llm.fallbacks == 1
    assert all(a.analyzer == "local" for a in out)
    assert "nearest topic" in out[0].reasoning


def max_per_window(arrivals: list[float], window: float = 0.95) -> int:
    """Most calls that reached the server within any ``window`` seconds. The limiter paces the
    sends; arrivals jitter by a few milliseconds on a busy machine, so the window is a little under
    the limiter's second (a limiter letting 11/s through still fails: 11 calls span 0.91 s)."""
    arrivals = sorted(arrivals)
    return max(sum(1 for t in arrivals[i:] if t < start + window) for i, start in enumerate(arrivals))


def mean_rate(arrivals: list[float]) -> float:
    arrivals = sorted(arrivals)
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


async def test_ten_calls_per_second_ceiling(model_url: tuple[FakeInsightsModel, str], vectors: np.ndarray) -> None:
    model, url = model_url
    llm = analyzer(url, MemoryRateLimiter(10, burst=1), batch_size=1)
    try:
        await llm.analyze(TEXTS * 6, vectors[:24])
    finally:
        await llm.aclose()
    assert len(model.arrivals) == 24
    assert max_per_window(model.arrivals) <= 10
    assert mean_rate(model.arrivals) <= 10.2


@pytest.mark.service
async def test_ceiling_holds_across_workers_through_redis(
    model_url: tuple[FakeInsightsModel, str], vectors: np.ndarray, redis_url: str
) -> None:
    import asyncio

    model, url = model_url
    prefix = f"shoal-test:{id(model)}:"
    async with (
        RedisRateLimiter(redis_url, 10, burst=1, prefix=prefix) as a,
        RedisRateLimiter(redis_url, 10, burst=1, prefix=prefix) as b,
    ):
        workers = [analyzer(url, a, batch_size=1), analyzer(url, b, batch_size=1)]
        try:
            await asyncio.gather(*(w.analyze(TEXTS * 3, vectors[:12]) for w in workers))
        finally:
            for w in workers:
                await w.aclose()
    assert len(model.arrivals) == 24
    assert max_per_window(model.arrivals) <= 10
    assert mean_rate(model.arrivals) <= 10.2


async def test_the_app_uses_the_llm_when_configured(model_url: tuple[FakeInsightsModel, str], tmp_path: Path) -> None:
    _, url = model_url
    app = make_app(tmp_path, llm=LLMSettings(base_url=url, api_key="sk-test", model="fake-grok"))
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.post(
                "/api/v1/conversations", json={"text": "my parcel is late", "timestamp": "2025-01-20T10:00:00Z"}
            )
            assert r.status_code == 202
            params = {"start_time": "2025-01-20T00:00:00Z", "end_time": "2025-01-21T00:00:00Z"}

            async def probe() -> list[dict[str, object]]:
                rows: list[dict[str, object]] = (await client.get("/api/v1/insights", params=params)).json()["insights"]
                return rows

            rows = await eventually(probe, timeout=60)
    analysis = rows[0]["grok_analysis"]
    assert isinstance(analysis, dict)
    assert analysis["analyzer"] == "llm:fake-grok"
    assert analysis["clusters"] == ["delivery_problems"]
