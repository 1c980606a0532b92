"""``WS /ws`` end to end against a real server: acks, similar pushes, standing queries, bad input,
back-pressure. Auth is off here (see test_ws_auth.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from websockets.exceptions import ConnectionClosed

from shoal.ingest import ANALYZED_CHANNEL
from shoal.services import Services
from tests.tweets.conftest import client, tweet, tweet_server
from tests.waiting import eventually

RUST = ["I love Rust", "Rust makes systems programming safe", "Cargo is a great build tool for Rust"]


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


async def test_batch_is_acked_then_each_tweet_gets_its_similar_tweets(server: tuple[str, FastAPI]) -> None:
    base, _ = server
    async with client(f"{base}/ws") as c:
        await c.send({"tweets": [tweet(f"t{i}", text) for i, text in enumerate(RUST)]})
        ack = await c.wait_type("ack")
        assert ack["ids"] == ["t0", "t1", "t2"]
        for _ in RUST:
            await c.wait_type("similar")
        await c.send({"tweets": [tweet("t9", "Rust programming is fun", extra_field=7)]})
        await c.wait_type("ack", ids=["t9"])
        pushed = await c.wait_type("similar", tweet_id="t9")
    ids = [r["id"] for r in pushed["results"]]
    assert "t9" not in ids and set(ids) <= {"t0", "t1", "t2"} and ids
    first = pushed["results"][0]
    assert set(first) == {"id", "score", "payload"}
    assert first["payload"]["user_id"] == "user_123" and first["payload"]["username"] == "alice"
    assert first["payload"]["text"] in RUST
    assert [r["score"] for r in pushed["results"]] == sorted((r["score"] for r in pushed["results"]), reverse=True)


async def test_k_is_set_per_connection(server: tuple[str, FastAPI]) -> None:
    base, _ = server
    async with client(f"{base}/ws?k=1") as c:
        assert (await c.wait_type("config"))["k"] == 1
        await c.send({"tweets": [tweet(f"s{i}", f"cats and dogs number {i}") for i in range(4)]})
        await c.wait_type("ack")
        await c.send({"type": "config", "k": 3})
        assert (await c.wait_type("config"))["k"] == 3
        await c.send({"tweets": [tweet("s9", "dogs and cats again")]})
        pushed = await c.wait_type("similar", tweet_id="s9")
        assert len(pushed["results"]) == 3


async def test_one_client_ingests_and_another_clients_subscription_is_pushed(server: tuple[str, FastAPI]) -> None:
    base, _ = server
    async with client(f"{base}/ws") as listener, client(f"{base}/ws") as sender:
        await listener.send({"type": "subscribe", "query": "the Rust programming language", "min_score": 0.4})
        subscribed = await listener.wait_type("subscribed")
        await sender.send(
            {
                "tweets": [
                    tweet("a1", "I love Rust, the programming language"),
                    tweet("a2", "My cat sleeps all day on the sofa"),
                ]
            }
        )
        await sender.wait_type("ack")
        match = await listener.wait_type("match")
        assert match["subscription"] == subscribed["id"] and match["tweet_id"] == "a1"
        assert match["score"] >= 0.4 and match["payload"]["text"].startswith("I love Rust")
        await listener.send({"type": "unsubscribe", "id": subscribed["id"]})
        await listener.wait_type("unsubscribed")
        await sender.send({"tweets": [tweet("a3", "Rust programming language again")]})
        await sender.wait_type("similar", tweet_id="a3")
        await listener.send({"type": "ping"})
        await listener.wait_type("pong")
        assert not [m for m in listener.seen if m.get("type") == "match" and m["tweet_id"] == "a3"]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "dance"}', "unknown message type"),
        ('{"tweets": []}', "tweets"),
        ('{"tweets": [{"id": "x", "user_id": "u"}]}', "Missing required field: tweets.0.text"),
        ('{"tweets": [{"id": "x", "user_id": "u", "text": ""}]}', "tweets.0.text"),
        ('{"tweets": [{"id": "x", "user_id": "u", "text": "t", "_text": "no"}]}', "reserved"),
        ('{"tweets": "many"}', "tweets"),
        ('{"type": "subscribe"}', "Missing required field: subscribe.query"),
        ('{"type": "subscribe", "query": "q", "min_score": 3}', "subscribe.min_score"),
        ('{"type": "unsubscribe", "id": "nope"}', "no standing query"),
        ('{"type": "config", "k": 100000}', "k:"),
    ],
)
async def test_bad_input_gets_an_error_and_the_connection_survives(
    server: tuple[str, FastAPI], frame: str, expected: str
) -> None:
    base, _ = server
    async with client(f"{base}/ws") as c:
        await c.ws.send(frame)
        error = await c.wait_type("error")
        assert error["error"] == "invalid_schema" and expected in error["details"]
        await c.send({"tweets": [tweet("ok1", "still alive")]})
        await c.wait_type("ack", ids=["ok1"])


async def test_binary_frames_and_oversized_batches_are_refused(tmp_path: Path) -> None:
    async with tweet_server(tmp_path, tweets={"max_batch": 3}) as (base, _), client(f"{base}/ws") as c:
        await c.ws.send(b"\x00\x01")
        assert "binary" in (await c.wait_type("error"))["details"]
        await c.send({"tweets": [tweet(f"b{i}", "x") for i in range(4)]})
        assert "at most 3" in (await c.wait_type("error"))["details"]
        await c.send({"tweets": [tweet(7, "numeric ids are fine")]})
        await c.wait_type("ack", ids=["7"])


async def test_a_client_too_slow_to_read_is_closed_with_1013(tmp_path: Path) -> None:
    async with tweet_server(tmp_path, tweets={"send_queue": 4, "max_k": 50}) as (base, app):
        # A tiny receive buffer and no reading: the server's socket and then its queue fill up.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        async with client(f"{base}/ws?k=50", sock=sock, max_queue=1) as slow:
            await slow.send({"type": "subscribe", "query": "anything", "min_score": -1})
            long_text = "a long tweet about nothing in particular " * 40
            await slow.send({"tweets": [tweet(f"x{i}", long_text) for i in range(300)]})
            services = services_of(app)
            await eventually(lambda: services.log.lag("records", "indexer"), until=lambda lag: lag == 0)
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # now read everything that was buffered, up to the close frame
                    await slow.receive(timeout=30)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013 and "too slow" in closed.value.rcvd.reason


async def test_a_standing_query_on_another_collection_gets_its_records_and_their_analyses(
    server: tuple[str, FastAPI],
) -> None:
    base, app = server
    bus = services_of(app).bus
    async with client(f"{base}/ws") as c, httpx.AsyncClient(base_url=base.replace("ws://", "http://")) as http:
        await c.send({"type": "subscribe", "id": "n", "collection": "notes", "query": "x", "min_score": -1})
        assert (await c.wait_type("error"))["error"] == "collection_not_found"
        assert (await http.post("/v1/collections", json={"name": "notes"})).status_code == 201
        await c.send({"type": "subscribe", "id": "n", "collection": "notes", "query": "parcels", "min_score": -1})
        assert (await c.wait_type("subscribed", id="n"))["collection"] == "notes"
        # Analysed before the indexer's event (a feature processor may be first): the match carries it.
        await bus.publish(ANALYZED_CHANNEL, {"collection": "notes", "analyses": {"n1": {"sentiment": "negative"}}})
        r = await http.post("/v1/collections/notes/records", json={"records": [{"id": "n1", "text": "parcel late"}]})
        assert r.status_code == 202, r.text
        match = await c.wait_type("match", id="n1")
        assert match["collection"] == "notes" and match["subscription"] == "n" and "tweet_id" not in match
        assert match["payload"]["text"] == "parcel late" and match["analysis"] == {"sentiment": "negative"}
        # Analysed after: pushed on its own, to the standing queries the record matches.
        await bus.publish(ANALYZED_CHANNEL, {"collection": "notes", "analyses": {"n1": {"sentiment": "neutral"}}})
        pushed = await c.wait_type("analysis", id="n1")
        assert pushed["subscription"] == "n" and pushed["analysis"] == {"sentiment": "neutral"}
        # A tweet is not a note: its similar push comes after its matching, and nothing matched.
        await c.send({"tweets": [tweet("t1", "my parcel is late")]})
        await c.wait_type("similar", tweet_id="t1")
        assert not [m for m in c.seen if m.get("type") == "match" and m["id"] == "t1"]


async def test_pushes_only_reach_open_connections(server: tuple[str, FastAPI]) -> None:
    base, app = server
    async with client(f"{base}/ws") as c:
        await c.send({"type": "subscribe", "query": "weather", "min_score": 0.1})
        await c.wait_type("subscribed")
    async with client(f"{base}/ws") as other:
        await other.send({"tweets": [tweet("w1", "sunny weather today")]})
        await other.wait_type("similar", tweet_id="w1")
    hub = services_of(app).extras["tweets"].hub
    assert not hub._queries and not hub._pending


async def test_auth_message_is_harmless_when_auth_is_off(server: tuple[str, FastAPI]) -> None:
    base, _ = server
    async with client(f"{base}/ws") as c:
        await c.send({"type": "auth", "token": "ignored-when-auth-is-off"})
        assert (await c.wait_type("auth_ok"))["user_id"] is None
