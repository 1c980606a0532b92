"""The optimizer runs once writes pause, or once enough points wait, never per write."""

from __future__ import annotations

from pathlib import Path

from shoal.metrics import Metrics
from shoal.pipeline.optimizer import Optimizer
from shoal.vectors.edge import EdgeVectorStore
from tests.waiting import eventually


class Counting(EdgeVectorStore):
    """The embedded store, counting the optimisations it is asked for."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.optimized: list[str] = []

    async def optimize(self, name: str) -> None:
        self.optimized.append(name)
        await super().optimize(name)


async def test_runs_once_writes_pause(tmp_path: Path) -> None:
    async with Counting(tmp_path) as store:
        await store.create_collection("a", 4)
        await store.create_collection("b", 4)
        async with Optimizer(store, quiet_s=0.05, max_pending=1_000_000) as optimizer:
            optimizer.mark("a", 10)
            optimizer.mark("b", 1)
            optimizer.mark("a", 10)

            async def optimized() -> list[str]:
                return store.optimized

            assert await eventually(optimized) == ["a", "b"]
            assert optimizer.runs == 1


async def test_runs_while_writes_go_on_once_enough_points_wait(tmp_path: Path) -> None:
    async with Counting(tmp_path) as store:
        await store.create_collection("a", 4)
        # An hour of quiet is never reached here: only the pending count can start the run.
        async with Optimizer(store, quiet_s=3600, max_pending=100) as optimizer:
            optimizer.mark("a", 60)
            assert optimizer.runs == 0
            optimizer.mark("a", 60)

            async def optimized() -> list[str]:
                return store.optimized

            assert await eventually(optimized) == ["a"]


async def test_backlog_and_durations_reach_the_metrics(tmp_path: Path) -> None:
    metrics = Metrics()
    async with Counting(tmp_path) as store:
        await store.create_collection("a", 4)
        await store.create_collection("b", 4)
        async with Optimizer(store, quiet_s=0.05, max_pending=1_000_000, metrics=metrics) as optimizer:
            optimizer.mark("a", 10)
            optimizer.mark("b", 5)
            assert optimizer.backlog == 15

            async def backlog() -> int:
                return optimizer.backlog

            assert await eventually(backlog, until=lambda n: n == 0) == 0
            assert store.optimized == ["a", "b"]
    for name in ("a", "b"):
        labels = {"vector_collection": name}
        assert metrics.registry.get_sample_value("shoal_vector_optimize_seconds_count", labels) == 1


class FailingOnce(Counting):
    """Its first optimisation fails (a full disk, say); later ones succeed."""

    failures = 0

    async def optimize(self, name: str) -> None:
        first = not self.optimized
        await super().optimize(name)
        if first:
            self.failures += 1  # the optimizer handles the error before this test's task runs again
            raise OSError("no space left on device")


async def test_a_failed_optimisation_keeps_its_points_for_the_next_round(tmp_path: Path) -> None:
    async with FailingOnce(tmp_path) as store:
        await store.create_collection("a", 4)
        async with Optimizer(store, quiet_s=0.05, max_pending=1_000_000) as optimizer:
            optimizer.mark("a", 10)

            async def failures() -> int:
                return store.failures

            await eventually(failures)
            assert optimizer.backlog == 10  # failed: still waiting, and no retry without a write
            assert optimizer.runs == 1
            optimizer.mark("a", 5)

            async def backlog() -> int:
                return optimizer.backlog

            assert await eventually(backlog, until=lambda n: n == 0) == 0
            assert store.optimized == ["a", "a"] and optimizer.runs == 2
