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

    def routers(self) -> Sequence[APIRouter]:
        """Routes mounted on API processes (role ``api`` or ``all``)."""
        return ()

    async def start(self, services: Services, stack: AsyncExitStack) -> None:
        """Open the feature's resources, registering their cleanup on ``stack`` (closed in reverse
        order at shutdown). Store what the routes need on ``services.extras[self.name]``."""

    def processors(self, services: Services) -> Sequence[Processor]:
        """Log consumers run on worker processes (role ``worker`` or ``all``); called after ``start``."""
        return ()

    async def ready(self, services: Services) -> None:
        """Raise ``BackendError`` naming what is not ready (used by ``/ready``)."""
