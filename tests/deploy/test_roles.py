"""What each process role serves: a worker only the operations endpoints; an API process the rest."""

from __future__ import annotations

from pathlib import Path

from tests.app_fixtures import make_settings, running_app

OPS = ("/health", "/ready", "/metrics")


async def test_worker_serves_only_health_ready_and_metrics(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path, role="worker")) as (client, _):
        for path in OPS:
            assert (await client.get(path)).status_code == 200, path
        for path in ("/", "/v1/collections", "/openapi.json", "/docs", "/redoc", "/search_payload", "/ws"):
            assert (await client.get(path)).status_code == 404, path
        assert (await client.post("/v1/collections", json={"name": "x"})).status_code == 404


async def test_api_serves_the_records_api_and_operations(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path, role="api")) as (client, _):
        for path in OPS:
            assert (await client.get(path)).status_code == 200, path
        served = set((await client.get("/openapi.json")).json()["paths"])
        assert {*OPS, "/v1/collections", "/v1/collections/{collection}/records"} <= served
