"""Logs: JSON lines with the request's context, written by a thread of their own, bounded."""

from __future__ import annotations

import io
import json
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from shoal.telemetry import LOG_QUEUE_SIZE, configure_logging, dropped_log_lines, stop_logging
from tests.processes import ServerProcess


class RecordingStream(io.StringIO):
    """A stderr that remembers which thread wrote to it and can be made to block."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: set[str] = set()
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def write(self, text: str) -> int:
        self.writers.add(threading.current_thread().name)
        self.entered.set()
        self.release.wait(timeout=30)
        return super().write(text)

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


@pytest.fixture
def stream() -> Iterator[RecordingStream]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = RecordingStream()
    configure_logging("INFO", json=True, stream=out)
    try:
        yield out
    finally:
        out.release.set()
        stop_logging()
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def test_lines_keep_the_callers_context_and_are_written_by_another_thread(stream: RecordingStream) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-42")
    structlog.get_logger("shoal.test").info("from structlog", n=1)
    logging.getLogger("some.library").warning("from %s", "stdlib")
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("shoal.test").exception("structlog failure")
        logging.getLogger("some.library").exception("stdlib failure")
    structlog.contextvars.clear_contextvars()
    stop_logging()  # writes what is queued

    lines = {line["event"]: line for line in stream.lines()}
    assert set(lines) == {"from structlog", "from stdlib", "structlog failure", "stdlib failure"}
    assert all(line["request_id"] == "req-42" for line in lines.values())
    assert all(str(line["timestamp"]).endswith("Z") for line in lines.values())
    assert lines["from structlog"]["n"] == 1
    assert lines["from stdlib"]["level"] == "warning"
    assert "ValueError: boom" in str(lines["structlog failure"]["exception"])
    assert "ValueError: boom" in str(lines["stdlib failure"]["exception"])
    assert threading.current_thread().name not in stream.writers


def test_a_writer_a_whole_queue_behind_drops_lines_and_counts_them(stream: RecordingStream) -> None:
    log = logging.getLogger("some.library")
    stream.release.clear()
    log.warning("first")  # taken by the writer, which now blocks in write()
    assert stream.entered.wait(timeout=30)
    for i in range(LOG_QUEUE_SIZE + 5):
        log.warning("line %d", i)
    assert dropped_log_lines() == 5
    stream.release.set()
    stop_logging()
    assert len(stream.lines()) == 1 + LOG_QUEUE_SIZE


def test_the_server_logs_each_request_with_its_request_id(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    with server:
        r = httpx.get(f"{server.url}/v1/collections", headers={"X-Request-ID": "trace-7"})
        assert r.headers["x-request-id"] == "trace-7"
        generated = httpx.get(f"{server.url}/v1/collections").headers["x-request-id"]
        assert len(generated) == 32 and generated != "trace-7"
        assert "shoal_log_lines_dropped_total 0.0" in httpx.get(f"{server.url}/metrics").text
        # uvicorn drains, then dies of the SIGTERM it caught; the log writer empties its queue first.
        assert server.terminate() == -signal.SIGTERM
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    access = {line["request_id"]: line for line in lines if line.get("event") == "request"}
    for request_id in ("trace-7", generated):
        assert access[request_id]["route"] == "/v1/collections"
        assert access[request_id]["status"] == 200
    assert lines[-1]["event"].startswith("Finished server process")  # the last line uvicorn logs
