"""The vector-store contract fixture: every test in ``test_contract.py`` runs once per backend.

Adding a backend is one entry in ``BACKENDS`` (a factory from a temp dir to an unopened store).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from shoal.vectors.base import VectorStore
from shoal.vectors.edge import EdgeVectorStore
from tests.vectors.scale_backends import SCALE_BACKENDS


def _edge(tmp: Path) -> VectorStore:
    return EdgeVectorStore(tmp / "edge")


BACKENDS: dict[str, Callable[[Path], VectorStore]] = {"edge": _edge, **SCALE_BACKENDS}


@pytest.fixture(params=list(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    async with BACKENDS[request.param](tmp_path) as opened:
        yield opened


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` random L2-normalised float32 vectors (seeded)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors
