"""The tweet stream: WebSocket ingestion, live similar-tweet and standing-query pushes, search by user."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from fastapi import APIRouter

from shoal.errors import BackendError
from shoal.feature import Feature
from shoal.services import Services
from shoal.tweets import routes, ws
from shoal.tweets.push import PushHub
from shoal.tweets.settings import TweetSettings


@dataclass(frozen=True, slots=True)
class TweetsState:
    """What the tweet routes find on ``services.extras["tweets"]``."""

    settings: TweetSettings
    hub: PushHub


class TweetsFeature(Feature):
    name = "tweets"

    def __init__(self, settings: TweetSettings | None = None) -> None:
        self._settings = settings

    def routers(self) -> Sequence[APIRouter]:
        return (ws.router, routes.router)

    async def start(self, services: Services, stack: AsyncExitStack) -> None:
        settings = self._settings or TweetSettings()
        await services.collections.ensure(settings.collection)
        hub = await stack.enter_async_context(PushHub(services, settings.collection))
        await hub.listening()
        services.extras[self.name] = TweetsState(settings, hub)

    async def ready(self, services: Services) -> None:
        state: TweetsState | None = services.extras.get(self.name)
        if state is None or not state.hub.is_listening:
            raise BackendError("tweets: the push hub is not listening to indexed events")
