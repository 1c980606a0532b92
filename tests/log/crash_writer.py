"""Appends to a SQLite log forever from many coroutines, printing each acknowledged message.

Run by ``test_sqlite.py``, which kills it with SIGKILL mid-stream: every line printed here was
acknowledged (``append`` returned), so it must be in the log after the kill.

Usage: python crash_writer.py <db path> <topic> <appenders> [always|interval]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from shoal.errors import Overloaded
from shoal.log.sqlite import Fsync, SqliteLog


async def appender(log: SqliteLog, topic: str, writer: int) -> None:
    seq = 0
    while True:
        key, value = f"k{writer % 11}", f"{writer}-{seq}"
        try:
            (message,) = await log.append(topic, [(key, value.encode())])
        except Overloaded:
            await asyncio.sleep(0.001)  # back-off before retrying, as a client would after a 429
            continue
        sys.stdout.write(f"{message.partition} {message.offset} {key} {value}\n")
        sys.stdout.flush()
        seq += 1


async def main(path: Path, topic: str, appenders: int, fsync: Fsync) -> None:
    async with SqliteLog(path, fsync=fsync) as log:
        await asyncio.gather(*(appender(log, topic, i) for i in range(appenders)))


if __name__ == "__main__":
    fsync: Fsync = "interval" if sys.argv[4:] == ["interval"] else "always"
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), fsync))
