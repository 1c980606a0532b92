"""Scale-out vector backends for the contract suite: each builds an unopened store for one test.

Engines: qdrant-client's local mode (the server's API in-process), milvus-lite (a local file), and
PostgreSQL + pgvector from ``tests.engines`` (one server per session, one schema per test).
A backend whose driver or engine is missing skips its tests with the reason (fails under CI=true).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shoal.vectors.base import VectorStore
from tests.engines import pgvector_url, require_module


def _qdrant(tmp: Path) -> VectorStore:
    require_module("qdrant_client", "qdrant-client")
    from shoal.vectors.qdrant import QdrantVectorStore

    return QdrantVectorStore("qdrant+local://:memory:")


def _milvus(tmp: Path) -> VectorStore:
    require_module("pymilvus", "pymilvus")
    require_module("milvus_lite", "milvus-lite")
    from shoal.vectors.milvus import MilvusVectorStore

    return MilvusVectorStore(f"milvus+lite://{tmp / 'milvus.db'}")


def _pgvector(tmp: Path) -> VectorStore:
    require_module("asyncpg", "asyncpg")
    require_module("pgvector", "pgvector")
    from shoal.vectors.pgvector import PgVectorStore

    return PgVectorStore(with_schema(pgvector_url(), f"t_{uuid.uuid4().hex[:12]}"))


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``?schema=`` set, so each test owns its tables on the shared server."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | {"schema": schema}
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


SCALE_BACKENDS: dict[str, Callable[[Path], VectorStore]] = {
    "qdrant": _qdrant,
    "milvus": _milvus,
    "pgvector": _pgvector,
}
