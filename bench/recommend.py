"""Recommendation benchmark, one run, one real server (uvicorn on loopback, embedded defaults):

1. catalog import of the electronics CSV over HTTP (``shoal import-items`` code path) → items/s
   until every item is embedded, against the engine's raw throughput on the same texts;
2. event → updated list at a fixed rate (default 500 events/s): a load process sends single-event
   POSTs open loop (each at its scheduled time, whether or not earlier ones were answered) while it
   holds one ``/ws/recommendations/{user}`` socket per user. Latency runs from the ``202`` to the
   push that carries the event's id (the list is in the cache by then); the server's CPU time per
   event over the phase is the cost figure, the one a shared, noisy machine distorts least;
3. recommendation reads on a cache hit: server-side (``Recommender.get``) and over HTTP.

    .venv/bin/python bench/recommend.py [--rate 500] [--seconds 20] [--users 300] [--catalog-limit N]

The server runs in this process; the load generator is a child process (``--load``), so the
server's CPU time is this process's. Writes bench/results/recommend.json; quality is
scripts/eval_recommend.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import uvloop
from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import running_server  # noqa: E402

from bench.embed import engine_ceiling  # noqa: E402
from bench.loadgen import RawClient  # noqa: E402
from bench.stats import pct  # noqa: E402
from shoal.app import CoreFeature, create_app  # noqa: E402
from shoal.importer import ImportSummary  # noqa: E402
from shoal.recommend import RecommendFeature, RecommendSettings  # noqa: E402
from shoal.recommend.cli import import_items, item_records  # noqa: E402
from shoal.recommend.feature_state import state_of  # noqa: E402
from shoal.settings import Settings  # noqa: E402
from shoal.telemetry import configure_logging  # noqa: E402

CATALOG = ROOT.parent / "shared" / "data" / "amazon_in_electronics_catalog" / "All Electronics.csv"
RESULTS = ROOT / "bench" / "results" / "recommend.json"
TARGETS = {"event_to_list_p99_ms": 50.0, "read_server_p99_ms": 1.0}
LAG = re.compile(r'^shoal_log_lag\{group="profiler",topic="interactions"\} (\S+)$', re.MULTILINE)


def cpu_seconds() -> float:
    """CPU time of this process, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def catalog_ids(limit: int | None) -> list[str]:
    return [str(r["id"]) for r in item_records(CATALOG, "amazon-csv", ImportSummary(), limit)]


async def import_catalog(http: httpx.AsyncClient, limit: int | None) -> dict[str, Any]:
    started = time.perf_counter()
    summary = await import_items(http, CATALOG, "amazon-csv", limit=limit)
    while True:
        stats = (await http.get("/v1/collections/items/stats")).json()
        if stats["embedded"] + stats["failed"] >= summary.sent:
            break
        await asyncio.sleep(0.1)  # polling a long job's progress
    seconds = time.perf_counter() - started
    return {"items": summary.sent, "seconds": seconds, "items_per_s": summary.sent / seconds}


