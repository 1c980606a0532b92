"""An in-process app with its lifespan, on a fresh data dir, driven through httpx (no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from shoal.app import create_app
from shoal.feature import Feature
from shoal.services import Services
from shoal.settings import Settings


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings isolated from the developer's environment and ``.env``."""
    base: dict[str, Any] = {"data_dir": data_dir, "log_json": False, "optimize_interval_s": 0.2}
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


@asynccontextmanager
async def running_app(
    settings: Settings, features: Sequence[Feature] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = create_app(settings, features)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shoal.test", timeout=60) as client:
            yield client, app


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services
