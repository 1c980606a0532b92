"""``shoal backfill`` as a real process against a real server: killed, stopped by SIGTERM, resumed."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import httpx

from shoal.app import CoreFeature, create_app
from shoal.embedops.cli import parse_since
from shoal.embedops.feature import EmbedOpsFeature
from tests.app_fixtures import make_settings
from tests.embedops.conftest import DIM, ScriptedOpenAI, ops_settings
from tests.embedops.helpers import add, settled
from tests.servers import running_server
from tests.waiting import eventually

TEXTS = {f"r{i:03d}": f"record number {i} about topic {i % 7}" for i in range(300)}


async def cli(base_url: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shoal.embedops.cli",
        *args,
        "--url",
        base_url,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def job(http: httpx.AsyncClient) -> dict[str, Any]:
    result: dict[str, Any] = (await http.get("/v1/collections/docs/job")).json()
    return result


def last_event(stdout: bytes) -> dict[str, Any]:
    lines = [line for line in stdout.decode().splitlines() if line.strip()]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def test_killed_and_terminated_backfills_resume(tmp_path: Path, openai_server: ScriptedOpenAI) -> None:
    fake = openai_server
    settings = make_settings(
        tmp_path,
        embedder="openai:fake",
        embedder_dim=DIM,
        embedder_base_url=fake.url,
        embedder_api_key="sk-test",
        embed_max_retries=0,
        embed_cache_size=0,
    )
    app = create_app(settings, [CoreFeature(), EmbedOpsFeature(ops_settings())])
    async with running_server(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        await http.post("/v1/collections", json={"name": "docs"})
        fake.down = 503
        await add(http, "docs", TEXTS)
        fake.down = None
        await settled(http, "docs")
        fake.embedded.clear()
        args = ("backfill", "-c", "docs", "--batch", "10")

        # 1. kill -9 the command mid-way: the server notices the closed stream and stops the job
        fake.script = ["ok", "hang"]
        proc = await cli(base_url, *args)
        async with asyncio.timeout(120):
            await fake.hanging.wait()
        proc.kill()
        await proc.wait()
        fake.release.set()
        first = await eventually(lambda: job(http), until=lambda j: j["state"] != "running")
        assert first["state"] == "stopped" and 0 < first["succeeded"] < len(TEXTS)

        # 2. SIGTERM: the command asks for a clean stop, prints the summary and exits 130
        fake.hanging.clear()
        fake.release.clear()
        fake.script = ["ok", "hang"]
        proc = await cli(base_url, *args)
        async with asyncio.timeout(120):
            await fake.hanging.wait()
        proc.send_signal(signal.SIGTERM)
        await eventually(lambda: job(http), until=lambda j: j.get("state") == "running" and j.get("error") is None)
        fake.release.set()
        out, err = await proc.communicate()
        assert proc.returncode == 130, err.decode()
        second = last_event(out)
        assert second["event"] == "stopped" and second["succeeded"] > 0
        assert "succeeded" in err.decode()  # the closing summary table

        # 3. a rerun finishes the rest; nothing was embedded twice
        proc = await cli(base_url, *args)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        third = last_event(out)
        assert third["event"] == "done"
        assert first["succeeded"] + second["succeeded"] + third["succeeded"] == len(TEXTS)
        assert third["processed"] == len(TEXTS) - first["succeeded"] - second["succeeded"]
        assert max(fake.embedded.values()) == 1 and len(fake.embedded) == len(TEXTS)
        assert (await settled(http, "docs"))["coverage"] == 1.0


async def test_dry_run_prints_the_estimate(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    app = create_app(settings, [CoreFeature(), EmbedOpsFeature(ops_settings())])
    async with running_server(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        await http.post("/v1/collections", json={"name": "docs"})
        await add(http, "docs", dict(list(TEXTS.items())[:3]))
        proc = await cli(base_url, "backfill", "-c", "docs", "--dry-run", "--force")
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        estimate = json.loads(out)
        assert estimate["count"] == 3 and estimate["dry_run"] is True


def test_since_accepts_durations_and_dates() -> None:
    assert parse_since("2025-01-02").isoformat() == "2025-01-02T00:00:00+00:00"
    assert (parse_since("1d") - parse_since("2d")).total_seconds() > 86000
