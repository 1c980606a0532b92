"""``shoal ingest-conversations`` against a real server on loopback, with the twcs sample."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from shoal.insights.ingest_csv import conversations, ingest_conversations, read_rows
from tests.conftest import require_data
from tests.insights.conftest import make_app
from tests.servers import running_server
from tests.waiting import eventually


def test_threads_follow_in_response_to() -> None:
    path = require_data("twcs", "twcs_head_sample.csv")
    rows = read_rows(path)
    assert len(rows) == 5000  # the bare \r in tweet 3399 does not split a row
    bodies = list(conversations(rows))
    assert len(bodies) == 2778
    by_id = {b["raw_data"]["tweet_id"]: b for b in bodies}
    # tweet 2 answers brand tweet 1, which answers customer tweet 3, which answers 4 ... the root
    assert by_id["2"]["raw_data"]["thread_id"] == by_id["3"]["raw_data"]["thread_id"]
    assert by_id["3"]["raw_data"]["brand"] == "sprintcare"
    assert by_id["2"]["timestamp"] == "2017-10-31T22:11:45+00:00"


async def test_ingest_posts_every_inbound_tweet(tmp_path: Path) -> None:
    path = require_data("twcs", "kaggle_sample.csv")
    app = make_app(tmp_path, rate_limit_per_s=1000)
    async with running_server(app) as url:
        summary = await asyncio.to_thread(ingest_conversations, path, url=url, batch_size=20)
        assert summary.failed == 0 and summary.posted == summary.inbound > 20
        params = {"start_time": "2017-01-01T00:00:00Z", "end_time": "2018-01-01T00:00:00Z"}
        async with httpx.AsyncClient(base_url=url) as client:

            async def analysed() -> int:
                total: int = (await client.get("/api/v1/insights", params=params)).json()["metadata"]["total_count"]
                return total

            await eventually(analysed, until=lambda n: n == summary.posted, timeout=120)
