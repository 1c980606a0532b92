"""The log contract: every implementation in ``conftest.OPENERS`` passes these tests."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

import pytest

from shoal.errors import InvalidInput, Overloaded
from shoal.log import Consumer, Log, Message, partition_for
from tests.log.conftest import PARTITIONS

WAIT = 20.0  # generous bound on awaits that must finish, so a bug fails instead of hanging


async def drain(consumer: Consumer, count: int, batch: int = 100) -> list[Message]:
    """Poll until ``count`` messages arrived (a poll may return fewer than are available)."""
    received: list[Message] = []
    async with asyncio.timeout(WAIT):
        while len(received) < count:
            received.extend(await consumer.poll(batch))
    return received


def items(n: int, keys: int = 7, prefix: str = "v") -> list[tuple[str, bytes]]:
    return [(f"key-{i % keys}", f"{prefix}{i}".encode()) for i in range(n)]


async def test_append_returns_messages_with_dense_offsets_per_partition(log: Log, topic: str) -> None:
    first = await log.append(topic, items(20))
    second = await log.append(topic, items(20, prefix="w"))
    by_partition: dict[int, list[int]] = defaultdict(list)
    for message in first + second:
        by_partition[message.partition].append(message.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))
    assert [(m.key, m.value) for m in first] == items(20)
    assert all(m.topic == topic and m.timestamp > 0 for m in first)


async def test_empty_append_returns_nothing(log: Log, topic: str) -> None:
    assert await log.append(topic, []) == []


async def test_keys_go_to_their_stable_partition(log: Log, topic: str) -> None:
    for message in await log.append(topic, items(50, keys=50)):
        assert message.partition == partition_for(message.key, PARTITIONS)


async def test_poll_returns_every_message_in_offset_order_per_partition(log: Log, topic: str) -> None:
    appended = await log.append(topic, items(300))
    async with log.consumer(topic, "g") as consumer:
        received = await drain(consumer, len(appended), batch=32)
    assert sorted(received, key=lambda m: (m.partition, m.offset)) == sorted(
        appended, key=lambda m: (m.partition, m.offset)
    )
    for partition in range(PARTITIONS):
        offsets = [m.offset for m in received if m.partition == partition]
        assert offsets == sorted(offsets)


async def test_poll_does_not_hand_out_the_same_message_twice(log: Log, topic: str) -> None:
    await log.append(topic, items(10, keys=1))
    async with log.consumer(topic, "g") as consumer:
        first = await consumer.poll(4)
        rest = await drain(consumer, 10 - len(first))
        assert await consumer.poll(10, timeout=0.05) == []
    assert [m.offset for m in first + rest] == list(range(10))


async def test_groups_are_independent(log: Log, topic: str) -> None:
    await log.append(topic, items(12))
    async with log.consumer(topic, "a") as a:
        got = await drain(a, 12)
        await a.commit(got)
    async with log.consumer(topic, "b") as b:
        assert len(await drain(b, 12)) == 12
    assert await log.lag(topic, "a") == 0
    assert await log.lag(topic, "b") == 12


async def test_commit_then_reopen_resumes_after_committed(open_log: Callable[..., Log], topic: str) -> None:
    async with open_log() as log:
        await log.append(topic, items(10, keys=1))
        async with log.consumer(topic, "g") as consumer:
            got = await drain(consumer, 10)
            await consumer.commit(got[:6])
    async with open_log() as log, log.consumer(topic, "g") as consumer:
        again = await drain(consumer, 4)
        assert [m.offset for m in again] == [6, 7, 8, 9]
        assert await consumer.poll(10, timeout=0.05) == []


async def test_uncommitted_messages_are_redelivered_after_reopen(open_log: Callable[..., Log], topic: str) -> None:
    async with open_log() as log:
        appended = await log.append(topic, items(8))
        async with log.consumer(topic, "g") as consumer:
            await drain(consumer, 8)
    async with open_log() as log, log.consumer(topic, "g") as consumer:
        redelivered = await drain(consumer, 8)
    assert {(m.partition, m.offset, m.value) for m in redelivered} == {
        (m.partition, m.offset, m.value) for m in appended
    }


async def test_concurrent_appends_get_distinct_dense_offsets(log: Log, topic: str) -> None:
    results = await asyncio.gather(*(log.append(topic, [(f"k{i % 5}", b"x")]) for i in range(400)))
    by_partition: dict[int, list[int]] = defaultdict(list)
    for (message,) in results:
        by_partition[message.partition].append(message.offset)
    for offsets in by_partition.values():
        assert sorted(offsets) == list(range(len(offsets)))
    assert sum(len(o) for o in by_partition.values()) == 400


async def test_poll_waits_for_a_later_append(log: Log, topic: str) -> None:
    async with log.consumer(topic, "g") as consumer:
        waiting = asyncio.create_task(consumer.poll(10))
        try:
            (appended,) = await log.append(topic, [("k", b"late")])
            async with asyncio.timeout(WAIT):
                assert await waiting == [appended]
        finally:
            await consumer.close()
            await waiting


async def test_poll_times_out_with_nothing(log: Log, topic: str) -> None:
    async with log.consumer(topic, "g") as consumer:
        assert await consumer.poll(10, timeout=0.05) == []


async def test_close_wakes_a_pending_poll(log: Log, topic: str) -> None:
    consumer = log.consumer(topic, "g")
    waiting = asyncio.create_task(consumer.poll(10))
    await consumer.close()
    async with asyncio.timeout(WAIT):
        assert await waiting == []


async def test_lag_counts_appended_minus_committed(log: Log, topic: str) -> None:
    await log.append(topic, items(5, keys=1))
    async with log.consumer(topic, "g") as consumer:
        assert await consumer.lag() == 5
        got = await drain(consumer, 5)
        await consumer.commit(got[:3])
        assert await consumer.lag() == 2
        await consumer.commit(got)
        assert await log.lag(topic, "g") == 0


async def test_commit_never_moves_back(log: Log, topic: str) -> None:
    await log.append(topic, items(5, keys=1))
    async with log.consumer(topic, "g") as consumer:
        got = await drain(consumer, 5)
        await consumer.commit(got)
        await consumer.commit(got[:1])
    assert await log.lag(topic, "g") == 0


async def test_commit_rejects_messages_of_another_topic(log: Log, topic: str) -> None:
    (other,) = await log.append(f"{topic}-other", [("k", b"v")])
    async with log.consumer(topic, "g") as consumer:
        with pytest.raises(InvalidInput):
            await consumer.commit([other])


async def test_full_queue_raises_overloaded(open_log: Callable[..., Log], topic: str) -> None:
    async with open_log(queue_size=1) as log:
        results = await asyncio.gather(
            *(log.append(topic, [(f"k{i}", b"v")]) for i in range(50)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, BaseException)]
        accepted = [r for r in results if not isinstance(r, BaseException)]
        assert refused and all(isinstance(r, Overloaded) for r in refused)
        assert accepted
        async with log.consumer(topic, "g") as consumer:
            assert len(await drain(consumer, len(accepted))) == len(accepted)


async def test_ping_succeeds_on_an_open_log(log: Log) -> None:
    await log.ping()
