"""Processors: consumer-group workers over a log topic.

A processor handles one batch of messages at a time; the runner commits the batch's offsets only
after ``handle`` returns, so a crash replays the uncommitted tail and ``handle`` must be idempotent.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import structlog

from shoal.log import Log, Message

logger = structlog.get_logger(__name__)


class Processor(abc.ABC):
    """One stage of the pipeline (embed + index, analyse, profile, ...)."""

    topic: str
    group: str
    batch_size: int = 256
    retry_delay_s: float = 1.0

    @abc.abstractmethod
    async def handle(self, messages: Sequence[Message]) -> None:
        """Process a batch. Must be idempotent. An exception retries the same batch later; a
        message that can never succeed must be recorded as failed here, not raised."""


class ProcessorRunner:
    """Runs processors as tracked tasks; ``stop()`` lets the current batches finish and commit."""

    def __init__(self, log: Log, processors: Sequence[Processor]) -> None:
        self._log = log
        self._processors = list(processors)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._consumers: list[object] = []

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
            await consumer.close()  # type: ignore[attr-defined]
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self, processor: Processor) -> None:
        async with self._log.consumer(processor.topic, processor.group) as consumer:
            self._consumers.append(consumer)
            try:
                while not self._stopping.is_set():
                    batch = await consumer.poll(processor.batch_size)
                    if not batch:
                        continue
                    try:
                        await processor.handle(batch)
                    except Exception:
                        # A transient failure (a backend down): keep the batch uncommitted and
                        # retry it after a pause, or on the next start if we are stopping.
                        logger.exception("processor batch failed", processor=processor.group, size=len(batch))
                        await consumer.rewind(batch)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stopping.wait(), processor.retry_delay_s)
                        continue
                    await consumer.commit(batch)
            finally:
                self._consumers.remove(consumer)
