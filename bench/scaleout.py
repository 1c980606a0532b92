"""Scale-out: ingest and search throughput of 2 API + 2 worker processes on shared engines, against a
single process measured in the same run.

    .venv/bin/python -m bench.scaleout [--records 3000] [--queries 600]

Three set-ups, each real ``shoal serve`` children with the same settings:
- ``single/embedded``: one process, the embedded default (SQLite log and records, Qdrant Edge);
- ``single/shared``: one process (role ``all``) on PostgreSQL, Redis, Kafka (Tansu) and pgvector;
- ``2 api + 2 workers``: the same engines, API and worker roles apart.

Figures: ingest (first POST → every record embedded; batches of 100, 8 in flight, spread over the
API processes), accept rate (until the last 202), search queries/s and p50/p99 (16 concurrent
clients over the API processes; every query a distinct text, so each one is embedded). Ratios are
against ``single/shared`` (same engines, one process) and ``single/embedded``.
Writes bench/results/scaleout.json. On a 2-core machine every process shares the same two cores:
the ratios show the cost of the split here, not the gain on separate machines.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster import Backends, Cluster, shared_backends  # noqa: E402

from bench.ingest import load_texts, pct, wait_embedded  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scaleout.json"
BASELINE = "single/shared"


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


async def measure(urls: list[str], texts: list[str], queries: list[str], name: str) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=64)
    clients = [httpx.AsyncClient(base_url=u, timeout=120, limits=limits) for u in urls]
    first = clients[0]
    try:
        collection = "scale-" + slug(name)
        r = await first.post("/v1/collections", json={"name": collection})
        r.raise_for_status()
        # Warm every process (model loaded, connections open) before the clock starts.
        for i, c in enumerate(clients):
            r = await c.post(f"/v1/collections/{collection}/search", json={"text": f"warm up {i}", "limit": 1})
            r.raise_for_status()

        gate = asyncio.Semaphore(8)
        round_robin = itertools.cycle(clients)

        async def post(offset: int, client: httpx.AsyncClient) -> None:
            chunk = texts[offset : offset + 100]
            body = {"records": [{"id": f"r{offset + i}", "text": t} for i, t in enumerate(chunk)]}
            async with gate:
                (await client.post(f"/v1/collections/{collection}/records", json=body)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post(i, next(round_robin)) for i in range(0, len(texts), 100)))
        accepted = time.perf_counter()
        done = await wait_embedded(first, collection, len(texts))
        ingest = {
            "ingest_records_per_s": len(texts) / (done - started),
            "accept_records_per_s": len(texts) / (accepted - started),
        }

        latencies: list[float] = []
        pending = iter(enumerate(queries))

        async def searcher(client: httpx.AsyncClient) -> None:
            for _, query in pending:
                t0 = time.perf_counter()
                r = await client.post(f"/v1/collections/{collection}/search", json={"text": query, "limit": 10})
                r.raise_for_status()
                latencies.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(searcher(clients[i % len(clients)]) for i in range(16)))
        elapsed = time.perf_counter() - started
        return ingest | {
            "search_queries_per_s": len(queries) / elapsed,
            "search_p50_ms": pct(latencies, 50),
            "search_p99_ms": pct(latencies, 99),
        }
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def run(
    tmp: Path, backends: Backends | None, name: str, texts: list[str], queries: list[str], **shape: Any
) -> dict[str, Any]:
    Console(stderr=True).print(f"[bold]{name}[/bold]: starting processes")
    with Cluster(tmp / slug(name), backends, **shape) as cluster:
        result = asyncio.run(measure([p.url for p in cluster.apis], texts, queries, name))
    # Other work on the machine skews every figure: keep the load next to them.
    return result | {"processes": len(cluster.processes), "load_average_1m": os.getloadavg()[0]}


def main(records: int, n_queries: int) -> dict[str, Any]:
    pool = load_texts(records + n_queries)
    texts, queries = pool[:records], pool[records:]
    out: dict[str, Any] = {"records": records, "queries": n_queries, "cpus": os.cpu_count(), "setups": {}}
    setups = out["setups"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        setups["single/embedded"] = run(tmp, None, "single/embedded", texts, queries, apis=1, workers=0, api_role="all")
        with shared_backends(tmp / "engines") as backends:
            setups[BASELINE] = run(tmp, backends, BASELINE, texts, queries, apis=1, workers=0, api_role="all")
            setups["2 api + 2 workers"] = run(tmp, backends, "2 api + 2 workers", texts, queries, apis=2, workers=2)
    for figures in setups.values():
        for key in ("ingest_records_per_s", "accept_records_per_s", "search_queries_per_s"):
            figures[f"{key}_vs_shared_single"] = figures[key] / setups[BASELINE][key]
            figures[f"{key}_vs_embedded_single"] = figures[key] / setups["single/embedded"][key]
    out["load_average_1m"] = os.getloadavg()[0]
    return out


def report(out: dict[str, Any]) -> None:
    table = Table(title=f"scale-out ({out['records']} records, {out['queries']} queries, {out['cpus']} CPUs, same run)")
    for column in (
        "set-up",
        "processes",
        "ingest rec/s",
        "× 1 proc",
        "accept rec/s",
        "search q/s",
        "× 1 proc",
        "search p50 ms",
        "p99 ms",
    ):
        table.add_column(column, justify="left" if column == "set-up" else "right")
    for name, f in out["setups"].items():
        table.add_row(
            name,
            str(f["processes"]),
            f"{f['ingest_records_per_s']:,.0f}",
            f"{f['ingest_records_per_s_vs_shared_single']:.2f}",
            f"{f['accept_records_per_s']:,.0f}",
            f"{f['search_queries_per_s']:,.0f}",
            f"{f['search_queries_per_s_vs_shared_single']:.2f}",
            f"{f['search_p50_ms']:.1f}",
            f"{f['search_p99_ms']:.1f}",
        )
    Console().print(table)
    Console().print(f"ratios (×) are against {BASELINE}: one process on the same engines")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=600)
    args = parser.parse_args()
    result = main(args.records, args.queries)
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
