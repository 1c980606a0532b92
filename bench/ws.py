"""Tweet-stream benchmark: 200 concurrent WebSocket clients against a real server process.

    .venv/bin/python bench/ws.py [--clients 200] [--seconds 20]

1. The embedding engine's ceiling (texts/s, warm, no cache) measured here, before the server starts
   and again after it stops; the stream is compared with their mean.
2. Sustained tweets/s: every client keeps a few batches in flight; a tweet counts once its
   ``similar`` push arrives (embedded, indexed, searched, pushed). Reported as a ratio to the ceiling,
   with the server's CPU time per tweet (all its threads, the model's included).
3. A pause after that burst, as the optimizer expects: once writes stop for
   ``SHOAL_OPTIMIZE_INTERVAL_S`` it indexes the burst's points, holding the GIL (Qdrant Edge 0.9), so
   the server answers nothing meanwhile. Reported as the longest ``ping`` → ``pong`` wait: the stall
   a stream that never pauses would see once every ``SHOAL_OPTIMIZE_MAX_PENDING`` points.
4. Ingest → push latency p50/p99 at half the sustained rate, spread evenly over the clients.
5. Server RSS idle (model loaded) and peak under load; server CPU % idle (no clients, then 200 idle
   connections). Writes ``bench/results/ws.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import psutil  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import ClientConnection, connect

from shoal.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tweeteval" / "sentiment" / "val_text.txt"
RESULTS = ROOT / "bench" / "results" / "ws.json"
TARGETS = {"throughput_ratio": 0.9, "push_p99_ms": 500.0, "rss_idle_mb": 250.0, "cpu_idle_percent": 1.0}
SERVER = """
import sys, uvicorn
from shoal.app import CoreFeature, create_app
from shoal.cli import uvicorn_options
from shoal.settings import Settings
from shoal.tweets import TweetsFeature
settings = Settings(host="127.0.0.1", port=int(sys.argv[1]))
uvicorn.run(create_app(settings, [CoreFeature(), TweetsFeature()]), **uvicorn_options(settings))
"""


class Texts:
    """Unique tweet texts (a counter suffix keeps the server's embedding cache out of the figures)."""

    def __init__(self) -> None:
        self.lines = [line.strip() for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"{self.lines[self.n % len(self.lines)]} #{self.n}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def engine_ceiling(texts: list[str]) -> float:
    spec = importlib.util.spec_from_file_location("bench_embed", ROOT / "bench" / "embed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ceiling: float = await module.engine_ceiling(texts)
    return ceiling


class Client:
    def __init__(self, ws: ClientConnection, index: int) -> None:
        self.ws = ws
        self.user = f"user_{index}"
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.pushed = 0
        self.in_flight = 0
        self.room = asyncio.Event()
        self.room.set()
        self.pong = asyncio.Event()

    async def read(self) -> None:
        async for raw in self.ws:
            message = orjson.loads(raw)
            if message.get("type") == "similar":
                sent = self.sent_at.pop(message["tweet_id"], None)
                if sent is not None:
                    self.latencies.append(time.perf_counter() - sent)
                self.pushed += 1
                self.in_flight -= 1
                self.room.set()
            elif message.get("type") == "pong":
                self.pong.set()
            elif message.get("type") == "error":
                raise RuntimeError(f"server error: {message}")

    async def ping(self) -> float:
        """Seconds until the server answers a ``ping``: its event loop's wait, stalls included."""
        self.pong.clear()
        started = time.perf_counter()
        await self.ws.send('{"type": "ping"}')
        await self.pong.wait()
        return time.perf_counter() - started

    async def send(self, texts: Texts, n: int, prefix: str) -> None:
        batch = []
        now = time.perf_counter()
        for _ in range(n):
            tweet_id = f"{prefix}-{texts.n}-{self.user}"
            self.sent_at[tweet_id] = now
            batch.append({"id": tweet_id, "user_id": self.user, "username": self.user, "text": texts.next()})
        self.in_flight += n
        await self.ws.send(orjson.dumps({"tweets": batch}).decode())


async def saturate(
    clients: list[Client], texts: Texts, seconds: float, batch: int, window: int, server: psutil.Process
) -> tuple[float, float, float]:
    """Every client keeps ``window`` tweets in flight; tweets pushed per second over ``seconds``, and
    the server's and this client process's CPU milliseconds per tweet pushed meanwhile (they share the
    machine's cores with the model)."""
    stop = time.perf_counter() + 3.0

    async def drive(client: Client) -> None:
        while time.perf_counter() < stop:
            if client.in_flight + batch > window:
                client.room.clear()
                await client.room.wait()
                continue
            await client.send(texts, batch, "s")

    await asyncio.gather(*(drive(c) for c in clients[:20]))  # warm-up: a few clients fill the pipeline
    start_count = sum(c.pushed for c in clients)
    start_cpu, start_client_cpu = cpu_seconds(server), time.process_time()
    started = time.perf_counter()
    stop = started + seconds
    await asyncio.gather(*(drive(c) for c in clients))
    elapsed = time.perf_counter() - started
    pushed = sum(c.pushed for c in clients) - start_count
    cpu_ms = (cpu_seconds(server) - start_cpu) * 1000 / max(pushed, 1)
    client_cpu_ms = (time.process_time() - start_client_cpu) * 1000 / max(pushed, 1)
    deadline = time.perf_counter() + 60
    while any(c.in_flight > 0 for c in clients) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # drain, so the paced phase starts from an empty pipeline
    return pushed / elapsed, cpu_ms, client_cpu_ms


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def settle(client: Client, quiet_s: float) -> float:
    """Wait out the optimizer after a burst (it starts once no write came for ``quiet_s``); the
    longest ping → pong wait seen meanwhile, in seconds: the stall of that optimisation."""
    started = time.perf_counter()
    longest, calm = 0.0, 0
    # Done once the lull has passed and ten pings in a row (a second) came back at once.
    while calm < 10 or time.perf_counter() < started + quiet_s + 2.0:
        wait = await asyncio.wait_for(client.ping(), timeout=300)
        longest = max(longest, wait)
        calm = calm + 1 if wait < 0.1 else 0
        await asyncio.sleep(0.1)
    return longest


async def paced(clients: list[Client], texts: Texts, rate: float, seconds: float) -> list[float]:
    """Send ``rate`` tweets/s spread evenly over the clients; ingest → push latencies (s)."""
    for client in clients:
        client.latencies.clear()
    interval = len(clients) / rate

    async def drive(client: Client, offset: float) -> None:
        await asyncio.sleep(offset)
        next_at = time.perf_counter()
        stop = next_at + seconds
        while next_at < stop:
            await client.send(texts, 1, "p")
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    await asyncio.gather(*(drive(c, i * interval / len(clients)) for i, c in enumerate(clients)))
    deadline = time.perf_counter() + 10
    while any(c.sent_at for c in clients) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # the last pushes, with a deadline
    return [lat for c in clients for lat in c.latencies]


async def sample_rss(process: psutil.Process, stop: asyncio.Event, peak: list[float]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], process.memory_info().rss / 2**20)
        await asyncio.sleep(0.25)


async def cpu_percent(process: psutil.Process, seconds: float) -> float:
    process.cpu_percent(None)
    await asyncio.sleep(seconds)
    return float(process.cpu_percent(None))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    texts = Texts()
    before = await engine_ceiling([texts.next() for _ in range(args.ceiling_texts)])
    port = free_port()
    quiet_s = float(os.environ.get("SHOAL_OPTIMIZE_INTERVAL_S", Settings.model_fields["optimize_interval_s"].default))
    with tempfile.TemporaryDirectory(prefix="shoal-bench-ws-") as data_dir:
        env = {
            **os.environ,
            "SHOAL_DATA_DIR": data_dir,
            "SHOAL_LOG_LEVEL": "WARNING",
            "SHOAL_RATE_LIMIT_PER_S": "100000",
            "SHOAL_TWEETS_DEFAULT_K": str(args.k),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
        }
        server = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVER, str(port), env=env)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if (await http.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or server.returncode is not None:
                        raise RuntimeError("server did not start")
                    await asyncio.sleep(0.2)
            process = psutil.Process(server.pid)
            await asyncio.sleep(2)  # let start-up work (optimizer, imports) settle before the idle figures
            rss_idle = process.memory_info().rss / 2**20
            cpu_idle = await cpu_percent(process, args.idle_seconds)
            sockets = [
                connect(f"ws://127.0.0.1:{port}/ws", open_timeout=60, max_queue=None) for _ in range(args.clients)
            ]
            conns = [await s for s in sockets]
            clients = [Client(ws, i) for i, ws in enumerate(conns)]
            readers = [asyncio.create_task(c.read()) for c in clients]
            try:
                cpu_idle_connected = await cpu_percent(process, args.idle_seconds)
                peak = [rss_idle]
                stop = asyncio.Event()
                sampler = asyncio.create_task(sample_rss(process, stop, peak))
                first = texts.n  # the ceiling's texts came from the same counter
                throughput, cpu_per_tweet, client_cpu_per_tweet = await saturate(
                    clients, texts, args.seconds, args.batch, args.window, process
                )
                points = texts.n - first
                stall = await settle(clients[0], quiet_s)
                latencies = np.asarray(await paced(clients, texts, throughput / 2, args.seconds)) * 1000
                stop.set()
                await sampler
            finally:
                for ws in conns:
                    await ws.close()
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
        finally:
            server.terminate()
            await asyncio.wait_for(server.wait(), timeout=60)
    # Measured again once the server is gone: the machine's speed drifts over a run, and the stream is
    # compared with the mean of the ceilings that bracket it.
    after = await engine_ceiling([texts.next() for _ in range(args.ceiling_texts)])
    ceiling = (before + after) / 2
    return {
        "clients": args.clients,
        "engine_ceiling_texts_per_s": round(ceiling, 1),
        "engine_ceilings_before_after": [round(before, 1), round(after, 1)],
        "sustained_tweets_per_s": round(throughput, 1),
        "throughput_ratio": round(throughput / ceiling, 3),
        "server_cpu_ms_per_tweet": round(cpu_per_tweet, 3),
        "client_cpu_ms_per_tweet": round(client_cpu_per_tweet, 3),
        "tweets_before_pause": points,
        "optimize_stall_after_burst_s": round(stall, 2),
        "paced_rate_tweets_per_s": round(throughput / 2, 1),
        "push_p50_ms": round(float(np.percentile(latencies, 50)), 1) if len(latencies) else None,
        "push_p99_ms": round(float(np.percentile(latencies, 99)), 1) if len(latencies) else None,
        "pushes_measured": len(latencies),
        "rss_idle_mb": round(rss_idle, 1),
        "rss_load_peak_mb": round(peak[0], 1),
        "cpu_idle_percent": round(cpu_idle, 2),
        "cpu_idle_200_connections_percent": round(cpu_idle_connected, 2),
        "k": args.k,
        "targets": TARGETS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each measured phase")
    parser.add_argument("--batch", type=int, default=8, help="tweets per batch while saturating")
    parser.add_argument("--window", type=int, default=24, help="tweets in flight per client while saturating")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--ceiling-texts", type=int, default=3000)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"Tweet stream, {args.clients} WebSocket clients")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    rows = [
        (
            "engine ceiling (texts/s), before / after",
            " / ".join(str(c) for c in result["engine_ceilings_before_after"]),
            "",
        ),
        ("sustained tweets/s", result["sustained_tweets_per_s"], ""),
        ("ratio to ceiling", result["throughput_ratio"], f"≥ {TARGETS['throughput_ratio']}"),
        ("server CPU ms per tweet, saturated", result["server_cpu_ms_per_tweet"], ""),
        ("bench client CPU ms per tweet, same cores", result["client_cpu_ms_per_tweet"], ""),
        (
            f"optimize stall after {result['tweets_before_pause']} tweets (s)",
            result["optimize_stall_after_burst_s"],
            "",
        ),
        (f"push p50 ms @ {result['paced_rate_tweets_per_s']}/s", result["push_p50_ms"], ""),
        (f"push p99 ms @ {result['paced_rate_tweets_per_s']}/s", result["push_p99_ms"], f"≤ {TARGETS['push_p99_ms']}"),
        ("RSS idle MB", result["rss_idle_mb"], f"≤ {TARGETS['rss_idle_mb']}"),
        ("RSS peak under load MB", result["rss_load_peak_mb"], ""),
        ("CPU idle %", result["cpu_idle_percent"], f"< {TARGETS['cpu_idle_percent']}"),
        ("CPU idle, 200 connections %", result["cpu_idle_200_connections_percent"], ""),
    ]
    for name, value, target in rows:
        table.add_row(name, str(value), target)
    Console().print(table)


if __name__ == "__main__":
    main()
