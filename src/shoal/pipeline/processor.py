"""Processors: consumer-group workers over a log topic.

A processor handles one batch of messages at a time; the runner commits the batch's offsets only
after ``handle`` returns, so a crash replays the uncommitted tail and ``handle`` must be idempotent.
The commit is written in the background (``_Commits``) while the next batch is polled and handled —
Kafka's ``commitAsync``: a batch's latency does not include its predecessor's log write, and a crash
before the write lands replays a batch the processor already skips.

A ``StagedProcessor`` splits a batch into ``prepare`` (no writes: decode, embed) and ``apply`` (the
writes). The runner prepares the next batches (``prepare_ahead`` of them) while the current one is
applied and committed, so its slow stage (the embedder) does not sit idle while the stores and the
log write, nor between one batch and the next.

With ``min_batch_size`` set, how many messages a poll asks for follows the backlog (``BatchSize``):
``min_batch_size`` while the processor keeps up, so each batch's writes are short and requests on
the same event loop do not queue behind them; doubling up to ``batch_size`` while polls come back
full, so a backlog drains in large batches whose fixed costs (a transaction, an index update, a
commit) are shared.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import structlog

from shoal.log import Consumer, Log, Message

logger = structlog.get_logger(__name__)

P = TypeVar("P")


class Processor(abc.ABC):
    """One stage of the pipeline (embed + index, analyse, profile, ...)."""

    topic: str
    group: str
    batch_size: int = 256
    """Most messages in one batch (while a backlog drains)."""
    min_batch_size: int | None = None
    """Most messages in one batch while the processor keeps up (``None``: ``batch_size``, a fixed
    size)."""
    retry_delay_s: float = 1.0

    @abc.abstractmethod
    async def handle(self, messages: Sequence[Message]) -> None:
        """Process a batch. Must be idempotent. An exception retries the same batch later; a
        message that can never succeed must be recorded as failed here, not raised."""


class StagedProcessor(Processor, Generic[P]):
    """A processor in two stages, so the runner can overlap the next batches' ``prepare`` with the
    current batch's ``apply`` and commit. Batches are still applied and committed one at a time, in order."""

    prepare_ahead: int = 1
    """Batches prepared beyond the one being applied, when the log holds them. With one, the preparing
    stage idles from the moment its batch is ready until the next one is polled and started; with
    two, the next is already queued behind it."""

    @abc.abstractmethod
    async def prepare(self, messages: Sequence[Message]) -> P:
        """The batch's work that writes nothing (it may run before the previous batch is applied).
        Cancelling it must be safe."""

    @abc.abstractmethod
    async def apply(self, prepared: P) -> None:
        """Write what ``prepare`` computed. Must be idempotent, like ``handle``."""

    async def handle(self, messages: Sequence[Message]) -> None:
        await self.apply(await self.prepare(messages))


class BatchSize:
    """The poll size of one processor: doubles after a full poll (more are waiting), halves after a
    short one (caught up), between ``low`` and ``high``."""

    def __init__(self, low: int, high: int) -> None:
        self.high = max(1, high)
        self.low = max(1, min(low, self.high))
        self.value = self.low

    def update(self, got: int) -> None:
        """Record that a poll for ``value`` messages returned ``got``."""
        if got >= self.value:
            self.value = min(self.high, self.value * 2)
        else:
            self.value = max(self.low, self.value // 2)


def _batch_size(processor: Processor) -> BatchSize:
    low = processor.batch_size if processor.min_batch_size is None else processor.min_batch_size
    return BatchSize(low, processor.batch_size)


class _Batch(Generic[P]):
    """A polled batch and its ``prepare`` running as a task."""

    def __init__(self, processor: StagedProcessor[P], messages: list[Message]) -> None:
        self.messages = messages
        self.prepared: asyncio.Task[P] = asyncio.create_task(
            processor.prepare(messages), name=f"prepare:{processor.group}"
        )

    async def discard(self) -> None:
        """Stop preparing (or drop what was prepared); the messages stay uncommitted."""
        self.prepared.cancel()
        await asyncio.gather(self.prepared, return_exceptions=True)


async def _discard(batches: collections.deque[_Batch[Any]]) -> list[Message]:
    """Stop preparing every batch in ``batches`` and empty it; their messages, in order."""
    messages = [m for batch in batches for m in batch.messages]
    while batches:
        await batches.popleft().discard()
    return messages


class _Commits:
    """One consumer's offset commits, written in the background and in order. Batches handled while
    a commit is being written are committed together in the next one; only each partition's last
    message is kept until then (a commit records the offset after it)."""

    def __init__(self, consumer: Consumer, group: str) -> None:
        self._consumer = consumer
        self._group = group
        self._pending: dict[int, Message] = {}
        self._writing: asyncio.Task[None] | None = None

    def add(self, messages: Sequence[Message]) -> None:
        for message in messages:
            last = self._pending.get(message.partition)
            if last is None or message.offset > last.offset:
                self._pending[message.partition] = message
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write(), name=f"commit:{self._group}")

    async def _write(self) -> None:
        while self._pending:
            messages, self._pending = list(self._pending.values()), {}
            try:
                await self._consumer.commit(messages)
            except Exception:
                # Not fatal: a later commit covers these offsets, or a restart replays them.
                logger.exception("offset commit failed", processor=self._group)

    async def flush(self) -> None:
        """Wait until everything added is written (or has failed and been logged)."""
        while self._writing is not None and not self._writing.done():
            await asyncio.shield(self._writing)