# -- the load process ------------------------------------------------------------------------------
class Load:
    """Open-loop event POSTs and one WebSocket per user; times per event id."""

    def __init__(self, url: str, tag: str, users: list[str], items: list[str]) -> None:
        self.url = url
        self.tag = tag
        self.users = users
        self.items = items
        self.sent: dict[str, float] = {}
        self.accepted: dict[str, float] = {}
        self.pushed: dict[str, float] = {}
        self.statuses: list[int] = []
        self.latest_push = 0.0

    async def listen(self, ws: ClientConnection) -> None:
        async for raw in ws:
            now = time.perf_counter()
            for event_id in orjson.loads(raw).get("events", ()):
                self.pushed.setdefault(event_id, now)
            self.latest_push = now

    async def post(self, client: RawClient, event_id: str, request: bytes) -> None:
        self.sent[event_id] = time.perf_counter()
        try:
            status, _ = await client.request(request)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            status = 0
        self.statuses.append(status)
        if status == 202:
            self.accepted[event_id] = time.perf_counter()

    async def run(self, rate: float, seconds: float) -> dict[str, Any]:
        ws_url = self.url.replace("http://", "ws://")
        sockets = [await connect(f"{ws_url}/ws/recommendations/{u}", max_size=None) for u in self.users]
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as http, RawClient(self.url, 128) as client:
            await asyncio.gather(*(ws.recv() for ws in sockets))  # each socket's current list
            listeners = [asyncio.create_task(self.listen(ws)) for ws in sockets]
            try:
                rng = np.random.default_rng(7)
                total = int(rate * seconds)
                sending: list[asyncio.Task[None]] = []
                print("start", flush=True)
                cpu0 = time.process_time()
                started = time.perf_counter()
                for n in range(total):
                    # the schedule is fixed in advance: a slow answer never delays the next event
                    delay = started + n / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    event_id = f"{self.tag}-{n}"
                    event = {
                        "event_id": event_id,
                        "user_id": self.users[int(rng.integers(len(self.users)))],
                        "item_id": self.items[int(rng.integers(len(self.items)))],
                        "type": "view",
                    }
                    request = client.encode("POST", "/v1/events", event)
                    sending.append(asyncio.create_task(self.post(client, event_id, request)))
                achieved = total / (time.perf_counter() - started)
                await asyncio.gather(*sending)
                await self.drained(http)
                print("end", flush=True)
                client_cpu = time.process_time() - cpu0
            finally:
                for ws in sockets:
                    await ws.close()
                await asyncio.gather(*listeners, return_exceptions=True)
        return self.figures(total, rate, achieved, client_cpu)

    async def drained(self, http: httpx.AsyncClient) -> None:
        """Until the profiler has committed every event (it publishes before it commits) and the
        pushes in flight have arrived (no push for 0.5 s, or every accepted event pushed)."""
        deadline = time.perf_counter() + 300
        while time.perf_counter() < deadline:
            found = LAG.search((await http.get("/metrics")).text)
            if found is not None and float(found.group(1)) == 0:
                break
            await asyncio.sleep(0.05)  # polling the server's backlog
        while len(self.pushed.keys() & self.accepted.keys()) < len(self.accepted):
            if time.perf_counter() - self.latest_push > 0.5:
                break
            await asyncio.sleep(0.05)  # waiting for the last pushes

    def figures(self, total: int, rate: float, achieved: float, client_cpu: float) -> dict[str, Any]:
        measured = [e for e in self.accepted if e in self.pushed]
        # a push can be read before the 202 that preceded it: the list was observable by then
        from_202 = [max(0.0, self.pushed[e] - self.accepted[e]) * 1000 for e in measured]
        from_send = [(self.pushed[e] - self.sent[e]) * 1000 for e in measured]
        answer = [(self.accepted[e] - self.sent[e]) * 1000 for e in self.accepted]
        return {
            "events": total,
            "accepted": self.statuses.count(202),
            "rejected": len(self.statuses) - self.statuses.count(202) - self.statuses.count(0),
            "connection_errors": self.statuses.count(0),
            "offered_rate": rate,
            "achieved_rate": achieved,
            "measured": len(measured),
            "unpushed": len(self.accepted) - len(measured),
            "p50_ms": pct(from_202, 50),
            "p99_ms": pct(from_202, 99),
            "max_ms": max(from_202, default=float("nan")),
            "send_to_list_p50_ms": pct(from_send, 50),
            "send_to_list_p99_ms": pct(from_send, 99),
            "post_202_p50_ms": pct(answer, 50),
            "post_202_p99_ms": pct(answer, 99),
            "client_cpu_ms_per_event": client_cpu * 1000 / max(total, 1),
        }


def load_main(url: str, tag: str, rate: float, seconds: float, n_users: int, limit: int | None) -> None:
    users = [f"user{n}" for n in range(n_users)]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(Load(url, tag, users, catalog_ids(limit)).run(rate, seconds))
    print(json.dumps(result), flush=True)


