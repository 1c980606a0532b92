"""The profile store's batch transaction, on SQLite and on PostgreSQL: event ids recorded once,
state read back as written, nothing kept from a batch that failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from shoal.errors import BackendError
from shoal.recommend.popular import Trend
from shoal.recommend.store import ProfileStore
from shoal.records.migrations import migrate
from tests.conftest import POSTGRES_URL, require_service
from tests.records.conftest import create_database, drop_database


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProfileStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'shoal.db'}"
    else:
        require_service("PostgreSQL", "127.0.0.1", 5432)
        url = await create_database(POSTGRES_URL)
    try:
        await migrate(url)
        async with ProfileStore(url, popular_half_life_s=3600) as opened:
            yield opened
    finally:
        if request.param == "postgres":
            await drop_database(POSTGRES_URL, url)


async def test_event_ids_are_recorded_once_and_state_reads_back(store: ProfileStore) -> None:
    events = [("e1", "u1"), ("e2", "u1"), ("e3", "u2")]
    async with store.batch(events, ["u1", "u2"], ["i1"]) as batch:
        assert batch.applied == set()
        for event_id, user in events:
            batch.profiles[user].add(np.ones(4), 1.0, 100.0, 3600)
            batch.profiles[user].record("i1", "view", known=True, recent_size=10)
            batch.new_ids.append((event_id, user))
        batch.trends["i1"] = Trend("i1", 3.0, 100.0)

    # a retry of two of them with a new one: only the new one is fresh
    async with store.batch([("e2", "u1"), ("e3", "u2"), ("e4", "u2")], ["u1", "u2"], ["i1"]) as batch:
        assert batch.applied == {"e2", "e3"}
        assert batch.profiles["u1"].events == 2 and batch.profiles["u2"].events == 1
        assert batch.trends["i1"].score == 3.0
        np.testing.assert_allclose(batch.profiles["u1"].vector, 2 * np.ones(4))

    found = await store.get("u1")
    assert found is not None and found.counters == {"view": 2} and list(found.seen) == ["i1"]
    assert [t.item_id for t in await store.trending(5)] == ["i1"]


async def test_a_batch_reads_back_exactly_what_the_last_one_wrote(store: ProfileStore) -> None:
    # values that do not survive a 15-digit round trip (SQLite's JSON renders floats so)
    at, score = 1_733_600_000.123_456_7, 1 / 3
    vector = np.array([0.1, -2 / 3, np.pi, 1e-300])
    async with store.batch([("e1", "u1")], ["u1"], ["i1"]) as batch:
        profile = batch.profiles["u1"]
        profile.add(vector, 1.0, at, 3600)
        for item in ("i3", "i1", "i2"):
            profile.record(item, "view", known=True, recent_size=2)
        batch.new_ids.append(("e1", "u1"))
        batch.trends["i1"] = Trend("i1", score, at)
    written = (await store.get("u1"), batch.profiles["u1"].updated_at)
    async with store.batch([("e2", "u1")], ["u1", "u2"], ["i1", "i9"]) as batch:
        read = batch.profiles["u1"]
        assert read.vector is not None and read.vector.tolist() == vector.tolist()
        assert read.at == at and read.events == 3 and read.counters == {"view": 3}
        assert list(read.seen) == ["i3", "i1", "i2"] and read.recent == ["i1", "i2"]
        assert read.updated_at == written[1] and read.updated_at.tzinfo is not None
        assert batch.profiles["u2"].vector is None and batch.profiles["u2"].events == 0
        assert list(batch.trends) == ["i1"] and (batch.trends["i1"].score, batch.trends["i1"].at) == (score, at)
    assert written[0] is not None and written[0].updated_at == written[1]


async def test_a_batch_larger_than_one_statement_records_and_reads_every_row(store: ProfileStore) -> None:
    # more ids than one statement binds (the store splits them): every id recorded once
    events = [(f"e{n}", f"u{n % 1300}") for n in range(2600)]
    users = [f"u{n}" for n in range(1300)]
    items = [f"i{n}" for n in range(1100)]
    async with store.batch(events[:1800], users, items) as batch:
        assert batch.applied == set()
        for event_id, user in events[:1800]:
            batch.profiles[user].record("i1", "view", known=True, recent_size=3)
            batch.new_ids.append((event_id, user))
        batch.trends.update({i: Trend(i, 1.0, 10.0) for i in items})
    async with store.batch(events, users, items) as batch:
        assert batch.applied == {e for e, _ in events[:1800]}
        assert sum(p.events for p in batch.profiles.values()) == 1800
        assert len(batch.trends) == 1100


async def test_a_failed_batch_records_nothing(store: ProfileStore) -> None:
    with pytest.raises(RuntimeError):
        async with store.batch([("e1", "u1")], ["u1"], []) as batch:
            batch.new_ids.append(("e1", "u1"))
            raise RuntimeError("the batch failed half-way")
    async with store.batch([("e1", "u1")], ["u1"], []) as batch:
        assert batch.applied == set()  # the retry applies it
    assert await store.get("u1") is None  # no new_ids: nothing written


async def test_a_closed_store_is_a_backend_error(tmp_path: Path) -> None:
    store = ProfileStore(f"sqlite+aiosqlite:///{tmp_path / 'shoal.db'}", popular_half_life_s=3600)
    with pytest.raises(BackendError):
        async with store.batch([("e1", "u1")], ["u1"], []):
            pass


async def test_many_concurrent_and_cancelled_callers_leave_no_connection_behind(store: ProfileStore) -> None:
    # 300 WebSockets connecting at once each read a profile; one that closes meanwhile cancels its
    # read. Neither may take the pool's connections for good: every later call would wait for them.
    assert await asyncio.wait_for(asyncio.gather(*(store.get(f"u{n}") for n in range(300))), 60) == [None] * 300
    for _ in range(40):
        reading = asyncio.create_task(store.get("u1"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    async with store.batch([("e1", "u1")], ["u1"], []) as batch:
        batch.profiles["u1"].record("i1", "view", known=False, recent_size=10)
        batch.new_ids.append(("e1", "u1"))
    for _ in range(20):
        found = await asyncio.wait_for(store.get("u1"), 5)
        assert found is not None and found.events == 1
