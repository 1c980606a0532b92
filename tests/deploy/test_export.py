"""``shoal export`` → ``shoal import`` into a fresh server gives back the same records."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import typer
from fastapi import FastAPI
from fastapi.routing import APIRoute
from typer.testing import CliRunner

from shoal import cli, deploy_cli
from shoal.api import export
from shoal.app import CoreFeature, create_app
from shoal.settings import Settings
from tests.app_fixtures import make_settings
from tests.servers import running_server
from tests.waiting import eventually

pytestmark = pytest.mark.slow


def commands() -> typer.Typer:
    """The real ``shoal`` app, with ``export`` registered once."""
    if not any(c.name == "export" for c in cli.app.registered_commands):
        deploy_cli.register(cli.app)
    return cli.app


def app_for(settings: Settings) -> FastAPI:
    """The core app with the paging endpoint (mounted here until the core routers include it)."""
    app = create_app(settings, [CoreFeature()])
    path = "/v1/collections/{collection}/records"
    if not any(isinstance(r, APIRoute) and r.path == path and "GET" in r.methods for r in app.routes):
        app.include_router(export.router)
    return app


BASE = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
RECORDS = [
    {
        "id": f"r{i:03d}",
        "text": f"record number {i} about {['rust', 'coffee', 'trains', 'rain'][i % 4]} — ünïcode ✓",
        "payload": {"n": i, "tags": ["a", f"t{i % 3}"], "nested": {"ok": i % 2 == 0}, "id": f"user-{i}"},
        "ts": (BASE + timedelta(minutes=i)).isoformat(),
    }
    for i in range(137)
]


async def all_records(url: str, *, vectors: bool = False) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 50, "with_vectors": vectors}
            if after:
                params["after"] = after
            r = await http.get("/v1/collections/docs/records", params=params)
            assert r.status_code == 200, r.text
            for record in r.json()["records"]:
                found[record["id"]] = record
            after = r.json()["next"]
            if after is None:
                return found


def run_cli(args: list[str]) -> None:
    result = CliRunner().invoke(commands(), args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


async def test_paging_endpoint_returns_every_record_once_in_id_order(tmp_path: Path) -> None:
    async with running_server(app_for(make_settings(tmp_path))) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.post("/v1/collections", json={"name": "docs"})).status_code == 201
        r = await http.post("/v1/collections/docs/records", json={"records": RECORDS[:25]}, params={"wait": "true"})
        assert r.status_code == 200, r.text
        seen: list[str] = []
        after = None
        while True:
            params: dict[str, Any] = {"limit": 10} | ({"after": after} if after else {})
            page = (await http.get("/v1/collections/docs/records", params=params)).json()
            seen += [rec["id"] for rec in page["records"]]
            assert len(page["records"]) <= 10
            after = page["next"]
            if after is None:
                break
        assert seen == sorted(r["id"] for r in RECORDS[:25])
        assert (await http.get("/v1/collections/nope/records")).status_code == 404
        assert (await http.get("/v1/collections/docs/records", params={"limit": 0})).status_code == 400


async def test_export_then_import_into_a_fresh_server_gives_the_same_records(tmp_path: Path) -> None:
    out = tmp_path / "docs.jsonl.gz"
    async with running_server(app_for(make_settings(tmp_path / "a"))) as source:
        async with httpx.AsyncClient(base_url=source, timeout=60) as http:
            assert (await http.post("/v1/collections", json={"name": "docs"})).status_code == 201
            r = await http.post("/v1/collections/docs/records", json={"records": RECORDS}, params={"wait": "true"})
            assert r.status_code == 200, r.text
        before = await all_records(source, vectors=True)
        args = ["export", "-c", "docs", "--out", str(out), "--url", source, "--page-size", "40"]
        await asyncio.to_thread(run_cli, args)

    with gzip.open(out, "rt", encoding="utf-8") as fh:
        lines = [json.loads(line) for line in fh]
    assert len(lines) == len(RECORDS)
    assert lines[0]["_id"] == "user-0"  # a payload key named like a column is escaped

    async with running_server(app_for(make_settings(tmp_path / "b"))) as target:
        args = ["import", str(out), "-c", "docs", "--id-field", "id", "--ts-field", "ts", "--url", target]
        await asyncio.to_thread(run_cli, args)
        async with httpx.AsyncClient(base_url=target, timeout=30) as http:

            async def embedded() -> int:
                return int((await http.get("/v1/collections/docs/stats")).json()["embedded"])

            await eventually(embedded, until=lambda n: n == len(RECORDS), timeout=60)
        after = await all_records(target, vectors=True)

    assert after.keys() == before.keys()
    for rid, record in before.items():
        again = after[rid]
        assert (again["text"], again["payload"]) == (record["text"], record["payload"]), rid
        assert datetime.fromisoformat(again["ts"]) == datetime.fromisoformat(record["ts"]), rid
        assert again["status"] == "embedded"
        # Same model, same text: the fresh server computes the same vector.
        np.testing.assert_allclose(again["vector"], record["vector"], atol=1e-5)


async def test_export_with_vectors_and_a_limit(tmp_path: Path) -> None:
    out = tmp_path / "docs.jsonl"
    async with running_server(app_for(make_settings(tmp_path / "a"))) as source:
        async with httpx.AsyncClient(base_url=source, timeout=60) as http:
            assert (await http.post("/v1/collections", json={"name": "docs"})).status_code == 201
            r = await http.post("/v1/collections/docs/records", json={"records": RECORDS[:12]}, params={"wait": "true"})
            assert r.status_code == 200, r.text
        args = ["export", "-c", "docs", "-o", str(out), "--url", source, "--vectors", "--limit", "7"]
        args += ["--page-size", "5"]
        await asyncio.to_thread(run_cli, args)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == sorted(r["id"] for r in RECORDS[:12])[:7]
    assert all(len(line["_vector"]) == 384 for line in lines)
    assert abs(float(np.linalg.norm(lines[0]["_vector"])) - 1.0) < 1e-3
