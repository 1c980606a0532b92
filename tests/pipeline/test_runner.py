"""``ProcessorRunner`` with a ``StagedProcessor``: the next batches (``prepare_ahead``) are prepared
while the current one is applied; batches are applied and committed in order; a failed apply retries
it and every batch prepared ahead; the batch size follows the backlog. With any processor, offsets are
committed in the background: the next batch is handled while the previous commit is written, and a
failed commit is covered by the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest

from shoal.log import Consumer, Log, Message
from shoal.pipeline.processor import BatchSize, Processor, ProcessorRunner, StagedProcessor
from tests.waiting import eventually

VALUES = [f"m{i}" for i in range(6)]


class Staged(StagedProcessor[list[str]]):
    """Records what it prepares and applies; can hold its first apply until the batches it should
    prepare ahead are prepared."""

    group = "g"
    batch_size = 2
    retry_delay_s = 0.01

    def __init__(
        self, topic: str, *, hold_first_apply: bool = False, failing_applies: int = 0, prepare_ahead: int = 1
    ) -> None:
        self.topic = topic
        self.hold_first_apply = hold_first_apply
        self.failing_applies = failing_applies
        self.prepare_ahead = prepare_ahead
        self.prepared: list[list[str]] = []
        self.applied: list[list[str]] = []
        self.ahead_prepared = asyncio.Event()

    async def prepare(self, messages: Sequence[Message]) -> list[str]:
        values = [m.value.decode() for m in messages]
        self.prepared.append(values)
        if len(self.prepared) >= 1 + self.prepare_ahead:
            self.ahead_prepared.set()
        return values

    async def apply(self, prepared: list[str]) -> None:
        if self.hold_first_apply and not self.applied:
            # Returns only if the runner prepares the next batches while this one is being applied.
            await asyncio.wait_for(self.ahead_prepared.wait(), 20)
        if self.failing_applies:
            self.failing_applies -= 1
            raise RuntimeError("the store is down")
        self.applied.append(prepared)


async def fill(log: Log, topic: str) -> None:
    await log.append(topic, [("key", v.encode()) for v in VALUES])


def applied(processor: Staged | Simple) -> list[str]:
    return [v for batch in processor.applied for v in batch]


@pytest.mark.parametrize("ahead", [1, 2])
async def test_the_next_batches_are_prepared_while_the_current_one_is_applied(log: Log, topic: str, ahead: int) -> None:
    await fill(log, topic)
    processor = Staged(topic, hold_first_apply=True, prepare_ahead=ahead)
    async with ProcessorRunner(log, [processor]):

        async def progress() -> tuple[list[str], int]:
            return applied(processor), await log.lag(topic, "g")

        await eventually(progress, until=lambda p: p == (VALUES, 0))
    assert processor.applied[0] == ["m0", "m1"]  # batches keep their size and order
    assert processor.prepared[: 1 + ahead] == [["m0", "m1"], ["m2", "m3"], ["m4", "m5"]][: 1 + ahead]


@pytest.mark.parametrize("ahead", [1, 2])
async def test_a_failed_apply_retries_it_and_the_batches_prepared_ahead(log: Log, topic: str, ahead: int) -> None:
    await fill(log, topic)
    processor = Staged(topic, hold_first_apply=True, failing_applies=1, prepare_ahead=ahead)
    async with ProcessorRunner(log, [processor]):

        async def progress() -> tuple[list[str], int]:
            return applied(processor), await log.lag(topic, "g")

        await eventually(progress, until=lambda p: p == (VALUES, 0))
    assert processor.applied == [["m0", "m1"], ["m2", "m3"], ["m4", "m5"]]  # once each, in order
    for batch in (["m2", "m3"], ["m4", "m5"])[:ahead]:
        assert processor.prepared.count(batch) >= 2  # prepared ahead, dropped, prepared again


async def test_handle_runs_both_stages(log: Log, topic: str) -> None:
    await fill(log, topic)
    processor = Staged(topic)
    async with log.consumer(topic, "g") as consumer:
        await processor.handle(await consumer.poll(6))
    assert applied(processor) == VALUES


def test_batch_size_doubles_on_full_polls_and_halves_on_short_ones() -> None:
    size = BatchSize(4, 32)
    seen = [size.value]
    for got in (4, 8, 16, 32, 32):  # full polls: a backlog
        size.update(got)
        seen.append(size.value)
    assert seen == [4, 8, 16, 32, 32, 32]
    for got in (3, 0, 1, 1):  # short polls: caught up
        size.update(got)
        seen.append(size.value)
    assert seen[-4:] == [16, 8, 4, 4]
    assert BatchSize(32, 2).value == 2  # the floor never exceeds the ceiling


class Sized(Staged):
    batch_size = 32
    min_batch_size = 4


async def test_a_backlog_drains_in_growing_batches_and_a_caught_up_runner_polls_few(log: Log, topic: str) -> None:
    backlog = [f"b{i}" for i in range(100)]
    await log.append(topic, [("key", v.encode()) for v in backlog])
    processor = Sized(topic)
    async with ProcessorRunner(log, [processor]):

        async def progress() -> tuple[int, int]:
            return len(applied(processor)), await log.lag(topic, "g")

        await eventually(progress, until=lambda p: p == (100, 0))
        sizes = [len(batch) for batch in processor.applied]
        assert sizes[:4] == [4, 8, 16, 32]  # grows while polls come back full
        assert max(sizes) == 32
        # Caught up: single messages, each handled before the next, bring the poll size back down...
        for i in range(4):
            await log.append(topic, [("key", f"s{i}".encode())])
            await eventually(progress, until=lambda p, n=101 + i: p == (n, 0))
        # ...so a burst is taken a few at a time (short writes), not all at once.
        applied_before = len(processor.applied)
        await log.append(topic, [("key", f"c{i}".encode()) for i in range(20)])
        await eventually(progress, until=lambda p: p == (124, 0))
        assert len(processor.applied[applied_before]) <= 4
    assert applied(processor) == [*backlog, *(f"s{i}" for i in range(4)), *(f"c{i}" for i in range(20))]


class Simple(Processor):
    """A one-stage processor (the runner's other loop), recording its batches like ``Staged``."""

    group = "g"
    batch_size = 2

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.applied: list[list[str]] = []

    async def handle(self, messages: Sequence[Message]) -> None:
        self.applied.append([m.value.decode() for m in messages])


class HeldCommits(Consumer):
    """A real consumer whose commits wait for ``opened`` (or fail while ``failing`` is positive)."""

    def __init__(self, inner: Consumer, opened: asyncio.Event, failing: int) -> None:
        self.topic = inner.topic
        self.group = inner.group
        self.inner = inner
        self.opened = opened
        self.failing = failing
        self.commits = 0

    async def poll(self, max_records: int, timeout: float | None = None) -> list[Message]:
        return await self.inner.poll(max_records, timeout)

    async def commit(self, messages: Sequence[Message]) -> None:
        await self.opened.wait()
        if self.failing:
            self.failing -= 1
            raise RuntimeError("the log is down")
        self.commits += 1
        await self.inner.commit(messages)

    async def rewind(self, messages: Sequence[Message]) -> None:
        await self.inner.rewind(messages)

    async def lag(self) -> int:
        return await self.inner.lag()

    async def close(self) -> None:
        await self.inner.close()


class HeldLog(Log):
    """The real log, its consumers' commits held (see ``HeldCommits``)."""

    def __init__(self, inner: Log, *, failing: int = 0) -> None:
        self.inner = inner
        self.opened = asyncio.Event()
        self.failing = failing
        self.consumers: list[HeldCommits] = []

    async def close(self) -> None:
        await self.inner.close()

    async def append(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[Message]:
        return await self.inner.append(topic, items)

    def consumer(self, topic: str, group: str) -> Consumer:
        self.consumers.append(HeldCommits(self.inner.consumer(topic, group), self.opened, self.failing))
        return self.consumers[-1]

    async def lag(self, topic: str, group: str) -> int:
        return await self.inner.lag(topic, group)


def handled(processor: Staged | Simple) -> Callable[[], Awaitable[list[str]]]:
    async def probe() -> list[str]:
        return applied(processor)

    return probe


@pytest.mark.parametrize("kind", [Simple, Staged])
async def test_the_next_batches_are_handled_while_a_commit_is_written(
    log: Log, topic: str, kind: type[Simple | Staged]
) -> None:
    await fill(log, topic)
    held = HeldLog(log)
    processor = kind(topic)
    async with ProcessorRunner(held, [processor]):
        await eventually(handled(processor), until=lambda a: a == VALUES)
        assert await log.lag(topic, "g") == len(VALUES)  # the first commit is still being written
        held.opened.set()
        await eventually(lambda: log.lag(topic, "g"), until=lambda lag: lag == 0)
    # the batches handled meanwhile are committed together, not one commit each
    assert 1 <= held.consumers[0].commits <= 2 < len(processor.applied)


@pytest.mark.parametrize("kind", [Simple, Staged])
async def test_a_failed_commit_is_covered_by_the_next(log: Log, topic: str, kind: type[Simple | Staged]) -> None:
    held = HeldLog(log, failing=1)
    held.opened.set()
    processor = kind(topic)
    async with ProcessorRunner(held, [processor]):
        await log.append(topic, [("key", b"m0"), ("key", b"m1")])
        await eventually(handled(processor), until=lambda a: a == ["m0", "m1"])
        await log.append(topic, [("key", b"m2")])  # the processor carried on after the failed commit
        await eventually(lambda: log.lag(topic, "g"), until=lambda lag: lag == 0)
    assert applied(processor) == ["m0", "m1", "m2"]
