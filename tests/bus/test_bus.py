"""One contract suite over every bus: in-process and Redis pub/sub.

Redis pub/sub channels are global (not per database), so every test uses its own channel names.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from shoal.bus import Bus, Event, Subscription
from shoal.bus.memory import MemoryBus
from shoal.bus.redis import RedisBus
from shoal.errors import BackendError
from shoal.factory import make_bus
from tests.waiting import eventually

Channel = Callable[[str], str]


async def next_event(sub: Subscription) -> Event:
    async with asyncio.timeout(5):
        return await anext(aiter(sub))


@pytest.fixture
def ch() -> Channel:
    """Channel names unique to this test."""
    run = uuid.uuid4().hex
    return lambda name: f"test:{run}:{name}"


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest) -> Callable[[], Bus]:
    if request.param == "memory":
        shared = MemoryBus()  # "two processes" on the memory bus are one bus
        return lambda: shared
    url = request.getfixturevalue("redis_url")
    return lambda: RedisBus(url)


@pytest.fixture
async def bus(make: Callable[[], Bus]) -> AsyncIterator[Bus]:
    async with make() as opened:
        yield opened


async def test_publish_reaches_subscriber(bus: Bus, ch: Channel) -> None:
    async with bus.subscribe(ch("a")) as sub:
        await bus.publish(ch("a"), {"id": 1, "text": "héllo", "tags": ["x"], "nested": {"k": None}})
        assert await next_event(sub) == {"id": 1, "text": "héllo", "tags": ["x"], "nested": {"k": None}}


async def test_events_keep_their_order(bus: Bus, ch: Channel) -> None:
    async with bus.subscribe(ch("a")) as sub:
        for i in range(20):
            await bus.publish(ch("a"), {"i": i})
        assert [(await next_event(sub))["i"] for _ in range(20)] == list(range(20))


async def test_every_subscriber_gets_its_own_copy(bus: Bus, ch: Channel) -> None:
    async with bus.subscribe(ch("a")) as one, bus.subscribe(ch("a")) as two:
        await bus.publish(ch("a"), {"n": [1]})
        first = await next_event(one)
        first["n"].append(2)
        assert await next_event(two) == {"n": [1]}


async def test_channels_are_separate(bus: Bus, ch: Channel) -> None:
    async with bus.subscribe(ch("a"), ch("b")) as both, bus.subscribe(ch("a")) as only_a:
        await bus.publish(ch("b"), {"on": "b"})
        await bus.publish(ch("c"), {"on": "c"})
        await bus.publish(ch("a"), {"on": "a"})
        assert await next_event(both) == {"on": "b"}
        assert await next_event(both) == {"on": "a"}
        # "b" and "c" were published first: had they leaked, they would come before "a".
        assert await next_event(only_a) == {"on": "a"}


async def test_one_subscriber_leaving_keeps_the_others(bus: Bus, ch: Channel) -> None:
    async with bus.subscribe(ch("a")) as stays:
        async with bus.subscribe(ch("a")) as leaves:
            pass
        assert leaves.closed  # type: ignore[attr-defined]
        await bus.publish(ch("a"), {"still": True})
        assert await next_event(stays) == {"still": True}


async def test_leaving_the_context_unsubscribes(bus: Bus, ch: Channel) -> None:
    async with bus.subscribe(ch("a")) as sub:
        pass
    await bus.publish(ch("a"), {"late": True})
    assert [event async for event in sub] == []


async def test_redis_unsubscribes_from_redis(redis_url: str, ch: Channel) -> None:
    async with RedisBus(redis_url) as bus, aioredis.Redis.from_url(redis_url) as client:
        async with bus.subscribe(ch("a"), ch("p:*")), bus.subscribe(ch("a")):
            assert await client.pubsub_numsub(ch("a")) == [(ch("a").encode(), 1)]  # one connection per bus
        await eventually(lambda: client.pubsub_numsub(ch("a")), until=lambda r: r[0][1] == 0, timeout=5)


async def test_memory_bus_forgets_subscriptions() -> None:
    async with MemoryBus() as bus:
        async with bus.subscribe("a", "p:*"):
            pass
        assert bus._registry.channels == {}
        assert bus._registry.patterns == {}


async def test_full_buffer_drops_oldest_and_counts(bus: Bus, ch: Channel) -> None:
    async with bus.subscribe(ch("a"), maxsize=3) as sub:
        for i in range(5):
            await bus.publish(ch("a"), {"i": i})
        await eventually(lambda: _async(sub.dropped), until=lambda dropped: dropped == 2, timeout=5)
        assert [(await next_event(sub))["i"] for _ in range(3)] == [2, 3, 4]


async def test_pattern_subscription(bus: Bus, ch: Channel) -> None:
    async with bus.subscribe(ch("indexed:*")) as sub:
        await bus.publish(ch("other"), {"on": "other"})
        await bus.publish(ch("indexed:tweets"), {"on": "tweets"})
        await bus.publish(ch("indexed:docs"), {"on": "docs"})
        assert await next_event(sub) == {"on": "tweets"}
        assert await next_event(sub) == {"on": "docs"}


async def test_two_buses_see_each_other(make: Callable[[], Bus], ch: Channel) -> None:
    async with (
        make() as one,
        make() as two,
        one.subscribe(ch("a")) as on_one,
        two.subscribe(ch("a")) as on_two,
    ):
        await two.publish(ch("a"), {"from": "two"})
        await one.publish(ch("a"), {"from": "one"})
        assert [await next_event(on_one), await next_event(on_one)] == [{"from": "two"}, {"from": "one"}]
        assert [await next_event(on_two), await next_event(on_two)] == [{"from": "two"}, {"from": "one"}]


async def test_closing_the_bus_ends_subscriptions(make: Callable[[], Bus], ch: Channel) -> None:
    bus = make()
    async with bus, bus.subscribe(ch("a")) as sub:
        reader = asyncio.create_task(_collect(sub))
        await bus.close()
        assert await asyncio.wait_for(reader, 5) == []


async def test_event_must_be_json(bus: Bus, ch: Channel) -> None:
    with pytest.raises(TypeError):
        await bus.publish(ch("a"), {"bad": object()})


async def test_ping(bus: Bus) -> None:
    await bus.ping()


async def test_subscribe_needs_a_channel(bus: Bus) -> None:
    with pytest.raises(ValueError):
        async with bus.subscribe():
            pass


# -- redis ---------------------------------------------------------------------------------------


async def test_redis_unreachable_is_a_backend_error(ch: Channel) -> None:
    async with RedisBus("redis://127.0.0.1:1/0") as bus:
        with pytest.raises(BackendError):
            await bus.publish(ch("a"), {})
        with pytest.raises(BackendError):
            async with bus.subscribe(ch("a")):
                pass


async def test_redis_handed_client_stays_open(redis_url: str, ch: Channel) -> None:
    async with aioredis.Redis.from_url(redis_url) as client:
        async with RedisBus(client) as bus, bus.subscribe(ch("a")) as sub:
            await bus.publish(ch("a"), {"x": 1})
            assert await next_event(sub) == {"x": 1}
        assert await client.ping()


async def test_redis_resubscribes_after_losing_its_connection(redis_url: str, ch: Channel) -> None:
    name = f"shoal-test-{uuid.uuid4().hex}"
    async with (
        aioredis.Redis.from_url(redis_url, client_name=name) as client,
        aioredis.Redis.from_url(redis_url) as admin,
        RedisBus(client) as bus,
        bus.subscribe(ch("a")) as sub,
    ):
        killed = 0
        for info in await admin.client_list():
            if info["name"] == name and "P" in info["flags"]:
                killed += await admin.client_kill_filter(_id=info["id"])
        assert killed == 1

        async def publish_and_look() -> bool:
            await admin.publish(ch("a"), b'{"back": true}')
            return len(sub) > 0

        await eventually(publish_and_look, timeout=10)
        assert await next_event(sub) == {"back": True}


async def test_redis_skips_foreign_messages(redis_url: str, ch: Channel) -> None:
    async with RedisBus(redis_url) as bus, bus.subscribe(ch("a")) as sub:
        await bus._client.publish(ch("a"), b"not json")
        await bus._client.publish(ch("a"), b"[1, 2]")
        await bus.publish(ch("a"), {"ok": True})
        assert await next_event(sub) == {"ok": True}
        assert sub.malformed == 2


async def test_redis_gives_up_after_reconnect_attempts(redis_url: str, ch: Channel) -> None:
    name = f"shoal-test-{uuid.uuid4().hex}"
    async with (
        aioredis.Redis.from_url(redis_url, client_name=name) as client,
        aioredis.Redis.from_url(redis_url) as admin,
        RedisBus(client, reconnect_attempts=0) as bus,
        bus.subscribe(ch("a")) as sub,
    ):
        for info in await admin.client_list():
            if info["name"] == name and "P" in info["flags"]:
                await admin.client_kill_filter(_id=info["id"])
        with pytest.raises(BackendError):
            await next_event(sub)
        with pytest.raises(BackendError):
            await bus.publish(ch("a"), {})


async def test_factory_builds_each_kind(redis_url: str) -> None:
    assert isinstance(make_bus("memory://"), MemoryBus)
    async with make_bus(redis_url) as bus:
        assert isinstance(bus, RedisBus)


async def _async(value: int) -> int:
    return value


async def _collect(sub: Subscription) -> list[Event]:
    return [event async for event in sub]
