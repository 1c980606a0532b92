"""Structured JSON logs with request ids, request metrics and the request body limit.

The middlewares are pure ASGI (no per-request task or body buffering)."""

from __future__ import annotations

import atexit
import logging
import queue
import random
import signal
import sys
import time
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import IO, Any

import orjson
import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import EventDict

from shoal.metrics import Metrics


def configure_logging(level: str = "INFO", json: bool = True, stream: IO[str] | None = None) -> QueueListener:
    """Route stdlib and structlog output through one JSON renderer on ``stream`` (stderr), off the caller's thread.

    The calling thread (the event loop) only builds the event (level, time, bound context such as the
    request id, a rendered traceback) and queues it; a listener thread renders the JSON and writes it, so
    a slow stderr never stalls a request (the access log's write was ~10 % of the loop at 500 req/s).
    The queue is bounded: when the writer falls that far behind, lines are dropped and counted, never
    held without bound. Returns the started listener; ``stop_logging`` (run at exit) writes what is
    queued and stops it. A ``kill -9`` loses the lines still queued, never data.
    """
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=lambda o, **_: orjson.dumps(o, default=str).decode())
        if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        # Everything that needs the caller's context (contextvars, the exception being handled, the time)
        # runs here; only rendering and writing move to the listener.
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # below the level a call returns at once, before the processors (the time stamp, the context)
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # Records from stdlib loggers (uvicorn, libraries): their context was captured when queued.
            foreign_pre_chain=[_queued_context, structlog.stdlib.add_log_level, _from_record],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    stop_logging()
    listener = _Writer(queue.Queue(LOG_QUEUE_SIZE), handler, respect_handler_level=True)
    root = logging.getLogger()
    root.handlers[:] = [_QueuedHandler(listener)]
    root.setLevel(level.upper())
    # uvicorn's access log would print query strings (which may carry a token); ours does not.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
    listener.start()
    return listener


LOG_QUEUE_SIZE = 10_000


@atexit.register
def stop_logging() -> None:
    """Write what is queued and stop the log writer (at exit, or before logging is configured again)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _QueuedHandler):
            root.removeHandler(handler)
            handler.listener.stop()


def flush_logs_on_sigterm() -> None:
    """Make SIGTERM write the queued log lines before the process dies of it.

    uvicorn drains on SIGTERM, then restores the handler it found and raises the signal again; the
    default action would end the process before the writer thread had written the last lines (atexit
    does not run on a signal). This handler writes them, then dies of SIGTERM as the default would.
    """

    def die(signum: int, frame: object) -> None:
        stop_logging()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, die)


class _Writer(QueueListener):
    def enqueue_sentinel(self) -> None:
        self.queue.put(self._sentinel)  # type: ignore[attr-defined]  # wait for room: a full queue is still written


class _QueuedHandler(QueueHandler):
    """Queues records as they are (no formatting on the caller's thread); drops them when the queue is full."""

    def __init__(self, listener: QueueListener) -> None:
        super().__init__(listener.queue)
        self.listener = listener
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if not isinstance(record.msg, dict):  # a stdlib record: keep the context it was logged in
            record.shoal_context = structlog.contextvars.get_contextvars()
            if record.exc_info and not record.exc_text:  # the traceback objects must not outlive the call
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


def dropped_log_lines() -> int:
    """Lines dropped since start because the log writer fell a whole queue behind."""
    return sum(h.dropped for h in logging.getLogger().handlers if isinstance(h, _QueuedHandler))


def _queued_context(logger: Any, name: str, event: EventDict) -> EventDict:
    """The contextvars (request id...) a stdlib record was logged under, captured when it was queued."""
    record = event.get("_record")
    return {**getattr(record, "shoal_context", {}), **event}


def _from_record(logger: Any, name: str, event: EventDict) -> EventDict:
    """A stdlib record's own time (not the writer's) and its traceback, rendered when it was queued."""
    record = event.get("_record")
    if record is not None:
        event["timestamp"] = datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z")
    if record is not None and record.exc_text:
        event.setdefault("exception", record.exc_text)
    return event


class RequestContext:
    """Request id (``X-Request-ID`` in and out), latency metrics and an access log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.log = structlog.get_logger("shoal.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        # An opaque id, not a secret: uuid4 costs a getrandom syscall a request (~5 % of the loop at
        # 500 req/s); Python's generator is reseeded in forked children.
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or f"{random.getrandbits(128):032x}"
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_code = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.http_latency.labels(scope["method"], path, str(status_code)).observe(elapsed)
            if path not in {"/health", "/metrics"}:
                self.log.info(
                    "request", method=scope["method"], route=path, status=status_code, ms=round(elapsed * 1000, 2)
                )
            structlog.contextvars.unbind_contextvars("request_id")


class BodyLimit:
    """Answer 413 when a request body passes ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside body parsing: FastAPI re-raises HTTPException untouched and
                    # the one error mapper answers it.
                    raise HTTPException(413, f"body larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, send: Send) -> None:
        body = orjson.dumps({"error": "payload_too_large", "details": f"body larger than {self.max_bytes} bytes"})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
