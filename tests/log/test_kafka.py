"""Kafka-only behaviour: URL options, and a consumer group split across members with hand-over."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shoal.errors import ConfigurationError
from shoal.log import Consumer, Message
from tests.engines import kafka_bootstrap, require_module

require_module("aiokafka", "aiokafka")

from shoal.log.kafka import KafkaLog  # noqa: E402 - after the driver check

WAIT = 60.0


def test_url_options_override_arguments() -> None:
    log = KafkaLog("kafka://a:9092,b:9092?session_timeout_ms=9000&idempotent=true&replication_factor=3")
    assert log.bootstrap == "a:9092,b:9092"
    assert (log.session_timeout_ms, log.heartbeat_interval_ms) == (9000, 3000)
    assert log.idempotent and log.replication_factor == 3
    with pytest.raises(ConfigurationError, match="unknown Kafka URL option"):
        KafkaLog("kafka://a:9092?acks=0")
    with pytest.raises(ConfigurationError):
        KafkaLog("sqlite:///x.db")


async def test_group_members_split_partitions_and_take_over_uncommitted_work() -> None:
    topic, group = f"t-{uuid.uuid4().hex[:12]}", f"g-{uuid.uuid4().hex[:8]}"
    async with KafkaLog(f"kafka://{kafka_bootstrap()}", partitions=4) as log:
        appended = await log.append(topic, [(f"key-{i}", f"v{i}".encode()) for i in range(40)])
        first, second = log.consumer(topic, group), log.consumer(topic, group)
        seen: dict[str, list[Message]] = {"first": [], "second": []}

        async def read(name: str, consumer: Consumer) -> None:
            while len({(m.partition, m.offset) for m in seen["first"] + seen["second"]}) < len(appended):
                seen[name].extend(await consumer.poll(100, timeout=0.5))

        async with asyncio.timeout(WAIT):
            # Both join in the same window, so the group gives each a share of the partitions.
            await asyncio.gather(read("first", first), read("second", second))
        firsts, seconds = {m.partition for m in seen["first"]}, {m.partition for m in seen["second"]}
        assert firsts and seconds and not firsts & seconds

        # The second member commits its share; the first dies with its batch uncommitted.
        await second.commit(seen["second"])
        await first.close()
        wanted = {(m.partition, m.offset) for m in appended if m.partition in firsts}
        taken_over: list[Message] = []
        async with asyncio.timeout(WAIT):
            while {(m.partition, m.offset) for m in taken_over} != wanted:
                taken_over.extend(await second.poll(100, timeout=0.5))
        assert {m.partition for m in taken_over} == firsts  # nothing committed came back
        await second.commit(taken_over)
        assert await log.lag(topic, group) == 0
        await second.close()
