"""A local HTTP server speaking the OpenAI chat-completions protocol (streaming and not), for
testing generation without a real model. Its "model" answers from the sources in the prompt: it
cites the source that contains the question's keyword, or says the sources lack the answer."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from shoal.rag.llm import NO_ANSWER

_SOURCE = re.compile(r"^\[(\d+)\] (.*?)\n(.*?)(?=\n\n\[\d+\] |\n\nQuestion: )", re.S | re.M)


@dataclass
class FakeChatModel:
    """Records requests; ``keyword`` picks the source to cite (the question's last word by default)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""

    def answer(self, body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        question = prompt.rsplit("Question: ", 1)[1].split("\n", 1)[0]
        keyword = re.findall(r"\w+", question.lower())[-1]
        for number, _title, text in _SOURCE.findall(prompt):
            if keyword in text.lower():
                return f"The answer about {keyword} is in source [{number}]."
        return NO_ANSWER

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        text = self.answer(body)
        created, model = int(time.time()), body["model"]
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                }
            )

        async def events() -> AsyncIterator[bytes]:
            for token in re.findall(r"\S+\s*", text):
                chunk = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}],
                }
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            end = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            yield b"data: " + orjson.dumps(end) + b"\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve_openai(model: FakeChatModel) -> AsyncIterator[str]:
    """Run the fake API on 127.0.0.1:<free port>; yields its base URL (``.../v1``)."""
    app = Starlette(routes=[Route("/v1/chat/completions", model.completions, methods=["POST"])])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        await task
