"""A Kafka consumer-group member behind Shoal's ``Consumer`` contract (used by ``KafkaLog``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from shoal.errors import BackendError, InvalidInput
from shoal.log.base import Consumer, Message

if TYPE_CHECKING:
    from shoal.log.kafka import KafkaLog

logger = structlog.get_logger(__name__)


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forgets what a consumer committed on partitions the group moved elsewhere."""

    def __init__(self, committed: dict[int, int]) -> None:
        self._committed = committed

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        for tp in revoked:
            self._committed.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Nothing to do: a new owner starts at the group's committed offset."""


class KafkaConsumer(Consumer):
    """One member of a consumer group on one topic; joins the group on the first ``poll``.

    The group may split the topic's partitions between members of several processes; a member sees
    only its partitions, and commits for partitions moved away are dropped (their new owner gets the
    uncommitted messages again: delivery is at least once, as ``Processor.handle`` assumes).
    """

    def __init__(self, log: KafkaLog, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self._log = log
        self._consumer: AIOKafkaConsumer | None = None
        self._start_lock = asyncio.Lock()
        self._committed: dict[int, int] = {}  # partition -> highest offset this member committed
        self._getter: asyncio.Task[dict[TopicPartition, list[Any]]] | None = None
        self._closed = False

    async def poll(self, max_records: int, timeout: float | None = None) -> list[Message]:
        if max_records < 1:
            raise InvalidInput("max_records must be at least 1")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        consumer = await self._started()
        while not self._closed and consumer is not None:
            remaining = 60.0 if deadline is None else max(deadline - loop.time(), 0.0)
            getter = self._getter = asyncio.ensure_future(
                consumer.getmany(timeout_ms=int(remaining * 1000), max_records=max_records)
            )
            try:
                # close() cancels the getter; asyncio.wait does not raise when it does.
                await asyncio.wait({getter})
            finally:
                self._getter = None
                if not getter.done():
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
            if getter.cancelled():
                return []
            try:
                batches = getter.result()
            except KafkaError as exc:
                raise BackendError(f"kafka log: poll of {self.topic!r} failed: {exc}") from exc
            messages = [
                Message(self.topic, tp.partition, r.offset, (r.key or b"").decode(), r.value or b"", r.timestamp / 1000)
                for tp, records in sorted(batches.items(), key=lambda item: item[0].partition)
                for r in records
            ]
            if messages or (deadline is not None and loop.time() >= deadline):
                return messages
        return []

    async def commit(self, messages: Sequence[Message]) -> None:
        offsets = self.next_offsets(messages)
        consumer = self._consumer
        if not offsets or consumer is None:
            return
        owned = {tp.partition for tp in consumer.assignment()}
        forward = {
            TopicPartition(self.topic, p): OffsetAndMetadata(o, "")
            for p, o in offsets.items()
            if p in owned and o > self._committed.get(p, -1)
        }
        if not forward:
            return
        try:
            await consumer.commit(forward)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved these partitions during the batch; the new owner redoes the batch.
            logger.warning("kafka commit dropped after a rebalance", topic=self.topic, group=self.group, error=str(exc))
            return
        except KafkaError as exc:
            raise BackendError(f"kafka log: commit on {self.topic!r} failed: {exc}") from exc
        for tp, meta in forward.items():
            self._committed[tp.partition] = meta.offset

    async def rewind(self, messages: Sequence[Message]) -> None:
        """Seek back to the first of ``messages`` in each partition this member still owns."""
        consumer = self._consumer
        if consumer is None:
            return
        firsts: dict[int, int] = {}
        for message in messages:
            firsts[message.partition] = min(firsts.get(message.partition, message.offset), message.offset)
        owned = {tp.partition for tp in consumer.assignment()}
        for partition, offset in firsts.items():
            if partition in owned:
                consumer.seek(TopicPartition(self.topic, partition), offset)

    async def lag(self) -> int:
        return await self._log.lag(self.topic, self.group)

    async def close(self) -> None:
        """Leave the group (its partitions go to the other members); a pending ``poll`` returns ``[]``."""
        if self._closed:
            return
        self._closed = True
        if self._getter is not None:
            self._getter.cancel()
        self._log._consumers.discard(self)
        async with self._start_lock:
            consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def _started(self) -> AIOKafkaConsumer | None:
        async with self._start_lock:
            if self._consumer is None and not self._closed:
                await self._log.topic_partitions(self.topic)
                log = self._log
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=log.bootstrap,
                    client_id=f"{log.client_id}-{self.group}",
                    group_id=self.group,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    session_timeout_ms=log.session_timeout_ms,
                    heartbeat_interval_ms=log.heartbeat_interval_ms,
                )
                try:
                    await consumer.start()
                except (KafkaError, OSError) as exc:
                    await consumer.stop()
                    raise BackendError(f"kafka log: consumer of {self.topic!r} cannot connect: {exc}") from exc
                consumer.subscribe([self.topic], listener=_Revocations(self._committed))
                self._consumer = consumer
            return self._consumer
