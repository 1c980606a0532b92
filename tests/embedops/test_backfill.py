"""Backfill through the admin API: coverage, dry run, clean stop and exact resume."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx

from shoal.embedops.backfill import CURSOR_KEY, Backfill, BackfillOptions, BackfillReport
from shoal.records import Status
from tests.app_fixtures import services_of
from tests.embedops.conftest import ScriptedOpenAI, ops_app
from tests.embedops.helpers import add, events, settled, stats

N = 200
TEXTS = {f"r{i:03d}": f"record number {i} about topic {i % 7}" for i in range(N)}


async def failed_collection(client: httpx.AsyncClient, fake: ScriptedOpenAI) -> None:
    """A collection whose records all failed to embed: the provider was down while they came in."""
    assert (await client.post("/v1/collections", json={"name": "docs"})).status_code == 201
    fake.down = 400
    result = await add(client, "docs", TEXTS)
    assert set(result["failed"]) == set(TEXTS)
    fake.down = None
    await settled(client, "docs")


async def test_stats_report_failures_and_coverage(tmp_path: Path, openai_server: ScriptedOpenAI) -> None:
    async with ops_app(tmp_path, openai_server, remote_main=True) as (client, _):
        await failed_collection(client, openai_server)
        s = await stats(client, "docs")
        assert (s["total"], s["embedded"], s["failed"], s["pending"]) == (N, 0, N, 0)
        assert "HTTP 400" in s["last_error"]
        assert s["coverage"] == 0.0 and s["coverage_pct"] == 0.0
        assert s["backlog"] == N
        assert s["model"] == "openai:fake" and s["dim"] == 8

        r = await client.post("/v1/collections/docs/backfill", json={})
        final = events(r)[-1]
        assert final["event"] == "done"
        assert (final["processed"], final["succeeded"], final["failed"]) == (N, N, 0)
        s = await stats(client, "docs")
        assert (s["embedded"], s["failed"], s["coverage_pct"], s["backlog"]) == (N, 0, 100.0, 0)
        record = (await client.get("/v1/collections/docs/records/r001")).json()
        assert record["status"] == "embedded"
        assert (record["embedding_model"], record["embedding_dim"]) == ("openai:fake", 8)
        assert record["embedded_at"] is not None

        metrics = (await client.get("/metrics")).text
        assert 'shoal_collection_total_records{collection="docs"} 200.0' in metrics
        assert 'shoal_collection_backlog_records{collection="docs"} 0.0' in metrics
        assert 'shoal_collection_coverage_ratio{collection="docs"} 1.0' in metrics


async def test_dry_run_counts_and_prices_without_writing(tmp_path: Path, openai_server: ScriptedOpenAI) -> None:
    async with ops_app(tmp_path, openai_server, remote_main=True, embed_price_per_1k_tokens=0.02) as (client, _):
        await failed_collection(client, openai_server)
        before = openai_server.requests
        r = await client.post("/v1/collections/docs/backfill", json={"dry_run": True})
        assert r.status_code == 200, r.text
        estimate = r.json()
        assert estimate["count"] == N
        assert estimate["remote"] is True
        assert estimate["tokens"] > 0
        assert estimate["cost"] == round(estimate["tokens"] / 1000 * 0.02, 6)
        assert openai_server.requests == before  # a paid API is never called by a dry run
        assert (await stats(client, "docs"))["failed"] == N


async def test_dry_run_of_a_local_model_measures_its_speed(tmp_path: Path) -> None:
    async with ops_app(tmp_path) as (client, _app):
        await client.post("/v1/collections", json={"name": "docs"})
        await add(client, "docs", dict(list(TEXTS.items())[:5]))
        r = await client.post("/v1/collections/docs/backfill", json={"dry_run": True, "force": True})
        estimate = r.json()
        assert estimate["count"] == 5 and estimate["remote"] is False
        assert estimate["throughput"] > 0 and estimate["seconds"] is not None
        assert estimate["tokens"] is None and estimate["cost"] is None


async def test_unknown_model_is_refused(tmp_path: Path) -> None:
    async with ops_app(tmp_path) as (client, _):
        await client.post("/v1/collections", json={"name": "docs"})
        r = await client.post("/v1/collections/docs/backfill", json={"model": "local:minilm-fp32"})
        assert r.status_code == 400
        assert "shoal reembed" in r.json()["details"]


async def test_stopped_backfill_resumes_and_embeds_nothing_twice(tmp_path: Path, openai_server: ScriptedOpenAI) -> None:
    async with ops_app(tmp_path, openai_server, remote_main=True, embed_cache_size=0) as (client, app):
        await failed_collection(client, openai_server)
        openai_server.embedded.clear()
        openai_server.script = ["ok", "hang"]  # the first page goes through, the next one hangs
        r = await client.post("/v1/collections/docs/backfill", json={"batch": 10, "detach": True})
        assert r.status_code == 202, r.text
        async with asyncio.timeout(120):
            await openai_server.hanging.wait()
        stopping = asyncio.create_task(client.delete("/v1/collections/docs/job"))
        openai_server.release.set()  # the page in flight completes and is written, then the job stops
        first = (await stopping).json()
        assert first["state"] == "stopped"
        assert 0 < first["succeeded"] < N

        done_first = {rid for rid in TEXTS if openai_server.embedded[TEXTS[rid]]}
        stamped = {
            rid: (await client.get(f"/v1/collections/docs/records/{rid}")).json()["embedded_at"] for rid in done_first
        }
        r = await client.post("/v1/collections/docs/backfill", json={"batch": 10})
        second = events(r)[-1]
        assert second["event"] == "done"
        assert first["succeeded"] + second["succeeded"] == N
        assert second["processed"] == N - first["succeeded"]  # nothing done before is selected again
        assert max(openai_server.embedded.values()) == 1  # every text went to the provider once
        for rid, embedded_at in stamped.items():
            assert (await client.get(f"/v1/collections/docs/records/{rid}")).json()["embedded_at"] == embedded_at
        assert (await stats(client, "docs"))["coverage"] == 1.0
        assert services_of(app).collections.cached("docs") is not None


async def test_forced_run_resumes_from_its_cursor(tmp_path: Path) -> None:
    async with ops_app(tmp_path) as (client, app):
        await client.post("/v1/collections", json={"name": "docs"})
        await add(client, "docs", TEXTS)
        services = services_of(app)
        stop = asyncio.Event()
        options = BackfillOptions(force=True, batch=10)

        def stop_after_two_pages(report: BackfillReport) -> None:
            if report.succeeded >= 20:
                stop.set()

        first = await Backfill(services, "docs", options).run(stop, stop_after_two_pages)
        assert first.state == "stopped"
        assert 20 <= first.succeeded < N
        found = await services.collections.refresh("docs")
        assert found is not None and found.config[CURSOR_KEY]["after_id"]

        second = await Backfill(services, "docs", options).run()
        assert second.state == "done"
        assert second.resumed_after is not None
        assert first.succeeded + second.succeeded == N  # the forced run re-embedded each record once
        found = await services.collections.refresh("docs")
        assert found is not None and CURSOR_KEY not in found.config  # a finished run clears it

        third = await Backfill(services, "docs", options).run()  # a new forced run starts over
        assert (third.resumed_after, third.succeeded) == (None, N)


async def test_a_record_changed_while_its_page_embeds_keeps_the_newer_version(
    tmp_path: Path, openai_server: ScriptedOpenAI
) -> None:
    async with ops_app(tmp_path, openai_server, remote_main=True, embed_cache_size=0) as (client, app):
        await failed_collection(client, openai_server)
        services = services_of(app)
        openai_server.script = ["hang"]  # the page is read and embedding when the record changes
        running = asyncio.create_task(Backfill(services, "docs", BackfillOptions(batch=N)).run())
        async with asyncio.timeout(60):
            await openai_server.hanging.wait()
        (read,) = await services.records.get("docs", ["r005"])
        await services.records.upsert([dataclasses.replace(read, text="a newer version")])
        openai_server.release.set()
        report = await running
        assert (report.state, report.succeeded, report.skipped, report.processed) == ("done", N - 1, 1, N)
        (newer,) = await services.records.get("docs", ["r005"])
        assert (newer.text, newer.status, newer.embedding_model) == ("a newer version", Status.FAILED, None)
        vector_name = (await services.collections.get("docs")).vector_name
        assert await services.vectors.retrieve(vector_name, ["r005"]) == []  # no stale vector either
        assert [p.id for p in await services.vectors.retrieve(vector_name, ["r004", "r006"])] == ["r004", "r006"]
