"""Fixtures: a local server speaking the OpenAI embeddings API that fails, hangs or answers on
command, and an in-process Shoal app with the embedops feature."""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shoal.app import CoreFeature
from shoal.embedops.feature import EmbedOpsFeature
from shoal.embedops.settings import EmbedOpsSettings
from tests.app_fixtures import make_settings, running_app
from tests.servers import running_server

DIM = 8


def fake_vector(text: str, dim: int = DIM) -> list[float]:
    """Deterministic per text (and per dimension, so two fake models never agree)."""
    digest = hashlib.sha256(f"{dim}:{text}".encode()).digest()
    return [float(b) - 127.5 for b in digest[:dim]]


def fake_unit(text: str, dim: int = DIM) -> np.ndarray:
    v = np.asarray(fake_vector(text, dim), dtype=np.float32)
    return v / np.linalg.norm(v)


Step = str | tuple[int, dict[str, str]]
"""``"ok"``, ``"hang"`` (until ``release`` is set) or ``(status, headers)``."""


@dataclass
class ScriptedOpenAI:
    """``POST /v1/embeddings`` on a free port. ``script`` answers requests in order (then "ok");
    ``down`` answers every request with that status while set."""

    url: str = ""
    script: list[Step] = field(default_factory=list)
    down: int | None = None
    requests: int = 0
    sizes: list[int] = field(default_factory=list)
    embedded: collections.Counter[str] = field(default_factory=collections.Counter)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.requests += 1
        self.sizes.append(len(inputs))
        step: Step = self.script.pop(0) if self.script else "ok"
        if self.down is not None:
            step = (self.down, {})
        if step == "hang":
            self.hanging.set()
            await self.release.wait()
        elif isinstance(step, tuple):
            status, headers = step
            error = {"error": {"message": f"scripted {status}", "type": "test", "code": None}}
            return JSONResponse(error, status_code=status, headers=headers)
        dim = int(body.get("dimensions") or DIM)
        self.embedded.update(inputs)
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, dim)} for i, t in enumerate(inputs)]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        return JSONResponse({"object": "list", "data": data, "model": body["model"], "usage": usage})


@pytest.fixture
async def openai_server() -> AsyncIterator[ScriptedOpenAI]:
    fake = ScriptedOpenAI()
    app = Starlette(routes=[Route("/v1/embeddings", fake.handle, methods=["POST"])])
    async with running_server(app, lifespan="off") as base_url:
        fake.url = f"{base_url}/v1"
        try:
            yield fake
        finally:
            fake.release.set()


def ops_settings(**overrides: Any) -> EmbedOpsSettings:
    base: dict[str, Any] = {"schedule_enabled": False, "heartbeat_s": 0.5}
    base.update(overrides)
    return EmbedOpsSettings(_env_file=None, **base)


@asynccontextmanager
async def ops_app(
    data_dir: Path,
    fake: ScriptedOpenAI | None = None,
    *,
    remote_main: bool = False,
    ops: EmbedOpsSettings | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app with the embedops feature. ``remote_main``: the server's own model is the fake one."""
    options: dict[str, Any] = dict(overrides)
    if fake is not None:
        options.update(embedder_base_url=fake.url, embedder_api_key="sk-test", embed_max_retries=0)
        if remote_main:
            options.update(embedder="openai:fake", embedder_dim=DIM)
    settings = make_settings(data_dir, **options)
    async with running_app(settings, [CoreFeature(), EmbedOpsFeature(ops or ops_settings())]) as pair:
        yield pair
