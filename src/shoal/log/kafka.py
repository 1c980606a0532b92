"""The log on Kafka or Redpanda through aiokafka: same contract as the SQLite log, across processes.

URL: ``kafka://host:9092[,host2:9092]`` (``redpanda://`` is the same), optionally with
``?session_timeout_ms=6000&heartbeat_interval_ms=2000&replication_factor=3&idempotent=true&client_id=x``
(these override the constructor arguments, so a deployment tunes them from ``SHOAL_LOG_URL``). A topic is created with
``partitions`` on first use (an existing topic keeps its count). Every key goes to
``partition_for(key, count)`` — the SQLite log's crc32 — sent as an explicit partition, so one key's
messages stay in order and land where the embedded log would put them. ``append`` returns after
``acks=all``. Consumers join a consumer group (Kafka splits partitions between a group's members and
moves them when one dies, after ``session_timeout_ms``), commit manually after their work, and
``rewind`` seeks back.

Lag is end offset minus committed offset per partition. The end offset is read from a fetch
response's high watermark rather than ListOffsets alone: the Tansu broker answers ListOffsets with
the last batch's base offset + 1, which undercounts multi-record batches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from shoal.errors import BackendError, ConfigurationError, InvalidInput, Overloaded, ShuttingDown
from shoal.log.base import Log, Message, partition_for
from shoal.log.kafka_consumer import KafkaConsumer

_LOG_APPEND_TIME = 1  # RecordMetadata.timestamp_type when the broker stamps records
_TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
_END_PROBE_TIMEOUT_S = 5.0


def _flag(value: str) -> bool:
    return value.lower() in {"1", "true", "yes"}


_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "session_timeout_ms": int,
    "heartbeat_interval_ms": int,
    "replication_factor": int,
    "idempotent": _flag,
    "client_id": str,
}


def bootstrap_servers(url: str) -> str:
    """``kafka://a:9092,b:9092`` → ``a:9092,b:9092``."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"kafka", "redpanda"} or not parts.netloc:
        raise ConfigurationError(f"not a Kafka URL: {url!r} (use kafka://host:9092)")
    return parts.netloc


def url_options(url: str) -> dict[str, Any]:
    """Options given in the URL's query string, converted to their types."""
    options: dict[str, Any] = {}
    for name, value in parse_qsl(urlsplit(url).query):
        if name not in _URL_OPTIONS:
            raise ConfigurationError(f"unknown Kafka URL option {name!r} (known: {sorted(_URL_OPTIONS)})")
        try:
            options[name] = _URL_OPTIONS[name](value)
        except ValueError as exc:
            raise ConfigurationError(f"Kafka URL option {name}={value!r}: {exc}") from exc
    return options


