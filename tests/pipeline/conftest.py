"""The runner's tests run over every log implementation (``tests.log.conftest.OPENERS``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.log import Log
from tests.log.conftest import OPENERS


@pytest.fixture(params=sorted(OPENERS))
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Log]:
    async with OPENERS[request.param](tmp_path, 1, 10_000) as opened:
        yield opened


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses (servers such as Kafka are shared between tests)."""
    return f"t-{uuid.uuid4().hex[:12]}"