# -- the server process ----------------------------------------------------------------------------
async def events_at_rate(
    url: str, tag: str, rate: float, seconds: float, users: int, limit: int | None
) -> dict[str, Any]:
    """Run the load process; this process's CPU time between its ``start`` and ``end`` is the server's."""
    command = [sys.executable, __file__, "--load", url, tag, "--rate", str(rate), "--seconds", str(seconds)]
    command += ["--users", str(users)] + (["--catalog-limit", str(limit)] if limit is not None else [])
    child = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    assert child.stdout is not None
    marks: dict[str, float] = {}
    result: dict[str, Any] = {}
    async for raw in child.stdout:
        line = raw.decode().strip()
        if line in ("start", "end"):
            marks[line] = cpu_seconds()
        elif line.startswith("{"):
            result = json.loads(line)
    if await child.wait() != 0 or not result:
        raise RuntimeError(f"the load process failed ({child.returncode})")
    result["server_cpu_ms_per_event"] = (marks["end"] - marks["start"]) * 1000 / result["events"]
    return result


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


async def main(rate: float, seconds: float, n_users: int, limit: int | None) -> dict[str, Any]:
    console = Console()
    configure_logging("WARNING", json=False)  # as `shoal serve` does with its level: no access lines
    texts = [r["text"] for r in item_records(CATALOG, "amazon-csv", ImportSummary(), limit)]
    ceiling = await engine_ceiling(texts)
    settings = RecommendSettings(_env_file=None, list_size=50)
    with tempfile.TemporaryDirectory() as tmp:
        # the load comes from one address: the per-client rate limit would answer 429
        core = Settings(_env_file=None, data_dir=Path(tmp), log_json=False, log_level="WARNING", rate_limit_per_s=1e6)
        app = create_app(core, [CoreFeature(), RecommendFeature(settings)])
        async with (
            # as `shoal serve` runs uvicorn (WebSocket compression off unless SHOAL_WS_COMPRESSION=1)
            running_server(app, ws_per_message_deflate=core.ws_compression) as url,
            httpx.AsyncClient(
                base_url=url, timeout=httpx.Timeout(60, pool=None), limits=httpx.Limits(max_connections=256)
            ) as http,
        ):
            catalog = await import_catalog(http, limit)
            # the HNSW index built now, as a shop's loaded catalog has it: a build holds the GIL for
            # seconds, which the optimizer would otherwise do in the middle of the measured phase
            services = app.state.services
            await services.vectors.optimize((await services.collections.get("items")).vector_name)
            await events_at_rate(url, "warm", rate, 2, n_users, limit)
            load_1m = os.getloadavg()[0]
            events = await events_at_rate(url, "run", rate, seconds, n_users, limit)
            events["load_average_1m_before"] = load_1m
            read = await reads(http, app, [f"user{n}" for n in range(n_users)], 5000)

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
    at = f"@ {events['achieved_rate']:.0f}/s"
    table.add_row(f"event → list p50 {at} (from the 202)", f"{events['p50_ms']:.1f} ms", "")
    table.add_row(f"event → list p99 {at} (from the 202)", f"{events['p99_ms']:.1f} ms", "≤ 50 ms")
    table.add_row(
        f"POST → 202 p50 / p99 {at}", f"{events['post_202_p50_ms']:.1f} / {events['post_202_p99_ms']:.1f} ms", ""
    )
    table.add_row("server CPU per event", f"{events['server_cpu_ms_per_event']:.2f} ms", "")
    table.add_row(
        "events measured / accepted", f"{events['measured']} / {events['accepted']}", f"of {events['events']}"
    )
    table.add_row("read p99, server-side (cache hit)", f"{read['server_p99_ms']:.3f} ms", "≤ 1 ms")
    table.add_row("read p50 / p99 over HTTP", f"{read['http_p50_ms']:.2f} / {read['http_p99_ms']:.2f} ms", "")
    console.print(table)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500, help="events per second offered (default 500)")
    parser.add_argument("--seconds", type=float, default=20, help="length of the measured phase (default 20)")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--catalog-limit", type=int, default=None, help="import only the first N rows")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the figures (default %(default)s)")
    parser.add_argument("--load", nargs=2, metavar=("URL", "TAG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main(args.load[0], args.load[1], args.rate, args.seconds, args.users, args.catalog_limit)
    else:
        # on uvloop, as `shoal serve` runs (uvicorn's loop "auto")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            figures = runner.run(main(args.rate, args.seconds, args.users, args.catalog_limit))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
