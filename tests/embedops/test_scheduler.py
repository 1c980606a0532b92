"""The delta scheduler re-queues records the provider failed on, and stops at once on shutdown."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from shoal.embedops.feature import EmbedOpsState
from shoal.embedops.scheduler import Scheduler, next_wait
from tests.app_fixtures import services_of
from tests.embedops.conftest import ScriptedOpenAI, ops_app, ops_settings
from tests.embedops.helpers import add, settled, stats
from tests.waiting import eventually

TEXTS = {f"r{i:02d}": f"a record the provider failed on, number {i}" for i in range(12)}


async def test_requeues_failed_records_once_the_provider_is_back(tmp_path: Path, openai_server: ScriptedOpenAI) -> None:
    async with ops_app(tmp_path, openai_server, remote_main=True) as (client, app):
        await client.post("/v1/collections", json={"name": "docs"})
        openai_server.down = 500
        await add(client, "docs", TEXTS)
        assert (await settled(client, "docs"))["failed"] == 12
        openai_server.down = None
        state: EmbedOpsState = services_of(app).extras["embedops"]
        limited = Scheduler(services_of(app), interval=3600, lookback=86400, limit=5)
        assert await limited.run_once() == 5  # the per-run limit
        r = await client.post("/v1/embedops/requeue")  # the configured one: limit 100
        assert r.json()["requeued"] in (0, 7, 12)  # 0 if the first re-queue was still in the log
        assert state.scheduler.runs == 1

        async def all_embedded() -> dict[str, object]:
            await client.post("/v1/embedops/requeue")
            return await stats(client, "docs")

        done = await eventually(all_embedded, until=lambda s: s["embedded"] == 12)
        assert done["failed"] == 0 and done["coverage"] == 1.0


async def test_lookback_skips_old_records(tmp_path: Path, openai_server: ScriptedOpenAI) -> None:
    async with ops_app(tmp_path, openai_server, remote_main=True) as (client, app):
        await client.post("/v1/collections", json={"name": "docs"})
        openai_server.down = 500
        old = {"records": [{"id": "old", "text": "from long ago", "ts": "2020-01-01T00:00:00Z"}]}
        await client.post("/v1/collections/docs/records", params={"wait": "true"}, json=old)
        await settled(client, "docs")
        openai_server.down = None
        scheduler = Scheduler(services_of(app), interval=3600, lookback=7 * 86400, limit=100)
        assert await scheduler.run_once() == 0


async def test_the_scheduler_waits_on_an_event_and_stops_at_once(tmp_path: Path) -> None:
    ops = ops_settings(schedule_enabled=True, schedule_interval_s=6 * 3600)
    async with ops_app(tmp_path, ops=ops) as (_, app):
        services = services_of(app)
        task = next(t for t in asyncio.all_tasks() if t.get_name() == "embedops-scheduler")
        assert not task.done()
        state: EmbedOpsState = services.extras["embedops"]
        assert state.scheduler.runs == 0  # no run before the first interval
    assert task.done() and not task.cancelled()  # it returned on the stop event, it was not cancelled


def test_jitter_stays_within_its_fraction() -> None:
    rng = random.Random(7)
    waits = [next_wait(100.0, 0.1, rng) for _ in range(1000)]
    assert min(waits) >= 90 and max(waits) <= 110
    assert max(waits) - min(waits) > 10  # actually spread
    assert next_wait(100.0, 0.0) == 100.0
