"""Backfill benchmark: records/s of ``Backfill`` against the engine's raw throughput, same texts,
same run; then the same backfill with ``force`` on a warm cache.

    .venv/bin/python bench/backfill.py [--limit N]

Texts: the SciFact corpus (title + abstract) and the electronics catalog's product names (~15k).
The records are written to a fresh record store as pending (as after an import while the provider
was down); the backfill embeds them and writes both stores. Writes ``bench/results/backfill.json``.

Besides wall-clock ratios (noisy on a shared machine) it reports the CPU the backfill spends outside
the model per record — the event loop, the stores' and the cache's threads — from the per-thread
times in ``/proc`` (Linux): the part of the pipeline that load on the machine does not blur.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import sys
import tempfile
import threading
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "backfill.json"
TARGETS = {"backfill_vs_engine": 0.90, "warm_force_speedup": 20.0}


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far by kind of thread: ``model`` (the ONNX thread and onnxruntime's own workers,
    which Python does not know) or ``outside`` (every other Python thread: loop, stores, caches)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    found = {"model": 0.0, "outside": 0.0}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        name = names.get(int(tid))
        kind = "model" if name is None or name.startswith("shoal-onnx") else "outside"
        found[kind] += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return found


def load_texts(limit: int | None) -> list[str]:
    texts: list[str] = []
    with (DATA / "scifact" / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            texts.append(f"{doc.get('title', '')}. {doc.get('text', '')}".strip())
    with (DATA / "amazon_in_electronics_catalog" / "All Electronics.csv").open(encoding="utf-8") as f:
        texts.extend(row["name"] for row in csv.DictReader(f) if row.get("name"))
    return texts[:limit] if limit else texts


async def backfill_runs(texts: list[str], data_dir: Path, chunk: int) -> dict[str, Any]:
    """Chunk by chunk, the raw engine then the backfill on the same texts (interleaved, so a change
    in machine load affects both sides alike); then one forced backfill of everything, cache warm."""
    from embed import engine_ceiling  # type: ignore[import-not-found]

    from shoal.app import open_services
    from shoal.embedops.backfill import Backfill, BackfillOptions
    from shoal.records import Record, Status
    from shoal.settings import Settings

    # the raw engine (bench/embed.py) runs at the server's default niceness, as the backfill does here
    settings = Settings(_env_file=None, data_dir=data_dir, log_json=False)
    raw_s = cold_s = 0.0
    cpu = {"model": 0.0, "outside": 0.0}
    async with AsyncExitStack() as stack:
        services = await open_services(settings, stack)
        await services.engine.warmup()
        await services.collections.create("bench")
        now = datetime.now(UTC)
        records = [Record("bench", f"t{i:06d}", text, {}, now, Status.PENDING) for i, text in enumerate(texts)]
        for start in range(0, len(records), 1000):
            await services.records.upsert(records[start : start + 1000])
        cold_runs = []
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            raw_s += len(part) / await engine_ceiling(part)
            before = thread_cpu()
            run = await Backfill(services, "bench", BackfillOptions(batch=100, limit=len(part))).run()
            for kind, seconds in thread_cpu().items():
                cpu[kind] += seconds - before[kind]
            assert run.succeeded == len(part), run
            cold_s += run.duration_s
            cold_runs.append(run.to_dict())
        warm = await Backfill(services, "bench", BackfillOptions(batch=100, force=True)).run()
        stats = await services.records.stats("bench")
        vectors = await services.vectors.count((await services.collections.get("bench")).vector_name)
    assert warm.succeeded == len(texts), warm
    assert stats.models.get(services.engine.model_id) == len(texts) and vectors == len(texts)
    return {"raw_s": raw_s, "cold_s": cold_s, "cold_cpu_s": cpu, "cold_chunks": cold_runs, "warm": warm.to_dict()}


async def main(limit: int | None, chunk: int) -> None:
    texts = load_texts(limit)
    random.Random(0).shuffle(texts)  # chunks of alike length mix
    with tempfile.TemporaryDirectory() as tmp:
        runs = await backfill_runs(texts, Path(tmp), chunk)
    engine_rate = len(texts) / runs["raw_s"]
    cold = {"duration_s": runs["cold_s"]}
    warm = runs["warm"]
    raw_s = runs["raw_s"]
    result = {
        "texts": len(texts),
        "engine_texts_per_s": round(engine_rate, 1),
        "engine_seconds": round(raw_s, 2),
        "load_average_1m_at_end": os.getloadavg()[0],
        "backfill_records_per_s": round(len(texts) / cold["duration_s"], 1),
        "backfill_seconds": cold["duration_s"],
        "backfill_vs_engine": round(len(texts) / cold["duration_s"] / engine_rate, 3),
        "backfill_model_cpu_ms_per_record": round(1000 * runs["cold_cpu_s"]["model"] / len(texts), 3),
        "backfill_outside_cpu_ms_per_record": round(1000 * runs["cold_cpu_s"]["outside"] / len(texts), 3),
        "warm_force_records_per_s": round(len(texts) / warm["duration_s"], 1),
        "warm_force_seconds": warm["duration_s"],
        "warm_force_speedup": round(cold["duration_s"] / warm["duration_s"], 1),
        "targets": TARGETS,
        "runs": runs,
    }
    table = Table(title=f"backfill of {len(texts)} texts (SciFact + electronics catalog)")
    for name in ("measure", "value", "target"):
        table.add_column(name, justify="right")
    table.add_row("engine raw texts/s", f"{result['engine_texts_per_s']:,}", "baseline")
    table.add_row("backfill records/s", f"{result['backfill_records_per_s']:,}", "")
    table.add_row("backfill / engine", f"{result['backfill_vs_engine']:.1%}", f">= {TARGETS['backfill_vs_engine']:.0%}")
    model, outside = result["backfill_model_cpu_ms_per_record"], result["backfill_outside_cpu_ms_per_record"]
    table.add_row("backfill CPU/record: model", f"{model} ms", "")
    table.add_row("backfill CPU/record: outside the model", f"{outside} ms ({outside / model:.1%})", "")
    table.add_row("forced, warm cache records/s", f"{result['warm_force_records_per_s']:,}", "")
    table.add_row(
        "warm forced speed-up", f"{result['warm_force_speedup']}x", f">= {TARGETS['warm_force_speedup']:.0f}x"
    )
    Console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N texts")
    parser.add_argument("--chunk", type=int, default=2000, help="texts per interleaved raw/backfill round")
    args = parser.parse_args()
    asyncio.run(main(args.limit, args.chunk))
