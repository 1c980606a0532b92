"""The insights processor on the real store and engine: pending rows, retries, failures, replays, and
cluster state that survives a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from shoal.bus.memory import MemoryBus
from shoal.embedding.engine import EmbeddingEngine
from shoal.embedding.onnx import OnnxProvider
from shoal.errors import BackendError
from shoal.ingest import ANALYZED_CHANNEL
from shoal.insights.analyzer import BRIEF, Analysis, LocalAnalyzer
from shoal.insights.clusters import OnlineClusterer
from shoal.insights.processor import InsightsProcessor
from shoal.insights.sentiment import SentimentAnalyzer
from shoal.insights.store import InsightsStore
from shoal.log import Message


class Flaky:
    """An analyzer that fails its first ``failures`` calls (a seam we own: the Analyzer protocol)."""

    name = "flaky"

    def __init__(self, inner: LocalAnalyzer, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def analyze(self, texts: Sequence[str], vectors: npt.NDArray[np.float32]) -> list[Analysis]:
        if self.failures:
            self.failures -= 1
            raise BackendError("llm and local both down")
        return await self.inner.analyze(texts, vectors)


def message(i: int, text: str, collection: str = "conversations") -> Message:
    value = {
        "op": "upsert",
        "collection": collection,
        "id": f"conv_{i}",
        "text": text,
        "payload": {"author": "a", "raw_data": {}},
        "ts": datetime(2025, 1, 20, tzinfo=UTC).isoformat(),
    }
    return Message("records", 0, i, f"{collection}/conv_{i}", orjson.dumps(value), 0.0)


@pytest.fixture
async def engine() -> AsyncIterator[EmbeddingEngine]:
    async with OnnxProvider() as provider, EmbeddingEngine(provider) as engine:
        yield engine


def processor(
    engine: EmbeddingEngine, store: InsightsStore, analyzer: object, clusterer: OnlineClusterer, max_attempts: int = 5
) -> InsightsProcessor:
    return InsightsProcessor(
        collection="conversations",
        engine=engine,
        store=store,
        analyzer=analyzer,  # type: ignore[arg-type]
        clusterer=clusterer,
        max_attempts=max_attempts,
    )


async def test_failed_analysis_stays_pending_then_succeeds(engine: EmbeddingEngine, store: InsightsStore) -> None:
    clusterer = OnlineClusterer(384)
    proc = processor(engine, store, Flaky(LocalAnalyzer(SentimentAnalyzer(), clusterer), 2), clusterer)
    batch = [message(1, "my card was charged twice"), message(2, "other collection", "tweets")]
    for _ in range(2):
        with pytest.raises(BackendError):
            await proc.handle(batch)
        row = await store.get("conv_1")
        assert row is not None and row["status"] == "pending" and "both down" in row["error"]
    assert (await store.get("conv_1"))["attempts"] == 2  # type: ignore[index]
    await proc.handle(batch)
    row = await store.get("conv_1")
    assert row is not None and row["status"] == "analyzed" and row["analyzer"] == "local"
    assert await store.get("conv_2") is None  # only the conversations collection is analysed


async def test_past_max_attempts_a_conversation_is_failed_not_lost(
    engine: EmbeddingEngine, store: InsightsStore
) -> None:
    clusterer = OnlineClusterer(384)
    proc = processor(engine, store, Flaky(LocalAnalyzer(SentimentAnalyzer(), clusterer), 99), clusterer, 2)
    with pytest.raises(BackendError):
        await proc.handle([message(1, "hello")])
    await proc.handle([message(1, "hello")])  # second failure: recorded, batch moves on
    row = await store.get("conv_1")
    assert row is not None and row["status"] == "failed" and row["attempts"] == 2


async def test_replay_is_idempotent_and_clusters_survive_restart(engine: EmbeddingEngine, store: InsightsStore) -> None:
    clusterer = OnlineClusterer(384, join=0.5)
    proc = processor(engine, store, LocalAnalyzer(SentimentAnalyzer(), clusterer), clusterer)
    texts = [
        "my parcel is late",
        "parcel delivery is late again",
        "reset my password please",
        "how do I reset my password",
    ]
    batch = [message(i, t) for i, t in enumerate(texts)]
    await proc.handle(batch)
    first = {i: (await store.get(f"conv_{i}")) for i in range(4)}
    await proc.handle(batch)  # a replay after a crash: nothing changes
    assert {i: (await store.get(f"conv_{i}")) for i in range(4)} == first
    saved = await store.list_clusters(100)
    assert sum(c["size"] for c in saved) == 4

    restarted = OnlineClusterer(384, join=0.5)
    restarted.load(await store.load_clusters(384))
    assert {c.id: (c.label, c.size) for c in restarted.clusters.values()} == {
        c.id: (c.label, c.size) for c in clusterer.clusters.values()
    }
    vector = (await engine.embed(["parcel is late"]))[0]
    assert restarted.nearest(vector) == clusterer.nearest(vector)


async def test_each_analysed_batch_is_announced_once_on_the_bus(engine: EmbeddingEngine, store: InsightsStore) -> None:
    clusterer = OnlineClusterer(384)
    analyzer = LocalAnalyzer(SentimentAnalyzer(), clusterer)
    async with MemoryBus() as bus, bus.subscribe(ANALYZED_CHANNEL) as subscription:
        proc = InsightsProcessor(
            collection="conversations", engine=engine, store=store, analyzer=analyzer, clusterer=clusterer, bus=bus
        )
        batch = [message(1, "thanks, the refund was quick"), message(2, "not a conversation", "tweets")]
        await proc.handle(batch)
        await proc.handle(batch)  # a replay of work already done announces nothing
        assert len(subscription) == 1
        event = await anext(aiter(subscription))
    assert event["collection"] == "conversations" and list(event["analyses"]) == ["conv_1"]
    row = await store.get("conv_1")
    assert row is not None and event["analyses"]["conv_1"] == {name: row[name] for name in BRIEF}
    assert await store.briefs(["conv_1", "conv_2", "missing"]) == event["analyses"]
