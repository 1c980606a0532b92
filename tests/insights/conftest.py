"""App fixtures for the insights tests: the real app, embedded stores and the local model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from shoal.app import CoreFeature, create_app
from shoal.insights.feature import InsightsFeature
from shoal.insights.settings import InsightsSettings
from shoal.insights.store import InsightsStore
from shoal.llm_settings import LLMSettings
from shoal.records.migrations import migrate
from shoal.settings import Settings


def make_app(tmp_path: Path, *, llm: LLMSettings | None = None, **overrides: Any) -> Any:
    settings = Settings(data_dir=tmp_path, **overrides)
    feature = InsightsFeature(InsightsSettings(retry_delay_s=0.2), llm or LLMSettings(base_url=None, api_key=None))
    return create_app(settings, features=[CoreFeature(), feature])


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(tmp_path)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[InsightsStore]:
    """The insights store on a migrated SQLite file."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shoal.db'}"
    await migrate(url)
    async with InsightsStore(url) as store:
        yield store
