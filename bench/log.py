"""Log throughput: group commit from concurrent appenders vs one append at a time, and poll→commit.

Every append is durable (``synchronous=FULL``, one fsync per transaction), except in the rows marked
``fsync=interval`` (the server's default: the commit reaches the OS, the WAL is fsynced within a
second, and the transaction runs on the event loop's thread). The baseline, measured in the same run
on the same disk, is one coroutine appending one message at a time, which pays one transaction per
message. Writes ``bench/results/log.json``.

Usage: python bench/log.py [--messages 20000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from shoal.log.sqlite import Fsync, SqliteLog

RESULTS = Path(__file__).parent / "results" / "log.json"
VALUE = b"x" * 200  # about a short text record


async def one_at_a_time(path: Path, messages: int, fsync: Fsync = "always") -> float:
    async with SqliteLog(path, fsync=fsync) as log:
        start = time.perf_counter()
        for i in range(messages):
            await log.append("bench", [(f"k{i}", VALUE)])
        return messages / (time.perf_counter() - start)


async def concurrent(path: Path, messages: int, appenders: int, fsync: Fsync = "always") -> float:
    async with SqliteLog(path, queue_size=max(50_000, appenders), fsync=fsync) as log:

        async def appender(first: int) -> None:
            for i in range(first, messages, appenders):
                await log.append("bench", [(f"k{i}", VALUE)])

        start = time.perf_counter()
        await asyncio.gather(*(appender(a) for a in range(appenders)))
        return messages / (time.perf_counter() - start)


async def batched(path: Path, messages: int, batch: int) -> float:
    async with SqliteLog(path) as log:
        start = time.perf_counter()
        for first in range(0, messages, batch):
            await log.append("bench", [(f"k{i}", VALUE) for i in range(first, min(first + batch, messages))])
        return messages / (time.perf_counter() - start)


async def poll_commit(path: Path, messages: int, batch: int) -> float:
    async with SqliteLog(path) as log:
        for first in range(0, messages, 1000):
            await log.append("bench", [(f"k{i}", VALUE) for i in range(first, min(first + 1000, messages))])
        async with log.consumer("bench", "bench") as consumer:
            start = time.perf_counter()
            seen = 0
            while seen < messages:
                got = await consumer.poll(batch)
                await consumer.commit(got)
                seen += len(got)
            return messages / (time.perf_counter() - start)


async def run(messages: int, directory: Path) -> list[tuple[str, float]]:
    """Each case on its own fresh file; the first row is the baseline."""
    baseline_messages = max(200, messages // 20)  # the slow path: fewer messages, same rate
    rows = [("append one at a time (1 appender)", await one_at_a_time(directory / "a.db", baseline_messages))]
    for appenders in (16, 64, 256):
        rate = await concurrent(directory / f"c{appenders}.db", messages, appenders)
        rows.append((f"append with group commit ({appenders} appenders)", rate))
    rows.append(("append batches of 100 (1 appender)", await batched(directory / "b.db", messages, 100)))
    rows.append(
        ("append one at a time, fsync=interval", await one_at_a_time(directory / "ai.db", messages, "interval"))
    )
    for appenders in (16, 256):
        rate = await concurrent(directory / f"ci{appenders}.db", messages, appenders, "interval")
        rows.append((f"group commit ({appenders} appenders), fsync=interval", rate))
    for batch in (100, 1000):
        rate = await poll_commit(directory / f"p{batch}.db", messages, batch)
        rows.append((f"poll {batch} -> commit (1 consumer)", rate))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the files (a real disk)")
    args = parser.parse_args()
    # Next to the repository by default: /tmp may be a tmpfs, where fsync costs nothing.
    with tempfile.TemporaryDirectory(dir=args.dir or Path(__file__).parent, prefix="log-bench-") as directory:
        rows = asyncio.run(run(args.messages, Path(directory)))

    baseline = rows[0][1]
    sync = "synchronous=FULL unless fsync=interval"
    table = Table(title=f"SQLite log (WAL, {sync}), {args.messages} messages of {len(VALUE)} bytes")
    table.add_column("case")
    table.add_column("messages/s", justify="right")
    table.add_column("vs baseline", justify="right")
    for case, rate in rows:
        table.add_row(case, f"{rate:,.0f}", f"{rate / baseline:.1f}x")
    Console().print(table)
    report = {
        "benchmark": "log",
        "backend": "sqlite (WAL, synchronous=FULL unless the case says fsync=interval)",
        "messages": args.messages,
        "value_bytes": len(VALUE),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews absolute figures
        "baseline": rows[0][0],
        "results": [
            {"case": case, "messages_per_s": round(rate), "vs_baseline": round(rate / baseline, 1)}
            for case, rate in rows
        ],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
