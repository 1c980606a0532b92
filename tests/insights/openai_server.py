"""A local HTTP server speaking the OpenAI chat-completions protocol, answering insight requests.

``mode`` decides the answer: ``ok`` (valid JSON, one result per conversation), ``invalid`` (not JSON),
``wrong_ids`` (valid JSON missing a result), ``slow`` (answers after ``delay_s``). ``script`` lists
modes for successive calls before falling back to ``mode``. Every request and its arrival time
(monotonic, server side) is recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers import running_server


@dataclass
class FakeInsightsModel:
    mode: str = "ok"
    script: list[str] = field(default_factory=list)
    delay_s: float = 2.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)

    def results(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        items = json.loads(body["messages"][-1]["content"])
        return [
            {
                "id": item["id"],
                "sentiment_score": -0.8 if "late" in item["text"] else 0.5,
                "clusters": ["Delivery Problems"] if "late" in item["text"] else ["general"],
                "confidence": 0.9,
                "reasoning": f"LLM read {item['text'][:20]!r}",
            }
            for item in items
        ]

    async def completions(self, request: Request) -> Response:
        self.arrivals.append(time.monotonic())
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        mode = self.script.pop(0) if self.script else self.mode
        if mode == "slow":
            await asyncio.sleep(self.delay_s)  # a slow model, not synchronisation
        if mode == "invalid":
            content = "Sure! Here is the analysis: sentiment is negative."
        elif mode == "wrong_ids":
            content = json.dumps({"results": self.results(body)[1:]})
        else:
            content = json.dumps({"results": self.results(body)})
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
            }
        )


@asynccontextmanager
async def serve(model: FakeInsightsModel) -> AsyncIterator[str]:
    """Yields the API base URL (``http://127.0.0.1:<port>/v1``)."""
    app = Starlette(routes=[Route("/v1/chat/completions", model.completions, methods=["POST"])])
    async with running_server(app, lifespan="off") as base_url:
        yield f"{base_url}/v1"
