"""Fixtures for the embedding tests: the real local model, and a local server speaking the OpenAI
embeddings API (the seam for the remote provider)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shoal.embedding.onnx import OnnxProvider
from tests.waiting import eventually

FAKE_DIM = 8


@pytest.fixture(scope="session")
def provider() -> Iterator[OnnxProvider]:
    """One loaded model for the session (loading takes ~0.6 s). It holds nothing tied to an event
    loop, so each test's loop can use it."""
    p = OnnxProvider("int8", threads=2)
    asyncio.run(p.open())
    yield p
    asyncio.run(p.close())


def fake_vector(text: str) -> list[float]:
    """A deterministic, deliberately unnormalised vector per text."""
    digest = hashlib.sha256(text.encode()).digest()
    return [float(b) + 1.0 for b in digest[:FAKE_DIM]]


def fake_unit_vector(text: str) -> np.ndarray:
    v = np.asarray(fake_vector(text), dtype=np.float32)
    return v / np.linalg.norm(v)


@dataclass
class FakeOpenAI:
    """An OpenAI-compatible ``POST /v1/embeddings`` on a free loopback port.

    ``failures`` are answered, in order, before any success: ``(status, headers)``, or ``None`` to
    hang until ``release`` is set (a request the client must time out on).
    """

    url: str = ""
    requests: list[list[str]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    failures: list[tuple[int, dict[str, str]] | None] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.requests.append(inputs)
        self.arrivals.append(asyncio.get_running_loop().time())
        self.auth.append(request.headers.get("authorization"))
        if self.failures:
            failure = self.failures.pop(0)
            if failure is None:
                await self.release.wait()
                return JSONResponse({"error": {"message": "too late"}}, status_code=504)
            status, headers = failure
            error = {"error": {"message": f"scripted {status}", "type": "test", "code": None}}
            return JSONResponse(error, status_code=status, headers=headers)
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(text)} for i, text in enumerate(inputs)]
        # Out of order on purpose: the client must sort by ``index``.
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        return JSONResponse({"object": "list", "data": data[::-1], "model": body["model"], "usage": usage})


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    app = Starlette(routes=[Route("/v1/embeddings", fake.handle, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off", ws="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:

        async def up() -> bool:  # uvicorn exposes no start event, only a flag
            return server.started or task.done()

        await eventually(up, timeout=10)
        if task.done():
            task.result()  # it failed to start: raise why
        port = server.servers[0].sockets[0].getsockname()[1]
        fake.url = f"http://127.0.0.1:{port}/v1"
        yield fake
    finally:
        fake.release.set()
        server.should_exit = True
        await task
