"""The push hub answers every tweet of one ``indexed`` event with one batched search, yet each
connection keeps its own ``k`` and scope."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from shoal.services import Services
from tests.tweets.conftest import client, tweet

Event = dict[str, Any]


class Recorder:
    """A connection as the hub sees it (the ``Listener`` protocol), keeping what it is sent."""

    def __init__(self, k: int, everyone: bool) -> None:
        self.k = k
        self.everyone = everyone
        self.events: list[Event] = []
        self.finished: list[str] = []

    def push(self, event: Event) -> None:
        self.events.append(event)

    def done(self, tweet_id: str) -> None:
        self.finished.append(tweet_id)


async def test_one_event_pushes_each_listener_its_own_k_and_scope(server: tuple[str, FastAPI]) -> None:
    base, app = server
    tweets = [tweet(f"a{i}", f"rust and cargo, note {i}", user_id="ann") for i in range(4)]
    tweets += [tweet(f"b{i}", f"rust and cargo, memo {i}", user_id="bob") for i in range(4)]
    async with client(f"{base}/ws") as c:
        await c.send({"tweets": tweets})
        waiting = {t["id"] for t in tweets}
        while waiting:  # every tweet indexed: its own push arrived
            waiting.discard((await c.wait_type("similar"))["tweet_id"])
    services: Services = app.state.services
    hub = services.extras["tweets"].hub
    everyone, own = Recorder(k=1, everyone=True), Recorder(k=3, everyone=False)
    hub.expect(everyone, ["a0"])
    hub.expect(own, ["b0", "missing"])

    await hub.handle(["a0", "b0", "missing"], {})

    (to_everyone,) = everyone.events
    assert to_everyone["type"] == "similar" and to_everyone["tweet_id"] == "a0"
    assert len(to_everyone["results"]) == 1 and to_everyone["results"][0]["id"] != "a0"
    (to_own,) = own.events
    assert to_own["tweet_id"] == "b0" and len(to_own["results"]) == 3
    assert {r["payload"]["user_id"] for r in to_own["results"]} == {"bob"}
    assert "b0" not in {r["id"] for r in to_own["results"]}
    scores = [r["score"] for r in to_own["results"]]
    assert scores == sorted(scores, reverse=True)
    assert everyone.finished == ["a0"] and sorted(own.finished) == ["b0", "missing"]


async def test_a_tweet_never_lists_itself_even_among_identical_texts(server: tuple[str, FastAPI]) -> None:
    """The search asks for k + 1 and drops the tweet afterwards: with exact duplicates scoring the
    same as the tweet itself, it is still left out and k others remain."""
    base, _ = server
    text = "the very same words, said again"
    async with client(f"{base}/ws?k=3") as c:
        await c.send({"tweets": [tweet(f"d{i}", text, user_id="dan") for i in range(3)]})
        for _ in range(3):
            await c.wait_type("similar")
        await c.send({"tweets": [tweet("d3", text, user_id="dan")]})
        pushed = await c.wait_type("similar", tweet_id="d3")
    assert sorted(r["id"] for r in pushed["results"]) == ["d0", "d1", "d2"]
    assert all(r["score"] > 0.99 for r in pushed["results"])
