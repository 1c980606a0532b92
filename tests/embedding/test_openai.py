"""The OpenAI-compatible provider against a local server speaking the embeddings API."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from shoal.embedding.engine import EmbeddingEngine
from shoal.embedding.openai import OpenAIProvider
from shoal.errors import ConfigurationError, EmbeddingError
from tests.embedding.conftest import FAKE_DIM, FakeOpenAI, fake_unit_vector

NO_BACKOFF = {"backoff_initial": 0.01, "backoff_max": 0.05}


def make(fake: FakeOpenAI, **kwargs: object) -> OpenAIProvider:
    options: dict[str, object] = {"dim": FAKE_DIM, "api_key": "sk-test", **NO_BACKOFF}
    options.update(kwargs)
    return OpenAIProvider("text-embedding-test", base_url=fake.url, **options)  # type: ignore[arg-type]


async def test_dimension_is_probed_at_open(fake_openai: FakeOpenAI) -> None:
    async with make(fake_openai, dim=None) as provider:
        assert provider.dim == FAKE_DIM
        assert provider.model_id == "openai:text-embedding-test"
    assert len(fake_openai.requests) == 1
    assert fake_openai.auth == ["Bearer sk-test"]


async def test_vectors_are_normalised_and_in_order(fake_openai: FakeOpenAI) -> None:
    texts = ["alpha", "beta", "gamma"]
    async with make(fake_openai) as provider:
        vectors = await provider.embed(texts)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, np.stack([fake_unit_vector(t) for t in texts]), rtol=1e-6)


async def test_batches_bounded_by_count(fake_openai: FakeOpenAI) -> None:
    async with make(fake_openai, max_batch=3) as provider:
        vectors = await provider.embed([f"text {i}" for i in range(7)])
    assert vectors.shape == (7, FAKE_DIM)
    assert [len(r) for r in fake_openai.requests] == [3, 3, 1]


async def test_batches_bounded_by_tokens(fake_openai: FakeOpenAI) -> None:
    texts = [f"sixteen chars {i:02d}" for i in range(5)]  # 4 estimated tokens each
    async with make(fake_openai, max_batch_tokens=10) as provider:
        await provider.embed(texts)
    assert [len(r) for r in fake_openai.requests] == [2, 2, 1]


async def test_identical_texts_are_sent_once(fake_openai: FakeOpenAI) -> None:
    async with make(fake_openai) as provider:
        vectors = await provider.embed(["same", "other", "same"])
    assert fake_openai.requests == [["same", "other"]]
    np.testing.assert_array_equal(vectors[0], vectors[2])


async def test_429_waits_as_long_as_retry_after_says(fake_openai: FakeOpenAI) -> None:
    fake_openai.failures = [(429, {"Retry-After": "1"})]
    # A computed backoff would wait up to a minute; only honouring Retry-After finishes in time.
    async with make(fake_openai, backoff_initial=60, backoff_max=60) as provider, asyncio.timeout(20):
        await provider.embed(["rate limited"])
    assert len(fake_openai.requests) == 2
    assert fake_openai.arrivals[1] - fake_openai.arrivals[0] >= 0.9


async def test_5xx_is_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.failures = [(500, {}), (503, {})]
    async with make(fake_openai) as provider:
        vectors = await provider.embed(["flaky"])
    assert vectors.shape == (1, FAKE_DIM)
    assert len(fake_openai.requests) == 3


async def test_retries_give_up_with_an_embedding_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.failures = [(500, {})] * 3
    async with make(fake_openai, max_retries=2) as provider:
        with pytest.raises(EmbeddingError, match="HTTP 500"):
            await provider.embed(["down"])
    assert len(fake_openai.requests) == 3


async def test_client_errors_are_not_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.failures = [(400, {})]
    async with make(fake_openai) as provider:
        with pytest.raises(EmbeddingError, match="HTTP 400"):
            await provider.embed(["bad"])
    assert len(fake_openai.requests) == 1


async def test_timeout_is_retried_then_reported(fake_openai: FakeOpenAI) -> None:
    fake_openai.failures = [None, None]  # both attempts hang until the test ends
    async with make(fake_openai, timeout=0.3, max_retries=1) as provider:
        with pytest.raises(EmbeddingError, match="timed out"):
            await provider.embed(["slow"])
    assert len(fake_openai.requests) == 2


async def test_request_larger_than_the_token_budget_still_goes(fake_openai: FakeOpenAI) -> None:
    async with make(fake_openai, tokens_per_minute=5) as provider:
        await provider.embed(["x" * 400])  # ~100 tokens > 5 per minute: takes the whole bucket
    assert len(fake_openai.requests) == 1


async def test_wrong_dimension_is_an_embedding_error(fake_openai: FakeOpenAI) -> None:
    async with make(fake_openai, dim=FAKE_DIM + 1) as provider:
        with pytest.raises(EmbeddingError, match="dimensions"):
            await provider.embed(["mismatch"])


def test_official_api_needs_a_key() -> None:
    with pytest.raises(ConfigurationError, match="API_KEY"):
        OpenAIProvider("text-embedding-3-small")


async def test_engine_batches_remote_calls_by_the_provider_limit(fake_openai: FakeOpenAI) -> None:
    texts = [f"remote {i}" for i in range(50)]
    async with make(fake_openai, max_batch=2048) as provider, EmbeddingEngine(provider, batch_size=8) as engine:
        assert engine.batch_size == 2048
        vectors = await engine.embed(texts)
        again = await engine.embed(texts)
    assert len(fake_openai.requests) == 1  # one request; the second call is served by the cache
    assert sorted(fake_openai.requests[0]) == sorted(texts)
    np.testing.assert_array_equal(vectors, again)
