"""Features: the capabilities that ride on the shared pipeline (core records API, tweets, insights,
RAG, recommendations). Each contributes HTTP/WS routes, processors and its own resources; the app
factory mounts routes by role and the lifespan opens every feature through one ``AsyncExitStack``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from fastapi import APIRouter

if TYPE_CHECKING:
    from shoal.pipeline.processor import Processor
    from shoal.services import Services


class Feature:
    """Base class: override what the feature contributes."""

    name: str = "feature"

    def ingest_routers(self) -> Sequence[APIRouter]:
        """Routes taking high-rate writes (records, events, conversations), mounted on API processes
        before every other route: FastAPI tries routes one by one in mounting order, ~5 µs each, so a
        POST mounted behind the ~40 others paid ~0.2 ms of the event loop a request before its
        handler ran (bench/recommend.py). Keep these routers to those endpoints alone."""
        return ()

    def routers(self) -> Sequence[APIRouter]:
        """Routes mounted on API processes (role ``api`` or ``all``), after every feature's
        ``ingest_routers``."""
        return ()

    async def start(self, services: Services, stack: AsyncExitStack) -> None:
        """Open the feature's resources, registering their cleanup on ``stack`` (closed in reverse
        order at shutdown). Store what the routes need on ``services.extras[self.name]``."""

    def processors(self, services: Services) -> Sequence[Processor]:
        """Log consumers run on worker processes (role ``worker`` or ``all``); called after ``start``."""
        return ()

    async def ready(self, services: Services) -> None:
        """Raise ``BackendError`` naming what is not ready (used by ``/ready``)."""
