"""``ProcessorRunner`` with a ``StagedProcessor``: the next batch is prepared while the current one is
applied; batches are applied and committed in order; a failed apply retries both batches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from shoal.log import Log, Message
from shoal.pipeline.processor import ProcessorRunner, StagedProcessor
from tests.waiting import eventually

VALUES = [f"m{i}" for i in range(6)]


class Staged(StagedProcessor[list[str]]):
    """Records what it prepares and applies; can hold its first apply until the next batch is prepared."""

    group = "g"
    batch_size = 2
    retry_delay_s = 0.01

    def __init__(self, topic: str, *, hold_first_apply: bool = False, failing_applies: int = 0) -> None:
        self.topic = topic
        self.hold_first_apply = hold_first_apply
        self.failing_applies = failing_applies
        self.prepared: list[list[str]] = []
        self.applied: list[list[str]] = []
        self.second_prepared = asyncio.Event()

    async def prepare(self, messages: Sequence[Message]) -> list[str]:
        values = [m.value.decode() for m in messages]
        self.prepared.append(values)
        if len(self.prepared) >= 2:
            self.second_prepared.set()
        return values

    async def apply(self, prepared: list[str]) -> None:
        if self.hold_first_apply and not self.applied:
            # Returns only if the runner prepares the next batch while this one is being applied.
            await asyncio.wait_for(self.second_prepared.wait(), 20)
        if self.failing_applies:
            self.failing_applies -= 1
            raise RuntimeError("the store is down")
        self.applied.append(prepared)


async def fill(log: Log, topic: str) -> None:
    await log.append(topic, [("key", v.encode()) for v in VALUES])


def applied(processor: Staged) -> list[str]:
    return [v for batch in processor.applied for v in batch]


async def test_the_next_batch_is_prepared_while_the_current_one_is_applied(log: Log, topic: str) -> None:
    await fill(log, topic)
    processor = Staged(topic, hold_first_apply=True)
    async with ProcessorRunner(log, [processor]):

        async def progress() -> tuple[list[str], int]:
            return applied(processor), await log.lag(topic, "g")

        await eventually(progress, until=lambda p: p == (VALUES, 0))
    assert processor.applied[0] == ["m0", "m1"]  # batches keep their size and order
    assert processor.prepared[:2] == [["m0", "m1"], ["m2", "m3"]]


async def test_a_failed_apply_retries_it_and_the_batch_prepared_ahead(log: Log, topic: str) -> None:
    await fill(log, topic)
    processor = Staged(topic, hold_first_apply=True, failing_applies=1)
    async with ProcessorRunner(log, [processor]):

        async def progress() -> tuple[list[str], int]:
            return applied(processor), await log.lag(topic, "g")

        await eventually(progress, until=lambda p: p == (VALUES, 0))
    assert processor.prepared.count(["m2", "m3"]) >= 2  # prepared ahead, dropped, prepared again


async def test_handle_runs_both_stages(log: Log, topic: str) -> None:
    await fill(log, topic)
    processor = Staged(topic)
    async with log.consumer(topic, "g") as consumer:
        await processor.handle(await consumer.poll(6))
    assert applied(processor) == VALUES
