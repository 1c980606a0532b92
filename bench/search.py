"""Embedded vector search (Qdrant Edge) at 100k x 384: latency, recall, upserts/s, optimize stall.

Baselines measured in the same run: exact numpy brute force (recall and latency), and the direct
shard call (cost of the store's thread-pool hop). Prints a table; writes bench/results/search.json.

``payload_selection``: CPU of a recommendations-shaped ``search_many`` (32 users, 20 hits, catalog-sized
payloads) returning only some keys (``payload_keys``) against the whole payload, interleaved in one run.

    .venv/bin/python bench/search.py [--n 100000] [--queries 200] [--payload-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as edge
from rich.console import Console
from rich.table import Table

from shoal.filters import Filter
from shoal.vectors.base import Point, SearchRequest
from shoal.vectors.edge import DENSE, EdgeVectorStore

DIM = 384
USERS = 1000
T0 = datetime(2025, 1, 1, tzinfo=UTC)
RESULTS = Path(__file__).parent / "results" / "search.json"


def clustered(n: int, seed: int) -> np.ndarray:
    """Normalised vectors around 256 random centres (like topic-clustered embeddings)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(42).standard_normal((256, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 256, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1000


async def main(n: int, n_queries: int) -> dict[str, Any]:
    data, queries = clustered(n, 1), clustered(n_queries, 2)
    users = np.arange(n) % USERS
    minutes = np.arange(n)  # ts = T0 + i minutes
    cases: dict[str, tuple[Filter | None, np.ndarray]] = {
        "unfiltered": (None, np.ones(n, bool)),
        "user match (0.1%)": (
            Filter.model_validate({"must": [{"key": "user", "match": {"value": "u7"}}]}),
            users == 7,
        ),
        "time range (10%)": (
            Filter.model_validate(
                {"must": [{"key": "ts", "range": {"gte": (T0 + timedelta(minutes=int(n * 0.9))).isoformat()}}]}
            ),
            minutes >= int(n * 0.9),
        ),
    }
    out: dict[str, Any] = {"n": n, "dim": DIM, "queries": n_queries}
    with tempfile.TemporaryDirectory() as tmp:
        async with EdgeVectorStore(Path(tmp)) as store:
            await store.create_collection("bench", DIM, indexes={"user": "keyword"})
            started = time.perf_counter()
            for lo in range(0, n, 1000):
                batch = [
                    Point(
                        id=f"r{i}",
                        vector=data[i],
                        payload={"user": f"u{users[i]}", "ts": T0 + timedelta(minutes=int(minutes[i]))},
                    )
                    for i in range(lo, min(n, lo + 1000))
                ]
                await store.upsert("bench", batch)
            out["upserts_per_s"] = n / (time.perf_counter() - started)

            # Optimize in the background while a ticker measures how long the event loop stalls.
            gaps: list[float] = []
            started = time.perf_counter()
            optimizing = asyncio.create_task(store.optimize("bench"))
            last = time.perf_counter()
            while not optimizing.done():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last - 0.01)
                last = now
            await optimizing
            out["optimize_s"] = time.perf_counter() - started
            out["optimize_max_loop_stall_s"] = max(gaps, default=0.0)
            shard = store._collections["bench"].shard  # direct-call baseline only

            rows = []
            for label, (flt, allowed) in cases.items():
                idx = np.flatnonzero(allowed)
                lat, direct, exact_lat, recall = [], [], [], []
                truths = []
                # Separate passes: numpy's BLAS threads spin after a matmul and would steal the
                # cores from an interleaved engine query.
                for q in queries:
                    t = time.perf_counter()
                    scores = data[idx] @ q
                    k = min(10, len(idx))
                    top = np.argpartition(-scores, k - 1)[:k] if k < len(idx) else np.arange(len(idx))
                    truths.append(set(idx[top].tolist()))
                    exact_lat.append(time.perf_counter() - t)
                await asyncio.sleep(0.2)
                for q, truth in zip(queries, truths, strict=True):
                    t = time.perf_counter()
                    hits = await store.search("bench", q, limit=10, filter=flt)
                    lat.append(time.perf_counter() - t)
                    recall.append(len(truth & {int(h.id[1:]) for h in hits}) / len(truth))
                edge_filter = None if flt is None else _edge_filter(flt)
                for q in queries:
                    request = edge.QueryRequest(
                        limit=10,
                        query=edge.Query.Nearest(q.tolist(), using=DENSE),
                        filter=edge_filter,
                        with_payload=True,
                    )
                    t = time.perf_counter()
                    shard.query(request)
                    direct.append(time.perf_counter() - t)
                rows.append(
                    {
                        "case": label,
                        "p50_ms": pct(lat, 50),
                        "p99_ms": pct(lat, 99),
                        "direct_p50_ms": pct(direct, 50),
                        "numpy_exact_p50_ms": pct(exact_lat, 50),
                        "recall_at_10": float(np.mean(recall)),
                    }
                )
            out["search"] = rows
    return out


async def payload_selection(n: int = 20_000, rounds: int = 40) -> dict[str, Any]:
    """CPU ms a search of ``search_many`` (32 requests, limit 20): the whole payload vs selected keys."""
    data, queries = clustered(n, 3), clustered(32, 4)
    words = ["wireless", "bluetooth", "speaker", "deep", "bass", "battery", "waterproof", "home", "travel", "black"]
    rng = np.random.default_rng(5)

    def item(i: int) -> dict[str, Any]:  # the shape the catalog import stores (electronics catalog)
        text = " ".join(rng.choice(words, 60))
        return {
            "title": f"Item {i} " + " ".join(rng.choice(words, 8)),
            "_text": text,
            "category": "Audio",
            "price": float(i % 500),
            "rating": 4.1,
            "rating_count": i,
            "brand": "Acme",
            "image": f"https://example.com/{i}.jpg",
            "url": f"https://example.com/item/{i}",
        }

    with tempfile.TemporaryDirectory() as tmp:
        async with EdgeVectorStore(Path(tmp)) as store:
            await store.create_collection("items", DIM)
            for lo in range(0, n, 1000):
                await store.upsert("items", [Point(f"i{i}", data[i], item(i)) for i in range(lo, min(n, lo + 1000))])
            await store.optimize("items")
            variants: dict[str, tuple[str, ...] | None] = {
                "whole payload": None,
                "title and text": ("title", "_text"),
                "title only": ("title",),
            }
            cpu = {name: 0.0 for name in variants}
            for _ in range(rounds):
                for name, keys in variants.items():
                    requests = [SearchRequest(q, limit=20, ef=128, payload_keys=keys) for q in queries]
                    started = time.process_time()
                    await store.search_many("items", requests)
                    cpu[name] += time.process_time() - started
    per_search = {name: 1000 * total / (rounds * len(queries)) for name, total in cpu.items()}
    return {
        "points": n,
        "cpu_ms_per_search": per_search,
        # what the recommendations service asks for (TITLE_KEYS), and the floor of dropping the text too
        "ratio": per_search["title and text"] / per_search["whole payload"],
        "ratio_title_only": per_search["title only"] / per_search["whole payload"],
    }


def _edge_filter(flt: Filter) -> Any:
    from shoal.vectors.edge_filters import to_edge

    return to_edge(flt)


def report(out: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"Qdrant Edge search, {out['n']:,} x {out['dim']} (after optimize)")
    columns = ("case", "p50 ms", "p99 ms", "direct shard p50", "numpy exact p50 (prefiltered)", "speed-up", "recall@10")
    for col in columns:
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in out["search"]:
        table.add_row(
            r["case"],
            f"{r['p50_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['direct_p50_ms']:.3f}",
            f"{r['numpy_exact_p50_ms']:.3f}",
            f"{r['numpy_exact_p50_ms'] / r['p50_ms']:.1f}x",
            f"{r['recall_at_10']:.3f}",
        )
    console.print(table)
    if "upserts_per_s" in out:
        console.print(
            f"upserts/s {out['upserts_per_s']:,.0f} · optimize {out['optimize_s']:.1f} s · "
            f"longest event-loop stall during optimize {out['optimize_max_loop_stall_s']:.2f} s"
        )
    if "payload_selection" in out:
        p = out["payload_selection"]
        cpu = p["cpu_ms_per_search"]
        console.print(
            f"search_many of 32 x 20 hits, CPU ms a search: whole payload {cpu['whole payload']:.3f} · "
            f"title and text {cpu['title and text']:.3f} ({p['ratio']:.2f}x) · "
            f"title only {cpu['title only']:.3f} ({p['ratio_title_only']:.2f}x)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--payload-only", action="store_true", help="only payload_selection; keep the rest")
    args = parser.parse_args()
    result = json.loads(RESULTS.read_text()) if args.payload_only else asyncio.run(main(args.n, args.queries))
    result["payload_selection"] = asyncio.run(payload_selection())
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
