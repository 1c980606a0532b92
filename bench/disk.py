"""The data disk's own fsync latency: the floor under a durable 202 (bench/ingest.py, bench/insights.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.stats import pct


def fsync_latency(directory: Path, seconds: float, rate: float = 100.0) -> dict[str, float]:
    """The data disk's own fsync latency: 512-byte append + fsync, ``rate`` a second for ``seconds``.

    A 202 with ``SHOAL_LOG_FSYNC=always`` waits for one fsync (shared by every request in its group
    commit), so this distribution's tail is the floor of the 202's tail on this disk.
    """
    path = directory / "fsync-probe"
    times: list[float] = []
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND)
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            os.write(fd, b"x" * 512)
            started = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(1 / rate)  # pacing the probe, not synchronising with anything
    finally:
        os.close(fd)
        path.unlink()
    return {
        "disk_fsync_p50_ms": pct(times, 50),
        "disk_fsync_p99_ms": pct(times, 99),
        "disk_fsync_max_ms": max(times),
    }