class ProcessorRunner:
    """Runs processors as tracked tasks; ``stop()`` lets the current batches finish and commit."""

    def __init__(self, log: Log, processors: Sequence[Processor]) -> None:
        self._log = log
        self._processors = list(processors)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._consumers: list[Consumer] = []

    async def __aenter__(self) -> Self:
        for processor in self._processors:
            task = asyncio.create_task(self._run(processor), name=f"processor:{processor.group}")
            self._tasks.append(task)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stopping.set()
        for consumer in list(self._consumers):
            await consumer.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self, processor: Processor) -> None:
        async with self._log.consumer(processor.topic, processor.group) as consumer:
            self._consumers.append(consumer)
            commits = _Commits(consumer, processor.group)
            try:
                if isinstance(processor, StagedProcessor):
                    await self._run_staged(processor, consumer, commits)
                else:
                    await self._run_simple(processor, consumer, commits)
            finally:
                await commits.flush()
                self._consumers.remove(consumer)

    async def _run_simple(self, processor: Processor, consumer: Consumer, commits: _Commits) -> None:
        size = _batch_size(processor)
        while not self._stopping.is_set():
            batch = await consumer.poll(size.value)
            if not batch:
                continue
            size.update(len(batch))
            try:
                await processor.handle(batch)
            except Exception:
                await self._failed(processor, consumer, batch)
                continue
            commits.add(batch)

    async def _run_staged(self, processor: StagedProcessor[Any], consumer: Consumer, commits: _Commits) -> None:
        batches: collections.deque[_Batch[Any]] = collections.deque()
        size = _batch_size(processor)
        try:
            while not self._stopping.is_set():
                if not batches:
                    messages = await consumer.poll(size.value)
                    if not messages:
                        continue
                    size.update(len(messages))
                    batches.append(_Batch(processor, messages))
                current = batches[0]
                try:
                    prepared = await current.prepared
                except Exception:
                    await self._failed(processor, consumer, await _discard(batches))
                    continue
                # What arrived while this batch was prepared forms the next batches: poll them without
                # waiting (a poll is never cancelled half-read) and start preparing them now.
                while len(batches) <= processor.prepare_ahead:
                    ahead = await consumer.poll(size.value, timeout=0)
                    size.update(len(ahead))
                    if not ahead:
                        break
                    batches.append(_Batch(processor, ahead))
                try:
                    await processor.apply(prepared)
                except Exception:
                    # The batches prepared ahead are dropped and retried with it, in order.
                    await self._failed(processor, consumer, await _discard(batches))
                    continue
                commits.add(current.messages)
                batches.popleft()
        finally:
            # Stopping: batches prepared ahead are not applied; uncommitted, they are replayed on the
            # next start.
            await _discard(batches)

    async def _failed(self, processor: Processor, consumer: Consumer, batch: Sequence[Message]) -> None:
        # A transient failure (a backend down): keep the batch uncommitted and retry it after a
        # pause, or on the next start if we are stopping.
        logger.exception("processor batch failed", processor=processor.group, size=len(batch))
        await consumer.rewind(batch)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), processor.retry_delay_s)
