"""The log contract suite runs over every implementation listed in ``OPENERS``.

An opener builds a fresh, unopened ``Log`` over the storage a test owns; calling it twice gives two
handles on the same storage (that is how tests reopen the log). To add a backend, add one entry.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from shoal.log import Log
from shoal.log.sqlite import SqliteLog
from tests.engines import kafka_bootstrap, require_module

# opener(storage dir, partitions, queue_size) -> an unopened Log on that storage
Opener = Callable[[Path, int, int], Log]


def _kafka(tmp: Path, partitions: int, queue_size: int) -> Log:
    """Tansu (in memory, one per session); topics are unique per test, so storage is the topic."""
    require_module("aiokafka", "aiokafka")
    from shoal.log.kafka import KafkaLog

    return KafkaLog(f"kafka://{kafka_bootstrap()}", partitions=partitions, queue_size=queue_size)


OPENERS: dict[str, Opener] = {
    "sqlite": lambda tmp, partitions, queue_size: SqliteLog(
        tmp / "log.db", partitions=partitions, queue_size=queue_size
    ),
    # the background-fsync mode keeps every promise of the contract (only power-loss durability differs)
    "sqlite-interval-fsync": lambda tmp, partitions, queue_size: SqliteLog(
        tmp / "log.db", partitions=partitions, queue_size=queue_size, fsync="interval", fsync_interval_s=0.05
    ),
    "kafka": _kafka,
}

PARTITIONS = 4


@pytest.fixture(params=sorted(OPENERS))
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Log]:
    """``open_log(partitions=4, queue_size=10_000)``: a new handle on this test's log storage."""
    opener = OPENERS[request.param]

    def make(partitions: int = PARTITIONS, queue_size: int = 10_000) -> Log:
        return opener(tmp_path, partitions, queue_size)

    return make


@pytest.fixture
async def log(open_log: Callable[..., Log]) -> AsyncIterator[Log]:
    async with open_log() as opened:
        yield opened


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses (servers such as Kafka are shared between tests)."""
    return f"t-{uuid.uuid4().hex[:12]}"
