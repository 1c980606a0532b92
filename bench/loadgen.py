"""An open-loop HTTP/1.1 load generator that costs the machine little.

The benchmarks run the client on the same two cores as the server, so a heavyweight client (httpx
spends ~0.5-1 ms of CPU per request) steals the CPU it is measuring. ``RawClient`` writes pre-encoded
requests on keep-alive connections and reads back only the status line, the headers and a
``Content-Length`` body: tens of microseconds a request. ``paced`` fires requests on a fixed schedule
(open loop: a slow answer does not delay the next request), so queueing shows up in the latencies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any
from urllib.parse import urlsplit


class RawClient:
    """Keep-alive HTTP/1.1 connections to one server; ``request`` borrows one for a round trip.

    Only what Shoal's JSON endpoints answer is understood (``Content-Length`` bodies, no chunking).
    """

    def __init__(self, url: str, connections: int = 32) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.size = connections
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self._opened = 0

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()

    async def _borrow(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._idle.empty() and self._opened < self.size:
            self._opened += 1
            return await asyncio.open_connection(self.host, self.port)
        return await self._idle.get()

    def encode(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> bytes:
        """The bytes of one request (encode once, send many times)."""
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(payload)}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send pre-encoded ``raw``; return the status and the body."""
        reader, writer = await self._borrow()
        try:
            writer.write(raw)
            status_line = await reader.readline()
            status = int(status_line.split(b" ", 2)[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"transfer-encoding":
                    raise RuntimeError("chunked responses are not supported by the load generator")
            body = await reader.readexactly(length) if length else b""
        except BaseException:
            writer.close()
            self._opened -= 1
            raise
        self._idle.put_nowait((reader, writer))
        return status, body


async def paced(rate: float, seconds: float, send: Callable[[int], Awaitable[None]]) -> list[float]:
    """Call ``send(i)`` at ``rate``/s for ``seconds`` on a fixed schedule; each call's latency in ms.

    Latency runs from the scheduled start, so a client that falls behind is charged for it rather
    than hiding it (no coordinated omission).
    """
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()

    async def one(i: int, scheduled: float) -> None:
        await send(i)
        latencies.append((time.perf_counter() - scheduled) * 1000)

    for i in range(int(rate * seconds)):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    return latencies


async def paced_requests(
    url: str,
    rate: float,
    seconds: float,
    build: Callable[[RawClient, int], bytes],
    expect: Collection[int],
    connections: int = 64,
) -> list[float]:
    """``paced`` requests to ``url``: ``build(client, i)`` makes the i-th one (all are encoded before
    the clock starts); an answer whose status is not in ``expect`` fails the run."""
    async with RawClient(url, connections) as client:
        requests = [build(client, i) for i in range(int(rate * seconds))]

        async def send(i: int) -> None:
            status, body = await client.request(requests[i])
            assert status in expect, body

        return await paced(rate, seconds, send)
