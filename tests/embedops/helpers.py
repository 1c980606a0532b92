"""Small helpers shared by the embedops tests."""

from __future__ import annotations

from typing import Any

import httpx
import orjson


async def add(client: httpx.AsyncClient, collection: str, texts: dict[str, str]) -> dict[str, Any]:
    body = {"records": [{"id": rid, "text": text} for rid, text in texts.items()]}
    r = await client.post(f"/v1/collections/{collection}/records", params={"wait": "true"}, json=body)
    assert r.status_code in (200, 202), r.text
    result: dict[str, Any] = r.json()
    return result


async def stats(client: httpx.AsyncClient, collection: str) -> dict[str, Any]:
    r = await client.get(f"/v1/collections/{collection}/stats")
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def events(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [orjson.loads(line) for line in response.text.splitlines() if line.strip()]


async def settled(client: httpx.AsyncClient, collection: str) -> dict[str, Any]:
    """Stats once the indexer has committed everything it was given (the log lag is 0)."""
    from tests.waiting import eventually

    async def probe() -> dict[str, Any]:
        return await stats(client, collection)

    return await eventually(probe, until=lambda s: s["log_lag"] == 0)
