"""Embedding providers: turn texts into L2-normalised float32 vectors.

A provider does the raw work (local ONNX model or a remote OpenAI-compatible API). The
``EmbeddingEngine`` in ``shoal.embedding.engine`` wraps one provider with micro-batching, a bounded
queue and the L1/L2 content cache; the rest of Shoal only talks to the engine.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class EmbeddingProvider(abc.ABC):
    """Embeds a batch of texts. Use as an async context manager."""

    model_id: str
    """Stable identifier stamped on every record (e.g. ``local:minilm``)."""
    dim: int
    max_batch: int = 32
    """Largest batch the provider takes in one call."""
    is_remote: bool = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Load the model / connect."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model / connection."""

    @abc.abstractmethod
    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Vectors of shape ``(len(texts), dim)``, each L2-normalised. Raises ``EmbeddingError``."""

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text (a cheap estimate is fine); may block, so call it off the event loop."""
        return [max(1, len(t) // 4) for t in texts]

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the provider would bill for ``texts``."""
        return sum(self.token_lengths(texts))
