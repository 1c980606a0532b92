"""A real Shoal server with the tweet stream on a free port, and a small WebSocket client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect

from shoal.app import CoreFeature, create_app
from shoal.tweets import TweetSettings, TweetsFeature
from tests.app_fixtures import make_settings
from tests.servers import running_server

Message = dict[str, Any]


def tweet_app(data_dir: Path, tweets: dict[str, Any] | None = None, **settings: Any) -> FastAPI:
    tweet_settings = TweetSettings(_env_file=None, **(tweets or {}))
    return create_app(make_settings(data_dir, **settings), [CoreFeature(), TweetsFeature(tweet_settings)])


@asynccontextmanager
async def tweet_server(
    data_dir: Path, tweets: dict[str, Any] | None = None, **settings: Any
) -> AsyncIterator[tuple[str, FastAPI]]:
    """Serve a fresh app (core + tweets) on loopback; yields ``(ws base url, app)``."""
    app = tweet_app(data_dir, tweets, **settings)
    async with running_server(app) as base_url:
        yield base_url.replace("http://", "ws://"), app


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, FastAPI]]:
    async with tweet_server(tmp_path) as running:
        yield running


class Client:
    """A WebSocket client that reads JSON messages and waits for the one it wants."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[Message] = []

    async def send(self, message: Message) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def receive(self, timeout: float = 20.0) -> Message:
        message: Message = orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.seen.append(message)
        return message

    async def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 20.0) -> Message:
        """The first message (read from now on) for which ``predicate`` holds."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive(timeout)
                if predicate(message):
                    return message

    async def wait_type(self, kind: str, timeout: float = 20.0, **fields: Any) -> Message:
        return await self.wait_for(
            lambda m: m.get("type") == kind and all(m.get(k) == v for k, v in fields.items()), timeout
        )


@asynccontextmanager
async def client(url: str, **kwargs: Any) -> AsyncIterator[Client]:
    async with connect(url, open_timeout=20, **kwargs) as ws:
        yield Client(ws)


def tweet(tweet_id: str | int, text: str, user_id: str = "user_123", username: str = "alice", **extra: Any) -> Message:
    return {"id": tweet_id, "text": text, "user_id": user_id, "username": username, **extra}
