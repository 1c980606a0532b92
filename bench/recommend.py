"""Recommendation benchmark, one run, one real server (uvicorn on loopback, embedded defaults):

1. catalog import of the electronics CSV over HTTP (``shoal import-items`` code path) → items/s
   until every item is embedded, against the engine's raw throughput on the same texts;
2. event → updated list: single-event POSTs paced at 500 events/s over HTTP; latency from sending
   the POST to the new list being published on the bus (the WebSocket's source);
3. recommendation reads on a cache hit: server-side (``Recommender.get``) and over HTTP.

    .venv/bin/python bench/recommend.py [--rate 500] [--seconds 10] [--users 300]

The HTTP client runs in the server's process and event loop (2 cores): HTTP figures include it.
Writes bench/results/recommend.json; quality is scripts/eval_recommend.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import running_server  # noqa: E402

from bench.embed import engine_ceiling  # noqa: E402
from shoal.app import CoreFeature, create_app  # noqa: E402
from shoal.importer import ImportSummary  # noqa: E402
from shoal.recommend import RecommendFeature, RecommendSettings  # noqa: E402
from shoal.recommend.cli import import_items, item_records  # noqa: E402
from shoal.recommend.feature_state import state_of  # noqa: E402
from shoal.recommend.service import channel  # noqa: E402
from shoal.settings import Settings  # noqa: E402

CATALOG = ROOT.parent / "shared" / "data" / "amazon_in_electronics_catalog" / "All Electronics.csv"
RESULTS = ROOT / "bench" / "results" / "recommend.json"
TARGETS = {"event_to_list_p99_ms": 50.0, "read_server_p99_ms": 1.0}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def import_catalog(http: httpx.AsyncClient, limit: int | None) -> dict[str, Any]:
    started = time.perf_counter()
    summary = await import_items(http, CATALOG, "amazon-csv", limit=limit)
    while True:
        stats = (await http.get("/v1/collections/items/stats")).json()
        if stats["embedded"] + stats["failed"] >= summary.sent:
            break
        await asyncio.sleep(0.1)
    seconds = time.perf_counter() - started
    return {"items": summary.sent, "seconds": seconds, "items_per_s": summary.sent / seconds}


async def post(http: httpx.AsyncClient, body: dict[str, Any]) -> int:
    """Status of one event POST; 0 when the connection failed (counted, not fatal)."""
    try:
        return (await http.post("/v1/events", json=body)).status_code
    except httpx.HTTPError:
        return 0


async def events_at_rate(
    http: httpx.AsyncClient, app: Any, items: list[str], users: list[str], rate: float, seconds: float
) -> dict[str, Any]:
    services = app.state.services
    sent: dict[str, float] = {}
    latencies: list[float] = []
    total = int(rate * seconds)

    async def listen(subscription: Any) -> None:
        async for event in subscription:
            now = time.perf_counter()
            for event_id in event.get("events", ()):
                if event_id in sent:
                    latencies.append((now - sent.pop(event_id)) * 1000)

    rng = np.random.default_rng(7)
    async with services.bus.subscribe(*(channel(u) for u in users), maxsize=100_000) as subscription:
        listener = asyncio.create_task(listen(subscription))
        posts: set[asyncio.Task[Any]] = set()
        started = time.perf_counter()
        for n in range(total):
            # pace by the clock, not by sleeps adding up
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            user = users[int(rng.integers(len(users)))]
            item = items[int(rng.integers(len(items)))]
            body = {"event_id": f"b{n}", "user_id": user, "item_id": item, "type": "view"}
            sent[f"b{n}"] = time.perf_counter()
            task = asyncio.create_task(post(http, body))
            posts.add(task)
            task.add_done_callback(posts.discard)
        achieved = total / (time.perf_counter() - started)
        statuses = list(await asyncio.gather(*posts))
        try:
            # the profiler commits a batch after publishing its lists: no lag means all published
            while await services.log.lag("interactions", "profiler"):  # noqa: ASYNC110 - a bench waiting on a backlog
                await asyncio.sleep(0.05)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
    return {
        "events": total,
        "accepted": statuses.count(202),
        "connection_errors": statuses.count(0),
        "offered_rate": rate,
        "achieved_rate": achieved,
        "measured": len(latencies),
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
    }


async def reads(http: httpx.AsyncClient, app: Any, users: list[str], n: int) -> dict[str, Any]:
    recommender = state_of(app.state.services).recommender
    for user in users:  # warm: every list is in the cache
        await recommender.get(user, limit=10)
    server: list[float] = []
    for i in range(n):
        started = time.perf_counter()
        await recommender.get(users[i % len(users)], limit=10)
        server.append((time.perf_counter() - started) * 1000)
    over_http: list[float] = []
    for i in range(n // 5):
        started = time.perf_counter()
        r = await http.get(f"/v1/users/{users[i % len(users)]}/recommendations", params={"limit": 10})
        over_http.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200 and r.json()["source"] == "realtime", r.text
    return {
        "server_p50_ms": pct(server, 50),
        "server_p99_ms": pct(server, 99),
        "http_p50_ms": pct(over_http, 50),
        "http_p99_ms": pct(over_http, 99),
    }


async def main(rate: float, seconds: float, n_users: int, limit: int | None) -> None:
    console = Console()
    texts = [r["text"] for r in item_records(CATALOG, "amazon-csv", ImportSummary(), limit)]
    ceiling = await engine_ceiling(texts)
    settings = RecommendSettings(_env_file=None, list_size=50)
    with tempfile.TemporaryDirectory() as tmp:
        core = Settings(_env_file=None, data_dir=Path(tmp), log_json=False, log_level="WARNING")
        app = create_app(core, [CoreFeature(), RecommendFeature(settings)])
        async with (
            running_server(app) as url,
            httpx.AsyncClient(
                base_url=url, timeout=httpx.Timeout(60, pool=None), limits=httpx.Limits(max_connections=256)
            ) as http,
        ):
            catalog = await import_catalog(http, limit)
            items = [str(r["id"]) for r in item_records(CATALOG, "amazon-csv", ImportSummary(), limit)]
            users = [f"user{n}" for n in range(n_users)]
            await events_at_rate(http, app, items, users, rate, 2)  # warm-up
            events = await events_at_rate(http, app, items, users, rate, seconds)
            read = await reads(http, app, users, 5000)

    catalog["engine_ceiling_items_per_s"] = ceiling
    catalog["ratio_to_engine"] = catalog["items_per_s"] / ceiling
    load = os.getloadavg()
    result = {
        "catalog_import": catalog,
        "event_to_list": events,
        "reads": read,
        "targets": TARGETS,
        "load_average_1m_at_end": load[0],
        "args": {"rate": rate, "seconds": seconds, "users": n_users, "catalog_limit": limit},
    }
    table = Table(title="recommendations")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("baseline / target", justify="right")
    table.add_row(
        "catalog import (items/s)",
        f"{catalog['items_per_s']:,.0f}",
        f"engine {ceiling:,.0f} ({catalog['ratio_to_engine']:.0%})",
    )
    table.add_row(f"event → list p50 @ {events['achieved_rate']:.0f}/s", f"{events['p50_ms']:.1f} ms", "")
    table.add_row(f"event → list p99 @ {events['achieved_rate']:.0f}/s", f"{events['p99_ms']:.1f} ms", "≤ 50 ms")
    table.add_row("read p99, server-side (cache hit)", f"{read['server_p99_ms']:.3f} ms", "≤ 1 ms")
    table.add_row("read p50 / p99 over HTTP", f"{read['http_p50_ms']:.2f} / {read['http_p99_ms']:.2f} ms", "")
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--catalog-limit", type=int, default=None, help="import only the first N rows")
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds, args.users, args.catalog_limit))
