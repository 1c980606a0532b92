"""The embedding engine over the real local model and the real caches."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from shoal.cache.base import Cache
from shoal.cache.memory import MemoryCache
from shoal.cache.sqlite import SqliteCache
from shoal.embedding.base import EmbeddingProvider, Vectors
from shoal.embedding.engine import EmbeddingEngine
from shoal.embedding.onnx import OnnxProvider
from shoal.errors import BackendError, EmbeddingError, Overloaded, ShuttingDown
from tests.waiting import eventually

TEXTS = [
    "the delivery arrived two days late and the box was crushed",
    "great support, my issue was fixed in minutes",
    "how do I reset my password",
    "the new phone's battery lasts all day",
]
SLOW = 60_000.0  # max_wait_ms for tests that control when a batch runs: it never expires by itself


@pytest.fixture(params=["sqlite", "redis"])
async def l2(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cache]:
    """Each real L2 the engine may sit on."""
    if request.param == "sqlite":
        async with SqliteCache(tmp_path / "embed-cache.db", ttl=3600) as cache:
            yield cache
        return
    from shoal.cache.redis import RedisCache

    url = request.getfixturevalue("redis_url")
    async with RedisCache(url, ttl=3600, prefix=f"test:{uuid.uuid4().hex}:") as cache:
        yield cache


async def test_vectors_in_order_with_model_facts(provider: OnnxProvider) -> None:
    async with EmbeddingEngine(provider) as engine:
        vectors = await engine.embed(TEXTS)
        one = await engine.embed_one(TEXTS[2])
    assert engine.model_id == "local:minilm"
    assert engine.dim == 384
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(one, vectors[2])  # the cache answers the second time
    assert (await provider.embed(TEXTS) @ vectors.T).argmax(axis=1).tolist() == [0, 1, 2, 3]


async def test_empty_input(provider: OnnxProvider) -> None:
    async with EmbeddingEngine(provider) as engine:
        assert (await engine.embed([])).shape == (0, 384)


async def test_repeated_texts_in_one_call_are_embedded_once(provider: OnnxProvider) -> None:
    async with EmbeddingEngine(provider) as engine:
        vectors = await engine.embed([TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[0]])
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert engine.stats()["texts_embedded"] == 2


async def test_concurrent_callers_are_micro_batched(provider: OnnxProvider) -> None:
    texts = [f"caller number {i} says hello" for i in range(20)]
    # The batch runs when it is full (20), never on the deadline.
    async with EmbeddingEngine(provider, batch_size=20, max_wait_ms=SLOW) as engine:
        results = await asyncio.gather(*(engine.embed_one(t) for t in texts))
        stats = engine.stats()
    assert stats["batches"] == 1
    assert stats["batch_sizes"] == {20: 1}
    alone = await provider.embed(texts)
    assert (np.stack(results) @ alone.T).argmax(axis=1).tolist() == list(range(20))


async def test_without_a_deadline_batches_form_while_the_model_is_busy(provider: OnnxProvider) -> None:
    async with EmbeddingEngine(provider, batch_size=32, max_wait_ms=0) as engine:
        await engine.embed_one("an idle engine runs a lone text at once")
        rest = [f"caller {i} arrived together with the others" for i in range(40)]
        await asyncio.gather(*(engine.embed_one(t) for t in rest))
        stats = engine.stats()
    assert stats["batch_sizes"] == {1: 1, 32: 1, 8: 1}


async def test_many_texts_are_split_into_batches(provider: OnnxProvider) -> None:
    texts = [f"text {i} " + "x " * (i % 13) for i in range(100)]
    async with EmbeddingEngine(provider, batch_size=16) as engine:
        vectors = await engine.embed(texts)
        stats = engine.stats()
    assert vectors.shape == (100, 384)
    assert stats["texts_embedded"] == 100
    assert max(stats["batch_sizes"]) <= 16
    assert sum(size * n for size, n in stats["batch_sizes"].items()) == 100
    assert stats["throughput"] > 0


async def test_l1_hits(provider: OnnxProvider) -> None:
    async with EmbeddingEngine(provider) as engine:
        first = await engine.embed(TEXTS)
        again = await engine.embed(TEXTS)
        stats = engine.stats()
    np.testing.assert_array_equal(first, again)
    assert stats["misses"] == 4
    assert stats["hits_l1"] == 4
    assert stats["texts_embedded"] == 4


async def test_l2_serves_a_new_engine(provider: OnnxProvider, l2: Cache) -> None:
    async with EmbeddingEngine(provider, l2=l2) as first:
        written = await first.embed(TEXTS)
    async with EmbeddingEngine(provider, l2=l2) as second:
        read = await second.embed(TEXTS)
        stats = second.stats()
    np.testing.assert_array_equal(written, read)
    assert stats["hits_l2"] == 4
    assert stats["misses"] == 0
    assert stats["texts_embedded"] == 0


async def test_cache_keys_include_the_model(provider: OnnxProvider) -> None:
    async with MemoryCache(ttl=3600) as l2, EmbeddingEngine(provider, l2=l2) as engine:
        await engine.embed([TEXTS[0]])
        other_model = type(provider)("int8")
        other_model.model_id = "local:another"
        async with other_model, EmbeddingEngine(other_model, l2=l2) as other:
            await other.embed([TEXTS[0]])
            assert other.stats()["hits_l2"] == 0


async def test_overloaded_when_the_queue_is_full(provider: OnnxProvider) -> None:
    async with EmbeddingEngine(provider, batch_size=100, max_wait_ms=SLOW, queue_size=4) as engine:
        waiting = asyncio.create_task(engine.embed(TEXTS))

        async def depth() -> int:
            return engine.queue_depth

        await eventually(depth, until=lambda d: d == 4)
        with pytest.raises(Overloaded):
            await engine.embed(["one text too many"])
        # Texts already queued or cached are still fine.
    assert (await waiting).shape == (4, 384)  # drained on exit


async def test_exit_drains_pending_requests(provider: OnnxProvider) -> None:
    async with EmbeddingEngine(provider, batch_size=100, max_wait_ms=SLOW) as engine:
        callers = [asyncio.create_task(engine.embed_one(t)) for t in TEXTS]

        async def depth() -> int:
            return engine.queue_depth

        await eventually(depth, until=lambda d: d == 4)
    results = await asyncio.gather(*callers)
    assert all(r.shape == (384,) for r in results)
    with pytest.raises(ShuttingDown):
        await engine.embed(["after close"])


async def test_provider_failure_reaches_every_caller() -> None:
    closed = OnnxProvider("int8")  # never opened: every call fails
    async with EmbeddingEngine(closed) as engine:
        results = await asyncio.gather(*(engine.embed_one(t) for t in TEXTS), return_exceptions=True)
        assert all(isinstance(r, EmbeddingError) for r in results)
        assert engine.queue_depth == 0


async def test_warmup_runs_the_model(provider: OnnxProvider) -> None:
    async with EmbeddingEngine(provider) as engine:
        await engine.warmup()
        assert engine.stats()["misses"] == 0


class UnreachableCache(Cache):
    """An L2 whose backend is down: every call fails the way real caches report it."""

    async def close(self) -> None:
        pass

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        raise BackendError("cache unreachable")

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        raise BackendError("cache unreachable")

    async def delete_many(self, keys: Sequence[str]) -> None:
        raise BackendError("cache unreachable")


async def test_an_unreachable_l2_only_costs_speed(provider: OnnxProvider) -> None:
    async with EmbeddingEngine(provider, l2=UnreachableCache()) as engine:
        assert (await engine.embed(TEXTS)).shape == (4, 384)
        assert (await engine.embed(TEXTS)).shape == (4, 384)
        assert engine.stats()["hits_l1"] == 4


async def test_a_caller_giving_up_leaves_a_shared_vector_to_the_others(provider: OnnxProvider) -> None:
    async with EmbeddingEngine(provider, batch_size=8, max_wait_ms=SLOW) as engine:
        quitter = asyncio.ensure_future(engine.embed(["a text two callers wait for"]))
        stayer = asyncio.ensure_future(engine.embed(["a text two callers wait for", "and one more"]))

        async def queued() -> int:
            return engine.queue_depth

        await eventually(queued, until=lambda n: n == 2)
        quitter.cancel()
        # The deadline never expires: fill the batch so it runs.
        filler = asyncio.ensure_future(engine.embed([f"filler {i}" for i in range(6)]))
        vectors, _ = await asyncio.gather(stayer, filler)
    assert quitter.cancelled()
    assert vectors.shape == (2, 384)
    alone = (await provider.embed(["a text two callers wait for"]))[0]
    assert float(vectors[0] @ alone) > 0.97  # int8 activations are quantized per batch: close, not equal


class HandOverProvider(EmbeddingProvider):
    """The real model, but call ``k`` returns only once call ``k + lead`` has started (the last
    ``lead`` calls return at once): an engine that queues fewer calls ahead never gets it back."""

    def __init__(self, inner: OnnxProvider, calls: int, lead: int) -> None:
        self.inner, self.calls, self.lead = inner, calls, lead
        self.model_id, self.dim = inner.model_id, inner.dim
        self.started: list[asyncio.Event] = []

    async def embed(self, texts: Sequence[str]) -> Vectors:
        while len(self.started) < self.calls:
            self.started.append(asyncio.Event())
        call = next(i for i, event in enumerate(self.started) if not event.is_set())
        self.started[call].set()
        vectors = await self.inner.embed(texts)
        if call + self.lead < self.calls:
            await asyncio.wait_for(self.started[call + self.lead].wait(), timeout=10)
        return vectors


async def test_two_calls_wait_at_the_provider_behind_the_running_one(provider: OnnxProvider) -> None:
    # 32 texts in batches of 4: one window of 8 calls. While call k runs, calls k+1 and k+2 must be
    # queued already, so each worker finds its next pass waiting whatever the event loop is doing.
    texts = [f"text {i} in a stream " + "word " * (i % 7) for i in range(32)]
    async with EmbeddingEngine(HandOverProvider(provider, calls=8, lead=2), l1_size=0, batch_size=4) as engine:
        vectors = await engine.embed(texts)
        assert engine.stats()["batch_sizes"] == {4: 8}
    # each text's own vector (int8 activations are quantized per pass: passes cut apart differ a little)
    assert ((vectors * await provider.embed(texts)).sum(axis=1) > 0.95).all()
