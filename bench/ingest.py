"""End-to-end ingest over HTTP against a real `shoal serve` process, with the engine's raw throughput
measured in the same run as the baseline.

    .venv/bin/python -m bench.ingest [--records 4000] [--seconds 8]

Figures (issue 2):
- e2e throughput (first POST → all searchable) as a ratio of the engine ceiling (target ≥ 0.8);
- request → searchable (`?wait=true`, single records) p50/p99 at 200 records/s (target p99 ≤ 250 ms);
- 202 latency p50/p99 at 500 requests/s (target p99 ≤ 20 ms) with the default background fsync, next to
  the same phase on a server that fsyncs every commit before its 202 (``SHOAL_LOG_FSYNC=always``) and to
  the data disk's own fsync latency measured just before (such a 202 waits for one fsync);
- server RSS idle with the model loaded and under load; idle CPU.
Writes bench/results/ingest.json.
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
import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.processes import ServerProcess  # noqa: E402

from bench.disk import fsync_latency  # noqa: E402
from bench.embed import engine_ceiling  # noqa: E402
from bench.loadgen import RawClient, paced_requests  # noqa: E402
from bench.stats import pct  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "twcs" / "twcs_random_sample.csv"
RESULTS = ROOT / "bench" / "results" / "ingest.json"


def load_texts(n: int) -> list[str]:
    import csv

    with DATA.open(encoding="utf-8") as fh:
        texts = list(dict.fromkeys(row["text"].strip() for row in csv.DictReader(fh) if row["text"].strip()))
    out: list[str] = []
    i = 0
    while len(out) < n:  # unique texts: every record really goes through the model
        out.append(texts[i % len(texts)] + ("" if i < len(texts) else f" #{i // len(texts)}"))
        i += 1
    return out


async def wait_embedded(client: httpx.AsyncClient, collection: str, n: int, timeout: float = 600) -> float:
    """When all ``n`` records are embedded. ``/stats`` counts over the whole collection, so polling it
    every 20 ms throughout would load the server being measured: poll every 250 ms until the rate
    so far says the end is near, then every 20 ms."""
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        stats = (await client.get(f"/v1/collections/{collection}/stats")).json()
        now = time.perf_counter()
        if stats["embedded"] >= n:
            return now
        rate = stats["embedded"] / (now - started)
        left = (n - stats["embedded"]) / rate if rate > 0 else float("inf")
        await asyncio.sleep(0.02 if left < 0.5 else 0.25)
    raise TimeoutError(f"{collection}: not all {n} records embedded")


async def main(records: int, seconds: float) -> dict[str, Any]:
    texts = load_texts(records + int(1200 * seconds) + 1000)
    ceiling = await engine_ceiling(texts[:2000])
    out: dict[str, Any] = {"engine_ceiling_texts_per_s": ceiling}
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp) / "data") as server:
        proc = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
        async with httpx.AsyncClient(
            base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=64)
        ) as client:
            await client.post("/v1/collections", json={"name": "warm"})
            await client.post(
                "/v1/collections/warm/records", params={"wait": "true"}, json={"records": [{"text": "warm up"}]}
            )
            proc.cpu_percent(None)
            await asyncio.sleep(5)
            out["idle_cpu_percent"] = proc.cpu_percent(None)
            out["rss_idle_mb"] = proc.memory_info().rss / 2**20

            # 1. throughput: batches of 100, 8 in flight
            await client.post("/v1/collections", json={"name": "bulk"})
            batch = texts[:records]
            started = time.perf_counter()
            gate = asyncio.Semaphore(8)
            peak_rss = 0.0

            async def post(chunk: list[str], offset: int) -> None:
                nonlocal peak_rss
                async with gate:
                    body = {"records": [{"id": f"b{offset + i}", "text": t} for i, t in enumerate(chunk)]}
                    r = await client.post("/v1/collections/bulk/records", json=body)
                    r.raise_for_status()
                    peak_rss = max(peak_rss, proc.memory_info().rss / 2**20)

            await asyncio.gather(*(post(batch[i : i + 100], i) for i in range(0, records, 100)))
            accepted_at = time.perf_counter()
            done = await wait_embedded(client, "bulk", records)
            e2e = records / (done - started)
            out |= {
                "e2e_records": records,
                "e2e_records_per_s": e2e,
                "e2e_ratio_to_engine": e2e / ceiling,
                "accept_records_per_s": records / (accepted_at - started),
                "rss_load_mb": max(peak_rss, proc.memory_info().rss / 2**20),
            }

            # 2. request → searchable at 200 records/s (single records, wait=true)
            await client.post("/v1/collections", json={"name": "latency"})
            base = records

            # Single-record requests at a fixed rate from a client that costs little CPU (bench/loadgen.py).
            def waiting(raw: RawClient, i: int) -> bytes:
                body = {"records": [{"id": f"l{i}", "text": texts[base + i]}]}
                return raw.encode("POST", "/v1/collections/latency/records?wait=true", body)

            lat = await paced_requests(server.url, 200, seconds, waiting, expect={200}, connections=256)
            out |= {"searchable_p50_ms_at_200rps": pct(lat, 50), "searchable_p99_ms_at_200rps": pct(lat, 99)}

            # 3. 202 latency at 500 requests/s, after the disk's own fsync latency (the floor of phase 4's 202)
            base2 = base + int(200 * seconds)
            out |= await asyncio.to_thread(fsync_latency, Path(tmp), seconds)
            lat = await accept_latency(client, server.url, texts[base2:], seconds)
            out |= {"accept_p50_ms_at_500rps": pct(lat, 50), "accept_p99_ms_at_500rps": pct(lat, 99)}
            out["rss_load_mb"] = max(out["rss_load_mb"], proc.memory_info().rss / 2**20)

    # 4. the same 202 phase on a fresh server that fsyncs every commit before its 202 (SHOAL_LOG_FSYNC=always)
    base3 = base2 + int(500 * seconds)
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp) / "data", SHOAL_LOG_FSYNC="always") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            lat = await accept_latency(client, server.url, texts[base3:], seconds)
            out |= {"always_accept_p50_ms_at_500rps": pct(lat, 50), "always_accept_p99_ms_at_500rps": pct(lat, 99)}
    out["load_average_1m"] = os.getloadavg()[0]
    return out


async def accept_latency(client: httpx.AsyncClient, url: str, texts: list[str], seconds: float) -> list[float]:
    """202 latencies of single-record POSTs at 500 requests/s into a new collection (after one warm-up)."""
    await client.post("/v1/collections", json={"name": "accept"})
    warm = {"records": [{"text": "warm up"}]}
    await client.post("/v1/collections/accept/records", params={"wait": "true"}, json=warm)

    def accepting(raw: RawClient, i: int) -> bytes:
        body = {"records": [{"id": f"a{i}", "text": texts[i]}]}
        return raw.encode("POST", "/v1/collections/accept/records", body)

    return await paced_requests(url, 500, seconds, accepting, expect={202}, connections=256)


def report(out: dict[str, Any]) -> None:
    table = Table(title="end-to-end ingest (real server process, same run)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    rows = [
        ("engine ceiling (texts/s)", out["engine_ceiling_texts_per_s"], ""),
        ("e2e 202→searchable throughput (rec/s)", out["e2e_records_per_s"], ""),
        ("e2e / engine ceiling", out["e2e_ratio_to_engine"], "≥ 0.80"),
        ("request→searchable p50 @200 rec/s (ms)", out["searchable_p50_ms_at_200rps"], ""),
        ("request→searchable p99 @200 rec/s (ms)", out["searchable_p99_ms_at_200rps"], "≤ 250"),
        ("202 p50 @500 req/s (ms)", out["accept_p50_ms_at_500rps"], ""),
        ("202 p99 @500 req/s (ms)", out["accept_p99_ms_at_500rps"], "≤ 20"),
        ("202 p50 @500 req/s, SHOAL_LOG_FSYNC=always (ms)", out["always_accept_p50_ms_at_500rps"], ""),
        ("202 p99 @500 req/s, SHOAL_LOG_FSYNC=always (ms)", out["always_accept_p99_ms_at_500rps"], ""),
        ("  the disk's own fsync p99, same run (ms)", out["disk_fsync_p99_ms"], ""),
        ("RSS idle, model loaded (MB)", out["rss_idle_mb"], ""),
        ("RSS under load (MB)", out["rss_load_mb"], ""),
        ("idle CPU (%)", out["idle_cpu_percent"], "~0"),
    ]
    for name, value, target in rows:
        table.add_row(name, f"{value:,.2f}", target)
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    result = asyncio.run(main(args.records, args.seconds))
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
