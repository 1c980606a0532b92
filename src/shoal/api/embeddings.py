"""``POST /v1/embeddings``: the OpenAI embeddings API shape, served by the local engine."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter

from shoal.api.deps import ServicesDep
from shoal.api.schemas import EmbeddingsBody
from shoal.errors import InvalidInput

router = APIRouter(tags=["embeddings"])


@router.post("/v1/embeddings")
async def create_embeddings(body: EmbeddingsBody, services: ServicesDep) -> dict[str, Any]:
    engine = services.engine
    texts = [body.input] if isinstance(body.input, str) else body.input
    for i, text in enumerate(texts):
        if not text:
            raise InvalidInput(f"input.{i}: must not be empty")
        if len(text) > services.settings.max_text_chars:
            raise InvalidInput(f"input.{i}: longer than {services.settings.max_text_chars} characters")
    if body.model not in (None, engine.model_id, engine.model_id.partition(":")[2]):
        raise InvalidInput(f"model: this server embeds with {engine.model_id!r}, not {body.model!r}")
    if body.dimensions not in (None, engine.dim):
        raise InvalidInput(f"dimensions: this model has {engine.dim} dimensions")
    vectors = await engine.embed(texts)
    data = []
    for i, vec in enumerate(vectors):
        embedding: Any = (
            base64.b64encode(vec.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" else vec.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = engine.count_tokens(texts)
    return {
        "object": "list",
        "data": data,
        "model": engine.model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
