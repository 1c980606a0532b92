"""Auth on the tweet stream and the HTTP API, with a real JWKS from a local identity provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.servers import IdentityProvider, identity_provider
from tests.tweets.conftest import client, tweet, tweet_server

ADMIN_KEY = "root-secret"
BOB_KEY = "bob-secret"


@pytest.fixture
async def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, IdentityProvider]]:
    async with identity_provider() as idp:
        monkeypatch.setenv("SHOAL_AUTH_ISSUER", idp.issuer)
        monkeypatch.setenv("SHOAL_AUTH_AUDIENCE", '["shoal"]')
        keys: dict[str, Any] = {"api_keys": [f"bob:{BOB_KEY}"], "admin_api_keys": [ADMIN_KEY]}
        async with tweet_server(tmp_path, None, auth_jwks_url=idp.jwks_url, **keys) as (base, _):
            yield base, idp


async def closed_with(url: str, first: str | None = None, **kwargs: Any) -> tuple[int, str]:
    async with client(url, **kwargs) as c:
        if first is not None:
            await c.ws.send(first)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await c.receive()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_http_routes_need_credentials(secured: tuple[str, IdentityProvider]) -> None:
    base, idp = secured
    http = base.replace("ws://", "http://")
    async with httpx.AsyncClient(base_url=http, timeout=30) as api:
        assert (await api.get("/health")).status_code == 200
        assert (await api.get("/ready")).status_code != 401  # public: probes carry no token
        missing = await api.get("/v1/collections")
        assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        bad = await api.get("/v1/collections", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and "invalid API key" in bad.json()["details"]
        expired = await api.get("/v1/collections", headers={"Authorization": f"Bearer {idp.token(exp=1)}"})
        assert expired.status_code == 401 and expired.json()["details"] == "token expired"
        assert (await api.get("/v1/collections", headers={"X-API-Key": ADMIN_KEY})).status_code == 200
        jwt_ok = await api.get("/v1/collections", headers={"Authorization": f"Bearer {idp.token(sub='alice')}"})
        assert jwt_ok.status_code == 200
        assert (await api.get("/metrics")).status_code == 401
        other = await api.post("/search_payload", json={"user_id": "alice"}, headers={"X-API-Key": BOB_KEY})
        assert other.status_code == 403 and other.json()["error"] == "forbidden"
        own = await api.post("/search_payload", json={"user_id": "bob"}, headers={"X-API-Key": BOB_KEY})
        assert own.status_code == 200 and own.json() == {"status": "success", "payload": {"points": []}}


async def test_websocket_rejections_close_with_1008_and_a_reason(secured: tuple[str, IdentityProvider]) -> None:
    base, idp = secured
    code, reason = await closed_with(f"{base}/ws", subprotocols=["bearer", "wrong-key"])
    assert (code, reason) == (1008, "invalid API key")
    code, reason = await closed_with(f"{base}/ws?token={idp.token(aud='other')}")
    assert code == 1008 and "audience" in reason
    code, reason = await closed_with(f"{base}/ws", first='{"tweets": [{"id": "1", "user_id": "x", "text": "t"}]}')
    assert code == 1008 and "authentication required" in reason
    code, reason = await closed_with(f"{base}/ws", first='{"type": "auth", "token": "nope"}')
    assert (code, reason) == (1008, "invalid API key")


async def test_token_as_subprotocol_first_message_or_query(secured: tuple[str, IdentityProvider]) -> None:
    base, idp = secured
    token = idp.token(sub="alice")
    async with client(f"{base}/ws", subprotocols=["bearer", token]) as c:
        assert c.ws.subprotocol == "bearer"
        await c.send({"tweets": [tweet("p1", "hello from alice", user_id="alice")]})
        await c.wait_type("ack", ids=["p1"])
    async with client(f"{base}/ws") as c:
        await c.send({"type": "auth", "token": token})
        assert (await c.wait_type("auth_ok"))["user_id"] == "alice"
        await c.send({"tweets": [tweet("p2", "again from alice", user_id="alice")]})
        await c.wait_type("ack", ids=["p2"])
    async with client(f"{base}/ws?token={BOB_KEY}") as c:
        await c.send({"tweets": [tweet("p3", "bob here", user_id="bob")]})
        await c.wait_type("ack", ids=["p3"])


async def test_users_only_ingest_as_themselves_and_only_see_their_own_tweets(
    secured: tuple[str, IdentityProvider],
) -> None:
    base, idp = secured
    alice_token = idp.token(sub="alice")
    async with client(f"{base}/ws?token={BOB_KEY}") as bob, client(f"{base}/ws?token={alice_token}") as alice:
        await bob.send({"tweets": [tweet("b1", "Rust is my favourite language", user_id="alice")]})
        refused = await bob.wait_type("error")
        assert refused["error"] == "forbidden" and "'bob'" in refused["details"]
        await bob.send({"type": "config", "scope": "all"})
        assert (await bob.wait_type("error"))["error"] == "forbidden"
        await bob.send({"type": "subscribe", "query": "Rust programming", "min_score": 0.2})
        await bob.wait_type("subscribed")
        await bob.send({"tweets": [tweet("b2", "Rust is my favourite language", user_id="bob")]})
        await bob.wait_type("similar", tweet_id="b2")
        await alice.send({"tweets": [tweet("a1", "I love the Rust language", user_id="alice")]})
        pushed = await alice.wait_type("similar", tweet_id="a1")
        assert pushed["results"] == []  # bob's tweet is similar, but not hers
        await alice.send({"tweets": [tweet("a2", "Rust language, I love it", user_id="alice")]})
        pushed = await alice.wait_type("similar", tweet_id="a2")
        assert [r["id"] for r in pushed["results"]] == ["a1"]
        await bob.send({"type": "ping"})
        await bob.wait_type("pong")
        assert {m["tweet_id"] for m in bob.seen if m["type"] == "match"} <= {"b2"}
    async with client(f"{base}/ws?token={ADMIN_KEY}") as admin:
        await admin.send({"tweets": [tweet("z1", "Rust language is lovely", user_id="anyone")]})
        pushed = await admin.wait_type("similar", tweet_id="z1")
        assert {"a1", "a2", "b2"} & {r["id"] for r in pushed["results"]}
