"""kill -9 a real server mid-ingest: every record acknowledged with 202 is searchable after restart."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from tests.processes import ServerProcess
from tests.waiting import eventually

pytestmark = pytest.mark.slow


async def _ingest(url: str, acked: list[str], stop: asyncio.Event, worker: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        n = 0
        while not stop.is_set():
            ids = [f"w{worker}-{n + i}" for i in range(20)]
            body = {"records": [{"id": i, "text": f"record {i} about topic {hash(i) % 17}"} for i in ids]}
            try:
                r = await client.post("/v1/collections/crash/records", json=body)
            except httpx.HTTPError:
                return  # the server died under us: whatever was not acked may be lost
            if r.status_code == 202:
                acked.extend(ids)
            n += 20


@pytest.mark.parametrize("fsync", ["always", "interval"])
async def test_kill_9_mid_ingest_loses_nothing_acknowledged(tmp_path: Path, fsync: str) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, SHOAL_LOG_FSYNC=fsync).start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.post("/v1/collections", json={"name": "crash"})).status_code == 201
        acked: list[str] = []
        stop = asyncio.Event()
        workers = [asyncio.create_task(_ingest(server.url, acked, stop, w)) for w in range(4)]
        await eventually(lambda: asyncio.sleep(0, len(acked)), until=lambda n: n >= 600, timeout=60)
        server.kill()  # SIGKILL while requests are in flight
        stop.set()
        await asyncio.gather(*workers)
    finally:
        if server.proc and server.proc.poll() is None:
            server.kill()

    assert len(acked) >= 600
    with ServerProcess(data, port=server.port) as restarted:
        async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:

            async def embedded() -> int:
                return int((await client.get("/v1/collections/crash/stats")).json()["embedded"])

            await eventually(embedded, until=lambda n: n >= len(acked), timeout=120)
            stats = (await client.get("/v1/collections/crash/stats")).json()
            assert stats["vectors"] >= len(acked)
            gate = asyncio.Semaphore(16)

            async def check(rid: str) -> str | None:
                async with gate:
                    r = await client.get(f"/v1/collections/crash/records/{rid}")
                    if r.status_code != 200 or r.json()["status"] != "embedded":
                        return f"{rid}: record {r.status_code}"
                    r = await client.post("/v1/collections/crash/search", json={"id": rid, "limit": 1})
                    return None if r.status_code == 200 else f"{rid}: not searchable {r.status_code}"

            problems = [p for p in await asyncio.gather(*(check(rid) for rid in acked)) if p]
            assert not problems, f"{len(problems)} acknowledged records lost, e.g. {problems[:5]}"


async def test_sigterm_drains_and_exits_cleanly(tmp_path: Path) -> None:
    """SIGTERM while records are queued: the server finishes its work, exits 0, and nothing is lost."""
    data = tmp_path / "data"
    with ServerProcess(data) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            assert (await client.post("/v1/collections", json={"name": "drain"})).status_code == 201
            ids = [f"d{i}" for i in range(300)]
            for start in range(0, len(ids), 100):
                body = {"records": [{"id": i, "text": f"draining record {i}"} for i in ids[start : start + 100]]}
                assert (await client.post("/v1/collections/drain/records", json=body)).status_code == 202
        # uvicorn re-raises the signal after a graceful shutdown, so the status is 0 or -SIGTERM
        assert server.terminate(timeout=60) in (0, -signal.SIGTERM)
        log = server.log_path.read_text()
        assert "shoal draining" in log
        assert "Application shutdown complete" in log
        assert "Traceback" not in log
    with ServerProcess(data, port=server.port) as restarted:
        async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:

            async def embedded() -> int:
                return int((await client.get("/v1/collections/drain/stats")).json()["embedded"])

            assert await eventually(embedded, until=lambda n: n == len(ids), timeout=120) == len(ids)