class KafkaLog(Log):
    """A partitioned log on a Kafka-compatible broker.

    Args:
        url: ``kafka://host:port[,host:port...]``.
        partitions: Partitions of topics this log creates.
        queue_size: Most messages awaiting acknowledgement; past it ``append`` raises ``Overloaded``.
        replication_factor: Replicas of topics this log creates (3 on a production cluster).
        session_timeout_ms: How long a silent consumer keeps its partitions before the group moves
            them to another member (Kafka's default is 45 s; 6 s hands over a dead worker's work fast).
        heartbeat_interval_ms: Consumer heartbeat period (default a third of the session timeout).
        client_id: Name shown in broker logs.
        idempotent: Idempotent producer (no duplicates when a send is retried). Off by default
            because Tansu does not implement it; duplicates are harmless to Shoal's processors,
            whose ``handle`` is idempotent. Turn it on for Kafka and Redpanda.
    """

    def __init__(
        self,
        url: str,
        partitions: int = 4,
        *,
        queue_size: int = 50_000,
        replication_factor: int = 1,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int | None = None,
        client_id: str = "shoal",
        idempotent: bool = False,
    ) -> None:
        if partitions < 1 or queue_size < 1:
            raise InvalidInput("partitions and queue_size must be at least 1")
        given = url_options(url)
        session_timeout_ms = given.get("session_timeout_ms", session_timeout_ms)
        heartbeat_interval_ms = given.get("heartbeat_interval_ms", heartbeat_interval_ms)
        replication_factor = given.get("replication_factor", replication_factor)
        idempotent = given.get("idempotent", idempotent)
        client_id = given.get("client_id", client_id)
        self.url = url
        self.bootstrap = bootstrap_servers(url)
        self.partitions = partitions
        self.queue_size = queue_size
        self.replication_factor = replication_factor
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms or max(session_timeout_ms // 3, 100)
        self.client_id = client_id
        self.idempotent = idempotent
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._probe: AIOKafkaConsumer | None = None  # group-less; reads end offsets
        self._probe_lock = asyncio.Lock()
        self._topics: dict[str, int] = {}
        self._topic_lock = asyncio.Lock()
        self._in_flight = 0
        self._consumers: set[KafkaConsumer] = set()

    async def open(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, client_id=self.client_id, acks="all", enable_idempotence=self.idempotent
        )
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-admin")
        probe = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-probe",
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=1024,
        )
        try:
            for client in (producer, admin, probe):
                await client.start()
        except (KafkaError, OSError) as exc:
            await probe.stop()
            await admin.close()
            await producer.stop()
            raise BackendError(f"kafka log: cannot connect to {self.bootstrap}: {exc}") from exc
        self._producer, self._admin, self._probe = producer, admin, probe

    async def close(self) -> None:
        """Stop consumers (pending polls return ``[]``), flush the producer, disconnect."""
        for consumer in list(self._consumers):
            await consumer.close()
        producer, admin, probe = self._producer, self._admin, self._probe
        self._producer = self._admin = self._probe = None
        if probe is not None:
            await probe.stop()
        if admin is not None:
            await admin.close()
        if producer is not None:
            await producer.stop()

    async def ping(self) -> None:
        try:
            await self._admin_client.describe_cluster()
        except (KafkaError, OSError) as exc:
            raise BackendError(f"kafka log: {self.bootstrap} unreachable: {exc}") from exc

    async def append(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[Message]:
        if not items:
            return []
        producer = self._producer
        if producer is None:
            raise ShuttingDown("the log is not open")
        if self._in_flight and self._in_flight + len(items) > self.queue_size:
            raise Overloaded(f"kafka append queue is full ({self._in_flight} messages awaiting acks)")
        self._in_flight += len(items)
        try:
            count = await self.topic_partitions(topic)
            stamp_ms = int(time.time() * 1000)
            pending = [
                await producer.send(
                    topic, value=value, key=key.encode(), partition=partition_for(key, count), timestamp_ms=stamp_ms
                )
                for key, value in items
            ]
            acked = await asyncio.gather(*pending)
        except KafkaError as exc:
            raise BackendError(f"kafka log: append to {topic!r} failed: {exc}") from exc
        finally:
            self._in_flight -= len(items)
        # Consumers read each record's timestamp: ours, unless the topic stamps log-append time.
        return [
            Message(
                topic,
                meta.partition,
                meta.offset,
                key,
                value,
                (meta.timestamp if meta.timestamp_type == _LOG_APPEND_TIME and meta.timestamp > 0 else stamp_ms) / 1000,
            )
            for (key, value), meta in zip(items, acked, strict=True)
        ]

    def consumer(self, topic: str, group: str) -> KafkaConsumer:
        consumer = KafkaConsumer(self, topic, group)
        self._consumers.add(consumer)
        return consumer

    async def lag(self, topic: str, group: str) -> int:
        count = await self.topic_partitions(topic)
        partitions = [TopicPartition(topic, p) for p in range(count)]
        try:
            committed = await self._admin_client.list_consumer_group_offsets(group, partitions=partitions)
            starts = await self._probe_consumer.beginning_offsets(partitions)
            ends = await self._end_offsets(partitions)
        except KafkaError as exc:
            raise BackendError(f"kafka log: lag of {group!r} on {topic!r}: {exc}") from exc
        total = 0
        for tp in partitions:
            done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else starts[tp]
            total += max(ends[tp] - done, 0)
        return total

    async def topic_partitions(self, topic: str) -> int:
        """The partition count of ``topic``, creating it with ``self.partitions`` if missing."""
        if topic in self._topics:
            return self._topics[topic]
        async with self._topic_lock:
            if topic not in self._topics:
                self._topics[topic] = await self._create_topic(topic)
        return self._topics[topic]

    async def _create_topic(self, topic: str) -> int:
        new = NewTopic(topic, num_partitions=self.partitions, replication_factor=self.replication_factor)
        try:
            response = await self._admin_client.create_topics([new])
            for _name, code, *message in response.topic_errors:
                if code not in (0, _TOPIC_EXISTS):
                    raise BackendError(f"kafka log: cannot create topic {topic!r}: error {code} {message}")
            found = await self._producer_client.partitions_for(topic)
        except KafkaError as exc:
            raise BackendError(f"kafka log: cannot create topic {topic!r}: {exc}") from exc
        return len(found)

    async def _end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Exact end offsets: ListOffsets, then the high watermark of a fetch just below it."""
        probe = self._probe_consumer
        async with self._probe_lock:
            listed: dict[TopicPartition, int] = await probe.end_offsets(partitions)
            filled = [tp for tp in partitions if listed[tp] > 0]
            if not filled:
                return listed
            probe.assign(filled)
            try:
                for tp in filled:
                    probe.seek(tp, listed[tp] - 1)
                async with asyncio.timeout(_END_PROBE_TIMEOUT_S):
                    while any(probe.highwater(tp) is None for tp in filled):
                        await probe.getmany(*filled, timeout_ms=int(_END_PROBE_TIMEOUT_S * 1000), max_records=1)
            except TimeoutError as exc:
                raise BackendError("kafka log: no fetch response while reading end offsets") from exc
            finally:
                highwater = {tp: probe.highwater(tp) for tp in filled}
                probe.unsubscribe()
        return {tp: max(listed[tp], highwater.get(tp) or 0) for tp in partitions}

    @property
    def _producer_client(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise ShuttingDown("the log is not open")
        return self._producer

    @property
    def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise ShuttingDown("the log is not open")
        return self._admin

    @property
    def _probe_consumer(self) -> AIOKafkaConsumer:
        if self._probe is None:
            raise ShuttingDown("the log is not open")
        return self._probe
